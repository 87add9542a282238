/*-------------------------------------------------------------------------
 *
 * outcome.c
 *	  Recording the outcome of a call, which moves its branch and its
 *	  global transaction on: the SQLSTATE policy (what is retried, what
 *	  fails at once, what makes a saga compensate), the backoff between
 *	  attempts, the next saga step or compensation, and the end of a
 *	  transaction (doc/design.md, States and Running an action).
 *
 * What to do is decided here; the rows are changed by state.c and
 * branch.c, under the global transaction's row lock, which the worker
 * takes without waiting (tcc_lock_global_txs_nowait): a row a user holds is
 * dealt with in a later round.
 *
 * A dispatcher's round records all the outcomes that came back together
 * (tcc_record_outcomes): one statement locks every transaction of the
 * round, and the common outcome, a TCC transaction's confirm or cancel
 * that succeeded, is written for all of them, with one look for the
 * transactions that have no branch left before those are ended.  Every
 * other outcome takes the path of one call, with the same rules.
 *
 * src/outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "pgstat.h"
#include "utils/snapmgr.h"

#include "state.h"
#include "tcc.h"
#include "worker.h"

/* counters not yet published to shared memory */
static uint64 calls_succeeded = 0;
static uint64 calls_failed = 0;

/*
 * tcc_take_call_counts
 *		The calls recorded since the last time this was asked, succeeded
 *		and failed; the counters start again from zero.
 */
void
tcc_take_call_counts(uint64 *succeeded, uint64 *failed)
{
	*succeeded = calls_succeeded;
	*failed = calls_failed;
	calls_succeeded = calls_failed = 0;
}

/*
 * tcc_add_call_counts
 *		Count calls whose outcomes another process recorded (a runner).
 */
void
tcc_add_call_counts(uint64 succeeded, uint64 failed)
{
	calls_succeeded += succeeded;
	calls_failed += failed;
}

/*
 * tcc_sqlstate_is_permanent
 *		Whether an error with this SQLSTATE can never succeed by being
 *		retried, so that the branch goes to failed at once.
 *
 * Class 42 (syntax error or access rule violation: undefined function or
 * table, syntax error, permission denied) is a mistake in the action or in
 * the participant's set-up, which a human must fix before tcc.retry; and
 * 2F003 is tcc's own refusal of a connection made without a password.
 * Anything else (a participant that is down, a lock timeout, a check
 * constraint that depends on data) may go away by itself.
 */
bool
tcc_sqlstate_is_permanent(const char *sqlstate)
{
	return strncmp(sqlstate, "42", 2) == 0 ||
		strcmp(sqlstate, "2F003") == 0;
}

/*
 * sqlstate_is_transient
 *		Whether an error of a saga's forward step may go away by itself, so
 *		that the step is tried again rather than failing (doc/design.md,
 *		Running an action).
 *
 * These are the errors that say nothing about the step itself: the
 * connection was lost (class 08) or the call took longer than
 * tcc.call_timeout (57014), either of which leaves the outcome unknown;
 * a serialization failure, a deadlock or a lock timeout, which a retry
 * normally gets past; the participant shutting down or starting up
 * (57P01 to 57P03, 57P05); and a lack of resources (class 53).  Any other
 * error is the participant saying no, and the step fails for good.
 * An error without a SQLSTATE came from libpq, not from the participant,
 * and is counted as a lost connection.
 */
static bool
sqlstate_is_transient(const char *sqlstate)
{
	static const char *const transient[] = {
		"40001", "40P01", "55P03", "57014",
		"57P01", "57P02", "57P03", "57P05"
	};
	int			i;

	if (sqlstate[0] == '\0' ||
		strncmp(sqlstate, "08", 2) == 0 ||
		strncmp(sqlstate, "53", 2) == 0)
		return true;
	for (i = 0; i < lengthof(transient); i++)
		if (strcmp(sqlstate, transient[i]) == 0)
			return true;
	return false;
}

/*
 * retry_delay_ms
 *		How long to wait before attempt attempts + 1, after attempts
 *		failed ones: tcc.retry_base doubled for each earlier failure, capped
 *		at tcc.retry_max, then jittered to between half and all of that, so
 *		that branches failing together do not all retry together.
 */
static double
retry_delay_ms(int attempts)
{
	double		delay = (double) tcc_retry_base *
		pow(2.0, (double) Min(Max(attempts - 1, 0), 30));

	delay = Min(delay, (double) tcc_retry_max);
	return delay * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state));
}

/*
 * in_call_phase
 *		Whether tx is still in the phase call ran in: a failed transaction
 *		stays failed until tcc.retry, whatever its branches do meanwhile.
 */
static bool
in_call_phase(GlobalTx *tx, TccCall *call)
{
	Assert(call->ran_in == BRANCH_CONFIRMING ||
		   call->ran_in == BRANCH_CANCELLING);
	return STATUS_IS(tx, call->ran_in == BRANCH_CONFIRMING ?
					 TCC_CONFIRMING : TCC_CANCELLING);
}

/*
 * record_success
 *		The action of call's branch of tx succeeded: the branch is done, and
 *		its transaction moves on or ends.
 *
 * A TCC transaction's branches run side by side, and the transaction ends
 * when the last one is done.  Saga and msg steps run one at a time: a
 * forward step's success makes the next step due, and a saga compensation's
 * success makes the compensation of the step before it due.
 *
 * With to_finish, a TCC transaction is not ended here: *to_finish is set
 * when it may have no branch left, and the caller looks at it, with the
 * others of its batch, before it commits (tcc_record_locked_outcome).
 */
static void
record_success(GlobalTx *tx, TccCall *call, bool *to_finish)
{
	bool		confirming = (call->ran_in == BRANCH_CONFIRMING);

	if (!tcc_record_attempt(tx, call,
							confirming ? BRANCH_CONFIRMED : BRANCH_CANCELLED,
							-1, false))
		return;					/* reset by tcc.retry meanwhile */

	if (!in_call_phase(tx, call))
		return;

	if (!MODE_IS_TCC(tx) && tcc_start_next(tx))
		return;

	if (to_finish && MODE_IS_TCC(tx))
		*to_finish = true;
	else
		tcc_finish_if_done(tx);
}

/*
 * abort_saga
 *		Call's forward step of saga tx failed for good: stop the saga and
 *		compensate the steps that completed, newest first.
 *
 * The steps after the failing one never run (skipped), and the transaction
 * goes to cancelling with the failing step and its error as the reason.
 * What happens to the failing step depends on what is known of it:
 *
 * - The participant said no (an error other than a transient one, or
 *	 false).  Its transaction rolled back, or did nothing: the step is
 *	 marked aborted, keeps its error, and is not compensated.
 * - Its attempts ran out on transient errors (outcome_unknown).  The last
 *	 one may have been lost with the connection, or cut short by
 *	 tcc.call_timeout, after the participant committed; so the step is
 *	 compensated too, first, with attempts of its own.  With the fence on
 *	 the participant, that compensation is an empty rollback when the
 *	 action never ran, and it refuses the action should it still arrive.
 */
static void
abort_saga(GlobalTx *tx, TccCall *call, bool outcome_unknown)
{
	if (!tcc_record_attempt(tx, call,
							outcome_unknown ? BRANCH_CONFIRMING :
							BRANCH_ABORTED, -1, true))
		return;
	if (outcome_unknown)
		tcc_set_branch(tx, call->branch_id, BRANCH_CANCELLING);

	(void) tcc_set_branches(tx, BRANCHES_REGISTERED, BRANCH_SKIPPED);
	tcc_set_global_status(tx, TCC_CANCELLING,
						  psprintf("step %s failed: %s", call->branch_id,
								   call->error ? call->error : ""));

	if (!outcome_unknown && !tcc_start_next(tx))
		tcc_finish_if_done(tx);
}

/*
 * failure_message
 *		What a transaction that failed on call keeps as its last_error.
 */
static char *
failure_message(GlobalTx *tx, TccCall *call)
{
	bool		confirming = (call->ran_in == BRANCH_CONFIRMING);
	const char *error = call->error ? call->error : "";

	if (MODE_IS_TCC(tx))
		return confirming ?
			psprintf("confirm of branch %s: %s", call->branch_id, error) :
			psprintf("cancel of branch %s: %s", call->branch_id, error);
	return confirming ?
		psprintf("step %s: %s", call->branch_id, error) :
		psprintf("compensation of step %s: %s", call->branch_id, error);
}

/*
 * record_failure
 *		The action of call's branch failed (or returned false): schedule the
 *		next attempt, fail the branch and its transaction, or, for a saga's
 *		forward step, start compensating (doc/design.md, Running an action).
 *
 * An error that can never succeed fails the transaction at once, whatever
 * the action: a human must fix the action or the set-up, then tcc.retry.
 * A saga's forward step is retried only on transient errors; anything else
 * is the step failing, and so is running out of attempts.  Every other
 * action (a TCC confirm or cancel, a compensation, a msg step) must succeed
 * in the end, so any error or false is retried until tcc.max_attempts,
 * after which the transaction is failed.
 */
static void
record_failure(GlobalTx *tx, TccCall *call)
{
	bool		saga_step;
	bool		out_of_attempts;
	bool		give_up;

	if (call->outcome == TCC_CALL_NOT_DONE)
	{
		call->error = MemoryContextStrdup(tcc_calls_context,
										  "the action returned false");
		call->sqlstate[0] = '\0';
	}
	else if (call->sqlstate[0] != '\0' &&
			 tcc_sqlstate_is_permanent(call->sqlstate))
		call->permanent = true;

	out_of_attempts = tcc_max_attempts > 0 &&
		call->attempts + 1 >= tcc_max_attempts;
	saga_step = tx->mode == TCC_MODE_SAGA &&
		call->ran_in == BRANCH_CONFIRMING &&
		STATUS_IS(tx, TCC_CONFIRMING);

	if (saga_step && !call->permanent)
	{
		if (call->outcome == TCC_CALL_NOT_DONE ||
			!sqlstate_is_transient(call->sqlstate))
		{
			abort_saga(tx, call, false);
			return;
		}
		if (out_of_attempts)
		{
			abort_saga(tx, call, true);
			return;
		}
	}

	give_up = call->permanent || out_of_attempts;
	if (!tcc_record_attempt(tx, call,
							give_up ? BRANCH_FAILED :
							call->ran_in,
							give_up ? -1 : retry_delay_ms(call->attempts + 1),
							true))
		return;

	if (give_up && in_call_phase(tx, call))
		tcc_fail_global_tx(tx, failure_message(tx, call));
}

/*
 * record_in
 *		Record call's outcome in tx, locked and read by the current
 *		transaction; to_finish as for record_success.
 */
static void
record_in(GlobalTx *tx, TccCall *call, bool *to_finish)
{
	Assert(tx->locked);
	if (call->outcome == TCC_CALL_DONE)
	{
		record_success(tx, call, to_finish);
		calls_succeeded++;
	}
	else
	{
		record_failure(tx, call);
		calls_failed++;
	}
}

/*
 * tcc_record_locked_outcome
 *		Record call's outcome in tx, which the current transaction locked
 *		and read before call's action ran (a local action's batch, local.c,
 *		holds the row until it commits).
 *
 * No tcc function changes a transaction that is in the phase the call ran
 * in, so what was read then is what the row holds.  A transaction that was
 * not (a TCC transaction failed by another branch while this one still
 * ran) the action itself may have changed, by calling tcc.retry on it: that
 * one is read again, under the lock already held, and the outcome recorded
 * against what the action left.
 *
 * A TCC transaction whose branch this ends in the phase it is in is not
 * ended here: *to_finish is set, and the caller ends it, if no branch is
 * left, with tcc_finish_all_if_done before it commits, once for every
 * transaction of its batch (the second branch of a transaction is mostly
 * in the same batch as the first).  *to_finish is left alone otherwise.
 */
void
tcc_record_locked_outcome(GlobalTx *tx, TccCall *call, bool *to_finish)
{
	Assert(IsTransactionState());
	Assert(tx->locked);
	if (!in_call_phase(tx, call))
	{
		GlobalLock	lock = tcc_lock_global_tx_nowait(call->gid, tx);

		Assert(lock != GLOBAL_BUSY);	/* the row is ours */
		if (lock != GLOBAL_LOCKED)
			return;				/* nothing left to record it in */
	}
	record_in(tx, call, to_finish);
}

/* a call of a round, with its place in the round */
typedef struct RoundCall
{
	TccCall    *call;
	int			pos;
} RoundCall;

/*
 * round_call_cmp
 *		qsort comparator of a round's calls: by gid, as strcmp orders them,
 *		and a transaction's calls in the order they came.
 */
static int
round_call_cmp(const void *a, const void *b)
{
	const RoundCall *ca = (const RoundCall *) a;
	const RoundCall *cb = (const RoundCall *) b;
	int			cmp = strcmp(ca->call->gid, cb->call->gid);

	if (cmp != 0)
		return cmp;
	return ca->pos - cb->pos;
}

/*
 * sorted_calls
 *		The calls of done in an array, sorted by round_call_cmp.
 */
static TccCall **
sorted_calls(List *done)
{
	int			n = list_length(done);
	RoundCall  *round = palloc(n * sizeof(RoundCall));
	TccCall   **calls = palloc(n * sizeof(TccCall *));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, done)
	{
		round[i].call = (TccCall *) lfirst(lc);
		round[i].pos = i;
		i++;
	}
	qsort(round, n, sizeof(RoundCall), round_call_cmp);
	for (i = 0; i < n; i++)
		calls[i] = round[i].call;
	return calls;
}

/*
 * only_successes_in_phase
 *		Whether the ncalls calls of tx, TCC mode, all succeeded in the phase
 *		tx is still in: then each moves its branch to its end and nothing
 *		else, and the transaction ends when no branch is left, which
 *		record_successes does for a whole round at once.
 */
static bool
only_successes_in_phase(GlobalTx *tx, TccCall **calls, int ncalls)
{
	int			i;

	if (!MODE_IS_TCC(tx))
		return false;
	for (i = 0; i < ncalls; i++)
		if (calls[i]->outcome != TCC_CALL_DONE ||
			!in_call_phase(tx, calls[i]))
			return false;
	return true;
}

/*
 * RoundTx
 *		A transaction of a round's outcomes: its calls (calls[first] to
 *		calls[first + ncalls - 1]), what locking it found, and its row.
 */
typedef struct RoundTx
{
	int			first;
	int			ncalls;
	GlobalLock	lock;
	GlobalTx	tx;
} RoundTx;

/*
 * record_successes
 *		record_success of the calls of the ntxs TCC transactions txs of the
 *		round calls (only_successes_in_phase), with one look for all the
 *		transactions that have no branch left.
 *
 * It does what record_success does call by call: a transaction none of
 * whose calls was recorded (each branch reset by tcc.retry meanwhile) is
 * not looked at, and the others end once the last of their branches is
 * done, whichever of this round's calls that was.  The branches are
 * written one statement each: one UPDATE joined to arrays of the round's
 * calls was tried, and under the planner settings of tcc's processes its
 * generic plan scans the round's branches in the outer loop and the arrays
 * in the inner one, whatever the statistics, which is quadratic in the
 * round (40 ms for 100 calls, where 100 lookups take about 5).
 */
static void
record_successes(RoundTx **txs, int ntxs, TccCall **calls)
{
	GlobalTx  **moved = palloc(ntxs * sizeof(GlobalTx *));
	int			nmoved = 0;
	int			t;

	for (t = 0; t < ntxs; t++)
	{
		RoundTx    *r = txs[t];
		bool		any = false;
		int			i;

		for (i = r->first; i < r->first + r->ncalls; i++)
		{
			any |= tcc_record_attempt(&r->tx, calls[i],
									  calls[i]->ran_in == BRANCH_CONFIRMING ?
									  BRANCH_CONFIRMED : BRANCH_CANCELLED,
									  -1, false);
			calls_succeeded++;
		}
		if (any)
			moved[nmoved++] = &r->tx;
	}
	if (nmoved > 0)
		tcc_finish_all_if_done(nmoved, moved);
}

/*
 * lock_round
 *		Group the n calls (sorted by gid) by transaction and lock all those
 *		in one statement; returns how many transactions, in *txs.
 */
static int
lock_round(TccCall **calls, int n, RoundTx **txs)
{
	const char **gids = palloc(n * sizeof(char *));
	GlobalTx   *rows = palloc(n * sizeof(GlobalTx));
	GlobalLock *locks = palloc(n * sizeof(GlobalLock));
	RoundTx    *round = palloc(n * sizeof(RoundTx));
	int			ntxs = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (i > 0 && strcmp(calls[i]->gid, calls[i - 1]->gid) == 0)
		{
			round[ntxs - 1].ncalls++;
			continue;
		}
		gids[ntxs] = calls[i]->gid;
		round[ntxs].first = i;
		round[ntxs].ncalls = 1;
		ntxs++;
	}
	tcc_lock_global_txs_nowait(ntxs, gids, rows, locks);
	for (i = 0; i < ntxs; i++)
	{
		round[i].lock = locks[i];
		round[i].tx = rows[i];
	}
	*txs = round;
	return ntxs;
}

/*
 * tcc_record_outcomes
 *		Record the outcomes of the remote calls in done, all in one
 *		transaction, and free them; returns (in tcc_calls_context) those whose
 *		transaction was busy, to be recorded in a later round.
 *
 * Every transaction of the round is locked by one statement.  The outcomes
 * that only end their branches (record_successes) are recorded together,
 * with one look for what is left; any other (a failure, a saga or msg
 * step) is recorded on its own, with every call of its transaction, in
 * the order they came.
 */
List *
tcc_record_outcomes(List *done)
{
	List	   *deferred = NIL;
	int			n = list_length(done);
	TccCall   **calls;
	RoundTx    *txs;
	RoundTx   **succeeded;
	int			ntxs;
	int			nsucceeded = 0;
	int			i;
	int			t;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	tcc_commit_durably();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "recording outcomes");

	calls = sorted_calls(done);
	ntxs = lock_round(calls, n, &txs);
	succeeded = palloc(ntxs * sizeof(RoundTx *));

	for (t = 0; t < ntxs; t++)
	{
		RoundTx    *r = &txs[t];
		TccCall   **mine = &calls[r->first];

		if (r->lock == GLOBAL_LOCKED &&
			only_successes_in_phase(&r->tx, mine, r->ncalls))
		{
			succeeded[nsucceeded++] = r;
			continue;
		}
		for (i = 0; i < r->ncalls; i++)
		{
			if (r->lock == GLOBAL_BUSY)
			{
				tcc_add_call(&deferred, mine[i]);
				continue;
			}
			if (r->lock == GLOBAL_LOCKED)
				record_in(&r->tx, mine[i], NULL);
			/* else: gone, nothing left to record it in */
			tcc_free_call(mine[i]);
		}
	}
	if (nsucceeded > 0)
		record_successes(succeeded, nsucceeded, calls);
	/* the statements copied what they needed: the calls can go */
	for (t = 0; t < nsucceeded; t++)
		for (i = 0; i < succeeded[t]->ncalls; i++)
			tcc_free_call(calls[succeeded[t]->first + i]);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	return deferred;
}
