/*-------------------------------------------------------------------------
 *
 * tcc.c
 *	  Entry point of the tcc extension: module magic, settings, hooks.
 *
 * The library may be loaded two ways.  From shared_preload_libraries it also
 * reserves shared memory, registers the launcher (launcher.c) that starts a
 * worker per database, and watches for commands that need a database free
 * of connections; loaded on first use by a backend it defines the settings
 * only, and the coordinator and fence functions work all the same, with
 * nobody to drive phase two.
 *
 * src/tcc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"

#include "runner.h"
#include "tcc.h"
#include "tcc_shmem.h"

PG_MODULE_MAGIC;

/* the settings; the README's Settings says what each one means */
int			tcc_default_timeout = 60;
int			tcc_naptime = 1000;
int			tcc_retry_base = 1000;
int			tcc_retry_max = 300000;
int			tcc_max_attempts = 50;
int			tcc_call_timeout = 30000;
int			tcc_connect_timeout = 10000;
int			tcc_max_concurrent_calls = 100;
int			tcc_server_connections = 1;
int			tcc_retention = 7 * 24 * 3600;
int			tcc_fence_retention = 7 * 24 * 3600;
int			tcc_dispatchers = 2;
int			tcc_local_processes = 2;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

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
	tcc_runner_shmem_request();
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
	tcc_runner_shmem_startup();
}

/*
 * tcc_process_utility
 *		Stop the tcc worker of a database that a command needs free of
 *		connections: DROP DATABASE, ALTER DATABASE ... RENAME or SET
 *		TABLESPACE, and CREATE DATABASE ... TEMPLATE; and ask for a worker
 *		where CREATE EXTENSION tcc runs.
 *
 * Those commands wait a few seconds for other sessions to leave and then
 * fail; a worker that stayed connected would make them fail every time.
 * The launcher starts it again a little later if the database still
 * exists.
 *
 * Only the database's owner (or a superuser) may stop its worker, and only
 * outside a transaction block, where the command itself can run: otherwise
 * anybody could keep phase two from running by issuing commands that fail.
 * Stopping it when the command then fails for another reason costs only
 * the pause.
 */
static void
tcc_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	const char *datname = NULL;

	if (IsA(parsetree, DropdbStmt))
		datname = ((DropdbStmt *) parsetree)->dbname;
	else if (IsA(parsetree, AlterDatabaseStmt) &&
			 tcc_option_named(((AlterDatabaseStmt *) parsetree)->options,
						  "tablespace") != NULL)
		datname = ((AlterDatabaseStmt *) parsetree)->dbname;
	else if (IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		datname = ((RenameStmt *) parsetree)->subname;
	else if (IsA(parsetree, CreatedbStmt))
	{
		CreatedbStmt *stmt = (CreatedbStmt *) parsetree;
		DefElem    *def = tcc_option_named(stmt->options, "template");

		if (def != NULL && def->arg != NULL)
			datname = defGetString(def);
	}

	if (datname != NULL && !IsTransactionBlock())
	{
		Oid			dboid = get_database_oid(datname, true);

		if (OidIsValid(dboid) && pg_database_ownercheck(dboid, GetUserId()))
			tcc_stop_database_worker(dboid);
	}

	/*
	 * A database where the extension is created (by hand, or by a restore
	 * that brings pending work with it) gets its worker when the command
	 * commits, rather than at the first tcc call.
	 */
	if (IsA(parsetree, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) parsetree)->extname, "tcc") == 0)
		tcc_wake_worker_at_commit();

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
								  params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * define_process_settings
 *		Define the settings of how many processes serve a database; the
 *		number of dispatchers is fixed at server start, and so exists only
 *		when tcc is preloaded (a later definition of a PGC_POSTMASTER
 *		setting is refused).
 */
static void
define_process_settings(void)
{
	DefineCustomIntVariable("tcc.local_processes",
							"Processes each tcc dispatcher runs local "
							"actions in.",
							"An owner that has none busy gets one more, "
							"within the share of max_worker_processes the "
							"database's worker takes, so that one owner's "
							"slow actions do not hold back another's.",
							&tcc_local_processes,
							2, 1, TCC_MAX_RUNNERS_PER_DISPATCHER,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("tcc.dispatchers",
							"Processes that divide the phase two of one "
							"database among them.",
							"Each serves the transactions whose gid hashes "
							"to its share.  Each database also gets a "
							"housekeeper, and each of these processes its "
							"runners of local actions: max_worker_processes "
							"must leave room for them.",
							&tcc_dispatchers,
							2, 1, TCC_MAX_DISPATCHERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
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

	DefineCustomIntVariable("tcc.naptime",
							"Time between the worker's rounds when nothing "
							"wakes it.",
							"Transactions past their deadline are cancelled "
							"and retention is applied once per naptime; a "
							"commit wakes the worker at once.",
							&tcc_naptime,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.retry_base",
							"Delay before the first retry of a failed "
							"action.",
							"Each further retry waits twice as long, up to "
							"tcc.retry_max, with jitter.",
							&tcc_retry_base,
							1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.retry_max",
							"Longest delay between two retries of an action.",
							NULL,
							&tcc_retry_max,
							300000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.max_attempts",
							"Attempts of an action before its transaction "
							"becomes failed.",
							"0 retries for ever.",
							&tcc_max_attempts,
							50, 0, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.call_timeout",
							"Longest time the worker waits for a participant "
							"to answer a call.",
							"The call is then cancelled and retried.  0 "
							"waits for ever.",
							&tcc_call_timeout,
							30000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.connect_timeout",
							"Longest time the worker waits for a connection "
							"to a participant.",
							NULL,
							&tcc_connect_timeout,
							10000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.max_concurrent_calls",
							"Most calls a worker has in flight at once.",
							NULL,
							&tcc_max_concurrent_calls,
							100, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.server_connections",
							"Connections a dispatcher keeps to each "
							"participant server for each owner.",
							"A transaction's calls always go over the same "
							"one, chosen by a hash of its gid.",
							&tcc_server_connections,
							1, 1, 16,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.retention",
							"How long finished transactions are kept before "
							"the worker purges them.",
							"0 keeps them for ever.",
							&tcc_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tcc.fence_retention",
							"How long fence rows are kept after their last "
							"decision before the worker purges them.",
							"0 keeps them for ever.  Keep them longer than "
							"any try can be late.",
							&tcc_fence_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	define_process_settings();
	MarkGUCPrefixReserved("tcc");

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = tcc_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = tcc_shmem_startup_hook;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = tcc_process_utility;

	tcc_register_launcher();
}
