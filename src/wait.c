/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  tcc.wait: waiting until a global transaction is confirmed, cancelled
 *	  or failed.
 *
 * src/wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/condition_variable.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "state.h"
#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_wait);

/*
 * tcc_wait
 *		tcc.wait(gid, timeout): block until global transaction gid is
 *		confirmed, cancelled or failed, or until timeout has passed;
 *		returns the status.
 *
 * Failed counts as an answer because a failed transaction waits for a
 * human, not for time.  The wait sleeps on a condition variable that
 * whoever ends the transaction broadcasts once it has committed (see
 * wakeup.c), so it returns within moments of the change and costs nothing
 * meanwhile.  It prepares to sleep before it reads the status: a broadcast
 * that comes after the read then makes the sleep return at once, so none
 * is missed.  As a safety net against a wake-up lost all the same, and
 * without shared memory (tcc not preloaded, so nobody broadcasts), it
 * reads the status again every tcc.naptime.
 *
 * The status is read as last committed, not with the calling transaction's
 * snapshot, which under REPEATABLE READ would never show the change.  A
 * transaction that changed gid itself (began, committed, submitted it), or
 * only locked its row (a repeated tcc.commit), and has not committed yet
 * would wait for nothing: the worker sees the change only after the
 * commit, and skips a locked row.  That is refused.  The sleep ends on a query
 * cancel or a timeout of the session (statement_timeout) as any wait does.
 */
Datum
tcc_wait(PG_FUNCTION_ARGS)
{
	char	   *gid;
	Interval   *timeout;
	TimestampTz end;
	ConditionVariable *cv;
	MemoryContext wait_context;
	MemoryContext oldcontext;
	char	   *status;

	gid = tcc_id_arg(fcinfo, 0, "gid");
	tcc_check_not_null(fcinfo, 1, "timeout");
	timeout = PG_GETARG_INTERVAL_P(1);
	tcc_check_interval(timeout, "timeout", true);
	end = tcc_add_interval(GetCurrentTimestamp(), timeout, false, "timeout");

	/* each reading of the status allocates; keep that from piling up */
	wait_context = AllocSetContextCreate(CurrentMemoryContext, "tcc.wait",
										 ALLOCSET_SMALL_SIZES);
	oldcontext = MemoryContextSwitchTo(wait_context);

	cv = tcc_wait_variable(gid);
	if (cv != NULL)
		ConditionVariablePrepareToSleep(cv);

	for (;;)
	{
		TccSpiSession session;
		GlobalTx	tx;
		long		remaining;

		MemoryContextReset(wait_context);
		tcc_spi_begin(&session);
		tcc_read_global_tx(&session, gid, &tx, READ_LATEST);
		tcc_spi_end(&session);

		status = (char *) tcc_status_name(tx.status);
		if (STATUS_IS(&tx, TCC_CONFIRMED) || STATUS_IS(&tx, TCC_CANCELLED) ||
			STATUS_IS(&tx, TCC_FAILED))
			break;

		if (tx.changed_here)
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("cannot wait for global transaction \"%s\" in "
							"the transaction that changed or locked it", gid),
					 errdetail("The worker sees the change, and the row "
							   "this transaction locked, only once this "
							   "transaction commits."),
					 errhint("Commit first, then call tcc.wait.")));

		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													end);
		if (remaining <= 0)
			break;
		remaining = Min(remaining, (long) tcc_naptime);

		if (cv != NULL)
			(void) ConditionVariableTimedSleep(cv, remaining,
											   PG_WAIT_EXTENSION);
		else
		{
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 remaining, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}

	if (cv != NULL)
		ConditionVariableCancelSleep();
	MemoryContextSwitchTo(oldcontext);
	status = pstrdup(status);
	MemoryContextDelete(wait_context);

	PG_RETURN_TEXT_P(cstring_to_text(status));
}
