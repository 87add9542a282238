/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  The wake-ups at commit: of this database's worker, when the
 *	  transaction created work for it, and of the tcc.wait callers of the
 *	  global transactions it moved to a status tcc.wait returns on.  Both
 *	  are noted while the transaction runs and done by a transaction
 *	  callback once it has committed, so that whoever is woken sees what
 *	  it wrote.  The worker's slot and the condition variables are in
 *	  shared memory (shmem.c).
 *
 * tcc.wait sleeps on a condition variable chosen by hashing the database
 * and the gid into one of TCC_WAIT_BUCKETS, and whoever moves a global
 * transaction to a status tcc.wait returns on broadcasts that variable
 * once its transaction has committed (so the waiter, reading the status
 * again, sees it).  Buckets keep a finish from waking every waiter in the
 * cluster; a waiter woken for another gid of its bucket reads its status,
 * finds it unchanged and sleeps again.
 *
 * Without shared memory (tcc not preloaded) there is nobody to wake: no
 * worker runs, and tcc.wait reads the status again every tcc.naptime.
 *
 * src/wakeup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"

#include "tcc.h"
#include "tcc_shmem.h"

/* whether the current transaction asked for the worker to be woken */
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/* what the current transaction made due, per partition (TccDueNotes) */
static TccDueNotes due_at_commit = {0};

/* the tcc.wait buckets to broadcast when the current transaction commits */
static uint64 waiters_at_commit[TCC_WAIT_BUCKETS / 64];
static bool any_waiters_at_commit = false;

/*
 * wake_waiters
 *		Wake the tcc.wait callers of the buckets marked by the transaction
 *		that just committed.
 */
static void
wake_waiters(void)
{
	int			i;

	for (i = 0; i < TCC_WAIT_BUCKETS; i++)
		if (waiters_at_commit[i / 64] & (UINT64CONST(1) << (i % 64)))
			ConditionVariableBroadcast(tcc_wait_bucket_variable(i));
}

/*
 * forget_at_commit
 *		Nothing is to be done at the end of this transaction any more.
 */
static void
forget_at_commit(void)
{
	wake_at_commit = false;
	due_at_commit.noted = false;
	if (any_waiters_at_commit)
	{
		memset(waiters_at_commit, 0, sizeof(waiters_at_commit));
		any_waiters_at_commit = false;
	}
}

/*
 * tcc_xact_callback
 *		At commit of a transaction that created work, wake the worker; at
 *		commit of one that ended global transactions, wake their waiters.
 *
 * This runs after the commit record is written, outside any transaction:
 * it must not raise an error (that would be a PANIC) nor read catalogs.
 * Neither setting a latch nor broadcasting a condition variable can fail.
 * A lost wake-up costs at most a naptime.
 */
static void
tcc_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (due_at_commit.noted)
				tcc_wake_database_worker(MyDatabaseId, &due_at_commit);
			else if (wake_at_commit)
				tcc_wake_database_worker(MyDatabaseId, NULL);
			if (any_waiters_at_commit && tcc_shmem_present())
				wake_waiters();
			forget_at_commit();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is committed by another backend */
			forget_at_commit();
			break;
		default:
			break;
	}
}

/*
 * register_xact_callback
 *		Register tcc_xact_callback, once per process.
 */
static void
register_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(tcc_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * tcc_wake_worker_at_commit
 *		Have this database's worker woken when the current transaction
 *		commits; the coordinator functions that create work call it.
 *
 * Without shared memory (tcc not preloaded) there is no worker to wake.
 */
void
tcc_wake_worker_at_commit(void)
{
	if (!tcc_shmem_present())
		return;
	register_xact_callback();
	wake_at_commit = true;
}

/*
 * tcc_note_due_at_commit
 *		Branches of gid become due at due when the current transaction
 *		commits: have the dispatcher of gid's partition woken then, and told
 *		to read from due on, even if it has read past that point already.
 *
 * A dispatcher reads on from where its last read stopped (dispatch.c),
 * and the branches of a transaction that commits after such a read may be
 * due before that point (now() is when the transaction started): without
 * this they would be found only by a read that starts from the beginning.
 * The partition is the one of the family running now; when none runs (it
 * is being restarted) only the earliest time is kept, which every
 * dispatcher of the family running at commit is told, since its first
 * reads may have been made before this commits.
 */
void
tcc_note_due_at_commit(const char *gid, TimestampTz due)
{
	int			k;

	if (!tcc_shmem_present())
		return;
	register_xact_callback();
	if (!due_at_commit.noted)
	{
		due_at_commit.noted = true;
		due_at_commit.npartitions = tcc_database_partitions(MyDatabaseId);
		for (k = 0; k < TCC_MAX_DISPATCHERS; k++)
			due_at_commit.from[k] = DT_NOEND;
		due_at_commit.earliest = DT_NOEND;
	}
	due_at_commit.earliest = Min(due_at_commit.earliest, due);
	if (due_at_commit.npartitions > 0)
	{
		k = tcc_gid_partition(gid, due_at_commit.npartitions);
		due_at_commit.from[k] = Min(due_at_commit.from[k], due);
	}
}

/*
 * wait_bucket
 *		The tcc.wait bucket of global transaction gid of this database.
 */
static int
wait_bucket(const char *gid)
{
	uint32		hash = hash_bytes((const unsigned char *) gid, strlen(gid));

	hash = hash_combine(hash, murmurhash32((uint32) MyDatabaseId));
	return (int) (hash & (TCC_WAIT_BUCKETS - 1));
}

/*
 * tcc_wake_waiters_at_commit
 *		Have the tcc.wait callers waiting for gid woken when the current
 *		transaction commits; called by whatever moves a global transaction
 *		to a status at which tcc.wait returns.
 *
 * At commit, not now: a waiter woken earlier would read the old status
 * and sleep again, missing the change.
 */
void
tcc_wake_waiters_at_commit(const char *gid)
{
	int			bucket;

	if (!tcc_shmem_present())
		return;
	register_xact_callback();
	bucket = wait_bucket(gid);
	waiters_at_commit[bucket / 64] |= UINT64CONST(1) << (bucket % 64);
	any_waiters_at_commit = true;
}

/*
 * tcc_wait_variable
 *		The condition variable on which to wait for gid to change status, or
 *		NULL without shared memory (tcc not preloaded).
 */
ConditionVariable *
tcc_wait_variable(const char *gid)
{
	if (!tcc_shmem_present())
		return NULL;
	return tcc_wait_bucket_variable(wait_bucket(gid));
}
