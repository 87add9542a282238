/*-------------------------------------------------------------------------
 *
 * local.c
 *	  Running a batch of local actions (server NULL) in one transaction, as
 *	  their global transactions' owners, in a security-restricted context,
 *	  each outcome recorded in the same transaction.  A runner process
 *	  (runner.c) does this for its dispatcher; a dispatcher does it itself
 *	  only when no runner can be started.
 *
 * Batches and locks.  A batch holds whatever its actions locked until it
 * commits, and several batches (of several runners) run at once; an
 * action that waited for a lock another batch holds would hold its own
 * batch's locks meanwhile, and two such waits make a deadlock, which
 * PostgreSQL finds only after deadlock_timeout.  So every action of a
 * batch but its first waits for a lock at most TCC_BATCH_LOCK_WAIT_MS: one
 * that would wait longer is rolled back, with no attempt counted, the batch
 * commits what it did, and the action runs first in a later batch, where
 * it waits as any statement does.
 *
 * Rows.  A batch locks each global transaction's row once, however many of
 * its branches the batch runs (lock_in_batch), and the transactions whose
 * branches it ended are ended, when none is left, with one look for all of
 * them just before it commits (end_batch_txs): a batch holds every row it
 * locked until then, so no other session can change their branches
 * meanwhile, and what the batch's own actions can do to them (tcc.retry of
 * a failed one) lock_in_batch and end_batch_txs allow for.
 *
 * src/local.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/prepare.h"
#include "commands/sequence.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "runner.h"
#include "state.h"
#include "tcc.h"
#include "worker.h"

/*
 * milliseconds an action of a batch other than its first waits for a lock
 * (see the file header)
 */
#define TCC_BATCH_LOCK_WAIT_MS	10

/*
 * forget_session_state
 *		Drop what a local action left in the runner's session that outlives
 *		its transaction, so that the next action starts from a session as
 *		clean as a new one: session-level advisory locks (which would also
 *		block other sessions for as long as the runner lives), prepared
 *		statements and the state of sequences (currval).
 *
 * Settings are rolled back by tcc_run_action_here itself (action.c).  The
 * restricted security context already refuses the rest of what DISCARD ALL
 * clears: temporary objects, LISTEN, cursors WITH HOLD and role changes.
 * Advisory locks taken for the transaction only are released by the
 * batch's commit, at most TCC_BATCH_TIME_MS (plus one action) later.
 */
static void
forget_session_state(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
	ResetSequenceCaches();
}

/*
 * run_in_batch
 *		Run call's action (tcc_run_action_here); unless it is the batch's
 *		first, waiting at most TCC_BATCH_LOCK_WAIT_MS for a lock, or less
 *		when the server's lock_timeout says so (see the file header).
 */
static void
run_in_batch(TccCall *call, bool first)
{
	int			nestlevel;

	if (first || (LockTimeout > 0 && LockTimeout <= TCC_BATCH_LOCK_WAIT_MS))
	{
		tcc_run_action_here(call);
		return;
	}
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("lock_timeout",
							 CppAsString2(TCC_BATCH_LOCK_WAIT_MS),
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	tcc_run_action_here(call);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * forget_outcome
 *		Call's action was rolled back without an attempt being counted: it
 *		is to run again as if it never had.  (Its error texts are left to
 *		their memory context, as a recorded outcome's are.)
 */
static void
forget_outcome(TccCall *call)
{
	call->outcome = TCC_CALL_PENDING;
	call->sqlstate[0] = '\0';
	call->permanent = false;
	call->error = call->detail = call->hint = call->context = NULL;
}

/*
 * BatchTx
 *		A global transaction whose row the batch has locked: the row as the
 *		batch last read or wrote it, and whether a branch of it ended in the
 *		batch, so that it is to be ended if none is left.
 */
typedef struct BatchTx
{
	GlobalTx	tx;
	bool		to_finish;
} BatchTx;

/* the transactions of the batch under way, in the order first locked */
typedef struct Batch
{
	BatchTx		txs[TCC_RUNNER_BATCH];
	int			ntxs;
} Batch;

/*
 * lock_in_batch
 *		Call's global transaction, locked for the batch, or NULL when it is
 *		busy (*lock says so) or gone.
 *
 * A transaction already locked by the batch is not locked or read again
 * while it is confirming or cancelling: nothing but the outcomes the batch
 * records changes it then (tcc_record_locked_outcome), and those are
 * recorded in the BatchTx itself.  In any other status an action of the
 * batch may have changed it (tcc.retry), and it is read again, under the
 * lock the batch holds.
 */
static BatchTx *
lock_in_batch(Batch *batch, TccCall *call, GlobalLock *lock)
{
	BatchTx    *bt = NULL;
	bool		first_lock;
	int			i;

	for (i = 0; i < batch->ntxs && bt == NULL; i++)
		if (strcmp(batch->txs[i].tx.gid, call->gid) == 0)
			bt = &batch->txs[i];
	if (bt != NULL && (STATUS_IS(&bt->tx, TCC_CONFIRMING) ||
					   STATUS_IS(&bt->tx, TCC_CANCELLING)))
	{
		*lock = GLOBAL_LOCKED;
		return bt;
	}
	first_lock = (bt == NULL);
	if (first_lock)
	{
		Assert(batch->ntxs < TCC_RUNNER_BATCH);
		bt = &batch->txs[batch->ntxs];
		bt->to_finish = false;
	}
	*lock = tcc_lock_global_tx_nowait(call->gid, &bt->tx);
	if (*lock != GLOBAL_LOCKED)
		return NULL;
	if (first_lock)
		batch->ntxs++;
	return bt;
}

/*
 * end_batch_txs
 *		End the transactions of batch that a branch of it ended, when none
 *		of their branches is left (one look for all of them), before the
 *		batch commits.
 *
 * One that is no longer confirming or cancelling was failed by a later
 * outcome of the batch, and has a branch left by definition.
 */
static void
end_batch_txs(Batch *batch)
{
	GlobalTx   *txs[TCC_RUNNER_BATCH];
	int			n = 0;
	int			i;

	for (i = 0; i < batch->ntxs; i++)
	{
		GlobalTx   *tx = &batch->txs[i].tx;

		if (batch->txs[i].to_finish &&
			(STATUS_IS(tx, TCC_CONFIRMING) || STATUS_IS(tx, TCC_CANCELLING)))
			txs[n++] = tx;
	}
	if (n == 0)
		return;
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	tcc_finish_all_if_done(n, txs);
	SPI_finish();
	PopActiveSnapshot();
}

/*
 * run_one
 *		Run call, a local action of batch, in the batch's transaction, and
 *		record its outcome there: lock its global transaction without
 *		waiting (lock_in_batch), read what is to run from its branch if that
 *		is still due in call's phase, run it under the policy of every local
 *		action (action.c) and record what happened (outcome.c).
 *
 * A row held by somebody else (a user's repeated commit, another
 * process recording an outcome of the same transaction) is LOCAL_BUSY:
 * nothing ran, and the branch is looked at again later.  The lock, once
 * taken, is held until the batch commits, so that the branch is confirmed
 * exactly when the action's effects commit; a second branch of the same
 * transaction in the same batch finds the row locked by the batch, which
 * does not count as busy.  An action other than the batch's first that
 * would have waited for a lock is LOCAL_NOT_RUN (see the file header), its
 * outcome unrecorded.
 */
static TccLocalResult
run_one(Batch *batch, TccCall *call, bool first)
{
	BatchTx    *bt;
	GlobalLock	lock;
	bool		due = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	bt = lock_in_batch(batch, call, &lock);
	if (bt != NULL)
	{
		call->owner = bt->tx.owner;
		due = tcc_read_due_call(call, tcc_calls_context);
	}
	SPI_finish();
	if (lock == GLOBAL_BUSY)
		return LOCAL_BUSY;
	if (!due)
		return LOCAL_STALE;

	if (call->sql == NULL)
		call->outcome = TCC_CALL_DONE;	/* no compensation: nothing to undo */
	else
	{
		pgstat_report_activity(STATE_RUNNING, call->sql);
		run_in_batch(call, first);
		forget_session_state();
		if (!first && call->outcome == TCC_CALL_ERROR &&
			strcmp(call->sqlstate, "55P03") == 0)
		{
			forget_outcome(call);
			return LOCAL_NOT_RUN;	/* it would have waited: later */
		}
	}

	/* the error text must outlive the action's memory */
	if (call->error && GetMemoryChunkContext(call->error) != tcc_calls_context)
		call->error = MemoryContextStrdup(tcc_calls_context, call->error);

	/*
	 * The row has been ours since it was read: the outcome goes into what
	 * was read then, with no second lock, unless the action may have
	 * changed it (see tcc_record_locked_outcome).
	 */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	tcc_record_locked_outcome(&bt->tx, call, &bt->to_finish);
	SPI_finish();

	return call->outcome == TCC_CALL_DONE ? LOCAL_SUCCEEDED : LOCAL_FAILED;
}

/*
 * tcc_run_local_batch
 *		Run the local actions calls[0 .. ncalls - 1] (server NULL) in one
 *		transaction, each action in a subtransaction of its own
 *		(tcc_run_action_here), its outcome recorded in the same
 *		transaction; results[i] says what became of calls[i].  progress,
 *		when given, is told the number of each call before it starts.
 *
 * The batch commits once, with one WAL flush for all of its actions and
 * their outcomes; a branch is confirmed exactly when its action's effects
 * commit.  No call starts once the batch has run for TCC_BATCH_TIME_MS:
 * the batch holds its runner, the rows of its transactions and whatever
 * its actions locked until it commits.  The calls not started, and one
 * that would have waited for a lock (see the file header), are
 * LOCAL_NOT_RUN, to be handed out again.  An error outside the actions
 * (in tcc's own statements) rolls the whole batch back and propagates:
 * none of it happened, and every branch of it is still due.
 */
void
tcc_run_local_batch(TccCall **calls, int ncalls, TccLocalResult *results,
					TccLocalProgress progress)
{
	Batch		batch;
	int			i;

	TimestampTz start = GetCurrentTimestamp();

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	tcc_commit_durably();
	batch.ntxs = 0;

	Assert(ncalls <= TCC_RUNNER_BATCH);
	for (i = 0; i < ncalls; i++)
	{
		/* a batch holds its runner and its rows' locks: keep it short */
		if (i > 0 && TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
												TCC_BATCH_TIME_MS))
			break;
		if (progress)
			progress(i);
		PushActiveSnapshot(GetTransactionSnapshot());
		results[i] = run_one(&batch, calls[i], i == 0);
		PopActiveSnapshot();
		if (results[i] == LOCAL_NOT_RUN)
		{
			i++;				/* it would have waited: the batch ends */
			break;
		}
	}
	for (; i < ncalls; i++)
		results[i] = LOCAL_NOT_RUN;

	/* neither is an action: no time limit ends them (see runner.c) */
	if (progress)
		progress(-1);
	end_batch_txs(&batch);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}
