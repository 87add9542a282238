/*-------------------------------------------------------------------------
 *
 * shmem_worker.c
 *	  The workers' side of the database slots of shmem.c: the leader (the
 *	  worker the launcher starts for a database) takes its slot and gives
 *	  it back, the children it starts (family.c) join and leave it, and
 *	  each publishes its state and counters there.
 *
 * A leader that attaches bumps the slot's generation and its children
 * join only under the generation they were started for; a leader that
 * exits bumps it again and sends its children SIGTERM.  So a child of a
 * leader that is gone can neither join the next leader's family nor keep
 * serving a partition the next leader may have divided differently: it
 * sees itself orphaned (tcc_child_orphaned) at its next look and exits.
 * Everything is under the lock of shmem.c, but the due times committing
 * backends leave for the dispatchers (due_from, atomic: see
 * tcc_take_due_from).
 *
 * src/shmem_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "tcc.h"
#include "tcc_shmem.h"
#include "shmem_internal.h"

/* this process's slot (its database's), in a worker or a child */
static TccWorkerSlot *my_slot = NULL;

/* the generation this process belongs to */
static uint32 my_generation = 0;

/* this process's dispatcher index: 0 for the leader, -1 for none */
static int	my_dispatcher = -1;

/*
 * end_children
 *		Ask every child of the leader of slot to exit.  The caller holds the
 *		lock exclusively.
 *
 * A child's place stays taken until the child itself leaves it
 * (tcc_child_detach), so that a new leader's child for the same partition
 * waits until the old one, which may still be sending, has gone.
 */
static void
end_children(TccWorkerSlot *slot)
{
	int			i;

	Assert(LWLockHeldByMeInMode(tcc_shared->lock, LW_EXCLUSIVE));
	for (i = 1; i < TCC_MAX_DISPATCHERS; i++)
		if (slot->dispatcher_pid[i] != 0)
			kill(slot->dispatcher_pid[i], SIGTERM);
	if (slot->housekeeper_pid != 0)
		kill(slot->housekeeper_pid, SIGTERM);
	slot->ndispatchers = 0;
}

/*
 * worker_detach
 *		On exit, give the slot back: unless the database lacks the
 *		extension, the launcher starts a worker again after a pause
 *		(TCC_STOP_PAUSE when it was stopped for DROP or ALTER DATABASE,
 *		TCC_RESTART_PAUSE after an error or a pg_terminate_backend), so
 *		pending work resumes without anyone asking.  The leader's children
 *		go with it.
 *
 * The worker does this itself rather than leaving it to the launcher's
 * handle, which a launcher restarted since then does not have.
 */
static void
worker_detach(int code, Datum arg)
{
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	if (my_slot->pid == MyProcPid)
	{
		my_slot->generation++;
		end_children(my_slot);
		my_slot->pid = 0;
		my_slot->latch = NULL;
		my_slot->dispatcher_pid[0] = 0;
		my_slot->dispatcher_latch[0] = NULL;
		my_slot->dispatcher_connections[0] = 0;
		my_slot->open_connections = 0;
		if (my_slot->state != TCC_SLOT_ABSENT)
		{
			my_slot->state = TCC_SLOT_REQUESTED;
			my_slot->not_before = GetCurrentTimestamp() +
				(my_slot->stop_requested ? TCC_STOP_PAUSE :
				 TCC_RESTART_PAUSE) * USECS_PER_SEC;
			my_slot->stop_requested = false;
			if (tcc_shared->launcher_latch != NULL)
				SetLatch(tcc_shared->launcher_latch);
		}
	}
	LWLockRelease(tcc_shared->lock);
	my_slot = NULL;
}

/*
 * tcc_worker_attach
 *		Take the slot of this worker's database as the leader of its
 *		family; false when another worker already serves it (which the
 *		launcher's bookkeeping should prevent, but two workers on one
 *		database would call participants twice).
 */
bool
tcc_worker_attach(Oid dboid)
{
	TccWorkerSlot *slot;
	int			i;

	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	slot = tcc_find_slot(dboid);

	/*
	 * stop_requested: a DROP or ALTER DATABASE wants this database free of
	 * connections and asked while this worker was being started.
	 */
	if (slot == NULL || (slot->pid != 0 && slot->pid != MyProcPid) ||
		slot->stop_requested)
	{
		LWLockRelease(tcc_shared->lock);
		return false;
	}
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->state = TCC_SLOT_STARTING;
	slot->started_at = GetCurrentTimestamp();
	slot->generation++;
	end_children(slot);
	slot->ndispatchers = 0;		/* until tcc_worker_set_family */
	for (i = 0; i < TCC_MAX_DISPATCHERS; i++)
		pg_atomic_write_u64(&slot->due_from[i], TCC_NO_DUE_KEY);
	slot->dispatcher_pid[0] = MyProcPid;
	slot->dispatcher_latch[0] = MyLatch;
	my_slot = slot;
	my_generation = slot->generation;
	my_dispatcher = 0;
	LWLockRelease(tcc_shared->lock);

	before_shmem_exit(worker_detach, (Datum) 0);
	return true;
}

/*
 * tcc_worker_generation
 *		The generation of this leader's family, for the children it starts.
 */
uint32
tcc_worker_generation(void)
{
	Assert(my_dispatcher == 0);
	return my_generation;
}

/*
 * tcc_worker_budget
 *		How many processes beyond itself the leader of this database may
 *		start: an equal share, between the databases tcc serves, of the
 *		background worker slots left by the launcher, the leaders and
 *		TCC_RESERVED_WORKERS kept for parallel query, other extensions and
 *		databases yet to come.
 *
 * A leader that the postmaster cannot start leaves its database unserved,
 * whereas a family smaller than wanted only runs with less isolation and
 * parallelism; so the children must not take the slots leaders need.
 */
int
tcc_worker_budget(void)
{
	int			served = 0;
	int			i;

	Assert(my_dispatcher == 0);
	LWLockAcquire(tcc_shared->lock, LW_SHARED);
	for (i = 0; i < TCC_MAX_WORKERS; i++)
		if (tcc_shared->slots[i].state != TCC_SLOT_FREE &&
			tcc_shared->slots[i].state != TCC_SLOT_ABSENT)
			served++;
	LWLockRelease(tcc_shared->lock);

	return Max(0, (max_worker_processes - 1 - served - TCC_RESERVED_WORKERS) /
			   Max(served, 1));
}

/*
 * tcc_worker_set_family
 *		Publish how many dispatchers divide this database's gids among
 *		them, once the leader has started its children, and how many
 *		runners each may start.
 */
void
tcc_worker_set_family(int ndispatchers, int runners)
{
	Assert(my_dispatcher == 0);
	Assert(ndispatchers >= 1 && ndispatchers <= TCC_MAX_DISPATCHERS);
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	my_slot->ndispatchers = ndispatchers;
	my_slot->runners_per_dispatcher = runners;
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_worker_runner_budget
 *		How many runners each dispatcher of this process's family may have
 *		(0: it runs local actions itself).
 */
int
tcc_worker_runner_budget(void)
{
	int			runners;

	LWLockAcquire(tcc_shared->lock, LW_SHARED);
	runners = my_slot->runners_per_dispatcher;
	LWLockRelease(tcc_shared->lock);
	return runners;
}

/*
 * child_detach
 *		On a child's exit, leave its place in the slot, whichever leader
 *		it was started by.
 */
static void
child_detach(int code, Datum arg)
{
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	if (my_dispatcher > 0 &&
		my_slot->dispatcher_pid[my_dispatcher] == MyProcPid)
	{
		my_slot->dispatcher_pid[my_dispatcher] = 0;
		my_slot->dispatcher_latch[my_dispatcher] = NULL;
		my_slot->dispatcher_connections[my_dispatcher] = 0;
	}
	else if (my_dispatcher < 0 && my_slot->housekeeper_pid == MyProcPid)
		my_slot->housekeeper_pid = 0;
	LWLockRelease(tcc_shared->lock);
	my_slot = NULL;
}

/*
 * tcc_child_attach
 *		Join the family of database dboid's leader of generation
 *		generation, as dispatcher number dispatcher (> 0), or as its
 *		housekeeper (-1), and learn how many dispatchers divide the gids.
 *		Returns CHILD_WAIT while the leader has not said so yet (it is
 *		still starting its children) or the place is still held by a child
 *		of an earlier leader, which is on its way out; CHILD_REFUSED when
 *		that leader is gone, or the family turned out smaller than this
 *		dispatcher's number.
 */
TccChildAttach
tcc_child_attach(Oid dboid, uint32 generation, int dispatcher,
				 int *ndispatchers)
{
	TccWorkerSlot *slot;
	int		   *pid;

	Assert(dispatcher == -1 ||
		   (dispatcher > 0 && dispatcher < TCC_MAX_DISPATCHERS));
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	slot = tcc_find_slot(dboid);
	if (slot == NULL || slot->pid == 0 || slot->generation != generation)
	{
		LWLockRelease(tcc_shared->lock);
		return CHILD_REFUSED;
	}
	if (slot->ndispatchers == 0)
	{
		LWLockRelease(tcc_shared->lock);
		return CHILD_WAIT;
	}
	pid = dispatcher > 0 ? &slot->dispatcher_pid[dispatcher] :
		&slot->housekeeper_pid;
	if (dispatcher >= slot->ndispatchers)
	{
		LWLockRelease(tcc_shared->lock);
		return CHILD_REFUSED;
	}
	if (*pid != 0 && *pid != MyProcPid)
	{
		LWLockRelease(tcc_shared->lock);
		return CHILD_WAIT;
	}
	*pid = MyProcPid;
	if (dispatcher > 0)
		slot->dispatcher_latch[dispatcher] = MyLatch;
	*ndispatchers = slot->ndispatchers;
	my_slot = slot;
	my_generation = generation;
	my_dispatcher = dispatcher;
	LWLockRelease(tcc_shared->lock);

	before_shmem_exit(child_detach, (Datum) 0);
	return CHILD_ATTACHED;
}

/*
 * tcc_child_orphaned
 *		Whether the leader this child was started by is gone: the child
 *		must exit, so as never to serve a partition that a new leader has
 *		handed to another process.
 */
bool
tcc_child_orphaned(void)
{
	bool		orphaned;

	Assert(my_dispatcher != 0);
	LWLockAcquire(tcc_shared->lock, LW_SHARED);
	orphaned = my_slot->generation != my_generation || my_slot->pid == 0;
	LWLockRelease(tcc_shared->lock);
	return orphaned;
}

/*
 * tcc_worker_mark_absent
 *		Record that this worker's database has no tcc extension, so that the
 *		launcher does not start it again until a backend asks.  Only the
 *		leader decides that; a child just exits.
 */
void
tcc_worker_mark_absent(void)
{
	if (my_dispatcher != 0)
		return;
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	my_slot->state = TCC_SLOT_ABSENT;
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_worker_set_state
 *		Publish what this worker is doing; a wake-up also stamps the time.
 *		The slot shows the leader's state; its children keep theirs.
 */
void
tcc_worker_set_state(TccSlotState state)
{
	if (my_dispatcher != 0)
		return;
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	if (state == TCC_SLOT_WORKING && my_slot->state != TCC_SLOT_WORKING)
		my_slot->last_wakeup = GetCurrentTimestamp();
	my_slot->state = state;
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_worker_count
 *		Add to the counters of this process's database and publish its
 *		connection count: the slot shows those of the whole family.
 */
void
tcc_worker_count(uint64 succeeded, uint64 failed, int open_connections)
{
	int			i;
	int			total = 0;

	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	my_slot->calls_succeeded += succeeded;
	my_slot->calls_failed += failed;
	if (my_dispatcher >= 0 && my_slot->generation == my_generation)
		my_slot->dispatcher_connections[my_dispatcher] = open_connections;
	for (i = 0; i < TCC_MAX_DISPATCHERS; i++)
		total += my_slot->dispatcher_connections[i];
	my_slot->open_connections = total;
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_take_due_from
 *		The earliest due time of what transactions made due in this
 *		dispatcher's partition since it last asked (DT_NOEND: nothing), and
 *		forget it (see TccWorkerSlot.due_from).
 *
 * A transaction lowers the value after its commit is visible, so whatever
 * it made due is seen by a read whose snapshot is taken after this.
 */
TimestampTz
tcc_take_due_from(void)
{
	uint64		key;

	Assert(my_slot != NULL && my_dispatcher >= 0);
	key = pg_atomic_exchange_u64(&my_slot->due_from[my_dispatcher],
								 TCC_NO_DUE_KEY);
	return key == TCC_NO_DUE_KEY ? DT_NOEND : tcc_due_of_key(key);
}
