/*-------------------------------------------------------------------------
 *
 * durable.c
 *	  Commits that are flushed, and replicated to synchronous standbys,
 *	  whatever synchronous_commit says.
 *
 * A decision of tcc is acted on by somebody else as soon as it commits: a
 * client told "confirming" goes on with its business, the worker sends the
 * confirms of a committed tcc.commit, and a participant is called about a
 * branch whose registration committed.  With synchronous_commit = off (or
 * local, or remote_write) a crash can lose such a commit after it was
 * acted on: the coordinator then wakes up in the past, with a transaction
 * back in trying whose branches were confirmed, or with no record at all of
 * tries that reserved resources on participants.  PostgreSQL keeps the same
 * promise for COMMIT PREPARED, which always flushes.
 *
 * So every transaction that records a decision (begin, register, add_step,
 * commit, submit, rollback, retry, CALL tcc.try, the worker's timeout
 * cancels and outcomes, and the fence on a participant) calls
 * tcc_commit_durably(), and at its commit synchronous_commit is raised to
 * at least "on": the commit record is flushed to disk and, where
 * synchronous_standby_names names standbys, confirmed by them, before the
 * commit returns.  A stronger setting (remote_apply) is kept.
 *
 * The setting is changed at pre-commit rather than when the decision is
 * made, so that a SET LOCAL synchronous_commit = off issued later in the
 * same transaction cannot undo it; it is a SET LOCAL itself, so it reverts
 * when the transaction ends.  Other sessions never see a commit before its
 * sync-rep wait is over (the transaction becomes visible only after it), so
 * the worker cannot act on a decision before it is durable either.
 *
 * A transaction that records nothing writes no commit record and pays
 * nothing.  One that records a decision cannot be prepared for two-phase
 * commit: COMMIT PREPARED would wait for the standbys only if the session
 * that runs it says so, and the worker would not be woken by it either.
 *
 * src/durable.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/guc.h"

#include "tcc.h"

/* whether the current transaction must commit durably */
static bool durable_at_commit = false;
static bool callback_registered = false;

/*
 * durable_xact_callback
 *		At pre-commit of a transaction that asked for it, raise
 *		synchronous_commit to at least "on" for the commit; refuse to
 *		prepare it; forget the request when the transaction ends.
 *
 * Pre-commit still runs inside the transaction, so setting a GUC is
 * allowed; an error here aborts the transaction, which is what should
 * happen to a decision that cannot be made durable.
 */
static void
durable_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (durable_at_commit &&
				synchronous_commit < SYNCHRONOUS_COMMIT_REMOTE_FLUSH)
				(void) set_config_option("synchronous_commit", "on",
										 PGC_USERSET, PGC_S_SESSION,
										 GUC_ACTION_LOCAL, true, 0, false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (durable_at_commit)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has "
								"recorded a tcc decision"),
						 errdetail("A decision of tcc must be durable, on "
								   "the synchronous standbys too, when it "
								   "commits, whoever commits it."),
						 errhint("Commit the transaction instead.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			durable_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * tcc_commit_durably
 *		Make the current transaction's commit flushed, and confirmed by the
 *		synchronous standbys, before it returns (see the file header).
 */
void
tcc_commit_durably(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(durable_xact_callback, NULL);
		callback_registered = true;
	}
	durable_at_commit = true;
}
