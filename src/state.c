/*-------------------------------------------------------------------------
 *
 * state.c
 *	  The state machine of a global transaction and its branches: the
 *	  names of their statuses, the table of legal edges, the edges that
 *	  move a transaction's branches with it, and the refusals of an edge
 *	  a user asks for in the wrong status.  The statements that change the
 *	  rows are in global_tx.c (the transaction's) and branch.c (its
 *	  branches'); the SQL API (coordinator.c, register.c, try.c) and the
 *	  worker (outcome.c, housekeeping.c, local.c) decide and call these,
 *	  and neither writes tcc.global_transaction or tcc.branch itself.
 *
 * A global transaction's status moves only along these edges:
 *
 *		trying -> confirming -> confirmed
 *		trying -> cancelling -> cancelled
 *		confirming | cancelling -> failed -> (the phase it left)
 *
 * plus trying -> confirmed and trying -> cancelled for a transaction that
 * has nothing to run in phase two, and confirming -> cancelling for a saga
 * whose forward step fails for good (doc/design.md, States).
 *
 * src/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "state.h"
#include "tcc.h"

static const char *const status_names[TCC_STATUS_COUNT] = {
	[TCC_TRYING] = "trying",
	[TCC_CONFIRMING] = "confirming",
	[TCC_CONFIRMED] = "confirmed",
	[TCC_CANCELLING] = "cancelling",
	[TCC_CANCELLED] = "cancelled",
	[TCC_FAILED] = "failed",
};

static const char *const mode_names[TCC_MODE_COUNT] = {
	[TCC_MODE_TCC] = "tcc",
	[TCC_MODE_SAGA] = "saga",
	[TCC_MODE_MSG] = "msg",
};

static const char *const branch_status_names[BRANCH_STATUS_COUNT] = {
	[BRANCH_REGISTERED] = "registered",
	[BRANCH_TRIED] = "tried",
	[BRANCH_TRY_FAILED] = "try_failed",
	[BRANCH_CONFIRMING] = "confirming",
	[BRANCH_CONFIRMED] = "confirmed",
	[BRANCH_CANCELLING] = "cancelling",
	[BRANCH_CANCELLED] = "cancelled",
	[BRANCH_FAILED] = "failed",
	[BRANCH_ABORTED] = "aborted",
	[BRANCH_SKIPPED] = "skipped",
};

/*
 * The edges of doc/design.md, States: legal_edges[from][to].  A
 * transaction with nothing to run goes from trying straight to its end; a
 * saga whose forward step fails for good goes from confirming to
 * cancelling; tcc.retry goes from failed back to the phase it left.
 */
static const bool legal_edges[TCC_STATUS_COUNT][TCC_STATUS_COUNT] = {
	[TCC_TRYING] = {
		[TCC_CONFIRMING] = true, [TCC_CONFIRMED] = true,
		[TCC_CANCELLING] = true, [TCC_CANCELLED] = true,
	},
	[TCC_CONFIRMING] = {
		[TCC_CONFIRMED] = true, [TCC_CANCELLING] = true, [TCC_FAILED] = true,
	},
	[TCC_CANCELLING] = {
		[TCC_CANCELLED] = true, [TCC_FAILED] = true,
	},
	[TCC_FAILED] = {
		[TCC_CONFIRMING] = true, [TCC_CANCELLING] = true,
	},
};

/*
 * index_of_name
 *		The index of name in names[0 .. count - 1], or -1.
 */
static int
index_of_name(const char *const *names, int count, const char *name)
{
	int			i;

	for (i = 0; i < count; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/*
 * tcc_status_name
 *		The name of a global transaction's status, as the tables hold it.
 */
const char *
tcc_status_name(TccStatus status)
{
	Assert(status >= 0 && status < TCC_STATUS_COUNT);
	return status_names[status];
}

/*
 * tcc_status_from_name
 *		The global transaction status called name; the column's domain
 *		allows no other, so an unknown one is a can't-happen error.
 */
TccStatus
tcc_status_from_name(const char *name)
{
	int			i = index_of_name(status_names, TCC_STATUS_COUNT, name);

	if (i < 0)
		elog(ERROR, "unknown global transaction status \"%s\"", name);
	return (TccStatus) i;
}

/*
 * tcc_mode_name
 *		The name of a global transaction's mode.
 */
const char *
tcc_mode_name(TccMode mode)
{
	Assert(mode >= 0 && mode < TCC_MODE_COUNT);
	return mode_names[mode];
}

/*
 * tcc_mode_from_name
 *		The mode called name, or -1 when there is none: tcc.begin refuses
 *		such a name, and the column's domain allows no other.
 */
int
tcc_mode_from_name(const char *name)
{
	return index_of_name(mode_names, TCC_MODE_COUNT, name);
}

/*
 * tcc_branch_status_name
 *		The name of a branch's status, as tcc.branch holds it.
 */
const char *
tcc_branch_status_name(BranchStatus status)
{
	Assert(status >= 0 && status < BRANCH_STATUS_COUNT);
	return branch_status_names[status];
}

/*
 * tcc_branch_status_from_name
 *		The branch status called name; as for tcc_status_from_name, an
 *		unknown one is a can't-happen error.
 */
BranchStatus
tcc_branch_status_from_name(const char *name)
{
	int			i = index_of_name(branch_status_names, BRANCH_STATUS_COUNT,
								  name);

	if (i < 0)
		elog(ERROR, "unknown branch status \"%s\"", name);
	return (BranchStatus) i;
}

/*
 * tcc_check_edge
 *		Stop with an elog, as xact.c does, if tx cannot go from its status
 *		to new_status: the callers decide on edges from the status they find
 *		under the row lock, so an edge that does not exist is a bug.
 */
void
tcc_check_edge(GlobalTx *tx, TccStatus new_status)
{
	if (!legal_edges[tx->status][new_status])
		elog(ERROR, "global transaction \"%s\" cannot go from %s to %s",
			 tx->gid, tcc_status_name(tx->status),
			 tcc_status_name(new_status));
}

/*
 * tcc_start_confirm
 *		trying -> confirming, for tcc.commit and tcc.submit.
 *
 * A TCC transaction has all its branches confirmed (the worker sends them
 * in registration order); a saga or msg transaction runs its steps one
 * after the other, so only the first becomes due.  A transaction with
 * nothing to run is confirmed at once.  A TCC transaction whose try of a
 * branch failed (CALL tcc.try) is refused: it can only be rolled back.
 *
 * The branches are written first, by a statement that finds out at the
 * same time whether there are any and whether a try failed; the
 * transaction then moves with one UPDATE.  Only a commit that finds no
 * branch to confirm looks again, for the failed try to name.
 */
void
tcc_start_confirm(GlobalTx *tx)
{
	char	   *failed_try;

	if (tcc_set_branches(tx, MODE_IS_TCC(tx) ? BRANCHES_ALL_TRIED :
						 BRANCHES_FIRST_REGISTERED, BRANCH_CONFIRMING))
		tcc_set_global_status(tx, TCC_CONFIRMING, NULL);
	else if (MODE_IS_TCC(tx) &&
			 (failed_try = tcc_first_branch_in(tx->gid, BRANCH_TRY_FAILED)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot commit global transaction \"%s\" because "
						"the try of branch \"%s\" failed", tx->gid,
						failed_try),
				 errhint("Roll it back with tcc.rollback.")));
	else
		tcc_set_global_status(tx, TCC_CONFIRMED, NULL);
}

/*
 * tcc_start_cancel
 *		trying -> cancelling, for tcc.rollback and for the worker's cancel of
 *		a transaction past its deadline (reason "timeout"), which must do
 *		exactly the same.
 *
 * A TCC transaction's branches may have run their tries, so every branch is
 * cancelled (the worker goes in reverse registration order; the fence turns
 * a cancel whose try never ran into an empty rollback); one with no branch
 * is cancelled at once.  The steps of a saga or msg transaction run only
 * after submit, so one still trying has nothing to undo: it is cancelled at
 * once and its steps are marked skipped.
 */
void
tcc_start_cancel(GlobalTx *tx, const char *reason)
{
	if (!MODE_IS_TCC(tx))
	{
		(void) tcc_set_branches(tx, BRANCHES_ALL, BRANCH_SKIPPED);
		tcc_set_global_status(tx, TCC_CANCELLED, reason);
	}
	else if (tcc_set_branches(tx, BRANCHES_ALL, BRANCH_CANCELLING))
		tcc_set_global_status(tx, TCC_CANCELLING, reason);
	else
		tcc_set_global_status(tx, TCC_CANCELLED, reason);
}

/*
 * tcc_resume
 *		failed -> the phase it left, for tcc.retry.
 *
 * The branches that failed, and those still waiting in that phase, become
 * due now with their attempts reset; the ones that succeeded are left alone.
 */
void
tcc_resume(GlobalTx *tx)
{
	Assert(STATUS_IS(tx, TCC_FAILED));
	tcc_set_global_status(tx, tx->failed_phase, NULL);
	(void) tcc_set_branches(tx, BRANCHES_TO_RETRY,
							STATUS_IS(tx, TCC_CONFIRMING) ?
							BRANCH_CONFIRMING : BRANCH_CANCELLING);
}

/*
 * tcc_start_next
 *		Make the next saga or msg step of tx due, and return true; false
 *		when there is none left.
 *
 * Confirming, the next step is the first one not yet run.  Cancelling (a
 * saga being compensated), it is the last one that completed: the steps are
 * undone one at a time, newest first, each with attempts of its own.
 */
bool
tcc_start_next(GlobalTx *tx)
{
	Assert(!MODE_IS_TCC(tx));
	if (STATUS_IS(tx, TCC_CONFIRMING))
		return tcc_set_branches(tx, BRANCHES_FIRST_REGISTERED,
								BRANCH_CONFIRMING);
	Assert(STATUS_IS(tx, TCC_CANCELLING));
	return tcc_set_branches(tx, BRANCHES_LAST_CONFIRMED, BRANCH_CANCELLING);
}

/*
 * tcc_finish_all_if_done
 *		End each of the n transactions txs, confirming or cancelling, when
 *		none of its branches is left to run: confirming becomes confirmed,
 *		cancelling becomes cancelled.  One look for all of them: a
 *		dispatcher's round ends many at once.
 *
 * Every branch is written under its transaction's row lock, which the
 * caller holds for each of them, so the branches cannot change between the
 * look and the move.
 */
void
tcc_finish_all_if_done(int n, GlobalTx **txs)
{
	BranchStatus *done = palloc(n * sizeof(BranchStatus));
	bool	   *left = palloc(n * sizeof(bool));
	int			i;

	for (i = 0; i < n; i++)
	{
		Assert(txs[i]->locked);
		Assert(STATUS_IS(txs[i], TCC_CONFIRMING) ||
			   STATUS_IS(txs[i], TCC_CANCELLING));
		done[i] = STATUS_IS(txs[i], TCC_CONFIRMING) ? BRANCH_CONFIRMED :
			BRANCH_CANCELLED;
	}
	tcc_branches_left_in(n, txs, done, left);
	for (i = 0; i < n; i++)
		if (!left[i])
			tcc_set_global_status(txs[i],
								  STATUS_IS(txs[i], TCC_CONFIRMING) ?
								  TCC_CONFIRMED : TCC_CANCELLED, NULL);
}

/*
 * tcc_finish_if_done
 *		tcc_finish_all_if_done of the one transaction tx.
 */
void
tcc_finish_if_done(GlobalTx *tx)
{
	tcc_finish_all_if_done(1, &tx);
}

/*
 * tcc_refuse_transition
 *		Report that tx cannot take the transition action in its status.
 */
void
tcc_refuse_transition(GlobalTx *tx, const char *action)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s global transaction \"%s\" because it is %s",
					action, tx->gid, tcc_status_name(tx->status)),
			 STATUS_IS(tx, TCC_FAILED) ?
			 errhint("Resume it with tcc.retry, or inspect tcc.branches "
					 "for the error.") :
			 errdetail("A transaction can be %s while it is trying; "
					   "repeating that once it is %s returns its status.",
					   strcmp(action, "commit") == 0 ? "committed" :
					   strcmp(action, "submit") == 0 ? "submitted" :
					   "rolled back",
					   strcmp(action, "roll back") == 0 ?
					   "cancelling or cancelled" :
					   "confirming or confirmed")));
}

/*
 * tcc_check_not_expired
 *		Refuse to extend or commit a trying transaction whose deadline has
 *		passed.
 *
 * Such a transaction is due to be cancelled by the worker; letting a commit
 * win or lose against that depending on when the worker wakes up would make
 * the outcome a matter of timing.  After the deadline the answer is always
 * no, and rolling back is always allowed.
 */
void
tcc_check_not_expired(GlobalTx *tx)
{
	if (tx->expired)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("global transaction \"%s\" has passed its deadline",
						tx->gid),
				 errdetail("Its try phase ended at %s.", tx->deadline),
				 errhint("Roll it back with tcc.rollback; the worker cancels "
						 "it in any case.")));
}

/*
 * tcc_check_mode
 *		Refuse a call that does not fit tx's mode: register_branch and commit
 *		are for tcc transactions, add_step and submit for saga and msg ones.
 */
void
tcc_check_mode(GlobalTx *tx, bool want_tcc, const char *function,
		   const char *instead)
{
	if (MODE_IS_TCC(tx) != want_tcc)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("global transaction \"%s\" is a %s transaction",
						tx->gid, tcc_mode_name(tx->mode)),
				 errdetail("%s applies to %s transactions only.", function,
						   want_tcc ? "tcc" : "saga and msg"),
				 errhint("Use %s.", instead)));
}
