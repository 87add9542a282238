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
 *	 the branch's row already in that state and returns false;
 * - empty rollback: a cancel whose try never ran finds no row; it inserts
 *	 one in state cancelled_early and returns false, there being nothing to
 *	 undo;
 * - hanging (suspension): a try that arrives after its cancel finds that row
 *	 and returns false, so no resources stay reserved for a transaction that
 *	 is already over.
 *
 * Beyond those, a confirm and a cancel of the same branch can never both
 * run: whichever comes second finds the other's state and raises an error,
 * since only a broken coordinator sends both.
 *
 * Concurrency.  Every call writes the branch's one row: the try and the
 * empty-rollback cancel by INSERT ... ON CONFLICT DO NOTHING, the confirm and
 * the cancel by UPDATE ... WHERE state = 'tried'.  Two sessions racing on a
 * branch therefore queue on that row, and the second decides only once the
 * first has committed or rolled back:
 *
 * - a try and a cancel: both insert the key.  If the try commits first, the
 *	 cancel's insert finds it and goes on to update it, cancelling for real;
 *	 if the cancel commits first, the try's insert finds cancelled_early and
 *	 refuses.
 * - a confirm and a cancel, or two of either: both update the row; the
 *	 second re-checks state = 'tried' on the committed version.
 *
 * Under REPEATABLE READ and SERIALIZABLE the second of two racing calls,
 * insert or update, fails with a serialization error instead, which the
 * coordinator retries like any other error.
 *
 * If the first rolls back, the second goes on as if alone.  No call touches
 * more than one row, so fence calls cannot deadlock with each other.
 *
 * src/fence.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
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
 *		Insert the branch's row in state state; true when there was none.
 */
static bool
fence_insert(Datum *key, const char *state)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3] = {key[0], key[1], CStringGetTextDatum(state)};

	/* the coordinator takes the participant's commit as final */
	tcc_commit_durably();
	return tcc_spi_exec(&plan,
						"INSERT INTO tcc.fence (gid, branch_id, state)"
						" VALUES ($1, $2, $3)"
						" ON CONFLICT (gid, branch_id) DO NOTHING",
						3, argtypes, values, NULL, false, 0) == 1;
}

/*
 * fence_decide
 *		Move the branch's row from tried to state; true when it was tried.
 *
 * Otherwise *current is set to the row's state, or NULL when there is no
 * row.  The UPDATE is what serialises a confirm and a cancel (see the file
 * header); the SELECT after a miss sees the row as the UPDATE left it,
 * because a READ COMMITTED UPDATE that waited took a new snapshot for the
 * next statement, and under REPEATABLE READ a concurrent change would have
 * failed the UPDATE.
 */
static bool
fence_decide(Datum *key, const char *state, char **current)
{
	static SPIPlanPtr update_plan = NULL;
	static SPIPlanPtr select_plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3] = {key[0], key[1], CStringGetTextDatum(state)};

	/* the coordinator takes the participant's commit as final */
	tcc_commit_durably();
	if (tcc_spi_exec(&update_plan,
					 "UPDATE tcc.fence SET state = $3, updated_at = now()"
					 " WHERE gid = $1 AND branch_id = $2 AND state = 'tried'",
					 3, argtypes, values, NULL, false, 0) == 1)
		return true;

	*current = NULL;
	if (tcc_spi_exec(&select_plan,
					 "SELECT state FROM tcc.fence"
					 " WHERE gid = $1 AND branch_id = $2",
					 2, argtypes, values, NULL, false, 1) == 1)
		*current = tcc_spi_getstring(0, 1);
	return false;
}

/*
 * fence_args
 *		Check the (gid, branch_id) arguments every fence function takes and
 *		return them as text Datums in key[0] and key[1].
 */
static void
fence_args(FunctionCallInfo fcinfo, char **gid, char **branch_id, Datum *key)
{
	*gid = tcc_id_arg(fcinfo, 0, "gid");
	*branch_id = tcc_id_arg(fcinfo, 1, "branch_id");
	key[0] = CStringGetTextDatum(*gid);
	key[1] = CStringGetTextDatum(*branch_id);
}

/*
 * refuse_crossed
 *		Report a confirm after a cancel, or a cancel after a confirm.
 */
static void
refuse_crossed(const char *gid, const char *branch_id, const char *action,
			   const char *state)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s branch \"%s\" of global transaction \"%s\" "
					"because it is %s", action, branch_id, gid, state),
			 errdetail("A branch is either confirmed or cancelled, never "
					   "both."),
			 errhint("Check tcc.branches on the coordinator; this means "
					 "the coordinator sent both.")));
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
	Datum		key[2];
	bool		run;

	fence_args(fcinfo, &gid, &branch_id, key);

	tcc_spi_begin(&session);
	run = fence_insert(key, "tried");
	tcc_spi_end(&session);

	PG_RETURN_BOOL(run);
}

/*
 * tcc_fence_confirm
 *		tcc.fence_confirm(gid, branch_id): true when the confirm must run;
 *		false when it already ran.
 *
 * A confirm whose try never ran here is an error, not a "run": the
 * coordinator confirms only what was tried, so this means the application
 * committed without running the try, or the try's fence was purged.  Running
 * the confirm would consume resources that were never reserved (frozen stock
 * going negative); raising an error keeps the branch failing, visibly, in
 * the coordinator until a human looks, as Seata's fence does.
 */
Datum
tcc_fence_confirm(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	char	   *gid;
	char	   *branch_id;
	char	   *state;
	Datum		key[2];
	bool		run;

	fence_args(fcinfo, &gid, &branch_id, key);

	tcc_spi_begin(&session);
	run = fence_decide(key, "confirmed", &state);
	tcc_spi_end(&session);

	if (!run && (state == NULL || strcmp(state, "cancelled_early") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot confirm branch \"%s\" of global transaction "
						"\"%s\" because its try never ran here",
						branch_id, gid),
				 state == NULL ?
				 errdetail("No tcc.fence_try was recorded for it.") :
				 errdetail("Its cancel came first (an empty rollback)."),
				 errhint("The try must call tcc.fence_try before the "
						 "transaction is committed.")));
	if (!run && strcmp(state, "cancelled") == 0)
		refuse_crossed(gid, branch_id, "confirm", state);

	PG_RETURN_BOOL(run);
}

/*
 * tcc_fence_cancel
 *		tcc.fence_cancel(gid, branch_id): true when the cancel must run;
 *		false when it already ran, or when the try never ran (empty
 *		rollback), in which case the row it leaves refuses a late try.
 *
 * The insert comes first: it is what orders a cancel against a try that
 * is still in flight (see the file header).
 */
Datum
tcc_fence_cancel(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	char	   *gid;
	char	   *branch_id;
	char	   *state = NULL;
	Datum		key[2];
	bool		run = false;

	fence_args(fcinfo, &gid, &branch_id, key);

	tcc_spi_begin(&session);
	if (!fence_insert(key, "cancelled_early"))
		run = fence_decide(key, "cancelled", &state);
	tcc_spi_end(&session);

	if (!run && state != NULL && strcmp(state, "confirmed") == 0)
		refuse_crossed(gid, branch_id, "cancel", state);

	PG_RETURN_BOOL(run);
}

/*
 * tcc_fence_purge
 *		tcc.fence_purge(older_than): delete the fence rows of branches last
 *		decided (tried, confirmed or cancelled) longer ago than older_than;
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
	TimestampTz cutoff = tcc_older_than_arg(fcinfo, 0);
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1];
	uint64		deleted;

	tcc_spi_begin(&session);
	values[0] = TimestampTzGetDatum(cutoff);
	deleted = tcc_spi_exec(&plan,
						   "DELETE FROM tcc.fence WHERE updated_at < $1",
						   1, argtypes, values, NULL, false, 0);
	tcc_spi_end(&session);

	PG_RETURN_INT64((int64) deleted);
}
