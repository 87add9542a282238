/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The tcc worker of one database: drives phase two.
 *
 * The launcher (launcher.c) starts one worker per database where tcc is
 * installed: the leader of that database's family (family.c), which also
 * serves partition 0 of its gids.  Every dispatcher (the leader and the
 * other tcc.dispatchers - 1) runs the same loop, in which it
 *
 *	1. records the outcomes of the calls that came back (one transaction for
 *	   all of them), moving branches and global transactions on;
 *	2. reads the branches of its partition that became due (confirming or
 *	   cancelling, with next_attempt_at in the past), sends remote actions
 *	   to their participants over cached libpq connections without waiting
 *	   for the answers (remote_pipeline.c), owners taking turns, and hands
 *	   local actions to runner processes (local_pool.c, runner.c), which
 *	   run them as the transactions' owners and record their outcomes in
 *	   the same transactions;
 *	3. sleeps until a call comes back (remote_wait.c), a runner finishes,
 *	   a backend wakes it at the commit of a transaction that created work
 *	   (wakeup.c), the next retry is due, or tcc.naptime passes.
 *
 * Deadlines and retention are the housekeeper's (housekeeping.c), so that
 * they never delay a due call.
 *
 * Every change of state is guarded by the status it expects, under the row
 * lock of the global transaction, so the worker and the SQL API cannot
 * overwrite each other (see coordinator.c).  Recording an outcome takes
 * that lock without waiting: an outcome whose row a user holds (a
 * repeated commit) is recorded in a later round.
 *
 * What an outcome does depends on the mode (doc/design.md, States and
 * Running an action).  A TCC transaction's confirms (or cancels) are all due
 * at once, and it ends when the last one succeeds.  Saga and msg steps run
 * one at a time, in order.  A saga's forward step that fails for good stops
 * the saga: its completed steps are compensated one at a time, newest first
 * (outcome.c).  Every other action must succeed in the end and is retried
 * until tcc.max_attempts, after which its transaction is failed.
 * Whatever ends a transaction, or fails it, wakes its tcc.wait callers at
 * commit.
 *
 * Delivery is at least once.  The outcome of a call is recorded after the
 * participant answered; a crash in between (of either side) means the call
 * is made again, which the participant's fence turns into a no-op.  Nothing
 * is recorded before a call, so a crash never loses one.
 *
 * The jobs are in files of their own: dispatch.c (what is due, sending it,
 * the calls in flight), outcome.c (recording outcomes, retry policy, saga
 * compensation), local_pool.c and runner.c (local actions), family.c (the
 * processes of a database), housekeeping.c (deadlines and retention); this
 * file has the loop and the settings every tcc process pins.
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

/*
 * The planner settings of tcc's own statements in its processes (see
 * tcc_worker_pin_session).  Generic plans, because a custom plan for a
 * status given as a constant could use a partial index whose predicate
 * that constant implies.
 */
const TccPin tcc_planner_pins[] = {
	{"enable_seqscan", "off"},
	{"enable_bitmapscan", "off"},
	{"enable_sort", "off"},
	{"enable_hashjoin", "off"},
	{"enable_mergejoin", "off"},
	{"enable_material", "off"},
	{"plan_cache_mode", "force_generic_plan"},
	{NULL, NULL}
};

/*
 * How long a dispatcher waits for more answers before recording them
 * (gather_answers): with fewer than TCC_GATHER_DEEP calls in flight, and
 * with a deep pipeline; and the most answers it gathers for one round.
 */
#define TCC_GATHER_MS		1
#define TCC_GATHER_DEEP		16
#define TCC_GATHER_DEEP_MS	4
#define TCC_GATHER_MAX		64

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
 * pin_setting
 *		Set name to value for the whole session, whatever the configuration
 *		or ALTER DATABASE ... SET says.
 */
static void
pin_setting(const char *name, const char *value)
{
	SetConfigOption(name, value, PGC_SUSET, PGC_S_SESSION);
}

/*
 * tcc_worker_pin_session
 *		Pin the settings under which tcc's own statements run in every
 *		process of a family: dispatchers, housekeeper and runners.
 *
 * tcc's statements run as the bootstrap superuser: no user object may be
 * found before the built-in one.  Its transactions are writable READ
 * COMMITTED ones (its guarded UPDATEs rely on that) and are not cut short
 * by timeouts meant for clients; local actions get tcc.call_timeout of
 * their own.
 *
 * The planner settings (tcc_planner_pins) keep the plans of tcc's
 * statements the same whatever the statistics say: an index range scan in
 * the order of the due index, lookups by primary key, nested loops.
 * Without them, statistics taken while few branches were due made the
 * status UPDATE scan the due index and the due query sort the backlog,
 * which grew with the backlog until an ANALYZE during it.  Every one of
 * tcc's statements has an index path, so disabling the others never leaves
 * one without a plan.  Local actions run with these put back to the
 * server's values (action.c).
 */
void
tcc_worker_pin_session(void)
{
	int			i;

	pin_setting("search_path", "pg_catalog, pg_temp");
	pin_setting("default_transaction_isolation", "read committed");
	pin_setting("default_transaction_read_only", "off");
	pin_setting("statement_timeout", "0");
	pin_setting("lock_timeout", "0");
	pin_setting("idle_in_transaction_session_timeout", "0");
	for (i = 0; tcc_planner_pins[i].name != NULL; i++)
		pin_setting(tcc_planner_pins[i].name, tcc_planner_pins[i].value);
}

/*
 * worker_start
 *		Connect the leader to database dboid and take its slot, pin the
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
	tcc_worker_pin_session();

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
 * tcc_sleep_time
 *		How long a tcc process may sleep, in milliseconds: until wake_at
 *		(0: no time is set, so tcc.naptime).  It also publishes this
 *		process's statistics, which may ask for a shorter sleep.
 */
long
tcc_sleep_time(TimestampTz wake_at)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms;
	long		stats_ms;

	if (wake_at == 0)
		sleep_ms = tcc_naptime;
	else
		sleep_ms = wake_at > now ? (long) ((wake_at - now + 999) / 1000) : 0;
	sleep_ms = Min(sleep_ms, tcc_naptime);

	/*
	 * Publish what this process's transactions did to the cumulative
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
 * leader_duties
 *		What only the leader does in each round: start again the children
 *		that stopped, and, while its family has no housekeeper, the
 *		housekeeping every tcc.naptime.  *wake_at is lowered to when this
 *		must be done next.
 */
static void
leader_duties(TimestampTz *wake_at)
{
	static TimestampTz next_housekeeping = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (tcc_family_watch(wake_at))
		return;
	if (now >= next_housekeeping)
	{
		if (!tcc_housekeeping())
			worker_exit_absent();
		next_housekeeping = now + (int64) tcc_naptime * 1000;
	}
	if (*wake_at == 0 || next_housekeeping < *wake_at)
		*wake_at = next_housekeeping;
}

/*
 * gather_answers
 *		Once a round has an answer, wait a little for more answers of the
 *		calls still in flight, so that the next round records many outcomes
 *		rather than one.
 *
 * Every round costs two transactions and a read of the due rows, and a
 * connection answers its pipelined calls one at a time: without this a
 * round came for every answer (about 1.3 outcomes per round in a remote
 * drain).  Nothing waits when no other call is in flight, so a lone call
 * is recorded as soon as before.
 *
 * With a shallow pipeline the wait is short and ends at a wake-up, which
 * is new work to send.  With a deep one (TCC_GATHER_DEEP calls in flight)
 * it is longer and goes on through wake-ups: a call sent now would only
 * be answered after those in flight before it on its connection, so
 * sending it a few milliseconds later costs it nothing, while clients
 * that commit all the time would otherwise end every gathering at once.
 * The latch is reset for that; the round that follows looks for what it
 * announced (new due branches are noted in shared memory, a signal sets
 * its own flag) just as if it had ended the wait.
 */
static void
gather_answers(List **done)
{
	bool		deep;
	TimestampTz until;

	if (*done == NIL)
		return;
	deep = tcc_remote_in_flight() >= TCC_GATHER_DEEP;
	until = GetCurrentTimestamp() +
		(deep ? TCC_GATHER_DEEP_MS : TCC_GATHER_MS) * 1000;
	while (tcc_remote_in_flight() > 0 &&
		   list_length(*done) < TCC_GATHER_MAX &&
		   GetCurrentTimestamp() < until)
	{
		if (MyLatch->is_set)
		{
			if (!deep)
				break;
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		tcc_remote_wait(1, done);
	}
}

/*
 * tcc_dispatch_loop
 *		The loop of dispatcher partition of npartitions (0 is the leader).
 *
 * SIGTERM is handled by die(): the dispatcher stops at the next interrupt
 * check, which every wait makes (the waits for participants included), so
 * a slow participant cannot delay a shutdown.
 */
void
tcc_dispatch_loop(int partition, int npartitions)
{
	List	   *done = NIL;		/* calls with an outcome to record */
	List	   *deferred = NIL; /* ... whose transaction was busy */
	MemoryContext loop_context;

	tcc_dispatch_init(partition, npartitions);
	tcc_remote_init(true);
	loop_context = AllocSetContextCreate(TopMemoryContext, "tcc worker loop",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz wake_at = 0;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (partition != 0 && tcc_child_orphaned())
			proc_exit(0);

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

		if (partition == 0)
			leader_duties(&wake_at);

		if (!tcc_dispatch(&done, &wake_at))
			worker_exit_absent();
		publish_counts();

		/* calls that failed before being sent are recorded right away */
		if (done != NIL)
			continue;
		/* (deferred ones wait, at most a naptime, for their row's lock) */

		if (tcc_remote_in_flight() == 0)
			tcc_worker_set_state(TCC_SLOT_IDLE);
		MemoryContextSwitchTo(loop_context);
		tcc_remote_wait(tcc_sleep_time(wake_at), &done);
		gather_answers(&done);
	}
}

/*
 * tcc_worker_main
 *		The body of the leader of the database whose OID is main_arg.
 */
void
tcc_worker_main(Datum main_arg)
{
	int			npartitions;

	worker_start(DatumGetObjectId(main_arg));
	npartitions = tcc_family_start();

	ereport(LOG,
			(errmsg("tcc worker started for database \"%s\"",
					my_database_name),
			 errdetail("Its gids are divided among %d dispatchers.",
					   npartitions)));

	tcc_dispatch_loop(0, npartitions);
}
