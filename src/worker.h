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
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "tcc.h"

/* dispatch.c */
extern MemoryContext tcc_calls_context;
extern void tcc_dispatch_init(void);
extern void tcc_add_call(List **list, TccCall *call);
extern void tcc_free_call(TccCall *call);
extern bool tcc_dispatch(List **done, TimestampTz *next_due);

/* outcome.c */
extern void tcc_take_call_counts(uint64 *succeeded, uint64 *failed);
extern bool tcc_record_outcome(TccCall *call);
extern List *tcc_record_outcomes(List *done);

/* local.c */
extern bool tcc_run_local_call(TccCall *call);

/* housekeeping.c */
extern bool tcc_begin_round(const char *activity);
extern void tcc_end_round(void);
extern bool tcc_housekeeping(void);

#endif							/* TCC_WORKER_H */
