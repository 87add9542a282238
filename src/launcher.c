/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The tcc launcher: one background worker per server that starts a
 *	  worker (worker.c) for every database where tcc is installed.
 *
 * Nobody configures which databases are served.  When the server starts
 * (and after a crash, or a promotion: the launcher starts only once
 * recovery has finished, so a standby runs no worker at all) the launcher
 * lists the databases that accept connections and starts a worker in each;
 * a worker that finds no tcc extension in its database says so in its
 * shared-memory slot and exits, and the database is not probed again.
 * Later, a backend that uses tcc in a database with no worker (the
 * extension was created after the probe) asks the launcher for one at
 * commit, and new databases are found by listing them again every
 * TCC_RESCAN_INTERVAL seconds.  So pending work resumes after a restart
 * without any client action.
 *
 * The launcher is the only process that registers workers, which is what
 * keeps a database from getting two (see shmem.c).  It watches them through
 * their handles: a worker that stops on an error is started again after a
 * pause, so a participant's bad day cannot leave work behind for good.
 *
 * src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "tcc.h"
#include "tcc_shmem.h"
#include "worker.h"

/* seconds between two listings of the databases */
#define TCC_RESCAN_INTERVAL	10

/*
 * The workers this launcher registered and has not seen stop.  A database
 * can have two for a moment (one exiting, its successor registered), hence
 * twice the slots.
 */
typedef struct LaunchedWorker
{
	Oid			dboid;
	BackgroundWorkerHandle *handle;
} LaunchedWorker;

static LaunchedWorker launched[2 * TCC_MAX_WORKERS];
static int	nlaunched = 0;

/*
 * tcc_init_bgworker
 *		Fill in *worker for a tcc process whose body is function: it
 *		connects to a database, starts only once recovery has finished, and
 *		is not restarted by the postmaster (whoever starts it watches it).
 */
void
tcc_init_bgworker(BackgroundWorker *worker, const char *function,
				  const char *type)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "tcc");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", type);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
}

/*
 * tcc_register_launcher
 *		Register the launcher with the postmaster (from _PG_init, while
 *		shared_preload_libraries is processed).
 */
void
tcc_register_launcher(void)
{
	BackgroundWorker worker;

	tcc_init_bgworker(&worker, "tcc_launcher_main", "tcc launcher");
	worker.bgw_restart_time = TCC_RESTART_PAUSE;
	RegisterBackgroundWorker(&worker);
}

/*
 * list_databases
 *		The OIDs of the databases a worker could connect to, in
 *		*dboids (palloc'd in the caller's context); returns how many.
 *
 * Templates are left out: nobody runs transactions in them, and a worker
 * connected to one would make CREATE DATABASE from it fail.
 */
static int
list_databases(Oid **dboids)
{
	MemoryContext caller = CurrentMemoryContext;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	int			n = 0;
	int			size = 16;

	*dboids = palloc(size * sizeof(Oid));

	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		MemoryContext oldcontext;

		if (!db->datallowconn || db->datistemplate ||
			db->datconnlimit == DATCONNLIMIT_INVALID_DB)
			continue;

		/* the transaction's memory goes at commit; the list must not */
		oldcontext = MemoryContextSwitchTo(caller);
		if (n == size)
		{
			size *= 2;
			*dboids = repalloc(*dboids, size * sizeof(Oid));
		}
		(*dboids)[n++] = db->oid;
		MemoryContextSwitchTo(oldcontext);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();

	return n;
}

/*
 * launch_worker
 *		Register a worker for database dboid; false when the postmaster has
 *		no background worker slot free (max_worker_processes).
 */
static bool
launch_worker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext oldcontext;

	if (nlaunched == lengthof(launched))
		return false;

	/* the launcher restarts workers itself, see shmem.c */
	tcc_init_bgworker(&worker, "tcc_worker_main", "tcc worker");
	snprintf(worker.bgw_name, BGW_MAXLEN, "tcc worker for database %u",
			 dboid);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		MemoryContextSwitchTo(oldcontext);
		return false;
	}
	MemoryContextSwitchTo(oldcontext);

	launched[nlaunched].dboid = dboid;
	launched[nlaunched].handle = handle;
	nlaunched++;

	return true;
}

/*
 * reap_workers
 *		Notice the workers that stopped since the last look.
 *
 * The postmaster signals the launcher (bgw_notify_pid) when one stops,
 * which sets its latch.
 */
static void
reap_workers(void)
{
	int			i = 0;

	while (i < nlaunched)
	{
		pid_t		pid;

		if (GetBackgroundWorkerPid(launched[i].handle, &pid) ==
			BGWH_STOPPED)
		{
			tcc_launcher_worker_gone(launched[i].dboid);
			pfree(launched[i].handle);
			launched[i] = launched[--nlaunched];
		}
		else
			i++;
	}
}

/*
 * tcc_launcher_main
 *		The launcher's body.
 */
void
tcc_launcher_main(Datum main_arg)
{
	TimestampTz next_scan = 0;
	bool		warned_no_slot = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* no database: pg_database is a shared catalog */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	tcc_launcher_attach();

	ereport(LOG, (errmsg("tcc launcher started")));

	while (!ShutdownRequestPending)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz next_at;
		Oid			dboid;
		long		sleep_ms;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		reap_workers();

		if (now >= next_scan)
		{
			Oid		   *dboids;
			int			ndbs = list_databases(&dboids);

			tcc_launcher_sync_databases(dboids, ndbs);
			pfree(dboids);
			next_scan = now + TCC_RESCAN_INTERVAL * USECS_PER_SEC;
		}

		next_at = next_scan;
		while (OidIsValid(dboid = tcc_launcher_next_request(now, &next_at)))
		{
			if (launch_worker(dboid))
			{
				warned_no_slot = false;
				continue;
			}

			/* tried again after a pause, like a worker that stopped */
			tcc_launcher_worker_gone(dboid);
			if (!warned_no_slot)
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("could not start a tcc worker for database "
								"%u", dboid),
						 errhint("Raise max_worker_processes: tcc needs one "
								 "worker per database plus its launcher.")));
			warned_no_slot = true;
			next_at = Min(next_at, now + TCC_RESTART_PAUSE * USECS_PER_SEC);
			break;
		}

		sleep_ms = (long) ((next_at - now) / 1000);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 1), PG_WAIT_EXTENSION);
	}

	/*
	 * Exit code 1, so that the postmaster starts the launcher again after
	 * a pg_terminate_backend (at shutdown it does not): with code 0 a
	 * background worker is gone for good, and so would be every worker.
	 */
	proc_exit(1);
}
