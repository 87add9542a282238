/*-------------------------------------------------------------------------
 *
 * runner_slots.c
 *	  The shared-memory slots through which a dispatcher hands batches of
 *	  local actions to the processes that run them (runner.c) and learns
 *	  how each batch went (local_pool.c).
 *
 * A slot belongs to one dispatcher (its parent) from the moment it takes
 * it until it frees it again, and holds one runner process at a time:
 *
 *	free -> starting			the parent took the slot, registered a runner
 *	starting -> idle			the runner attached
 *	idle -> assigned			the parent put a batch in
 *	assigned -> running			the runner took the batch
 *	running -> done				the runner committed (or gave up) the batch
 *	done -> idle				the parent read the results
 *	idle -> free				the runner exited after idling long enough
 *	any -> free					the parent saw the runner's process stop
 *
 * While a batch runs, current and current_since say which call is under
 * way and since when, so that the parent can end a process whose action
 * overruns tcc.call_timeout, and knows which call to blame when a process
 * dies with its batch.  The slot state changes under the lock only; the
 * parent and the runner set each other's latch after every change.
 *
 * src/runner_slots.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "runner.h"
#include "tcc.h"
#include "worker.h"

typedef struct TccRunnerShared
{
	LWLock	   *lock;
	TccRunnerSlot slots[TCC_MAX_RUNNERS];
} TccRunnerShared;

static TccRunnerShared *runner_shared = NULL;

/*
 * tcc_runner_shmem_request
 *		Reserve the runner slots and their lock (from shmem_request_hook).
 */
void
tcc_runner_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(TccRunnerShared)));
	RequestNamedLWLockTranche("tcc runners", 1);
}

/*
 * tcc_runner_shmem_startup
 *		Create or attach to the runner slots (from shmem_startup_hook).
 */
void
tcc_runner_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	runner_shared = ShmemInitStruct("tcc runners", sizeof(TccRunnerShared),
									&found);
	if (!found)
	{
		memset(runner_shared, 0, sizeof(TccRunnerShared));
		runner_shared->lock = &(GetNamedLWLockTranche("tcc runners"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * tcc_runner_slot
 *		Slot number i.  Its fields other than the batch (written by the
 *		parent before assigning it, read by the runner after taking it) are
 *		read and written under the lock only.
 */
TccRunnerSlot *
tcc_runner_slot(int i)
{
	Assert(runner_shared != NULL && i >= 0 && i < TCC_MAX_RUNNERS);
	return &runner_shared->slots[i];
}

/*
 * tcc_runner_lock
 *		Take the lock of the runner slots, exclusive or shared.
 */
void
tcc_runner_lock(bool exclusive)
{
	LWLockAcquire(runner_shared->lock, exclusive ? LW_EXCLUSIVE : LW_SHARED);
}

/*
 * tcc_runner_unlock
 *		Release the lock of the runner slots.
 */
void
tcc_runner_unlock(void)
{
	LWLockRelease(runner_shared->lock);
}

/*
 * tcc_runner_take_slot
 *		Take a free slot for a runner of this dispatcher in database dboid;
 *		-1 when none is free.
 */
int
tcc_runner_take_slot(Oid dboid)
{
	int			i;

	tcc_runner_lock(true);
	for (i = 0; i < TCC_MAX_RUNNERS; i++)
	{
		TccRunnerSlot *slot = &runner_shared->slots[i];

		if (slot->state != RUNNER_FREE)
			continue;
		memset(slot, 0, sizeof(TccRunnerSlot));
		slot->state = RUNNER_STARTING;
		slot->dboid = dboid;
		slot->parent_pid = MyProcPid;
		slot->parent_latch = MyLatch;
		tcc_runner_unlock();
		return i;
	}
	tcc_runner_unlock();
	return -1;
}

/*
 * tcc_runner_free_slot
 *		Give slot i back, once its runner's process has stopped (or never
 *		started).
 */
void
tcc_runner_free_slot(int i)
{
	TccRunnerSlot *slot = &runner_shared->slots[i];

	tcc_runner_lock(true);
	Assert(slot->parent_pid == MyProcPid);
	slot->state = RUNNER_FREE;
	slot->parent_pid = 0;
	slot->parent_latch = NULL;
	tcc_runner_unlock();
}

/*
 * tcc_runner_orphan_slots
 *		A dispatcher exits: end the runners of its slots.  They exit at
 *		their next look, or at once by the SIGTERM; a batch under way rolls
 *		back and its branches are due again for the next dispatcher.
 *
 * Called from the dispatcher's exit callback; the slots themselves are
 * freed by the runners (tcc_runner_detach), since no parent is left to.
 */
void
tcc_runner_orphan_slots(void)
{
	int			i;

	if (runner_shared == NULL)
		return;
	tcc_runner_lock(true);
	for (i = 0; i < TCC_MAX_RUNNERS; i++)
	{
		TccRunnerSlot *slot = &runner_shared->slots[i];

		if (slot->state == RUNNER_FREE || slot->parent_pid != MyProcPid)
			continue;
		slot->parent_pid = 0;
		slot->parent_latch = NULL;
		if (slot->pid != 0)
			kill(slot->pid, SIGTERM);
		else
			slot->state = RUNNER_FREE;
	}
	tcc_runner_unlock();
}

/*
 * tcc_runner_start
 *		Take a free slot for a runner of this dispatcher and register the
 *		runner's process, with *handle to watch it by; returns the slot, or
 *		-1 when no slot or background worker is to be had.
 */
int
tcc_runner_start(BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	MemoryContext oldcontext;
	int			extra[2];
	int			i = tcc_runner_take_slot(MyDatabaseId);
	bool		ok;

	if (i < 0)
		return -1;

	tcc_init_bgworker(&worker, "tcc_runner_main", "tcc runner");
	snprintf(worker.bgw_name, BGW_MAXLEN,
			 "tcc runner for database %u", MyDatabaseId);
	worker.bgw_main_arg = Int32GetDatum(i);
	extra[0] = (int) MyDatabaseId;
	extra[1] = MyProcPid;
	memcpy(worker.bgw_extra, extra, sizeof(extra));
	worker.bgw_notify_pid = MyProcPid;

	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, handle);
	MemoryContextSwitchTo(oldcontext);
	if (!ok)
	{
		tcc_runner_free_slot(i);
		return -1;
	}
	return i;
}

/*
 * tcc_runner_assign
 *		Put the batch calls[0 .. ncalls - 1] in slot i and wake its runner;
 *		false when the runner is no longer idle (it has just decided to
 *		exit, having idled long enough).
 */
bool
tcc_runner_assign(int i, TccCall **calls, int ncalls)
{
	TccRunnerSlot *slot = &runner_shared->slots[i];
	int			n;

	Assert(ncalls > 0 && ncalls <= TCC_RUNNER_BATCH);
	tcc_runner_lock(true);
	Assert(slot->parent_pid == MyProcPid);
	if (slot->state != RUNNER_IDLE)
	{
		tcc_runner_unlock();
		return false;
	}
	for (n = 0; n < ncalls; n++)
	{
		strlcpy(slot->calls[n].gid, calls[n]->gid,
				sizeof(slot->calls[n].gid));
		strlcpy(slot->calls[n].branch_id, calls[n]->branch_id,
				sizeof(slot->calls[n].branch_id));
		slot->calls[n].ran_in = calls[n]->ran_in;
		slot->calls[n].result = LOCAL_NOT_RUN;
	}
	slot->ncalls = ncalls;
	slot->current = -1;
	slot->state = RUNNER_ASSIGNED;
	if (slot->latch)
		SetLatch(slot->latch);
	tcc_runner_unlock();
	return true;
}

/*
 * tcc_runner_look
 *		What the runner of slot i is doing: whether it is idle, whether it
 *		finished its batch (then results[0 .. ncalls - 1] are filled in and
 *		the slot is idle again), and otherwise which call runs.  With a
 *		limit (microseconds, 0: none), a call that has run longer is ended:
 *		its process gets SIGTERM (ended is set); else limit_at says when it
 *		will have overrun.
 */
TccRunnerLook
tcc_runner_look(int i, int ncalls, TccLocalResult *results,
				TimestampTz limit)
{
	TccRunnerSlot *slot = &runner_shared->slots[i];
	TccRunnerLook look;
	int			n;

	memset(&look, 0, sizeof(look));
	tcc_runner_lock(true);
	Assert(slot->parent_pid == MyProcPid);
	look.finished = (slot->state == RUNNER_DONE);
	look.current = slot->current;
	for (n = 0; n < ncalls; n++)
		results[n] = look.finished ? slot->calls[n].result : LOCAL_NOT_RUN;
	if (look.finished)
		slot->state = RUNNER_IDLE;
	else if (limit != 0 && slot->state == RUNNER_RUNNING &&
			 slot->current >= 0)
	{
		look.limit_at = slot->current_since + limit;
		if (GetCurrentTimestamp() >= look.limit_at)
		{
			if (slot->pid != 0)
				kill(slot->pid, SIGTERM);
			look.ended = true;
			look.limit_at = 0;
		}
	}
	look.idle = (slot->state == RUNNER_IDLE);
	tcc_runner_unlock();
	return look;
}
