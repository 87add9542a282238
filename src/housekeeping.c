/*-------------------------------------------------------------------------
 *
 * housekeeping.c
 *	  The housekeeper, a process of each database's family (family.c):
 *	  cancelling the transactions still trying after their deadline, and
 *	  purging what tcc.retention and tcc.fence_retention allow, in its own
 *	  process so that neither ever delays a due call; and the transaction
 *	  every round of tcc's processes runs in.
 *
 * Deadlines are looked at every tcc.naptime.  Retention deletes batches
 * of TCC_PURGE_BATCH_SIZE, each its own transaction, back to back while a
 * backlog remains (a retention just lowered, a purge that had been off),
 * looking at the deadlines again between batches once a naptime has
 * passed.  Only when the postmaster has no slot for a housekeeper does the
 * leader do this itself, in small bounded rounds (tcc_housekeeping).
 *
 * src/housekeeping.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/snapmgr.h"

#include "state.h"
#include "tcc.h"
#include "tcc_shmem.h"
#include "worker.h"

/* rows the timeout statement, and retention in a leader, handle at once */
#define TCC_BATCH_SIZE		500

/* statements of retention per naptime in a leader, which has calls to make */
#define TCC_PURGE_BATCHES	10

/* transactions the housekeeper purges per statement */
#define TCC_PURGE_BATCH_SIZE	5000

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
purge_batch(bool fence, int limit)
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
										limit) == limit;

	values[0] = Int32GetDatum(tcc_fence_retention);
	values[1] = Int32GetDatum(limit);
	deleted = tcc_spi_exec(&fence_plan,
						   "DELETE FROM tcc.fence"
						   " WHERE (gid, branch_id) IN ("
						   "        SELECT gid, branch_id FROM tcc.fence"
						   "         WHERE updated_at < now() -"
						   "               $1 * interval '1 second'"
						   "         LIMIT $2 FOR UPDATE SKIP LOCKED)",
						   2, argtypes, values, NULL, false, 0);
	return deleted == limit;
}

/*
 * purge
 *		Up to batches batches of limit rows of purge_batch(fence), each its
 *		own transaction; false when the extension is gone.  *more says
 *		whether the last batch was full.
 */
static bool
purge(bool fence, int batches, int limit, bool *more)
{
	int			i;

	*more = false;
	for (i = 0; i < batches; i++)
	{
		if (!tcc_begin_round(fence ? "purging fence rows" :
							 "purging finished transactions"))
			return false;
		*more = purge_batch(fence, limit);
		tcc_end_round();
		if (!*more)
			break;
	}
	return true;
}

/*
 * expire
 *		One round of the deadline cancels; false when the extension is gone.
 */
static bool
expire(void)
{
	if (!tcc_begin_round("cancelling expired transactions"))
		return false;
	(void) expire_transactions();
	tcc_end_round();
	return true;
}

/*
 * tcc_housekeeping
 *		Timeouts and retention in a leader that has no housekeeper; false
 *		when the extension is gone.
 *
 * Each kind of work is its own transaction, so a long purge does not hold
 * back the cancels of expired transactions, and all of it is bounded per
 * call so that the leader's calls are never starved.
 */
bool
tcc_housekeeping(void)
{
	bool		more;

	return expire() &&
		(tcc_retention == 0 ||
		 purge(false, TCC_PURGE_BATCHES, TCC_BATCH_SIZE, &more)) &&
		(tcc_fence_retention == 0 ||
		 purge(true, TCC_PURGE_BATCHES, TCC_BATCH_SIZE, &more));
}

/*
 * housekeeper_round
 *		Deadlines, then retention batches until there is no backlog or a
 *		naptime has passed; false when the extension is gone.  *more says
 *		whether a backlog remains.
 */
static bool
housekeeper_round(bool *more)
{
	TimestampTz until = GetCurrentTimestamp() +
		(TimestampTz) tcc_naptime * 1000;
	bool		more_tx = tcc_retention != 0;
	bool		more_fence = tcc_fence_retention != 0;

	if (!expire())
		return false;
	while ((more_tx || more_fence) && GetCurrentTimestamp() < until)
	{
		CHECK_FOR_INTERRUPTS();
		if (more_tx && !purge(false, 1, TCC_PURGE_BATCH_SIZE, &more_tx))
			return false;
		if (more_fence && !purge(true, 1, TCC_PURGE_BATCH_SIZE, &more_fence))
			return false;
	}
	*more = more_tx || more_fence;
	return true;
}

/*
 * tcc_housekeeper_main
 *		The housekeeper's loop: a round every tcc.naptime, or at once while
 *		retention has a backlog.  It exits when its leader has gone or the
 *		extension has.
 */
void
tcc_housekeeper_main(void)
{
	for (;;)
	{
		bool		more = false;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (tcc_child_orphaned())
			return;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!housekeeper_round(&more))
			return;
		if (more)
			continue;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 tcc_sleep_time(0), PG_WAIT_EXTENSION);
	}
}
