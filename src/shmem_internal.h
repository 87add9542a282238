/*-------------------------------------------------------------------------
 *
 * shmem_internal.h
 *	  The layout of tcc's shared memory, for the two files that touch it
 *	  directly: shmem.c (the launcher's and the backends' side) and
 *	  shmem_worker.c (the side of the workers and their families).
 *	  Everyone else goes through the functions of tcc_shmem.h.
 *
 * src/shmem_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_SHMEM_INTERNAL_H
#define TCC_SHMEM_INTERNAL_H

#include "storage/lwlock.h"

#include "tcc_shmem.h"

typedef struct TccSharedState
{
	LWLock	   *lock;
	Latch	   *launcher_latch; /* NULL while no launcher runs */
	TccWorkerSlot slots[TCC_MAX_WORKERS];
	ConditionVariable waiters[TCC_WAIT_BUCKETS];	/* for tcc.wait */
} TccSharedState;

extern TccSharedState *tcc_shared;

extern TccWorkerSlot *tcc_find_slot(Oid dboid);

#endif							/* TCC_SHMEM_INTERNAL_H */
