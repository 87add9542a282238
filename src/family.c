/*-------------------------------------------------------------------------
 *
 * family.c
 *	  The processes that serve one database: the leader (the worker the
 *	  launcher starts, worker.c) starts tcc.dispatchers - 1 more
 *	  dispatchers, each serving its partition of the gids as the leader
 *	  serves partition 0 (dispatch.c), and a housekeeper that cancels
 *	  expired transactions and purges old ones (housekeeping.c), so that
 *	  neither ever waits behind the other's work.  Each dispatcher starts
 *	  its own runners for local actions (local_pool.c).
 *
 * The number of partitions is fixed for the life of a leader: it is
 * tcc.dispatchers, or fewer when the postmaster has no background worker
 * slot for the rest at the start.  A child that stops is started again
 * after TCC_CHILD_RESTART_PAUSE; meanwhile its partition waits, since
 * serving it from another process could send a branch the dying one had
 * in flight.  A child whose leader has gone exits (see shmem_worker.c),
 * and a new leader divides the gids anew.  Without a housekeeper, the
 * leader does the housekeeping itself.
 *
 * src/family.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#include "runner.h"
#include "tcc.h"
#include "tcc_shmem.h"
#include "worker.h"

/* seconds before a child that stopped is started again */
#define TCC_CHILD_RESTART_PAUSE	1

/*
 * seconds a dispatcher may stay down (no slot to start it in) before the
 * leader exits, so that its successor divides the gids among fewer
 */
#define TCC_CHILD_GIVE_UP		10

/* the number of a child that is the housekeeper, not a dispatcher */
#define HOUSEKEEPER			(-1)

/* what a child is told at its start (bgw_extra) */
typedef struct ChildArgs
{
	Oid			dboid;
	uint32		generation;
} ChildArgs;

/* a child of this leader: children[0] is the housekeeper */
typedef struct Child
{
	BackgroundWorkerHandle *handle; /* NULL: not running */
	TimestampTz restart_at;		/* when to start it again */
	TimestampTz down_since;		/* when it stopped, 0 while it runs */
} Child;

static Child children[TCC_MAX_DISPATCHERS];
static int	family_size = 1;
static int	family_runners = 1;	/* runners each dispatcher may have */
static bool have_housekeeper = false;
static bool warned_no_slot = false;

/* when a leader without a housekeeper looks for room for one again */
static TimestampTz housekeeper_look_at = 0;

/*
 * child_of
 *		The entry of children for dispatcher number dispatcher (> 0), or
 *		for the housekeeper.
 */
static Child *
child_of(int dispatcher)
{
	return &children[dispatcher == HOUSEKEEPER ? 0 : dispatcher];
}

/*
 * start_child
 *		Register dispatcher number dispatcher, or the housekeeper; false
 *		when the postmaster has no slot free.
 */
static bool
start_child(int dispatcher)
{
	BackgroundWorker worker;
	ChildArgs	args;
	MemoryContext oldcontext;
	bool		ok;

	if (dispatcher == HOUSEKEEPER)
	{
		tcc_init_bgworker(&worker, "tcc_child_main", "tcc housekeeper");
		snprintf(worker.bgw_name, BGW_MAXLEN,
				 "tcc housekeeper for database %u", MyDatabaseId);
	}
	else
	{
		tcc_init_bgworker(&worker, "tcc_child_main", "tcc dispatcher");
		snprintf(worker.bgw_name, BGW_MAXLEN,
				 "tcc dispatcher %d for database %u", dispatcher,
				 MyDatabaseId);
	}
	worker.bgw_main_arg = Int32GetDatum(dispatcher);
	args.dboid = MyDatabaseId;
	args.generation = tcc_worker_generation();
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;

	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker,
										 &child_of(dispatcher)->handle);
	MemoryContextSwitchTo(oldcontext);
	if (!ok)
	{
		child_of(dispatcher)->handle = NULL;
		if (!warned_no_slot)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start a tcc process for database %u",
							MyDatabaseId),
					 errhint("Raise max_worker_processes: tcc needs, per "
							 "database, tcc.dispatchers, a housekeeper and "
							 "the runners of local actions.")));
		warned_no_slot = true;
	}
	return ok;
}

/*
 * tcc_family_start
 *		Start the other dispatchers and the housekeeper of this leader's
 *		database, as many as its share of the background worker slots
 *		allows (tcc_worker_budget), and say how many runners each
 *		dispatcher may have; returns into how many partitions the gids are
 *		divided: tcc.dispatchers, or fewer.
 *
 * The share goes first to a runner for the leader (one is allowed even
 * with no share: a runner exits when idle, and without one local actions
 * would run in the dispatcher), then to the housekeeper, then to more
 * dispatchers with a runner each, and what is left to more runners.  The
 * children wait to join until the leader has published the number of
 * partitions (tcc_child_attach), so that every dispatcher divides the gids
 * alike.
 */
int
tcc_family_start(void)
{
	int			budget = tcc_worker_budget() - 1;

	memset(children, 0, sizeof(children));
	family_size = 1;
	have_housekeeper = budget > 0;
	if (have_housekeeper)
		budget--;
	while (family_size < tcc_dispatchers && budget >= 2 &&
		   start_child(family_size))
	{
		family_size++;
		budget -= 2;
	}
	family_runners = Min(1 + Max(budget, 0) / family_size,
						 TCC_MAX_RUNNERS_PER_DISPATCHER);
	tcc_worker_set_family(family_size, family_runners);
	if (have_housekeeper)
		(void) start_child(HOUSEKEEPER);
	if (family_size < tcc_dispatchers)
		ereport(LOG,
				(errmsg("tcc serves database %u with %d of the %d dispatchers "
						"tcc.dispatchers asks for",
						MyDatabaseId, family_size, tcc_dispatchers),
				 errhint("Raise max_worker_processes: tcc takes at most an "
						 "equal share of what is left after %d slots for "
						 "others.", TCC_RESERVED_WORKERS)));
	if (!have_housekeeper)
		ereport(LOG,
				(errmsg("tcc serves database %u without a housekeeper",
						MyDatabaseId),
				 errdetail("Its leader cancels expired transactions and "
						   "purges old ones between its calls."),
				 errhint("Raise max_worker_processes: tcc takes at most an "
						 "equal share of what is left after %d slots for "
						 "others.", TCC_RESERVED_WORKERS)));
	return family_size;
}

/*
 * child_down
 *		Child i, dispatcher number dispatcher or the housekeeper, is not
 *		running: start it again once its pause is over.  A dispatcher that
 *		cannot be started for TCC_CHILD_GIVE_UP seconds (the postmaster has
 *		no slot) would leave its share of the gids unserved, and no other
 *		process may take that share over while the division stands: the
 *		leader exits instead, and the launcher starts a new one, which
 *		divides the gids among as many as it can start.
 */
static void
child_down(Child *child, int dispatcher, TimestampTz now)
{
	if (child->down_since == 0)
		child->down_since = now;
	if (child->restart_at <= now && start_child(dispatcher))
	{
		child->down_since = 0;
		return;
	}
	if (dispatcher != HOUSEKEEPER &&
		TimestampDifferenceExceeds(child->down_since, now,
								   TCC_CHILD_GIVE_UP * 1000))
	{
		ereport(LOG,
				(errmsg("tcc worker for database %u restarts: its "
						"dispatcher %d could not be started again for %d s",
						MyDatabaseId, dispatcher, TCC_CHILD_GIVE_UP),
				 errdetail("The next worker divides the transactions among "
						   "the dispatchers it can start.")));
		proc_exit(1);
	}
	if (child->restart_at <= now)
		child->restart_at = now + TCC_CHILD_RESTART_PAUSE * USECS_PER_SEC;
}

/*
 * late_housekeeper
 *		Give a family that had no share for a housekeeper at its start one
 *		once its share has room, looking once per TCC_CHILD_RESTART_PAUSE.
 *
 * A share is counted when the leader starts (tcc_family_start), and a
 * slot counts as a database served from the moment the launcher starts
 * its worker: so a leader that starts while the launcher's worker for a
 * database without tcc has not yet found that out, or while another
 * database is still served, gets less than its share once they are gone.
 * The housekeeper can join at any time (it does not divide the gids with
 * the dispatchers), and without it retention and the deadlines run in the
 * leader's loop, between its calls, in small bounded rounds
 * (housekeeping.c), which purge a backlog a tenth as fast.  The number of
 * dispatchers stays until the leader restarts.
 */
static void
late_housekeeper(TimestampTz now)
{
	int			used = 1 + 2 * (family_size - 1) +
		(family_runners - 1) * family_size;

	if (have_housekeeper || now < housekeeper_look_at)
		return;
	housekeeper_look_at = now + TCC_CHILD_RESTART_PAUSE * USECS_PER_SEC;
	if (tcc_worker_budget() - used < 1)
		return;
	have_housekeeper = true;
	children[0].restart_at = 0;
	children[0].down_since = 0;
	if (start_child(HOUSEKEEPER))
		ereport(LOG,
				(errmsg("tcc serves database %u with a housekeeper from now on",
						MyDatabaseId),
				 errdetail("Background worker slots have become free since "
						   "its worker started.")));
}

/*
 * tcc_family_watch
 *		Start again the children that stopped, once their pause is over,
 *		and a housekeeper there was no room for (late_housekeeper); returns
 *		whether the housekeeper runs (when it does not, the leader does the
 *		housekeeping).  *next_at is lowered to the next restart.
 */
bool
tcc_family_watch(TimestampTz *next_at)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	late_housekeeper(now);

	for (i = have_housekeeper ? 0 : 1; i < family_size; i++)
	{
		Child	   *child = &children[i];
		pid_t		pid;

		if (child->handle != NULL &&
			GetBackgroundWorkerPid(child->handle, &pid) == BGWH_STOPPED)
		{
			pfree(child->handle);
			child->handle = NULL;
			child->restart_at = now + TCC_CHILD_RESTART_PAUSE * USECS_PER_SEC;
		}
		if (child->handle != NULL)
			continue;
		child_down(child, i == 0 ? HOUSEKEEPER : i, now);
		if (child->handle == NULL)
			tcc_lower_time(next_at, child->restart_at);
	}
	return have_housekeeper && children[0].handle != NULL;
}

/*
 * tcc_child_main
 *		The body of a child: dispatcher number main_arg of its family, or
 *		its housekeeper (-1).
 */
void
tcc_child_main(Datum main_arg)
{
	int			dispatcher = DatumGetInt32(main_arg);
	int			ndispatchers = 0;
	ChildArgs	args;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	tcc_worker_pin_session();

	for (;;)
	{
		TccChildAttach attached = tcc_child_attach(args.dboid,
												   args.generation,
												   dispatcher,
												   &ndispatchers);

		if (attached == CHILD_ATTACHED)
			break;
		if (attached == CHILD_REFUSED)
			proc_exit(0);
		/* the leader is still starting the family: a moment */
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	if (dispatcher == HOUSEKEEPER)
		tcc_housekeeper_main();
	else
		tcc_dispatch_loop(dispatcher, ndispatchers);
	proc_exit(0);
}
