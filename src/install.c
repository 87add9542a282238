/*-------------------------------------------------------------------------
 *
 * install.c
 *	  The check that CREATE EXTENSION tcc makes of the schema it installs
 *	  into.
 *
 * tcc.control names the schema tcc.  CREATE EXTENSION creates it when it
 * does not exist, but when it does, PostgreSQL installs into it as it is:
 * whoever made it beforehand (the owner of a database can) may have put
 * objects there that tcc's install script or its callers then pick up (a
 * tcc.is_visible overload that a superuser reading tcc.transactions would
 * run), or may add them later as the schema's owner.  So the install
 * script's first statement asks tcc_check_install_schema whether the
 * schema is one tcc can trust: owned by the role creating the extension
 * (who becomes its owner), with no privileges granted on it, and holding
 * nothing but the extension's own objects.  The schema that CREATE
 * EXTENSION makes itself passes, and so does the empty "CREATE SCHEMA tcc"
 * that pg_dump writes before "CREATE EXTENSION tcc" (the schema is not a
 * member of the extension, so it is dumped on its own).
 *
 * src/install.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/syscache.h"

#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_check_install_schema);

/*
 * schema_has_foreign_objects
 *		Whether anything in schema nspid is not a member of the extension
 *		being created.
 *
 * Every object in a schema depends on it in pg_depend; so does the
 * extension itself, which lives there.
 */
static bool
schema_has_foreign_objects(Oid nspid)
{
	Relation	rel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(NamespaceRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(nspid));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2,
							  key);
	while (!found && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tuple);

		if (dep->classid == ExtensionRelationId &&
			dep->objid == CurrentExtensionObject)
			continue;
		if (getExtensionOfObject(dep->classid, dep->objid) ==
			CurrentExtensionObject)
			continue;
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	return found;
}

/*
 * tcc_check_install_schema
 *		Refuse to go on installing tcc into a schema it cannot trust (see
 *		the file header).  Called only from the install script.
 */
Datum
tcc_check_install_schema(PG_FUNCTION_ARGS)
{
	Oid			nspid;
	HeapTuple	tuple;
	Oid			owner;
	bool		has_acl;

	if (!creating_extension)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tcc_check_install_schema can only be called by "
						"CREATE EXTENSION tcc")));

	nspid = get_namespace_oid("tcc", false);
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for schema %u", nspid);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	has_acl = !heap_attisnull(tuple, Anum_pg_namespace_nspacl, NULL);
	ReleaseSysCache(tuple);

	if (owner != GetUserId())
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_SCHEMA),
				 errmsg("schema \"tcc\" already exists and is owned by "
						"role %s", GetUserNameFromId(owner, false)),
				 errdetail("CREATE EXTENSION tcc installs only into a schema "
						   "of its own, owned by the role creating the "
						   "extension, %s.",
						   GetUserNameFromId(GetUserId(), false)),
				 errhint("Drop or rename schema tcc, then create the "
						 "extension again: it creates its schema itself.")));
	if (has_acl)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_SCHEMA),
				 errmsg("schema \"tcc\" already exists and has privileges "
						"granted on it"),
				 errdetail("CREATE EXTENSION tcc installs only into a schema "
						   "of its own, on which nobody else may create "
						   "objects."),
				 errhint("Drop or rename schema tcc, then create the "
						 "extension again: it creates its schema itself.")));
	if (schema_has_foreign_objects(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_SCHEMA),
				 errmsg("schema \"tcc\" already exists and contains "
						"objects"),
				 errdetail("CREATE EXTENSION tcc installs only into a schema "
						   "of its own, holding nothing it did not create."),
				 errhint("Drop or rename schema tcc, then create the "
						 "extension again: it creates its schema itself.")));

	PG_RETURN_VOID();
}
