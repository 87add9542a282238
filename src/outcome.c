/*-------------------------------------------------------------------------
 *
 * outcome.c
 *	  Recording the outcome of a call, which moves its branch and its
 *	  global transaction on: the SQLSTATE policy (what is retried, what
 *	  fails at once, what makes a saga compensate), the backoff between
 *	  attempts, the next saga step or compensation, and the end of a
 *	  transaction (doc/design.md, States and Running an action).
 *
 * Every change is guarded by the status it expects, under the global
 * transaction's row lock, which the worker takes without waiting
 * (tcc_lock_global): a row a user holds is dealt with in a later round.
 *
 * src/outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

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
 *		that the step is tried again rather than failing (doc/design.md, Running an action).
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
 * tcc_lock_global
 *		Lock global transaction gid's row, without waiting, and set *status
 *		(in the transaction's memory).
 *
 * The worker never waits for a row lock: a user's transaction may keep one
 * for as long as it likes (a repeated tcc.rollback in an open transaction),
 * and waiting would stall every other transaction's phase two behind it,
 * or deadlock with a user transaction that locks several gids in another
 * order.  A row that is busy is simply dealt with in a later round.
 */
GlobalLock
tcc_lock_global(const char *gid, char **status)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr exists_plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(gid);
	if (tcc_spi_exec(&lock_plan,
					 "SELECT status FROM tcc.global_transaction"
					 " WHERE gid = $1 FOR UPDATE SKIP LOCKED",
					 1, argtypes, values, NULL, false, 1) == 1)
	{
		*status = tcc_spi_getstring(0, 1);
		return GLOBAL_LOCKED;
	}
	if (tcc_spi_exec(&exists_plan,
					 "SELECT 1 FROM tcc.global_transaction WHERE gid = $1",
					 1, argtypes, values, NULL, false, 1) == 1)
		return GLOBAL_BUSY;
	return GLOBAL_GONE;
}

/*
 * finish_transaction
 *		End global transaction gid, in phase phase, when none of its
 *		branches is left to run: confirming becomes confirmed, cancelling
 *		becomes cancelled.  Steps that never ran (skipped) and the saga step
 *		whose failure started the compensation (aborted) do not hold it up.
 */
static void
finish_transaction(const char *gid, const char *phase)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(gid);
	values[1] = CStringGetTextDatum(phase);
	if (tcc_spi_exec(&plan,
					 "UPDATE tcc.global_transaction"
					 "   SET status = CASE $2 WHEN 'confirming'"
					 "                THEN 'confirmed' ELSE 'cancelled' END,"
					 "       finished_at = now(), updated_at = now()"
					 " WHERE gid = $1 AND status = $2"
					 "   AND NOT EXISTS ("
					 "        SELECT 1 FROM tcc.branch"
					 "         WHERE gid = $1"
					 "           AND status NOT IN ('skipped', 'aborted',"
					 "                CASE $2 WHEN 'confirming'"
					 "                THEN 'confirmed' ELSE 'cancelled' END))",
					 2, argtypes, values, NULL, false, 0) > 0)
		tcc_wake_waiters_at_commit(gid);
}

/*
 * start_next
 *		Make the next saga or msg step of gid due, and return true; false
 *		when there is none left.
 *
 * Forward, the next step is the first one not yet run.  Backward (a saga
 * being compensated), it is the last one that completed: the steps are
 * undone one at a time, newest first.  attempts restarts from zero, as
 * tcc.max_attempts applies to the compensation's own.
 */
static bool
start_next(const char *gid, bool forward)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(gid);
	if (forward)
		return tcc_spi_exec(&plans[0],
							"UPDATE tcc.branch"
							"   SET status = 'confirming',"
							"       next_attempt_at = now(), updated_at = now()"
							" WHERE gid = $1"
							"   AND seq = (SELECT min(seq) FROM tcc.branch"
							"               WHERE gid = $1"
							"                 AND status = 'registered')",
							1, argtypes, values, NULL, false, 0) > 0;
	return tcc_spi_exec(&plans[1],
						"UPDATE tcc.branch"
						"   SET status = 'cancelling', attempts = 0,"
						"       next_attempt_at = now(), updated_at = now()"
						" WHERE gid = $1"
						"   AND seq = (SELECT max(seq) FROM tcc.branch"
						"               WHERE gid = $1"
						"                 AND status = 'confirmed')",
						1, argtypes, values, NULL, false, 0) > 0;
}

/*
 * record_success
 *		The action of call's branch succeeded: the branch is done, and its
 *		transaction moves on or ends.
 *
 * A TCC transaction's branches run side by side, and the transaction ends
 * when the last one is done.  Saga and msg steps run one at a time: a
 * forward step's success makes the next step due, and a saga compensation's
 * success makes the compensation of the step before it due.
 */
static void
record_success(TccCall *call, const char *status)
{
	static SPIPlanPtr branch_plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	bool		confirming = (strcmp(call->phase, "confirming") == 0);

	values[0] = CStringGetTextDatum(call->gid);
	values[1] = CStringGetTextDatum(call->branch_id);
	values[2] = CStringGetTextDatum(call->phase);

	if (tcc_spi_exec(&branch_plan,
					 "UPDATE tcc.branch"
					 "   SET status = CASE $3 WHEN 'confirming'"
					 "                THEN 'confirmed' ELSE 'cancelled' END,"
					 "       attempts = attempts + 1,"
					 "       last_attempt_at = now(),"
					 "       next_attempt_at = NULL,"
					 "       updated_at = now()"
					 " WHERE gid = $1 AND branch_id = $2 AND status = $3",
					 3, argtypes, values, NULL, false, 0) == 0)
		return;					/* reset by tcc.retry meanwhile */

	/* a failed transaction stays failed until tcc.retry */
	if (strcmp(status, call->phase) != 0)
		return;

	if (strcmp(call->mode, "tcc") != 0 &&
		start_next(call->gid, confirming))
		return;

	finish_transaction(call->gid, call->phase);
}

/*
 * abort_saga
 *		Call's forward step of a saga failed for good: stop the saga and
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
 *	 compensated too, first.  With the fence on the participant, that
 *	 compensation is an empty rollback when the action never ran, and it
 *	 refuses the action should it still arrive.
 */
static void
abort_saga(TccCall *call, bool outcome_unknown)
{
	static SPIPlanPtr step_plan = NULL;
	static SPIPlanPtr skip_plan = NULL;
	static SPIPlanPtr global_plan = NULL;
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, BOOLOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(call->gid);
	values[1] = CStringGetTextDatum(call->branch_id);
	tcc_error_params(call, &values[2], &nulls[2]);
	values[7] = BoolGetDatum(outcome_unknown);

	/* a compensation gets attempts of its own */
	if (tcc_spi_exec(&step_plan,
					 "UPDATE tcc.branch"
					 "   SET status = CASE WHEN $8 THEN 'cancelling'"
					 "                ELSE 'aborted' END,"
					 "       attempts = CASE WHEN $8 THEN 0"
					 "                  ELSE attempts + 1 END,"
					 "       last_attempt_at = now(),"
					 "       next_attempt_at = CASE WHEN $8 THEN now() END,"
					 "       last_error = $3, last_sqlstate = $4,"
					 "       last_detail = $5, last_hint = $6,"
					 "       last_context = $7,"
					 "       updated_at = now()"
					 " WHERE gid = $1 AND branch_id = $2"
					 "   AND status = 'confirming'",
					 8, argtypes, values, nulls, false, 0) == 0)
		return;

	(void) tcc_spi_exec(&skip_plan,
						"UPDATE tcc.branch"
						"   SET status = 'skipped', updated_at = now()"
						" WHERE gid = $1 AND status = 'registered'",
						1, argtypes, values, NULL, false, 0);

	(void) tcc_spi_exec(&global_plan,
						"UPDATE tcc.global_transaction"
						"   SET status = 'cancelling',"
						"       reason = format('step %s failed: %s', $2, $3),"
						"       updated_at = now()"
						" WHERE gid = $1 AND status = 'confirming'",
						3, argtypes, values, NULL, false, 0);

	if (!outcome_unknown && !start_next(call->gid, false))
		finish_transaction(call->gid, "cancelling");
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
record_failure(TccCall *call, const char *status)
{
	static SPIPlanPtr branch_plan = NULL;
	static SPIPlanPtr global_plan = NULL;
	Oid			argtypes[10] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, BOOLOID, FLOAT8OID};
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
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
	saga_step = strcmp(call->mode, "saga") == 0 &&
		strcmp(call->phase, "confirming") == 0 &&
		strcmp(status, "confirming") == 0;

	if (saga_step && !call->permanent)
	{
		if (call->outcome == TCC_CALL_NOT_DONE ||
			!sqlstate_is_transient(call->sqlstate))
		{
			abort_saga(call, false);
			return;
		}
		if (out_of_attempts)
		{
			abort_saga(call, true);
			return;
		}
	}

	give_up = call->permanent || out_of_attempts;

	values[0] = CStringGetTextDatum(call->gid);
	values[1] = CStringGetTextDatum(call->branch_id);
	values[2] = CStringGetTextDatum(call->phase);
	tcc_error_params(call, &values[3], &nulls[3]);
	values[8] = BoolGetDatum(give_up);
	values[9] = Float8GetDatum(give_up ? 0.0 :
							   retry_delay_ms(call->attempts + 1));

	if (tcc_spi_exec(&branch_plan,
					 "UPDATE tcc.branch"
					 "   SET status = CASE WHEN $9 THEN 'failed'"
					 "                ELSE status END,"
					 "       attempts = attempts + 1,"
					 "       last_attempt_at = now(),"
					 "       next_attempt_at = CASE WHEN $9 THEN NULL"
					 "           ELSE now() + $10 * interval '1 millisecond'"
					 "           END,"
					 "       last_error = $4, last_sqlstate = $5,"
					 "       last_detail = $6, last_hint = $7,"
					 "       last_context = $8,"
					 "       updated_at = now()"
					 " WHERE gid = $1 AND branch_id = $2 AND status = $3",
					 10, argtypes, values, nulls, false, 0) == 0)
		return;

	if (give_up && strcmp(status, call->phase) == 0)
	{
		/* $5 is the mode here, which words the error */
		values[4] = CStringGetTextDatum(call->mode);
		if (tcc_spi_exec(&global_plan,
						 "UPDATE tcc.global_transaction"
						 "   SET status = 'failed', failed_phase = $3,"
						 "       last_error = format("
						 "           CASE WHEN $5 = 'tcc' THEN"
						 "             CASE $3 WHEN 'confirming'"
						 "             THEN 'confirm of branch %s: %s'"
						 "             ELSE 'cancel of branch %s: %s' END"
						 "           ELSE"
						 "             CASE $3 WHEN 'confirming'"
						 "             THEN 'step %s: %s'"
						 "             ELSE 'compensation of step %s: %s' END"
						 "           END, $2, $4),"
						 "       updated_at = now()"
						 " WHERE gid = $1 AND status = $3",
						 5, argtypes, values, NULL, false, 0) > 0)
			tcc_wake_waiters_at_commit(call->gid);
	}
}

/*
 * tcc_record_outcome
 *		Record one call's outcome, locking its transaction first as the SQL
 *		API does; false when the transaction's row is busy and the outcome
 *		must wait for a later round.  The caller is connected to SPI inside
 *		a transaction.
 */
bool
tcc_record_outcome(TccCall *call)
{
	char	   *status;

	Assert(IsTransactionState());
	switch (tcc_lock_global(call->gid, &status))
	{
		case GLOBAL_BUSY:
			return false;
		case GLOBAL_GONE:
			return true;		/* nothing left to record it in */
		case GLOBAL_LOCKED:
			break;
	}

	if (call->outcome == TCC_CALL_DONE)
	{
		record_success(call, status);
		calls_succeeded++;
	}
	else
	{
		record_failure(call, status);
		calls_failed++;
	}
	return true;
}

/*
 * tcc_record_outcomes
 *		Record the outcomes of the remote calls in done, all in one
 *		transaction, and free them; returns (in tcc_calls_context) those whose
 *		transaction was busy, to be recorded in a later round.
 */
List *
tcc_record_outcomes(List *done)
{
	List	   *deferred = NIL;
	ListCell   *lc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	tcc_commit_durably();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "recording outcomes");

	foreach(lc, done)
	{
		TccCall    *call = (TccCall *) lfirst(lc);

		/* the statements copied what they needed: the call can go */
		if (tcc_record_outcome(call))
			tcc_free_call(call);
		else
			tcc_add_call(&deferred, call);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	return deferred;
}
