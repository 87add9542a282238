/*-------------------------------------------------------------------------
 *
 * tcc_shmem.h
 *	  The shared-memory slots through which the launcher, the workers and
 *	  the backends of tcc find each other, and the condition variables of
 *	  tcc.wait.  See shmem.c; wakeup.c has the wake-ups at commit, and
 *	  worker_status.c the tcc.worker view.
 *
 * src/tcc_shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_SHMEM_H
#define TCC_SHMEM_H

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

/* The most databases that can be served (each gets one worker) */
#define TCC_MAX_WORKERS		64

/* seconds before a worker that stopped on an error is started again */
#define TCC_RESTART_PAUSE	5

/* seconds before a worker stopped for DROP/ALTER DATABASE comes back */
#define TCC_STOP_PAUSE		10

/* the most processes that dispatch phase two for one database */
#define TCC_MAX_DISPATCHERS	8

/* background worker slots tcc leaves to others (see tcc_worker_budget) */
#define TCC_RESERVED_WORKERS	2

/* condition variables for tcc.wait: a power of two, a multiple of 64 */
#define TCC_WAIT_BUCKETS	128

typedef enum TccSlotState
{
	TCC_SLOT_FREE = 0,
	TCC_SLOT_REQUESTED,			/* the launcher should start a worker */
	TCC_SLOT_LAUNCHED,			/* registered with the postmaster */
	TCC_SLOT_STARTING,			/* the worker runs, not yet looked */
	TCC_SLOT_IDLE,				/* waiting for work or for the naptime */
	TCC_SLOT_WORKING,			/* driving phase two */
	TCC_SLOT_ABSENT				/* the extension is not installed there */
} TccSlotState;

typedef struct TccWorkerSlot
{
	Oid			dboid;
	TccSlotState state;
	TimestampTz not_before;		/* requested: not launched before this */
	bool		stop_requested; /* stopped on purpose (DROP DATABASE ...) */
	int			pid;			/* the worker's, 0 when none runs */
	Latch	   *latch;			/* the worker's, NULL when none runs */
	TimestampTz started_at;
	TimestampTz last_wakeup;
	uint64		calls_succeeded;
	uint64		calls_failed;
	int			open_connections;

	/*
	 * The worker the launcher starts (pid, latch above) leads a family of
	 * processes for its database (family.c): dispatchers 1 to
	 * ndispatchers - 1, each serving its partition of the gids as the
	 * leader serves partition 0, and a housekeeper.  A new leader bumps
	 * generation, so that a child of an earlier one cannot join.
	 */
	uint32		generation;
	int			ndispatchers;
	int			dispatcher_pid[TCC_MAX_DISPATCHERS];
	Latch	   *dispatcher_latch[TCC_MAX_DISPATCHERS];
	int			dispatcher_connections[TCC_MAX_DISPATCHERS];
	int			housekeeper_pid;
	int			runners_per_dispatcher;

	/*
	 * For dispatcher k, the earliest due time of the branches that
	 * transactions made due since it last looked (tcc_take_due_from), as a
	 * tcc_due_key; TCC_NO_DUE_KEY when none.  Its reads go on from where the
	 * last one stopped, and a transaction that committed late may have made
	 * branches due behind that point: this says how far back to look.
	 * Atomic, because committing backends lower it holding the lock only in
	 * shared mode.
	 */
	pg_atomic_uint64 due_from[TCC_MAX_DISPATCHERS];
} TccWorkerSlot;

/*
 * The due times in due_from, mapped to unsigned integers in the same
 * order, so that an atomic compare-and-exchange can keep the earliest.
 */
#define TCC_NO_DUE_KEY		PG_UINT64_MAX
#define tcc_due_key(ts)		((uint64) (ts) ^ (UINT64CONST(1) << 63))
#define tcc_due_of_key(k)	((TimestampTz) ((k) ^ (UINT64CONST(1) << 63)))

/*
 * What a committing transaction made due, for tcc_wake_database_worker:
 * the earliest due time over all partitions and, when the number of
 * partitions was known (npartitions, else 0), per partition; the earliest
 * is for every dispatcher when the number was not known or has changed
 * since.  DT_NOEND: nothing.
 */
typedef struct TccDueNotes
{
	bool		noted;			/* anything at all */
	int			npartitions;
	TimestampTz from[TCC_MAX_DISPATCHERS];
	TimestampTz earliest;
} TccDueNotes;

/* what tcc_child_attach says */
typedef enum TccChildAttach
{
	CHILD_ATTACHED,
	CHILD_WAIT,
	CHILD_REFUSED
} TccChildAttach;

/* the launcher */
extern void tcc_launcher_attach(void);
extern void tcc_launcher_sync_databases(Oid *dboids, int ndbs);
extern Oid	tcc_launcher_next_request(TimestampTz now, TimestampTz *next_at);
extern void tcc_launcher_worker_gone(Oid dboid);

/* backends, at commit (wakeup.c) */
extern bool tcc_shmem_present(void);
extern void tcc_wake_database_worker(Oid dboid, const TccDueNotes *notes);
extern int	tcc_database_partitions(Oid dboid);
extern ConditionVariable *tcc_wait_bucket_variable(int bucket);

/* a worker */
extern bool tcc_worker_attach(Oid dboid);
extern uint32 tcc_worker_generation(void);
extern int	tcc_worker_budget(void);
extern void tcc_worker_set_family(int ndispatchers, int runners);
extern int	tcc_worker_runner_budget(void);
extern TccChildAttach tcc_child_attach(Oid dboid, uint32 generation,
									   int dispatcher, int *ndispatchers);
extern bool tcc_child_orphaned(void);
extern void tcc_worker_mark_absent(void);
extern void tcc_worker_set_state(TccSlotState state);
extern TimestampTz tcc_take_due_from(void);
extern void tcc_worker_count(uint64 succeeded, uint64 failed,
							 int open_connections);

/* tcc.worker (worker_status.c) */
extern bool tcc_copy_slots(TccWorkerSlot *slots);

#endif							/* TCC_SHMEM_H */
