/*-------------------------------------------------------------------------
 *
 * local_pool.c
 *	  A dispatcher's local actions: the queue of each owner, the runner
 *	  processes that run them (runner.c) in batches, fair shares between
 *	  owners, and what becomes of a batch whose process overran
 *	  tcc.call_timeout or died.
 *
 * A dispatcher never runs a local action itself (only when no runner can
 * be started at all, see run_here): an action may take as long as
 * tcc.call_timeout, catch the statement timeout and go on, or end its own
 * process, and none of that may hold back the dispatcher, which serves
 * every owner.  So local calls wait in their owner's queue and are handed,
 * a batch of one owner at a time, to an idle runner.  How many runners a
 * dispatcher may have is its share of the background worker slots
 * (tcc_worker_budget); with no share at all it runs local actions itself,
 * as a WARNING says.
 *
 * Fair shares.  Owners take turns for the idle runners; an owner that
 * already has a runner busy does not get a second while another owner
 * waits with none; and an owner that waits with none gets a new runner
 * started for it, beyond tcc.local_processes (up to the dispatcher's
 * share of the slots), so that an owner whose actions are slow delays only
 * itself.
 *
 * The hard limit.  A runner publishes which call of its batch runs and
 * since when; one that has run longer than tcc.call_timeout plus
 * TCC_HARD_LIMIT_GRACE_MS (the action had its statement timeout at
 * tcc.call_timeout, and caught it) is sent SIGTERM, which no action can
 * catch.  When a runner's process stops with a batch under way, whether
 * ended so or by itself (the action terminated its own backend, say), the
 * batch's transaction rolled back: the call that was running gets a failed
 * attempt, retried with backoff like any error, so that a branch whose
 * action always kills its process ends failed after tcc.max_attempts; the
 * calls of the batch after it are due again as they were.
 *
 * src/local_pool.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "runner.h"
#include "tcc.h"
#include "tcc_shmem.h"
#include "worker.h"

/* how long past tcc.call_timeout an action runs before its process ends */
#define TCC_HARD_LIMIT_GRACE_MS	500

/* a runner of this dispatcher */
typedef struct Runner
{
	int			slot;			/* its TccRunnerSlot, -1: this entry unused */
	BackgroundWorkerHandle *handle;
	bool		ready;			/* the process attached */
	Oid			owner;			/* of the batch it runs, or InvalidOid */
	int			ncalls;			/* the batch, 0 when idle */
	TccCall    *calls[TCC_RUNNER_BATCH];
	bool		ended;			/* sent SIGTERM for overrunning */
} Runner;

/* the local calls of one owner waiting for a runner */
typedef struct LocalQueue
{
	Oid			owner;			/* hash key */
	TccCallQueue calls;			/* oldest first */
	int			busy;			/* runners running its batches */
} LocalQueue;

static Runner runners[TCC_MAX_RUNNERS_PER_DISPATCHER];
static HTAB *local_queues = NULL;
static int	local_queued = 0;
static bool warned_no_runner = false;

/* the most runners this dispatcher may have (its family's budget) */
static int	runner_budget = 0;

/*
 * pool_exit
 *		On the dispatcher's exit, end its runners.
 */
static void
pool_exit(int code, Datum arg)
{
	tcc_runner_orphan_slots();
}

/*
 * tcc_local_pool_init
 *		Set up the owners' queues, once per dispatcher.
 */
void
tcc_local_pool_init(void)
{
	HASHCTL		ctl;
	int			i;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LocalQueue);
	local_queues = hash_create("tcc local calls per owner", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS);
	for (i = 0; i < TCC_MAX_RUNNERS_PER_DISPATCHER; i++)
		runners[i].slot = -1;
	runner_budget = tcc_worker_runner_budget();
	before_shmem_exit(pool_exit, (Datum) 0);
}

/*
 * queue_of
 *		The queue of owner, created empty if need be.
 */
static LocalQueue *
queue_of(Oid owner)
{
	bool		found;
	LocalQueue *queue = hash_search(local_queues, &owner, HASH_ENTER, &found);

	if (!found)
	{
		memset(&queue->calls, 0, sizeof(queue->calls));
		queue->busy = 0;
	}
	return queue;
}

/*
 * tcc_local_pool_add
 *		Queue call, a local action found due, for its owner's turn.
 */
void
tcc_local_pool_add(TccCall *call)
{
	tcc_queue_push(&queue_of(call->owner)->calls, call);
	local_queued++;
}

/*
 * start_runner
 *		Start a runner process in a free entry; false when no entry, slot
 *		or background worker is to be had.
 */
static bool
start_runner(void)
{
	Runner	   *r = NULL;
	int			i;

	for (i = 0; i < TCC_MAX_RUNNERS_PER_DISPATCHER && r == NULL; i++)
		if (runners[i].slot < 0)
			r = &runners[i];
	if (r == NULL || (r->slot = tcc_runner_start(&r->handle)) < 0)
	{
		if (r)
			r->slot = -1;
		return false;
	}
	r->ready = false;
	r->ncalls = 0;
	r->ended = false;
	return true;
}

/*
 * take_batch
 *		Move a batch of the calls at the head of queue into r: up to
 *		TCC_RUNNER_BATCH, but never a part of a transaction's branches when
 *		it can be helped, since the rest would find the row locked by the
 *		batch.  Returns how many.
 */
static int
take_batch(Runner *r, LocalQueue *queue)
{
	int			n = 0;
	int			k;
	TccCall    *next;

	while (n < TCC_RUNNER_BATCH &&
		   (r->calls[n] = tcc_queue_pop(&queue->calls)) != NULL)
		n++;

	/* the transaction of the last call goes on in the queue: leave it */
	k = n;
	next = tcc_queue_peek(&queue->calls);
	if (next != NULL && strcmp(next->gid, r->calls[n - 1]->gid) == 0)
		while (k > 0 && strcmp(r->calls[k - 1]->gid,
							   r->calls[n - 1]->gid) == 0)
			k--;
	if (k == 0)
		k = n;					/* one transaction fills the batch */
	while (n > k)
		tcc_queue_unpop(&queue->calls, r->calls[--n]);

	local_queued -= n;
	return n;
}

/*
 * give_batch
 *		Hand runner r, idle, a batch of queue's calls; false (the calls
 *		back in the queue) when the runner has just stopped waiting.
 */
static bool
give_batch(Runner *r, LocalQueue *queue)
{
	int			n = take_batch(r, queue);

	if (!tcc_runner_assign(r->slot, r->calls, n))
	{
		/* the runner is on its way out after idling: put the batch back */
		local_queued += n;
		while (n > 0)
			tcc_queue_unpop(&queue->calls, r->calls[--n]);
		r->ready = false;
		return false;
	}
	r->ncalls = n;
	r->owner = queue->owner;
	r->ended = false;
	queue->busy++;
	return true;
}

/*
 * blame
 *		Give call, the one that was running when its runner's process
 *		stopped, the outcome that stop means, and put it in *done to be
 *		recorded like any failed attempt.
 */
static void
blame(TccCall *call, bool ended, List **done)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(tcc_calls_context);

	call->outcome = TCC_CALL_ERROR;
	if (ended)
	{
		call->error = psprintf("the action ran longer than tcc.call_timeout "
							   "(%d ms) and the process running it was "
							   "ended", tcc_call_timeout);
		strlcpy(call->sqlstate, "57014", sizeof(call->sqlstate));
	}
	else
	{
		call->error = pstrdup("the process running the action exited "
							  "before the action finished");
		strlcpy(call->sqlstate, "57P01", sizeof(call->sqlstate));
	}
	MemoryContextSwitchTo(oldcontext);
	tcc_add_call(done, call);
}

/*
 * finish_batch
 *		Runner r's batch is over: results[i] says what became of call i,
 *		and current, when the process stopped with the batch under way
 *		(died), which call was running.  counted: the outcomes were counted
 *		where they were recorded (in this process).
 *
 * Calls the batch did not get to, or that rolled back with it, go back to
 * the head of their owner's queue as they were: no attempt is counted
 * for them.
 */
static void
finish_batch(Runner *r, const TccLocalResult *results, bool died,
			 int current, bool counted, List **done)
{
	LocalQueue *queue = queue_of(r->owner);
	TimestampTz retry_at = GetCurrentTimestamp() +
		(TimestampTz) tcc_naptime * 1000;
	int			i;

	for (i = r->ncalls - 1; i >= 0; i--)
	{
		TccCall    *call = r->calls[i];

		switch (results[i])
		{
			case LOCAL_SUCCEEDED:
			case LOCAL_FAILED:
				if (!counted)
					tcc_add_call_counts(results[i] == LOCAL_SUCCEEDED,
										results[i] == LOCAL_FAILED);
				/* FALLTHROUGH */
			case LOCAL_STALE:
				tcc_free_call(call);
				break;
			case LOCAL_BUSY:
				/* somebody holds the row: try again a naptime later */
				call->not_before = retry_at;
				tcc_queue_push(&queue->calls, call);
				local_queued++;
				break;
			case LOCAL_NOT_RUN:
				if (died && i == current)
					blame(call, r->ended, done);
				else
				{
					tcc_queue_unpop(&queue->calls, call);
					local_queued++;
				}
				break;
		}
	}
	queue->busy--;
	r->ncalls = 0;
	r->owner = InvalidOid;
	if (tcc_queue_length(&queue->calls) == 0 && queue->busy == 0)
		(void) hash_search(local_queues, &queue->owner, HASH_REMOVE, NULL);
}

/*
 * watch_runner
 *		Look at runner r: collect a finished batch, notice a process that
 *		stopped (and what it took with it), end one whose action overran
 *		the hard limit.  Returns when r must be looked at again at the
 *		latest (0: on its signal).
 */
static TimestampTz
watch_runner(Runner *r, List **done)
{
	TccLocalResult results[TCC_RUNNER_BATCH];
	TccRunnerLook look;
	pid_t		pid;
	bool		stopped;
	TimestampTz limit = 0;

	stopped = GetBackgroundWorkerPid(r->handle, &pid) == BGWH_STOPPED;
	if (!stopped && !r->ended && tcc_call_timeout > 0)
		limit = (TimestampTz) (tcc_call_timeout + TCC_HARD_LIMIT_GRACE_MS) *
			1000;
	look = tcc_runner_look(r->slot, r->ncalls, results, limit);
	r->ready = look.idle;
	if (look.ended)
		r->ended = true;

	if (r->ncalls > 0 && (look.finished || stopped))
		finish_batch(r, results, !look.finished, look.current, false, done);
	if (stopped)
	{
		tcc_runner_free_slot(r->slot);
		pfree(r->handle);
		r->slot = -1;
		r->ready = false;
	}
	return look.limit_at;
}

/*
 * idle_runner
 *		A runner whose process waits for a batch, or NULL.
 */
static Runner *
idle_runner(void)
{
	int			i;

	for (i = 0; i < TCC_MAX_RUNNERS_PER_DISPATCHER; i++)
		if (runners[i].slot >= 0 && runners[i].ready &&
			runners[i].ncalls == 0)
			return &runners[i];
	return NULL;
}

/*
 * count_runners
 *		How many runners this dispatcher has, and how many of them are
 *		still starting.
 */
static int
count_runners(int *starting)
{
	int			n = 0;
	int			i;

	*starting = 0;
	for (i = 0; i < TCC_MAX_RUNNERS_PER_DISPATCHER; i++)
	{
		if (runners[i].slot < 0)
			continue;
		n++;
		if (!runners[i].ready && runners[i].ncalls == 0)
			(*starting)++;
	}
	return n;
}

/*
 * ready_queues
 *		The queues whose first call may be handed out now, in *queues
 *		(palloc'd); returns how many, and in *starved how many of them
 *		have no runner busy.  *wake is lowered to when a queue whose first
 *		call must wait (its row was busy) becomes ready.
 */
static int
ready_queues(LocalQueue ***queues, int *starved, TimestampTz *wake)
{
	HASH_SEQ_STATUS status;
	LocalQueue *queue;
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	*queues = palloc(sizeof(LocalQueue *) * hash_get_num_entries(local_queues));
	*starved = 0;
	hash_seq_init(&status, local_queues);
	while ((queue = hash_seq_search(&status)) != NULL)
	{
		TccCall    *head;

		head = tcc_queue_peek(&queue->calls);
		if (head == NULL)
			continue;
		if (head->not_before > now)
		{
			tcc_lower_time(wake, head->not_before);
			continue;
		}
		(*queues)[n++] = queue;
		if (queue->busy == 0)
			(*starved)++;
	}
	return n;
}

/*
 * run_here
 *		Run a batch of queue's calls in the dispatcher itself, which is
 *		what happens when no runner can be started at all
 *		(max_worker_processes reached): local actions must not wait for
 *		good, though here they do hold back the rest of the dispatcher.
 */
static void
run_here(LocalQueue *queue, List **done)
{
	Runner		here;
	TccLocalResult results[TCC_RUNNER_BATCH];

	if (!warned_no_runner)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a process for local actions"),
				 errdetail("The tcc dispatcher runs them itself, and waits "
						   "for each."),
				 errhint("Raise max_worker_processes: each tcc dispatcher "
						 "needs up to tcc.local_processes of them.")));
	warned_no_runner = true;

	memset(&here, 0, sizeof(here));
	memset(results, 0, sizeof(results));
	here.ncalls = take_batch(&here, queue);
	here.owner = queue->owner;
	queue->busy++;
	tcc_run_local_batch(here.calls, here.ncalls, results, NULL);
	finish_batch(&here, results, false, -1, true, done);
}

/*
 * assign_turn
 *		One turn of every ready queue: hand a batch to an idle runner, or
 *		start a runner where the fair shares (see the file header) call for
 *		one; returns whether any batch was handed out.
 */
static bool
assign_turn(LocalQueue **queues, int n, int starved, uint32 turn,
			List **done)
{
	bool		gave = false;
	int			i;

	for (i = 0; i < n; i++)
	{
		LocalQueue *queue = queues[(i + turn) % n];
		Runner	   *r = idle_runner();
		TccCall    *head = tcc_queue_peek(&queue->calls);
		int			starting;
		int			nrunners = count_runners(&starting);

		if (head == NULL || head->not_before > GetCurrentTimestamp())
			continue;

		/* one that has a runner yields the idle ones to one that has none */
		if (r != NULL && (queue->busy == 0 || starved == 0))
		{
			bool		was_starved = (queue->busy == 0);

			if (give_batch(r, queue))
			{
				starved -= was_starved ? 1 : 0;
				gave = true;
			}
			continue;
		}
		if (r != NULL || starting >= Max(starved, 1))
			continue;
		if (nrunners < (queue->busy == 0 ? runner_budget :
						Min(runner_budget, tcc_local_processes)))
		{
			if (!start_runner() && nrunners == 0)
				run_here(queue, done);
		}
		else if (nrunners == 0)
			run_here(queue, done);	/* no budget for runners at all */
	}
	return gave;
}

/*
 * assign
 *		Hand the queued calls out, owners taking turns, for as long as idle
 *		runners take them; returns when a waiting queue becomes ready (0:
 *		none waits).
 */
static TimestampTz
assign(List **done)
{
	static uint32 turn = 0;
	LocalQueue **queues;
	TimestampTz wake = 0;
	int			starved;
	int			n = ready_queues(&queues, &starved, &wake);

	while (n > 0 && assign_turn(queues, n, starved, turn++, done))
	{
		/* the starved ones were served first, the rest now take turns */
		starved = 0;
	}
	pfree(queues);
	return wake;
}

/*
 * tcc_local_pool_run
 *		Collect what the runners finished, deal with those that overran or
 *		stopped, and hand out the queued local calls.  Calls whose process
 *		died go to *done, to be recorded as failed attempts.  Returns when
 *		the pool must be looked at again at the latest (0: when a runner
 *		signals).  Runs outside a transaction.
 */
TimestampTz
tcc_local_pool_run(List **done)
{
	TimestampTz wake = 0;
	int			i;

	Assert(!IsTransactionState());
	for (i = 0; i < TCC_MAX_RUNNERS_PER_DISPATCHER; i++)
	{
		if (runners[i].slot < 0)
			continue;
		tcc_lower_time(&wake, watch_runner(&runners[i], done));
	}
	if (local_queued > 0)
		tcc_lower_time(&wake, assign(done));
	return wake;
}
