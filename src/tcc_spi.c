/*-------------------------------------------------------------------------
 *
 * tcc_spi.c
 *	  Running tcc's own SQL against its private tables.
 *
 * Users never write tcc's tables: the tables grant nothing to PUBLIC, and the
 * SQL functions reach them through SPI after switching to the extension's
 * owner (the role that ran CREATE EXTENSION, which owns the tables), not to
 * the schema's owner, a role that could have been given the schema
 * afterwards and must not borrow tcc's rights.  This is the same
 * arrangement as a SECURITY DEFINER function, but the C code keeps the
 * caller's identity for its own permission checks, which a SECURITY DEFINER
 * function would lose.
 *
 * Running as a privileged role means the caller must not be able to inject
 * code into the statements: they name tcc's tables with their schema, and
 * search_path is pinned to pg_catalog, pg_temp for the duration so that an
 * operator or function the caller created in another schema cannot be
 * picked instead of the built-in one.  The plans are prepared once per
 * backend and kept.
 *
 * Plans that cannot go bad.  Every statement of tcc's finds its rows
 * through an index, and is planned with enable_seqscan off, so that no
 * statistics make it scan a table instead.  A kept plan is built once, and
 * a generic plan is built from the statistics of that moment: one built
 * while the tables were empty (or analyzed when they were) scans the table,
 * and did so for every registration of a transaction that registered
 * thousands, each scan longer than the last, until an ANALYZE replaced the
 * plan; in a transaction that made those rows itself, never.
 *
 * src/tcc_spi.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "tcc.h"

/*
 * tcc_extension_owner
 *		The owner of the tcc extension, which owns tcc's tables.
 *
 * pg_extension has no syscache, so nothing would tell a backend that the
 * owner changed; the lookup (two index scans) is made once per transaction
 * and kept for the rest of it, since an application calls tcc several
 * times in one transaction (tcc.begin and the registrations).  Only the
 * transaction itself could change the owner meanwhile (REASSIGN OWNED), and
 * the role remembered was the owner when the transaction began: nobody
 * gets more rights than the extension's owner had.
 */
static Oid
tcc_extension_owner(void)
{
	static LocalTransactionId owner_lxid = InvalidLocalTransactionId;
	static Oid	owner = InvalidOid;
	Oid			extoid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;

	if (owner_lxid == MyProc->lxid && OidIsValid(owner))
		return owner;

	extoid = get_extension_oid("tcc", false);
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "could not find tuple for extension %u", extoid);
	owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	owner_lxid = MyProc->lxid;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	return owner;
}

/*
 * tcc_spi_begin
 *		Connect to SPI as the extension's owner with a safe search_path,
 *		and with table scans disabled (see the header).
 *
 * The caller's role is kept in session->caller for permission checks.  On
 * error there is nothing to undo by hand: transaction (or subtransaction)
 * abort restores the user id and the GUC nest level, and closes SPI.
 */
void
tcc_spi_begin(TccSpiSession *session)
{
	Oid			owner = tcc_extension_owner();

	GetUserIdAndSecContext(&session->save_userid, &session->save_sec_context);
	session->caller = session->save_userid;

	SetUserIdAndSecContext(owner,
						   session->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	session->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* planned now or later, a plan uses the indexes (see the header) */
	(void) set_config_option("enable_seqscan", "off",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * tcc_spi_end
 *		Close SPI and return to the caller's role and settings.
 */
void
tcc_spi_end(TccSpiSession *session)
{
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	AtEOXact_GUC(true, session->save_nestlevel);
	SetUserIdAndSecContext(session->save_userid, session->save_sec_context);
}

/*
 * prepare_plan
 *		Prepare sql and keep its plan in *plan, unless done already.
 *
 * *plan caches the plan across calls (a static of the caller).  Errors from
 * SPI itself cannot be caused by the user and are reported with elog.
 */
static void
prepare_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	newplan;

	if (*plan != NULL)
		return;

	newplan = SPI_prepare(sql, nargs, argtypes);
	if (newplan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(newplan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	*plan = newplan;
}

/*
 * tcc_spi_exec
 *		Run one of tcc's statements, preparing and keeping its plan on first
 *		use; returns SPI_processed.
 *
 * Errors raised while executing (a constraint, a lock timeout) propagate
 * unchanged.
 */
uint64
tcc_spi_exec(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			 Datum *values, const char *nulls, bool read_only, long count)
{
	int			rc;

	prepare_plan(plan, sql, nargs, argtypes);
	rc = SPI_execute_plan(*plan, values, nulls, read_only, count);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s",
			 sql, SPI_result_code_string(rc));

	return SPI_processed;
}

/*
 * tcc_spi_exec_latest
 *		tcc_spi_exec for a query that must see what was committed last,
 *		even in a REPEATABLE READ or SERIALIZABLE transaction whose own
 *		snapshot is older: tcc.wait waits for other transactions' changes.
 */
uint64
tcc_spi_exec_latest(SPIPlanPtr *plan, const char *sql, int nargs,
					Oid *argtypes, Datum *values, const char *nulls,
					long count)
{
	int			rc;

	prepare_plan(plan, sql, nargs, argtypes);
	rc = SPI_execute_snapshot(*plan, values, nulls, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, count);
	if (rc < 0)
		elog(ERROR, "SPI_execute_snapshot failed for \"%s\": %s",
			 sql, SPI_result_code_string(rc));

	return SPI_processed;
}

/*
 * tcc_error_params
 *		Fill values[0..4] and nulls[0..4], all text, with call's error the
 *		way tcc.branch records it: message, SQLSTATE, detail, hint and
 *		context, NULL where there is none.  One place for every statement
 *		that records an error.
 */
void
tcc_error_params(TccCall *call, Datum *values, char *nulls)
{
	const char *fields[5];
	int			i;

	fields[0] = call->error;
	fields[1] = call->sqlstate[0] != '\0' ? call->sqlstate : NULL;
	fields[2] = call->detail;
	fields[3] = call->hint;
	fields[4] = call->context;
	for (i = 0; i < 5; i++)
	{
		values[i] = fields[i] ? CStringGetTextDatum(fields[i]) : (Datum) 0;
		nulls[i] = fields[i] ? ' ' : 'n';
	}
}

/*
 * array_param
 *		A one-dimensional array of the n values of type elemtype, isnull[i]
 *		saying which are NULL.
 */
static Datum
array_param(Oid elemtype, Datum *values, bool *isnull, int n)
{
	int			dims[1];
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	Assert(n > 0);
	dims[0] = n;
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, isnull, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

/*
 * tcc_spi_exec_rows
 *		Run a statement that takes n rows (at least one) of ncols columns:
 *		the values of column c, of type types[c], are cols[c][0 .. n - 1],
 *		NULL where nulls[c][i].  With one row it runs one_sql, which takes
 *		the row's values as parameters $1 .. $ncols; with more, many_sql,
 *		which takes each column as an array.  plans[0] and plans[1] keep
 *		their plans.  Returns SPI_processed.
 *
 * Why two forms: one row given as parameters is a plain lookup, planned
 * as such under any settings (the SQL functions' sessions pin only
 * enable_seqscan); the array form is for a dispatcher's round, and is
 * written so that the arrays drive the lookups (= ANY, or a LATERAL
 * subquery), which leaves the planner no join to choose.  A join of a
 * table to arrays of rows is never written: see outcome.c,
 * record_successes.
 */
uint64
tcc_spi_exec_rows(SPIPlanPtr *plans, const char *one_sql,
				  const char *many_sql, int ncols, const Oid *types,
				  Datum **cols, bool **nulls, int n)
{
	Oid		   *argtypes = palloc(ncols * sizeof(Oid));
	Datum	   *values = palloc(ncols * sizeof(Datum));
	char	   *argnulls = palloc(ncols * sizeof(char));
	int			c;

	Assert(n > 0);
	for (c = 0; c < ncols; c++)
	{
		argnulls[c] = ' ';
		if (n == 1)
		{
			argtypes[c] = types[c];
			values[c] = cols[c][0];
			argnulls[c] = nulls[c][0] ? 'n' : ' ';
		}
		else
		{
			argtypes[c] = get_array_type(types[c]);
			values[c] = array_param(types[c], cols[c], nulls[c], n);
		}
	}
	if (n == 1)
		return tcc_spi_exec(&plans[0], one_sql, ncols, argtypes, values,
							argnulls, false, 0);
	return tcc_spi_exec(&plans[1], many_sql, ncols, argtypes, values,
						argnulls, false, 0);
}

/*
 * tcc_text_column
 *		The n strings as a column for tcc_spi_exec_rows: text values in
 *		*values, a NULL string a NULL in *nulls.
 */
void
tcc_text_column(const char *const *strings, int n, Datum **values,
				bool **nulls)
{
	int			i;

	*values = palloc(n * sizeof(Datum));
	*nulls = palloc(n * sizeof(bool));
	for (i = 0; i < n; i++)
	{
		(*nulls)[i] = (strings[i] == NULL);
		(*values)[i] = (*nulls)[i] ? (Datum) 0 :
			CStringGetTextDatum(strings[i]);
	}
}

/*
 * tcc_spi_getstring
 *		Column col (1-based) of result row row as a C string in the caller's
 *		memory context, or NULL.
 *
 * SPI_getvalue allocates in the SPI procedure context, which SPI_finish
 * frees; the copy made here, in the context that was current at SPI_connect,
 * survives it.
 */
char *
tcc_spi_getstring(int row, int col)
{
	return tcc_spi_strdup(SPI_getvalue(SPI_tuptable->vals[row],
									   SPI_tuptable->tupdesc, col));
}

/*
 * tcc_spi_strdup
 *		Copy str (may be NULL) into the context that was current at
 *		SPI_connect, so that it outlives tcc_spi_end.
 */
char *
tcc_spi_strdup(const char *str)
{
	char	   *copy;

	if (str == NULL)
		return NULL;
	copy = SPI_palloc(strlen(str) + 1);
	strcpy(copy, str);

	return copy;
}

/*
 * tcc_spi_getdatum
 *		Column col (1-based) of result row row; pass-by-reference values are
 *		only valid until tcc_spi_end.
 */
Datum
tcc_spi_getdatum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}
