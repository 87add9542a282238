/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  tcc's shared memory: one slot per background worker, holding the live
 *	  state that the tcc.worker view shows.
 *
 * The area exists only when tcc is in shared_preload_libraries; without it
 * there is no worker either, and tcc.worker is simply empty.  A worker owns
 * its slot and is the only writer of its counters; readers take the lock in
 * shared mode, so a row of tcc.worker is one consistent snapshot of a slot.
 *
 * src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_worker_status);

/* The most workers (one per served database) that can run at once */
#define TCC_MAX_WORKERS		64

typedef enum TccWorkerState
{
	TCC_WORKER_STARTING,		/* connecting to its database */
	TCC_WORKER_IDLE,			/* waiting for work or for the naptime */
	TCC_WORKER_WORKING,			/* driving phase two */
	TCC_WORKER_STANDBY			/* on a standby, waiting for promotion */
} TccWorkerState;

static const char *const worker_state_names[] = {
	[TCC_WORKER_STARTING] = "starting",
	[TCC_WORKER_IDLE] = "idle",
	[TCC_WORKER_WORKING] = "working",
	[TCC_WORKER_STANDBY] = "standby",
};

typedef struct TccWorkerSlot
{
	bool		in_use;
	Oid			dboid;
	int			pid;
	TccWorkerState state;
	TimestampTz last_wakeup;
	uint64		calls_succeeded;
	uint64		calls_failed;
	int			open_connections;
} TccWorkerSlot;

typedef struct TccSharedState
{
	LWLock	   *lock;
	TccWorkerSlot workers[TCC_MAX_WORKERS];
} TccSharedState;

static TccSharedState *tcc_shared = NULL;

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
		memset(tcc_shared, 0, sizeof(TccSharedState));
		tcc_shared->lock = &(GetNamedLWLockTranche("tcc"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * tcc_worker_status
 *		tcc.worker_status(): one row per worker slot in use.
 */
Datum
tcc_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TccWorkerSlot slots[TCC_MAX_WORKERS];
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	if (tcc_shared == NULL)
		return (Datum) 0;

	/* copy under the lock, look up database names after releasing it */
	LWLockAcquire(tcc_shared->lock, LW_SHARED);
	memcpy(slots, tcc_shared->workers, sizeof(slots));
	LWLockRelease(tcc_shared->lock);

	for (i = 0; i < TCC_MAX_WORKERS; i++)
	{
		TccWorkerSlot *slot = &slots[i];
		Datum		values[7];
		bool		nulls[7] = {0};
		char	   *datname;
		NameData	datname_data;

		if (!slot->in_use)
			continue;

		datname = get_database_name(slot->dboid);
		if (datname)
		{
			namestrcpy(&datname_data, datname);
			values[0] = NameGetDatum(&datname_data);
		}
		else
			nulls[0] = true;
		values[1] = Int32GetDatum(slot->pid);
		values[2] = CStringGetTextDatum(worker_state_names[slot->state]);
		if (slot->last_wakeup != 0)
			values[3] = TimestampTzGetDatum(slot->last_wakeup);
		else
			nulls[3] = true;
		values[4] = Int64GetDatum((int64) slot->calls_succeeded);
		values[5] = Int64GetDatum((int64) slot->calls_failed);
		values[6] = Int32GetDatum(slot->open_connections);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}

	return (Datum) 0;
}
