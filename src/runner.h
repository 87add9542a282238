/*-------------------------------------------------------------------------
 *
 * runner.h
 *	  Local actions run in processes of their own: the shared-memory slots
 *	  between a dispatcher and its runners (runner_slots.c), the runner
 *	  process (runner.c) and the dispatcher's side (local_pool.c).
 *
 * src/runner.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_RUNNER_H
#define TCC_RUNNER_H

#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "tcc.h"

/* runner processes, all databases together */
#define TCC_MAX_RUNNERS		64

/* the most local actions one runner runs in one transaction */
#define TCC_RUNNER_BATCH	32

/* milliseconds after which a batch starts no more calls (local.c) */
#define TCC_BATCH_TIME_MS	100

/* runners one dispatcher may have, the fair-share extras included */
#define TCC_MAX_RUNNERS_PER_DISPATCHER	16

/* seconds a runner waits for work before it exits */
#define TCC_RUNNER_IDLE_EXIT	60

typedef enum TccRunnerState
{
	RUNNER_FREE = 0,
	RUNNER_STARTING,			/* taken; the process is being started */
	RUNNER_IDLE,				/* the process waits for a batch */
	RUNNER_ASSIGNED,			/* a batch is in the slot */
	RUNNER_RUNNING,				/* the process runs it */
	RUNNER_DONE,				/* it committed; results are in the slot */
	RUNNER_GONE					/* the process exits, having idled enough */
} TccRunnerState;

/* what became of one call of a batch */
typedef enum TccLocalResult
{
	LOCAL_NOT_RUN = 0,			/* not reached (the batch did not finish) */
	LOCAL_SUCCEEDED,			/* ran, succeeded, recorded */
	LOCAL_FAILED,				/* ran, failed (or said false), recorded */
	LOCAL_STALE,				/* its branch had moved on: nothing to do */
	LOCAL_BUSY					/* its transaction's row was locked */
} TccLocalResult;

typedef struct TccRunnerCall
{
	char		gid[TCC_MAX_ID_LEN + 1];
	char		branch_id[TCC_MAX_ID_LEN + 1];
	BranchStatus ran_in;
	TccLocalResult result;
} TccRunnerCall;

typedef struct TccRunnerSlot
{
	TccRunnerState state;
	Oid			dboid;
	int			parent_pid;		/* the dispatcher's, 0 once it is gone */
	Latch	   *parent_latch;
	int			pid;			/* the runner's, 0 when none runs */
	Latch	   *latch;
	int			ncalls;			/* the batch */
	TccRunnerCall calls[TCC_RUNNER_BATCH];
	int			current;		/* the call under way, while running */
	TimestampTz current_since;
} TccRunnerSlot;

/* what the dispatcher learns of its runner (tcc_runner_look) */
typedef struct TccRunnerLook
{
	bool		idle;			/* waits for a batch */
	bool		finished;		/* finished one: the results are read */
	bool		ended;			/* its call overran and it was ended now */
	int			current;		/* the call under way, or -1 */
	TimestampTz limit_at;		/* when the call under way overruns, or 0 */
} TccRunnerLook;

/* runner_slots.c */
extern void tcc_runner_shmem_request(void);
extern void tcc_runner_shmem_startup(void);
extern TccRunnerSlot *tcc_runner_slot(int i);
extern void tcc_runner_lock(bool exclusive);
extern void tcc_runner_unlock(void);
extern int	tcc_runner_take_slot(Oid dboid);
extern void tcc_runner_free_slot(int i);
extern void tcc_runner_orphan_slots(void);
extern int	tcc_runner_start(BackgroundWorkerHandle **handle);
extern bool tcc_runner_assign(int i, TccCall **calls, int ncalls);
extern TccRunnerLook tcc_runner_look(int i, int ncalls,
									 TccLocalResult *results,
									 TimestampTz limit);

/* local_pool.c */
extern void tcc_local_pool_init(void);
extern void tcc_local_pool_add(TccCall *call);
extern TimestampTz tcc_local_pool_run(List **done);

/* local.c */
typedef void (*TccLocalProgress) (int i);
extern void tcc_run_local_batch(TccCall **calls, int ncalls,
								TccLocalResult *results,
								TccLocalProgress progress);

#endif							/* TCC_RUNNER_H */
