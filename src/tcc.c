/*-------------------------------------------------------------------------
 *
 * tcc.c
 *	  Entry point of the tcc extension: module magic, settings, hooks.
 *
 * The library may be loaded two ways.  From shared_preload_libraries it also
 * reserves shared memory (and, later, starts the background worker); loaded
 * on first use by a backend it defines the settings only, and the coordinator
 * and fence functions work all the same.
 *
 * src/tcc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include "tcc.h"

PG_MODULE_MAGIC;

/* tcc.default_timeout: the try phase's length when tcc.begin gets none */
int			tcc_default_timeout = 60;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

/*
 * tcc_shmem_request_hook
 *		Ask for the shared memory tcc needs; PG15 allows this only here.
 */
static void
tcc_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	tcc_shmem_request();
}

/*
 * tcc_shmem_startup_hook
 *		Attach to (or create) tcc's shared memory.
 */
static void
tcc_shmem_startup_hook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	tcc_shmem_startup();
}

/*
 * _PG_init
 *		Define the settings and, when preloaded, install the shared memory
 *		hooks.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("tcc.default_timeout",
							"Length of a global transaction's try phase when "
							"tcc.begin is given no timeout.",
							"The worker cancels a transaction that is still "
							"trying when its try phase is over.",
							&tcc_default_timeout,
							60,
							1,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("tcc");

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = tcc_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = tcc_shmem_startup_hook;
}
