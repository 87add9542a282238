/*-------------------------------------------------------------------------
 *
 * fdw.c
 *	  Participants as foreign servers: the tcc_fdw validator and the user
 *	  mapping lookup.
 *
 * A participant is CREATE SERVER ... FOREIGN DATA WRAPPER tcc_fdw with the
 * libpq options that say where it is (host, port, dbname, sslmode ...),
 * plus a user mapping per owning role with the credentials (user,
 * password, and the client certificate options).  The split is the same as
 * postgres_fdw's, so that the owner of a server cannot see or set another
 * role's password, and the validator refuses an option in the wrong place
 * when it is set rather than at the first phase two.
 *
 * tcc_fdw has no handler: it defines no foreign tables, only participants.
 *
 * src/fdw.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_fdw_validator);

/* options that belong on the user mapping, not on the server */
static const char *const user_mapping_options[] = {
	"user", "password", "sslpassword", "sslcert", "sslkey", NULL
};

/*
 * Options of libpq that tcc sets itself or that make no sense for a
 * participant: the encoding follows the database's, the application name
 * is "tcc" unless the server sets application_name, tcc.connect_timeout
 * bounds connecting, and a replication connection cannot run SQL actions.
 */
static const char *const reserved_options[] = {
	"client_encoding", "fallback_application_name", "connect_timeout",
	"replication", NULL
};

/*
 * in_list
 *		Whether name is one of the NULL-terminated list.
 */
static bool
in_list(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
	{
		if (strcmp(name, *list) == 0)
			return true;
	}
	return false;
}

/*
 * is_libpq_option
 *		Whether name is a libpq connection option that a user may set
 *		(debug options are not).
 */
static bool
is_libpq_option(const char *name)
{
	static PQconninfoOption *libpq_options = NULL;
	PQconninfoOption *opt;

	if (libpq_options == NULL)
	{
		libpq_options = PQconndefaults();
		if (libpq_options == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not get libpq's default connection "
							   "options.")));
	}

	for (opt = libpq_options; opt->keyword != NULL; opt++)
	{
		if (strcmp(opt->keyword, name) == 0)
			return strchr(opt->dispchar, 'D') == NULL;
	}
	return false;
}

/*
 * is_valid_option
 *		Whether option name may be set on an object of catalog.
 */
static bool
is_valid_option(const char *name, Oid catalog)
{
	if (!is_libpq_option(name) || in_list(name, reserved_options))
		return false;
	if (catalog == UserMappingRelationId)
		return in_list(name, user_mapping_options);
	if (catalog == ForeignServerRelationId)
		return !in_list(name, user_mapping_options);
	return false;
}

/*
 * valid_options_hint
 *		The options valid on catalog, for a hint.
 */
static char *
valid_options_hint(Oid catalog)
{
	PQconninfoOption *options = PQconndefaults();
	PQconninfoOption *opt;
	StringInfoData buf;

	initStringInfo(&buf);
	for (opt = options; opt != NULL && opt->keyword != NULL; opt++)
	{
		if (is_valid_option(opt->keyword, catalog))
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
							 opt->keyword);
	}
	if (options != NULL)
		PQconninfoFree(options);
	return buf.data;
}

/*
 * tcc_fdw_validator
 *		Check the options of tcc_fdw itself (none), of a participant server
 *		and of a user mapping for one.
 */
Datum
tcc_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (is_valid_option(def->defname, catalog))
			continue;

		if (catalog == ForeignDataWrapperRelationId)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 errdetail("Foreign-data wrapper tcc_fdw takes no "
							   "options."),
					 errhint("Set connection options on the server with "
							 "CREATE SERVER ... OPTIONS.")));

		if (catalog == ForeignServerRelationId &&
			in_list(def->defname, user_mapping_options))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" belongs on a user mapping",
							def->defname),
					 errdetail("A tcc_fdw server says where the participant "
							   "is; each role's credentials go on its user "
							   "mapping."),
					 errhint("Use CREATE USER MAPPING FOR role SERVER "
							 "server OPTIONS (%s '...').", def->defname)));

		if (catalog == UserMappingRelationId && is_libpq_option(def->defname) &&
			!in_list(def->defname, reserved_options))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" belongs on the server",
							def->defname),
					 errdetail("A user mapping holds only a role's "
							   "credentials."),
					 errhint("Use ALTER SERVER ... OPTIONS (ADD %s '...').",
							 def->defname)));

		if (in_list(def->defname, reserved_options))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" cannot be set on a tcc "
							"participant", def->defname),
					 errdetail("%s",
							   strcmp(def->defname, "connect_timeout") == 0 ?
							   "The worker bounds connecting by the setting "
							   "tcc.connect_timeout." :
							   strcmp(def->defname, "replication") == 0 ?
							   "A replication connection cannot run "
							   "actions." :
							   "tcc sets it itself: the encoding is the "
							   "database's and the application name "
							   "defaults to tcc."),
					 errhint("Leave the option out.")));

		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", def->defname),
				 errhint("Valid options in this context are: %s.",
						 valid_options_hint(catalog))));
	}

	PG_RETURN_VOID();
}

/*
 * tcc_option_named
 *		The DefElem called name in a list of options (of a user mapping, a
 *		server or a utility statement), or NULL.
 */
DefElem *
tcc_option_named(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return def;
	}
	return NULL;
}

/*
 * tcc_user_mapping_options
 *		The options of the user mapping that role userid uses on server
 *		serverid (its own, else PUBLIC's), and its OID in *umid; NIL and
 *		InvalidOid when there is none.
 *
 * Unlike GetUserMapping, a missing mapping is not an error here: the
 * callers report it in their own terms.
 */
List *
tcc_user_mapping_options(Oid userid, Oid serverid, Oid *umid)
{
	HeapTuple	tuple;
	Datum		datum;
	bool		isnull;
	List	   *options = NIL;

	tuple = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
							ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tuple))
		tuple = SearchSysCache2(USERMAPPINGUSERSERVER,
								ObjectIdGetDatum(InvalidOid),
								ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tuple))
	{
		*umid = InvalidOid;
		return NIL;
	}

	*umid = ((Form_pg_user_mapping) GETSTRUCT(tuple))->oid;
	datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tuple,
							Anum_pg_user_mapping_umoptions, &isnull);
	if (!isnull)
		options = untransformRelOptions(datum);
	ReleaseSysCache(tuple);

	return options;
}
