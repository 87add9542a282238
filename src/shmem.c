/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  tcc's shared memory: one slot per database that has (or may get) a
 *	  worker, the launcher's latch, the live counters that the tcc.worker
 *	  view shows (worker_status.c), and the condition variables tcc.wait
 *	  sleeps on.  The launcher and the workers keep their slots up to date
 *	  here; backends wake or stop a database's worker through its slot.
 *	  What a commit wakes, a worker or tcc.wait callers, is decided in
 *	  wakeup.c.
 *
 * The area exists only when tcc is in shared_preload_libraries; without it
 * there is no worker either, tcc.worker is simply empty and waking a worker
 * at commit does nothing.
 *
 * A slot goes through these states:
 *
 *	free -> requested			the launcher found the database, or a
 *								backend asked for a worker there
 *	requested -> launched		the launcher registered the worker
 *	launched -> starting		the worker process runs and connected
 *	starting -> idle <-> working
 *	any running state -> absent	the extension is not installed there
 *	launched or running -> (worker stopped) -> requested again, after a
 *								pause, unless the database is absent
 *
 * A slot is allocated (marked requested) by the launcher, for a database
 * it found, or by a backend that finds no running worker for its database;
 * both do it under the lock held exclusively, after looking for the
 * database's slot under that same lock, so a database never gets two
 * slots.  The launcher is the only process that registers a worker for a
 * slot, so two workers can never be started for one database: a backend
 * only marks the slot requested and wakes the launcher.  A worker writes
 * its own slot's state and counters.
 * Everything is protected by one LWLock; readers take it shared, so a row of
 * tcc.worker is one consistent snapshot of a slot.  The condition
 * variables of tcc.wait need no lock: each has a spinlock of its own.
 *
 * src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "tcc.h"
#include "tcc_shmem.h"
#include "shmem_internal.h"

TccSharedState *tcc_shared = NULL;

static void init_due_from(TccWorkerSlot *slot);

/*
 * tcc_shmem_request
 *		Reserve the shared state and its lock (from shmem_request_hook).
 */
void
tcc_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(TccSharedState)));
	RequestNamedLWLockTranche("tcc", 1);
}

/*
 * tcc_shmem_startup
 *		Create or attach to the shared state (from shmem_startup_hook).
 *
 * AddinShmemInitLock makes the check-and-initialise atomic for the
 * postmaster and for EXEC_BACKEND children attaching later.
 */
void
tcc_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tcc_shared = ShmemInitStruct("tcc", sizeof(TccSharedState), &found);
	if (!found)
	{
		int			i;

		memset(tcc_shared, 0, sizeof(TccSharedState));
		tcc_shared->lock = &(GetNamedLWLockTranche("tcc"))->lock;
		for (i = 0; i < TCC_MAX_WORKERS; i++)
			init_due_from(&tcc_shared->slots[i]);
		for (i = 0; i < TCC_WAIT_BUCKETS; i++)
			ConditionVariableInit(&tcc_shared->waiters[i]);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * tcc_shmem_present
 *		Whether tcc's shared memory exists, which it does only when tcc is
 *		in shared_preload_libraries.
 */
bool
tcc_shmem_present(void)
{
	return tcc_shared != NULL;
}

/*
 * tcc_find_slot
 *		The slot of database dboid, or NULL; the caller holds the lock.
 */
TccWorkerSlot *
tcc_find_slot(Oid dboid)
{
	int			i;

	Assert(LWLockHeldByMe(tcc_shared->lock));

	for (i = 0; i < TCC_MAX_WORKERS; i++)
	{
		if (tcc_shared->slots[i].state != TCC_SLOT_FREE &&
			tcc_shared->slots[i].dboid == dboid)
			return &tcc_shared->slots[i];
	}
	return NULL;
}

/*
 * init_due_from
 *		No dispatcher of slot has anything due behind it yet.
 */
static void
init_due_from(TccWorkerSlot *slot)
{
	int			i;

	for (i = 0; i < TCC_MAX_DISPATCHERS; i++)
		pg_atomic_init_u64(&slot->due_from[i], TCC_NO_DUE_KEY);
}

/*
 * lower_due_from
 *		Lower dispatcher k's due_from to due, unless it is earlier already.
 */
static void
lower_due_from(TccWorkerSlot *slot, int k, TimestampTz due)
{
	uint64		key = tcc_due_key(due);
	uint64		old = pg_atomic_read_u64(&slot->due_from[k]);

	while (key < old &&
		   !pg_atomic_compare_exchange_u64(&slot->due_from[k], &old, key))
		;						/* old now holds the newer value */
}

/*
 * wake_partitions
 *		Tell the dispatchers of slot what the committed transaction made due
 *		in their partitions (see TccWorkerSlot.due_from), and set their
 *		latches; nobody else's.  With a number of partitions other than the
 *		family's (unknown when the transaction noted, or the family was
 *		restarted with another tcc.dispatchers since), every dispatcher is
 *		told the earliest of all.
 */
static void
wake_partitions(TccWorkerSlot *slot, const TccDueNotes *notes)
{
	int			k;

	Assert(LWLockHeldByMe(tcc_shared->lock));
	for (k = 0; k < slot->ndispatchers; k++)
	{
		TimestampTz due = (notes->npartitions == slot->ndispatchers) ?
			notes->from[k] : notes->earliest;
		Latch	   *latch = (k == 0) ? slot->latch : slot->dispatcher_latch[k];

		if (due == DT_NOEND)
			continue;
		lower_due_from(slot, k, due);
		if (latch != NULL)
			SetLatch(latch);
	}
}

/*
 * request_slot
 *		Mark database dboid as wanting a worker, taking a free slot if it
 *		has none; false when every slot is taken.  The caller holds the lock
 *		exclusively.
 */
static bool
request_slot(Oid dboid, TimestampTz not_before)
{
	TccWorkerSlot *slot;
	int			i;

	Assert(LWLockHeldByMeInMode(tcc_shared->lock, LW_EXCLUSIVE));
	slot = tcc_find_slot(dboid);
	if (slot != NULL)
	{
		if (slot->state == TCC_SLOT_ABSENT)
		{
			slot->state = TCC_SLOT_REQUESTED;
			slot->not_before = not_before;
		}
		return true;
	}

	/*
	 * A free slot, else one of a database known to lack the extension: such
	 * a database is simply probed again should it ever be asked for.
	 */
	for (i = 0; i < 2 * TCC_MAX_WORKERS; i++)
	{
		slot = &tcc_shared->slots[i % TCC_MAX_WORKERS];
		if (slot->state == TCC_SLOT_FREE ||
			(i >= TCC_MAX_WORKERS && slot->state == TCC_SLOT_ABSENT &&
			 slot->pid == 0))
		{
			memset(slot, 0, sizeof(TccWorkerSlot));
			init_due_from(slot);
			slot->dboid = dboid;
			slot->state = TCC_SLOT_REQUESTED;
			slot->not_before = not_before;
			return true;
		}
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Backends: waking and stopping a worker, tcc.wait's variables
 * ------------------------------------------------------------------------
 */

/*
 * tcc_wake_database_worker
 *		Wake database dboid's worker; when it has none running, ask the
 *		launcher for one.  With notes (what the transaction made due), the
 *		dispatchers of those partitions are woken and told how far back to
 *		look; without, the leader only (it starts the family, watches the
 *		deadlines when there is no housekeeper, and dispatches partition 0).
 *
 * Called after commit (see wakeup.c), so the worker's next look at the
 * tables sees what the transaction wrote.  The fast path takes the lock in
 * shared mode only.  While the family is starting (no number of partitions
 * published yet) only the leader is woken: every dispatcher's first read,
 * after the number is published and so after this commit is visible,
 * starts from the beginning.
 */
void
tcc_wake_database_worker(Oid dboid, const TccDueNotes *notes)
{
	TccWorkerSlot *slot;

	LWLockAcquire(tcc_shared->lock, LW_SHARED);
	slot = tcc_find_slot(dboid);
	if (slot != NULL && slot->latch != NULL &&
		(slot->state == TCC_SLOT_STARTING || slot->state == TCC_SLOT_IDLE ||
		 slot->state == TCC_SLOT_WORKING))
	{
		if (notes != NULL && notes->noted && slot->ndispatchers > 0)
			wake_partitions(slot, notes);
		else
			SetLatch(slot->latch);
		LWLockRelease(tcc_shared->lock);
		return;
	}
	if (slot != NULL && (slot->state == TCC_SLOT_REQUESTED ||
						 slot->state == TCC_SLOT_LAUNCHED))
	{
		/* on its way: a new worker looks at the tables when it starts */
		LWLockRelease(tcc_shared->lock);
		return;
	}
	LWLockRelease(tcc_shared->lock);

	/*
	 * No worker: the database was found without the extension (which must
	 * since have been created), or it was never seen.  Ask the launcher.
	 */
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	if (!request_slot(dboid, 0))
		ereport(WARNING,
				(errmsg("no tcc worker slot is free for database %u", dboid),
				 errdetail("At most %d databases can be served at once.",
						   TCC_MAX_WORKERS)));
	if (tcc_shared->launcher_latch != NULL)
		SetLatch(tcc_shared->launcher_latch);
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_database_partitions
 *		How many partitions the gids of database dboid are divided into now
 *		(0: no family is running).  It may change before the caller's
 *		transaction commits; tcc_wake_database_worker copes.
 */
int
tcc_database_partitions(Oid dboid)
{
	TccWorkerSlot *slot;
	int			n = 0;

	LWLockAcquire(tcc_shared->lock, LW_SHARED);
	slot = tcc_find_slot(dboid);
	if (slot != NULL && slot->pid != 0)
		n = slot->ndispatchers;
	LWLockRelease(tcc_shared->lock);
	return n;
}

/*
 * tcc_stop_database_worker
 *		Stop the worker of database dboid, before a command that needs the
 *		database to have no other connections (DROP DATABASE, ALTER
 *		DATABASE ... RENAME, CREATE DATABASE ... TEMPLATE).
 *
 * The launcher starts it again after TCC_STOP_PAUSE, when the database
 * still exists.  The command itself waits a few seconds for the worker to
 * go; a worker exits at its next interrupt check, which every wait in it
 * makes, even while a participant is slow.
 */
void
tcc_stop_database_worker(Oid dboid)
{
	TccWorkerSlot *slot;

	if (tcc_shared == NULL || !OidIsValid(dboid))
		return;

	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	slot = tcc_find_slot(dboid);
	if (slot != NULL)
	{
		slot->stop_requested = true;
		if (slot->state == TCC_SLOT_REQUESTED)
			slot->not_before = GetCurrentTimestamp() +
				TCC_STOP_PAUSE * USECS_PER_SEC;
		if (slot->pid != 0)
			kill(slot->pid, SIGTERM);
	}
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_wait_bucket_variable
 *		The condition variable of tcc.wait bucket bucket (see wakeup.c);
 *		the shared memory must exist.
 */
ConditionVariable *
tcc_wait_bucket_variable(int bucket)
{
	Assert(tcc_shared != NULL);
	Assert(bucket >= 0 && bucket < TCC_WAIT_BUCKETS);

	return &tcc_shared->waiters[bucket];
}

/* ------------------------------------------------------------------------
 * The launcher
 * ------------------------------------------------------------------------
 */

/*
 * tcc_launcher_detach
 *		Forget the launcher's latch when it exits.
 */
static void
tcc_launcher_detach(int code, Datum arg)
{
	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	tcc_shared->launcher_latch = NULL;
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_launcher_attach
 *		Publish the launcher's latch, so backends can wake it.
 *
 * Slots left launched by a previous launcher (one that exited with an
 * error) have no handle in this one; they are requested again, and a
 * worker that is in fact still running refuses to start twice.
 */
void
tcc_launcher_attach(void)
{
	int			i;

	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	tcc_shared->launcher_latch = MyLatch;
	for (i = 0; i < TCC_MAX_WORKERS; i++)
	{
		if (tcc_shared->slots[i].state == TCC_SLOT_LAUNCHED)
			tcc_shared->slots[i].state = TCC_SLOT_REQUESTED;
	}
	LWLockRelease(tcc_shared->lock);
	before_shmem_exit(tcc_launcher_detach, (Datum) 0);
}

/*
 * tcc_launcher_sync_databases
 *		Given the databases that now exist and accept connections, request a
 *		worker for each one not seen before and forget slots of databases
 *		that are gone.
 *
 * A database already known to lack the extension stays absent: a backend
 * requests it again when the extension is used there.
 */
void
tcc_launcher_sync_databases(Oid *dboids, int ndbs)
{
	int			i,
				j;
	bool		warned = false;

	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < TCC_MAX_WORKERS; i++)
	{
		TccWorkerSlot *slot = &tcc_shared->slots[i];
		bool		exists = false;

		if (slot->state != TCC_SLOT_REQUESTED &&
			slot->state != TCC_SLOT_ABSENT)
			continue;			/* running or launched: leave it */
		for (j = 0; j < ndbs && !exists; j++)
			exists = (dboids[j] == slot->dboid);
		if (!exists)
			slot->state = TCC_SLOT_FREE;
	}
	for (j = 0; j < ndbs; j++)
	{
		if (tcc_find_slot(dboids[j]) == NULL &&
			!request_slot(dboids[j], 0) && !warned)
		{
			ereport(WARNING,
					(errmsg("tcc can serve at most %d databases",
							TCC_MAX_WORKERS),
					 errdetail("Databases beyond that get no worker unless "
							   "others are dropped.")));
			warned = true;
		}
	}
	LWLockRelease(tcc_shared->lock);
}

/*
 * tcc_launcher_next_request
 *		A database whose worker is due to be launched now, marked launched;
 *		InvalidOid when there is none.  *next_at is lowered to the time the
 *		next deferred request becomes due.
 */
Oid
tcc_launcher_next_request(TimestampTz now, TimestampTz *next_at)
{
	Oid			dboid = InvalidOid;
	int			i;

	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < TCC_MAX_WORKERS; i++)
	{
		TccWorkerSlot *slot = &tcc_shared->slots[i];

		if (slot->state != TCC_SLOT_REQUESTED)
			continue;
		if (slot->not_before > now)
		{
			if (slot->not_before < *next_at)
				*next_at = slot->not_before;
			continue;
		}
		slot->state = TCC_SLOT_LAUNCHED;
		slot->stop_requested = false;
		dboid = slot->dboid;
		break;
	}
	LWLockRelease(tcc_shared->lock);

	return dboid;
}

/*
 * tcc_launcher_worker_gone
 *		The worker the launcher registered for dboid has stopped (or could
 *		not be registered): if it never attached to its slot (it failed to
 *		start, or found another worker there), request it again after a
 *		pause.
 *
 * A worker that did attach puts its slot back itself when it exits (see
 * worker_detach in shmem_worker.c), which also covers workers started by
 * an earlier launcher that this one has no handle for.
 */
void
tcc_launcher_worker_gone(Oid dboid)
{
	TccWorkerSlot *slot;

	LWLockAcquire(tcc_shared->lock, LW_EXCLUSIVE);
	slot = tcc_find_slot(dboid);

	/*
	 * pid != 0 means a worker is attached: the one that stopped was a
	 * duplicate that tcc_worker_attach turned away, and the slot belongs to
	 * the worker that runs.  A worker that stopped itself, even by an
	 * error, detached first.
	 */
	if (slot != NULL && slot->state == TCC_SLOT_LAUNCHED && slot->pid == 0)
	{
		slot->state = TCC_SLOT_REQUESTED;
		slot->not_before = GetCurrentTimestamp() +
			(slot->stop_requested ? TCC_STOP_PAUSE : TCC_RESTART_PAUSE) *
			USECS_PER_SEC;
		slot->stop_requested = false;
	}
	LWLockRelease(tcc_shared->lock);
}

/* ------------------------------------------------------------------------
 * tcc.worker
 * ------------------------------------------------------------------------
 */

/*
 * tcc_copy_slots
 *		Copy every slot into slots (TCC_MAX_WORKERS of them) under the lock,
 *		so that each is one consistent snapshot; false without shared
 *		memory (tcc not preloaded), when there are none.
 */
bool
tcc_copy_slots(TccWorkerSlot *slots)
{
	if (tcc_shared == NULL)
		return false;

	LWLockAcquire(tcc_shared->lock, LW_SHARED);
	memcpy(slots, tcc_shared->slots, sizeof(TccWorkerSlot) * TCC_MAX_WORKERS);
	LWLockRelease(tcc_shared->lock);
	return true;
}
