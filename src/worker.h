/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Declarations shared by the files of the background worker: worker.c
 *	  (the loop), dispatch.c, outcome.c, local.c and housekeeping.c.
 *
 * src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_WORKER_H
#define TCC_WORKER_H

#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "state.h"
#include "tcc.h"

/*
 * tcc_lower_time
 *		Make *at the sooner of *at and t, where 0 means "not set".
 */
static inline void
tcc_lower_time(TimestampTz *at, TimestampTz t)
{
	if (t != 0 && (*at == 0 || t < *at))
		*at = t;
}

/* worker.c */
extern void tcc_worker_pin_session(void);
extern long tcc_sleep_time(TimestampTz wake_at);
extern void tcc_dispatch_loop(int partition, int npartitions);

/* launcher.c */
extern void tcc_init_bgworker(BackgroundWorker *worker, const char *function,
							  const char *type);

/* family.c */
extern int	tcc_family_start(void);
extern bool tcc_family_watch(TimestampTz *next_at);

/*
 * A position in the order of the due index, (next_attempt_at, gid, seq):
 * a read "from" a position reads the rows after it.  DT_NOBEGIN with an
 * empty gid is before every row.
 */
typedef struct TccDuePos
{
	TimestampTz due;
	char		gid[TCC_MAX_ID_LEN + 1];
	int32		seq;
} TccDuePos;

/* dispatch.c */
extern MemoryContext tcc_calls_context;
extern void tcc_dispatch_init(int partition, int partitions);
extern void tcc_due_pos_lower(TccDuePos *pos, const TccDuePos *to);
extern void tcc_add_call(List **list, TccCall *call);
extern void tcc_free_call(TccCall *call);
extern bool tcc_dispatch(List **done, TimestampTz *wake_at);

/* a FIFO of calls, cheap to take from however long (owners.c) */
typedef struct TccCallQueue
{
	List	   *items;			/* in tcc_calls_context */
	int			head;			/* items before this are taken */
} TccCallQueue;

/* owners.c */
extern void tcc_owners_init(void);
extern struct ArrayType *tcc_owners_passed_over(void);
extern bool tcc_owner_take(Oid owner, const TccDuePos *row);
extern void tcc_owners_rewind(const TccDuePos *pos);
extern int	tcc_owners_behind(Oid **owners);
extern int	tcc_owner_room(Oid owner, TccDuePos *from);
extern void tcc_owner_read_behind(Oid owner, const TccDuePos *last,
								  bool at_end);
extern void tcc_owner_release(TccCall *call);
extern void tcc_owner_queue_remote(TccCall *call);
extern void tcc_owners_send(List **done);
extern void tcc_queue_push(TccCallQueue *queue, TccCall *call);
extern TccCall *tcc_queue_peek(TccCallQueue *queue);
extern TccCall *tcc_queue_pop(TccCallQueue *queue);
extern void tcc_queue_unpop(TccCallQueue *queue, TccCall *call);
extern int	tcc_queue_length(TccCallQueue *queue);

/* outcome.c */
extern void tcc_take_call_counts(uint64 *succeeded, uint64 *failed);
extern void tcc_add_call_counts(uint64 succeeded, uint64 failed);
extern void tcc_record_locked_outcome(GlobalTx *tx, TccCall *call,
									  bool *to_finish);
extern List *tcc_record_outcomes(List *done);

/* housekeeping.c */
extern bool tcc_begin_round(const char *activity);
extern void tcc_end_round(void);
extern bool tcc_housekeeping(void);
extern void tcc_housekeeper_main(void);

#endif							/* TCC_WORKER_H */
