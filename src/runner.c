/*-------------------------------------------------------------------------
 *
 * runner.c
 *	  A runner: the process that runs batches of local actions for one
 *	  dispatcher (local_pool.c starts it), so that no action, however slow
 *	  or hostile, runs in a process that serves other owners.
 *
 * The runner takes a batch from its slot (runner_slots.c), runs it in one
 * transaction (local.c), publishing which call runs and since when, puts
 * the results in the slot and wakes its dispatcher.  Its dispatcher ends
 * it (SIGTERM, which no action can catch) when an action overruns
 * tcc.call_timeout; it exits by itself when its dispatcher has gone, and
 * after TCC_RUNNER_IDLE_EXIT seconds without work.
 *
 * Like the dispatcher, it is connected as the bootstrap superuser and
 * runs each action as its transaction's owner (action.c); tcc's own
 * statements run with the settings the dispatchers pin (worker.c).
 *
 * src/runner.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#include "runner.h"
#include "tcc.h"
#include "worker.h"

/* this runner's slot */
static TccRunnerSlot *my_slot = NULL;

/*
 * runner_detach
 *		On exit, leave the slot: its dispatcher frees it when it sees this
 *		process stopped, and learns from the state whether a batch was
 *		under way; a slot whose dispatcher is gone is freed here.
 */
static void
runner_detach(int code, Datum arg)
{
	tcc_runner_lock(true);
	if (my_slot->pid == MyProcPid)
	{
		my_slot->pid = 0;
		my_slot->latch = NULL;
		if (my_slot->parent_pid == 0)
			my_slot->state = RUNNER_FREE;
		else if (my_slot->parent_latch)
			SetLatch(my_slot->parent_latch);
	}
	tcc_runner_unlock();
}

/*
 * runner_attach
 *		Take slot index, which dispatcher parent_pid took for this runner;
 *		false when it has gone meanwhile.
 */
static bool
runner_attach(int index, int parent_pid)
{
	TccRunnerSlot *slot = tcc_runner_slot(index);

	tcc_runner_lock(true);
	if (slot->state != RUNNER_STARTING || slot->parent_pid != parent_pid ||
		slot->dboid != MyDatabaseId)
	{
		tcc_runner_unlock();
		return false;
	}
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->state = RUNNER_IDLE;
	SetLatch(slot->parent_latch);
	my_slot = slot;
	tcc_runner_unlock();

	before_shmem_exit(runner_detach, (Datum) 0);
	return true;
}

/*
 * take_batch
 *		The batch waiting in the slot, as calls allocated in context;
 *		returns how many (0: none waits), or -1 when the dispatcher has
 *		gone or the runner has idled long enough and may exit.
 */
static int
take_batch(TccCall **calls, MemoryContext context, bool may_exit)
{
	int			n = 0;
	int			i;

	tcc_runner_lock(true);
	if (my_slot->parent_pid == 0)
		n = -1;
	else if (my_slot->state == RUNNER_ASSIGNED)
	{
		n = my_slot->ncalls;
		for (i = 0; i < n; i++)
		{
			TccCall    *call = MemoryContextAllocZero(context,
													  sizeof(TccCall));

			call->gid = MemoryContextStrdup(context, my_slot->calls[i].gid);
			call->branch_id = MemoryContextStrdup(context,
												  my_slot->calls[i].branch_id);
			call->ran_in = my_slot->calls[i].ran_in;
			call->outcome = TCC_CALL_PENDING;
			calls[i] = call;
		}
		my_slot->state = RUNNER_RUNNING;
	}
	else if (may_exit && my_slot->state == RUNNER_IDLE)
	{
		my_slot->state = RUNNER_GONE;
		n = -1;
	}
	tcc_runner_unlock();
	return n;
}

/*
 * publish_progress
 *		Say that call i of the batch starts now, or (i = -1) that the batch
 *		commits: a TccLocalProgress.  The dispatcher ends a call that runs
 *		too long, never a commit, which may be waiting for a synchronous
 *		standby and must not be cut short (doc/design.md, Durability).
 */
static void
publish_progress(int i)
{
	TimestampTz now = GetCurrentTimestamp();

	tcc_runner_lock(true);
	my_slot->current = i;
	my_slot->current_since = now;
	tcc_runner_unlock();
}

/*
 * publish_results
 *		Put the batch's results in the slot and wake the dispatcher.
 */
static void
publish_results(const TccLocalResult *results, int ncalls)
{
	int			i;

	tcc_runner_lock(true);
	for (i = 0; i < ncalls; i++)
		my_slot->calls[i].result = results[i];
	my_slot->current = -1;
	my_slot->state = RUNNER_DONE;
	if (my_slot->parent_latch)
		SetLatch(my_slot->parent_latch);
	tcc_runner_unlock();
}

/*
 * tcc_runner_main
 *		The body of a runner; main_arg is its slot, and bgw_extra holds its
 *		database and its dispatcher's pid.
 */
void
tcc_runner_main(Datum main_arg)
{
	int			extra[2];
	MemoryContext batch_context;
	TimestampTz idle_since;

	memcpy(extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid((Oid) extra[0], InvalidOid, 0);
	tcc_worker_pin_session();
	if (!runner_attach(DatumGetInt32(main_arg), extra[1]))
		proc_exit(0);

	/* what a batch allocates, the outcomes' texts included */
	batch_context = AllocSetContextCreate(TopMemoryContext, "tcc batch",
										  ALLOCSET_DEFAULT_SIZES);
	tcc_calls_context = batch_context;
	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		TccCall    *calls[TCC_RUNNER_BATCH];
		TccLocalResult results[TCC_RUNNER_BATCH];
		bool		may_exit;
		int			n;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		may_exit = TimestampDifferenceExceeds(idle_since,
											  GetCurrentTimestamp(),
											  TCC_RUNNER_IDLE_EXIT * 1000);
		n = take_batch(calls, batch_context, may_exit);
		if (n < 0)
			proc_exit(0);
		if (n > 0)
		{
			MemSet(results, 0, sizeof(results));
			tcc_run_local_batch(calls, n, results, publish_progress);
			publish_results(results, n);
			MemoryContextReset(batch_context);
			pgstat_report_stat(false);
			idle_since = GetCurrentTimestamp();
			continue;
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
	}
}
