/*-------------------------------------------------------------------------
 *
 * local.c
 *	  Running a local action (server NULL) in the worker, as the global
 *	  transaction's owner, in a security-restricted context, and recording
 *	  its outcome in the same transaction.
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
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "state.h"
#include "tcc.h"
#include "worker.h"

/*
 * forget_session_state
 *		Drop what a local action left in the worker's session that outlives
 *		its transaction, so that the next action starts from a session as
 *		clean as a new one: session-level advisory locks (which would also
 *		block other sessions for as long as the worker lives), prepared
 *		statements and the state of sequences (currval).
 *
 * Settings are rolled back by tcc_run_action_here itself (action.c).  The
 * restricted security context already refuses the rest of what DISCARD ALL
 * clears:
 * temporary objects, LISTEN, cursors WITH HOLD and role changes.  Advisory
 * locks taken for the transaction only are released by its commit, which
 * follows at once.
 */
static void
forget_session_state(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
	ResetSequenceCaches();
}

/*
 * local_call_is_due
 *		Lock call's global transaction, without waiting, and check that its
 *		branch is still due in call's phase.  The caller is in a transaction.
 */
static bool
local_call_is_due(TccCall *call)
{
	GlobalTx	tx;
	bool		due;

	Assert(IsTransactionState());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	due = tcc_lock_global_tx_nowait(call->gid, &tx) == GLOBAL_LOCKED &&
		tcc_branch_is(call->gid, call->branch_id, call->ran_in);
	SPI_finish();
	return due;
}

/*
 * tcc_run_local_call
 *		Run a local action (server NULL) here, as the transaction's owner,
 *		and record its outcome in the same transaction: the branch is
 *		confirmed exactly when the action's effects commit.
 *
 * The transaction's row is locked first, as everywhere, and the branch
 * must still be due in the same phase; if the row is busy, or the branch
 * moved on, nothing runs and false is returned (the branch is looked at
 * again in a later round).
 *
 * The action runs under the policy of every local action (action.c): as
 * the owner, never the worker, restricted, with the owner's default
 * search_path and tcc.call_timeout.  What else it leaves in the worker's
 * session, which serves every owner, is dropped afterwards, whatever the
 * outcome (forget_session_state).
 */
bool
tcc_run_local_call(TccCall *call)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	tcc_commit_durably();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, call->sql);

	if (!local_call_is_due(call))
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		tcc_free_call(call);
		return false;
	}

	tcc_run_action_here(call);
	forget_session_state();

	/* the error text must outlive the transaction until tcc_free_call */
	if (call->error && GetMemoryChunkContext(call->error) != tcc_calls_context)
		call->error = MemoryContextStrdup(tcc_calls_context, call->error);

	/* the row is ours already, so this cannot find it busy */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) tcc_record_outcome(call);
	SPI_finish();

	PopActiveSnapshot();
	CommitTransactionCommand();

	tcc_free_call(call);
	return true;
}
