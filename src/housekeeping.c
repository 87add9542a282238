/*-------------------------------------------------------------------------
 *
 * housekeeping.c
 *	  The worker's rounds of its own: cancelling the transactions still
 *	  trying after their deadline, and purging what tcc.retention and
 *	  tcc.fence_retention allow, in bounded batches so that neither ever
 *	  delays a due call; and the transaction every round runs in.
 *
 * src/housekeeping.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "pgstat.h"
#include "utils/snapmgr.h"

#include "tcc.h"
#include "worker.h"

/* rows the timeout and retention statements handle per statement */
#define TCC_BATCH_SIZE		500

/* statements of retention per naptime, so purging never starves calls */
#define TCC_PURGE_BATCHES	10

/*
 * tcc_begin_round
 *		Start a transaction connected to SPI; false (with nothing started)
 *		when the extension has been dropped, in which case the worker exits.
 */
bool
tcc_begin_round(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("tcc", true)))
	{
		CommitTransactionCommand();
		return false;
	}
	/* a timeout cancel is acted on as soon as it commits */
	tcc_commit_durably();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	return true;
}

/*
 * tcc_end_round
 *		Commit the transaction tcc_begin_round started.
 */
void
tcc_end_round(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * expire_transactions
 *		Cancel the transactions still trying after their deadline, with
 *		reason "timeout", exactly as tcc.rollback would; returns how many.
 *
 * SKIP LOCKED: a transaction whose row a user holds (a commit in progress)
 * is left for the next round rather than waited for; if that commit wins,
 * the status is no longer trying and the guard below leaves it alone.
 */
static uint64
expire_transactions(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	uint64		nrows;
	uint64		row;

	values[0] = Int32GetDatum(TCC_BATCH_SIZE);
	nrows = tcc_spi_exec(&plan,
						 "WITH expired AS ("
						 "  UPDATE tcc.global_transaction g"
						 "     SET status = CASE WHEN g.mode = 'tcc'"
						 "                        AND g.branch_count > 0"
						 "                  THEN 'cancelling'"
						 "                  ELSE 'cancelled' END,"
						 "         reason = 'timeout',"
						 "         updated_at = now(),"
						 "         finished_at = CASE WHEN g.mode = 'tcc'"
						 "                             AND g.branch_count > 0"
						 "                       THEN NULL ELSE now() END"
						 "   WHERE g.gid IN ("
						 "          SELECT gid FROM tcc.global_transaction"
						 "           WHERE status = 'trying'"
						 "             AND deadline < now()"
						 "           ORDER BY deadline LIMIT $1"
						 "             FOR UPDATE SKIP LOCKED)"
						 "     AND g.status = 'trying'"
						 "  RETURNING g.gid, g.status),"
						 " branches AS ("
						 "  UPDATE tcc.branch b"
						 "     SET status = CASE e.status WHEN 'cancelling'"
						 "                  THEN 'cancelling' ELSE 'skipped' END,"
						 "         next_attempt_at = CASE e.status"
						 "             WHEN 'cancelling' THEN now() END,"
						 "         updated_at = now()"
						 "    FROM expired e"
						 "   WHERE b.gid = e.gid)"
						 "SELECT gid, status = 'cancelled' FROM expired",
						 1, argtypes, values, NULL, false, 0);

	/* those that ended here: their tcc.wait callers can return */
	for (row = 0; row < nrows; row++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[row],
									   SPI_tuptable->tupdesc, 2, &isnull)))
			tcc_wake_waiters_at_commit(SPI_getvalue(SPI_tuptable->vals[row],
													SPI_tuptable->tupdesc,
													1));
	}
	return nrows;
}

/*
 * purge_batch
 *		Delete one batch of what retention allows from tcc.global_transaction
 *		(fence false) or tcc.fence (fence true); true when the batch was
 *		full, so there may be more.
 */
static bool
purge_batch(bool fence)
{
	static SPIPlanPtr tx_plan = NULL;
	static SPIPlanPtr fence_plan = NULL;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	uint64		deleted;

	values[0] = Int32GetDatum(fence ? tcc_fence_retention : tcc_retention);
	values[1] = Int32GetDatum(TCC_BATCH_SIZE);
	if (fence)
		deleted = tcc_spi_exec(&fence_plan,
							   "DELETE FROM tcc.fence"
							   " WHERE (gid, branch_id) IN ("
							   "        SELECT gid, branch_id FROM tcc.fence"
							   "         WHERE updated_at < now() -"
							   "               $1 * interval '1 second'"
							   "         LIMIT $2 FOR UPDATE SKIP LOCKED)",
							   2, argtypes, values, NULL, false, 0);
	else
		deleted = tcc_spi_exec(&tx_plan,
							   "DELETE FROM tcc.global_transaction"
							   " WHERE gid IN ("
							   "        SELECT gid FROM tcc.global_transaction"
							   "         WHERE finished_at < now() -"
							   "               $1 * interval '1 second'"
							   "         ORDER BY finished_at LIMIT $2"
							   "           FOR UPDATE SKIP LOCKED)",
							   2, argtypes, values, NULL, false, 0);

	return deleted == TCC_BATCH_SIZE;
}

/*
 * purge
 *		Up to TCC_PURGE_BATCHES batches of purge_batch(fence), each its own
 *		transaction; false when the extension is gone.
 */
static bool
purge(bool fence)
{
	int			i;

	for (i = 0; i < TCC_PURGE_BATCHES; i++)
	{
		bool		more;

		if (!tcc_begin_round(fence ? "purging fence rows" :
						 "purging finished transactions"))
			return false;
		more = purge_batch(fence);
		tcc_end_round();
		if (!more)
			break;
	}
	return true;
}

/*
 * tcc_housekeeping
 *		Timeouts and retention; false when the extension is gone.
 *
 * Each kind of work is its own transaction, so a long purge does not hold
 * back the cancels of expired transactions, and all of it is bounded per
 * call so that phase two is never starved.
 */
bool
tcc_housekeeping(void)
{
	if (!tcc_begin_round("cancelling expired transactions"))
		return false;
	(void) expire_transactions();
	tcc_end_round();

	return (tcc_retention == 0 || purge(false)) &&
		(tcc_fence_retention == 0 || purge(true));
}
