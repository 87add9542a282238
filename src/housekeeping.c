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

#include "access/xact.h"
#include "commands/extension.h"
#include "pgstat.h"
#include "utils/snapmgr.h"

#include "state.h"
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
 *		reason "timeout", exactly as tcc.rollback would (tcc_start_cancel);
 *		returns how many.  A row a user holds is left for the next round.
 */
static int
expire_transactions(void)
{
	GlobalTx   *txs;
	int			ntxs = tcc_lock_expired(TCC_BATCH_SIZE, &txs);
	int			i;

	for (i = 0; i < ntxs; i++)
		tcc_start_cancel(&txs[i], "timeout");
	return ntxs;
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
	static SPIPlanPtr fence_plan = NULL;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	uint64		deleted;

	/* now() is the start of the transaction, as in the fence statement */
	if (!fence)
		return tcc_purge_finished_batch(GetCurrentTransactionStartTimestamp() -
										(TimestampTz) tcc_retention *
										USECS_PER_SEC,
										TCC_BATCH_SIZE) == TCC_BATCH_SIZE;

	values[0] = Int32GetDatum(tcc_fence_retention);
	values[1] = Int32GetDatum(TCC_BATCH_SIZE);
	deleted = tcc_spi_exec(&fence_plan,
						   "DELETE FROM tcc.fence"
						   " WHERE (gid, branch_id) IN ("
						   "        SELECT gid, branch_id FROM tcc.fence"
						   "         WHERE updated_at < now() -"
						   "               $1 * interval '1 second'"
						   "         LIMIT $2 FOR UPDATE SKIP LOCKED)",
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
