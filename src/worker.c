/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The tcc worker of one database: drives phase two.
 *
 * The launcher (launcher.c) starts one worker per database where tcc is
 * installed.  In a loop the worker
 *
 *	1. records the outcomes of the calls that came back (one transaction for
 *	   all of them), moving branches and global transactions on;
 *	2. every tcc.naptime, cancels the transactions still trying after their
 *	   deadline (reason "timeout") and purges what tcc.retention and
 *	   tcc.fence_retention allow, in small batches;
 *	3. finds the branches that are due (confirming or cancelling, with
 *	   next_attempt_at in the past) and sends their actions: to a remote
 *	   participant over a cached libpq connection without waiting for the
 *	   answer (remote_pipeline.c), or, for a local action, runs it here as
 *	   the transaction's owner and records its outcome in the same
 *	   transaction;
 *	4. sleeps until a call comes back (remote_wait.c), a backend wakes it at
 *	   the commit of a transaction that created work (wakeup.c), the next
 *	   retry is due, or tcc.naptime passes.
 *
 * Every change of state is guarded by the status it expects, under the row
 * lock of the global transaction, so the worker and the SQL API cannot
 * overwrite each other (see coordinator.c).  The timeout scan skips rows
 * that are locked, so a transaction being committed right now is looked at
 * again a naptime later instead of being waited for; recording an outcome
 * does wait for the row lock, which a user holds only for the length of
 * one of the API's calls on a transaction in phase two (a repeated commit).
 *
 * What an outcome does depends on the mode (doc/design.md, States and
 * Running an action).  A TCC transaction's confirms (or cancels) are all due
 * at once, and it ends when the last one succeeds.  Saga and msg steps run
 * one at a time, in order.  A saga's forward step that fails for good stops
 * the saga: its completed steps are compensated one at a time, newest first
 * (record_failure, abort_saga).  Every other action must succeed in the end
 * and is retried until tcc.max_attempts, after which its transaction is
 * failed.  Whatever ends a transaction, or fails it, wakes its tcc.wait
 * callers at commit.
 *
 * Delivery is at least once.  The outcome of a call is recorded after the
 * participant answered; a crash in between (of either side) means the call
 * is made again, which the participant's fence turns into a no-op.  Nothing
 * is recorded before a call, so a crash never loses one.
 *
 * The jobs are in files of their own: dispatch.c (what is due, sending it,
 * the calls in flight), outcome.c (recording outcomes, retry policy, saga
 * compensation), local.c (local actions), housekeeping.c (deadlines and
 * retention); this file has the loop.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/syscache.h"

#include "tcc.h"
#include "tcc_shmem.h"
#include "worker.h"

/* this worker's database, for messages */
static char *my_database_name = NULL;

/*
 * database_is_template
 *		Whether database dboid is marked as a template.
 */
static bool
database_is_template(Oid dboid)
{
	HeapTuple	tuple;
	bool		result;

	tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for database %u", dboid);
	result = ((Form_pg_database) GETSTRUCT(tuple))->datistemplate;
	ReleaseSysCache(tuple);

	return result;
}

/*
 * worker_exit_absent
 *		The extension is not (or no longer) installed here: say so and
 *		exit, so the launcher does not start this worker again until the
 *		extension is used.
 */
static void
worker_exit_absent(void)
{
	ereport(LOG,
			(errmsg("tcc worker for database \"%s\" exits: the extension "
					"is not installed there, or the database is a template",
					my_database_name)));
	tcc_worker_mark_absent();
	proc_exit(0);
}

/*
 * worker_start
 *		Connect the worker to database dboid and take its slot, pin the
 *		settings of its own session, and exit at once when the extension is
 *		not installed there or the database is a template.
 */
static void
worker_start(Oid dboid)
{
	bool		extension_exists;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	if (!tcc_worker_attach(dboid))
	{
		ereport(LOG,
				(errmsg("another tcc worker already serves database %u",
						dboid)));
		proc_exit(0);
	}

	/*
	 * tcc's own statements run as the worker's superuser: no user object
	 * may be found before the built-in one.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET,
					PGC_S_SESSION);

	/*
	 * Whatever ALTER DATABASE ... SET says, the worker's own transactions
	 * are writable READ COMMITTED ones (its guarded UPDATEs rely on that)
	 * and are not cut short by timeouts meant for clients; local actions
	 * get tcc.call_timeout of their own.
	 */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_read_only", "off",
					PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("idle_in_transaction_session_timeout", "0",
					PGC_SUSET, PGC_S_SESSION);

	StartTransactionCommand();

	/*
	 * A template is copied by CREATE DATABASE, which fails while anybody is
	 * connected to it: the extension in a template is there to be copied,
	 * not served.
	 */
	extension_exists = OidIsValid(get_extension_oid("tcc", true)) &&
		!database_is_template(dboid);
	my_database_name = MemoryContextStrdup(TopMemoryContext,
										   get_database_name(dboid));
	CommitTransactionCommand();
	if (!extension_exists)
		worker_exit_absent();
}

/*
 * record_done
 *		Record the outcomes of the calls in *done, and of those in *deferred
 *		whose transaction was busy last time; the calls whose transaction
 *		is busy still become the new *deferred, and *done is emptied.
 */
static void
record_done(List **done, List **deferred)
{
	List	   *again;

	*done = list_concat(*done, *deferred);
	list_free(*deferred);
	again = tcc_record_outcomes(*done);
	list_free(*done);
	*done = NIL;
	*deferred = again;
}

/*
 * publish_counts
 *		Add the calls recorded since the last round to this worker's
 *		counters in shared memory, with its open connections (tcc.worker).
 */
static void
publish_counts(void)
{
	uint64		succeeded;
	uint64		failed;

	tcc_take_call_counts(&succeeded, &failed);
	tcc_worker_count(succeeded, failed, tcc_remote_open_connections());
}

/*
 * sleep_time
 *		How long the worker may sleep, in milliseconds: until the next
 *		housekeeping or until next_due (0: no branch waits), whichever
 *		comes first.  It also publishes this worker's statistics, which
 *		may ask for a shorter sleep.
 */
static long
sleep_time(TimestampTz next_housekeeping, TimestampTz next_due)
{
	TimestampTz now;
	TimestampTz wake_at;
	long		sleep_ms;
	long		stats_ms;

	wake_at = next_housekeeping;
	if (next_due != 0 && next_due < wake_at)
		wake_at = next_due;
	now = GetCurrentTimestamp();
	sleep_ms = wake_at > now ? (long) ((wake_at - now + 999) / 1000) : 0;

	/*
	 * Publish what this worker's transactions did to the cumulative
	 * statistics (at most once a second), as a backend does when idle:
	 * otherwise autovacuum never hears of the rows it updates and deletes,
	 * nor pg_stat_* of its commits and WAL, until it exits.  Pending counts
	 * are retried within the interval it returns.
	 */
	stats_ms = pgstat_report_stat(false);
	if (stats_ms > 0 && stats_ms < sleep_ms)
		sleep_ms = stats_ms;
	return sleep_ms;
}

/*
 * tcc_worker_main
 *		The body of the worker of the database whose OID is main_arg.
 *
 * SIGTERM is handled by die(): the worker stops at the next interrupt
 * check, which every wait makes (the waits for participants included), so
 * a slow participant cannot delay a shutdown.
 */
void
tcc_worker_main(Datum main_arg)
{
	List	   *done = NIL;		/* calls with an outcome to record */
	List	   *deferred = NIL; /* ... whose transaction was busy */
	TimestampTz next_housekeeping = 0;
	MemoryContext loop_context;

	worker_start(DatumGetObjectId(main_arg));

	tcc_dispatch_init();
	tcc_remote_init(true);
	loop_context = AllocSetContextCreate(TopMemoryContext, "tcc worker loop",
										 ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("tcc worker started for database \"%s\"",
					my_database_name)));

	for (;;)
	{
		TimestampTz now;
		TimestampTz next_due;
		long		sleep_ms;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		/* what each round allocates outside its transactions goes here */
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		tcc_worker_set_state(TCC_SLOT_WORKING);

		if (done != NIL || deferred != NIL)
			record_done(&done, &deferred);

		now = GetCurrentTimestamp();
		if (now >= next_housekeeping)
		{
			if (!tcc_housekeeping())
				worker_exit_absent();
			next_housekeeping = now + (int64) tcc_naptime * 1000;
		}

		if (!tcc_dispatch(&done, &next_due))
			worker_exit_absent();
		publish_counts();

		/* calls that failed before being sent are recorded right away */
		if (done != NIL)
			continue;
		/* (deferred ones wait, at most a naptime, for their row's lock) */

		sleep_ms = sleep_time(next_housekeeping, next_due);
		if (tcc_remote_in_flight() == 0)
			tcc_worker_set_state(TCC_SLOT_IDLE);
		MemoryContextSwitchTo(loop_context);
		tcc_remote_wait(sleep_ms, &done);
	}
}
