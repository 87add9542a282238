/*-------------------------------------------------------------------------
 *
 * fence.c
 *	  The participant fence: tcc.fence_try, tcc.fence_confirm,
 *	  tcc.fence_cancel and tcc.fence_purge.
 *
 * A participant calls the fence first thing in its try, confirm or cancel,
 * inside the same local transaction as the business change, and runs the
 * business code only when the fence returns true.  The fence row commits or
 * rolls back with the business change, so "the fence said run" and "the
 * change happened" are one atomic fact.  That defeats the three classic TCC
 * anomalies:
 *
 * - duplicate delivery: the second try, confirm or cancel of a branch finds
 *	 its row already there and returns false;
 * - empty rollback: a cancel whose try never ran finds no 'try' row; it
 *	 inserts one itself (by_cancel) and returns false, there being nothing
 *	 to undo;
 * - hanging (suspension): a try that arrives after its cancel finds the
 *	 'try' row the cancel inserted and returns false, so no resources stay
 *	 reserved for a transaction that is already over.
 *
 * Concurrency.  Each decision is an INSERT ... ON CONFLICT DO NOTHING on
 * (gid, branch_id, op).  When a try and a cancel of one branch race, both
 * insert the key (gid, branch_id, 'try'); the second waits on the first's
 * uncommitted row and, when the first commits, inserts nothing:
 *
 * - try first: the cancel then sees the try ran and cancels it for real;
 * - cancel first: the try then finds the cancel's marker and refuses.
 *
 * If the first rolls back, the second inserts and goes on as if alone.
 * Every path takes the 'try' key before any other, so two fence calls never
 * wait for each other in opposite orders and cannot deadlock.
 *
 * src/fence.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_fence_try);
PG_FUNCTION_INFO_V1(tcc_fence_confirm);
PG_FUNCTION_INFO_V1(tcc_fence_cancel);
PG_FUNCTION_INFO_V1(tcc_fence_purge);

/*
 * fence_insert
 *		Insert the fence row (gid, branch_id, op); true when it was new.
 */
static bool
fence_insert(const char *gid, const char *branch_id, const char *op,
			 bool by_cancel)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(gid);
	values[1] = CStringGetTextDatum(branch_id);
	values[2] = CStringGetTextDatum(op);
	values[3] = BoolGetDatum(by_cancel);

	return tcc_spi_exec(&plan,
						"INSERT INTO tcc.fence (gid, branch_id, op, by_cancel)"
						" VALUES ($1, $2, $3, $4)"
						" ON CONFLICT (gid, branch_id, op) DO NOTHING",
						4, argtypes, values, NULL, false, 0) == 1;
}

/*
 * fence_args
 *		Check the (gid, branch_id) arguments every fence function takes.
 */
static void
fence_args(FunctionCallInfo fcinfo, char **gid, char **branch_id)
{
	*gid = tcc_id_arg(fcinfo, 0, "gid");
	*branch_id = tcc_id_arg(fcinfo, 1, "branch_id");
}

/*
 * tcc_fence_try
 *		tcc.fence_try(gid, branch_id): true when the try must run; false for
 *		a duplicate or for a try that arrives after its cancel.
 */
Datum
tcc_fence_try(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	char	   *gid;
	char	   *branch_id;
	bool		run;

	fence_args(fcinfo, &gid, &branch_id);

	tcc_spi_begin(&session);
	run = fence_insert(gid, branch_id, "try", false);
	tcc_spi_end(&session);

	PG_RETURN_BOOL(run);
}

/*
 * tcc_fence_confirm
 *		tcc.fence_confirm(gid, branch_id): true when the confirm must run;
 *		false when it already ran.
 *
 * A first confirm whose try never ran here is an error, not a "run": the
 * coordinator confirms only what was tried, so this means the application
 * committed without running the try, or the try's fence was purged.  Running
 * the confirm would consume resources that were never reserved (frozen stock
 * going negative); raising an error keeps the branch failing, visibly, in
 * the coordinator until a human looks, as Seata's fence does.
 */
Datum
tcc_fence_confirm(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	TccSpiSession session;
	char	   *gid;
	char	   *branch_id;
	bool		run;

	fence_args(fcinfo, &gid, &branch_id);

	tcc_spi_begin(&session);
	run = fence_insert(gid, branch_id, "confirm", false);
	if (run)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};
		Datum		values[2];
		bool		isnull;

		values[0] = CStringGetTextDatum(gid);
		values[1] = CStringGetTextDatum(branch_id);
		if (tcc_spi_exec(&plan,
						 "SELECT by_cancel FROM tcc.fence"
						 " WHERE gid = $1 AND branch_id = $2 AND op = 'try'",
						 2, argtypes, values, NULL, false, 1) == 0 ||
			DatumGetBool(tcc_spi_getdatum(0, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot confirm branch \"%s\" of global "
							"transaction \"%s\" because its try never ran "
							"here", branch_id, gid),
					 errdetail("%s",
							   SPI_processed == 0 ?
							   "No tcc.fence_try was recorded for it." :
							   "Its cancel came first (an empty rollback)."),
					 errhint("The try must call tcc.fence_try before the "
							 "transaction is committed.")));
	}
	tcc_spi_end(&session);

	PG_RETURN_BOOL(run);
}

/*
 * tcc_fence_cancel
 *		tcc.fence_cancel(gid, branch_id): true when the cancel must run;
 *		false when it already ran, or when the try never ran (empty
 *		rollback), in which case the 'try' row it leaves refuses a late try.
 *
 * The 'try' key is taken first, as in fence_try, which is what orders a
 * racing try and cancel (see the file header).
 */
Datum
tcc_fence_cancel(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	char	   *gid;
	char	   *branch_id;
	bool		try_absent;
	bool		first_cancel;

	fence_args(fcinfo, &gid, &branch_id);

	tcc_spi_begin(&session);
	try_absent = fence_insert(gid, branch_id, "try", true);
	first_cancel = fence_insert(gid, branch_id, "cancel", false);
	tcc_spi_end(&session);

	PG_RETURN_BOOL(first_cancel && !try_absent);
}

/*
 * tcc_fence_purge
 *		tcc.fence_purge(older_than): delete fence rows older than older_than;
 *		returns how many.
 *
 * A purged branch's fence is forgotten: a duplicate delivered after that
 * would run again.  older_than must therefore exceed the longest time the
 * coordinator may keep retrying a branch, which is why the worker's own
 * cleanup uses the separate, generous tcc.fence_retention.
 */
Datum
tcc_fence_purge(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	TccSpiSession session;
	Interval   *older_than;
	Oid			argtypes[1] = {INTERVALOID};
	Datum		values[1];
	uint64		deleted;

	tcc_check_not_null(fcinfo, 0, "older_than");
	older_than = PG_GETARG_INTERVAL_P(0);
	tcc_check_interval(older_than, "older_than", true);

	tcc_spi_begin(&session);
	values[0] = IntervalPGetDatum(older_than);
	deleted = tcc_spi_exec(&plan,
						   "DELETE FROM tcc.fence WHERE created_at < now() - $1",
						   1, argtypes, values, NULL, false, 0);
	tcc_spi_end(&session);

	PG_RETURN_INT64((int64) deleted);
}
