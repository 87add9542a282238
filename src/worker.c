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
 *	   answer (remote.c), or, for a local action, runs it here as the
 *	   transaction's owner and records its outcome in the same transaction;
 *	4. sleeps until a call comes back, a backend wakes it at the commit of a
 *	   transaction that created work (shmem.c), the next retry is due, or
 *	   tcc.naptime passes.
 *
 * Every change of state is guarded by the status it expects, under the row
 * lock of the global transaction, so the worker and the SQL API cannot
 * overwrite each other (see coordinator.c).  The timeout scan skips rows
 * that are locked, so a transaction being committed right now is looked at
 * again a naptime later instead of being waited for; recording an outcome
 * does wait for the row lock, which a user holds only for the length of
 * one of the API's calls on a transaction in phase two (a repeated commit).
 *
 * What an outcome does depends on the mode (doc/design.md, States and Running an action).  A TCC
 * transaction's confirms (or cancels) are all due at once, and it ends when
 * the last one succeeds.  Saga and msg steps run one at a time, in order.
 * A saga's forward step that fails for good stops the saga: its completed
 * steps are compensated one at a time, newest first (record_failure,
 * abort_saga).  Every other action must succeed in the end and is retried
 * until tcc.max_attempts, after which its transaction is failed.  Whatever
 * ends a transaction, or fails it, wakes its tcc.wait callers at commit.
 *
 * Delivery is at least once.  The outcome of a call is recorded after the
 * participant answered; a crash in between (of either side) means the call
 * is made again, which the participant's fence turns into a no-op.  Nothing
 * is recorded before a call, so a crash never loses one.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/prepare.h"
#include "commands/sequence.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "tcc.h"
#include "tcc_shmem.h"

/* rows the timeout and retention statements handle per statement */
#define TCC_BATCH_SIZE		500

/* statements of retention per naptime, so purging never starves calls */
#define TCC_PURGE_BATCHES	10

/* a branch, as the key of the calls in flight */
typedef struct InFlightKey
{
	char		gid[TCC_MAX_ID_LEN + 1];
	char		branch_id[TCC_MAX_ID_LEN + 1];
} InFlightKey;

/* the branches whose call has been sent and not yet recorded */
static HTAB *in_flight = NULL;

/* the calls, from the moment they are found due until recorded */
static MemoryContext calls_context = NULL;

/* this worker's database, for messages */
static char *my_database_name = NULL;

/* counters not yet published to shared memory */
static uint64 calls_succeeded = 0;
static uint64 calls_failed = 0;

/*
 * in_flight_key
 *		The hash key of call's branch.
 */
static void
in_flight_key(InFlightKey *key, const char *gid, const char *branch_id)
{
	memset(key, 0, sizeof(InFlightKey));
	strlcpy(key->gid, gid, sizeof(key->gid));
	strlcpy(key->branch_id, branch_id, sizeof(key->branch_id));
}

/*
 * add_call
 *		Append call to a list that outlives the transaction.
 */
static void
add_call(List **list, TccCall *call)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(calls_context);

	*list = lappend(*list, call);
	MemoryContextSwitchTo(oldcontext);
}

/*
 * free_call
 *		Release a call once its outcome is recorded.
 */
static void
free_call(TccCall *call)
{
	InFlightKey key;

	in_flight_key(&key, call->gid, call->branch_id);
	(void) hash_search(in_flight, &key, HASH_REMOVE, NULL);

	pfree(call->gid);
	pfree(call->branch_id);
	pfree(call->mode);
	pfree(call->phase);
	if (call->server)
		pfree(call->server);
	pfree(call->sql);
	if (call->payload)
		pfree(call->payload);
	if (call->error)
		pfree(call->error);
	if (call->detail)
		pfree(call->detail);
	if (call->hint)
		pfree(call->hint);
	if (call->context)
		pfree(call->context);
	pfree(call);
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

/* what lock_global found */
typedef enum GlobalLock
{
	GLOBAL_LOCKED,				/* locked; *status says what it is */
	GLOBAL_BUSY,				/* somebody else holds the row */
	GLOBAL_GONE					/* purged meanwhile */
} GlobalLock;

/*
 * lock_global
 *		Lock global transaction gid's row, without waiting, and set *status
 *		(in the transaction's memory).
 *
 * The worker never waits for a row lock: a user's transaction may keep one
 * for as long as it likes (a repeated tcc.rollback in an open transaction),
 * and waiting would stall every other transaction's phase two behind it,
 * or deadlock with a user transaction that locks several gids in another
 * order.  A row that is busy is simply dealt with in a later round.
 */
static GlobalLock
lock_global(const char *gid, char **status)
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
		call->error = MemoryContextStrdup(calls_context,
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
 * record_outcome
 *		Record one call's outcome, locking its transaction first as the SQL
 *		API does; false when the transaction's row is busy and the outcome
 *		must wait for a later round.  The caller is connected to SPI inside
 *		a transaction.
 */
static bool
record_outcome(TccCall *call)
{
	char	   *status;

	Assert(IsTransactionState());
	switch (lock_global(call->gid, &status))
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
 * record_outcomes
 *		Record the outcomes of the remote calls in done, all in one
 *		transaction, and free them; returns (in calls_context) those whose
 *		transaction was busy, to be recorded in a later round.
 */
static List *
record_outcomes(List *done)
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
		if (record_outcome(call))
			free_call(call);
		else
			add_call(&deferred, call);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	return deferred;
}

/*
 * forget_session_state
 *		Drop what a local action left in the worker's session that outlives
 *		its transaction, so that the next action starts from a session as
 *		clean as a new one: session-level advisory locks (which would also
 *		block other sessions for as long as the worker lives), prepared
 *		statements and the state of sequences (currval).
 *
 * Settings are rolled back by run_local_call itself.  The restricted
 * security context already refuses the rest of what DISCARD ALL clears:
 * temporary objects, LISTEN, cursors WITH HOLD and role changes.  Advisory
 * locks taken for the transaction only are released by its commit, which
 * follows at once.
 */
static void
forget_session_state(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
	ResetSequenceCaches();
}

/*
 * run_local_call
 *		Run a local action (server NULL) here, as the transaction's owner,
 *		and record its outcome in the same transaction: the branch is
 *		confirmed exactly when the action's effects commit.
 *
 * The transaction's row is locked first, as everywhere, and the branch
 * must still be due in the same phase; if the row is busy, or the branch
 * moved on, nothing runs and false is returned (the branch is looked at
 * again in a later round).
 *
 * The action runs in a subtransaction, so that its error can be recorded.
 * The owner's rights apply, never the worker's: the user id is switched
 * with SECURITY_RESTRICTED_OPERATION (as for index expressions run by
 * maintenance commands), so the action can create no temporary objects nor
 * change the session's role, and every setting it changes is rolled back
 * afterwards, as ANALYZE does for the functions it runs.  search_path is
 * the database's default rather than the worker's own pinned one, and
 * tcc.call_timeout arms the statement timeout.  The subtransaction's abort
 * restores the user id and settings when the action fails.  What else the
 * action leaves in the session is dropped afterwards, whatever the outcome
 * (forget_session_state).
 */
static bool
run_local_call(TccCall *call)
{
	static SPIPlanPtr branch_plan = NULL;
	MemoryContext oldcontext;
	ResourceOwner oldowner;
	char	   *status;
	bool		due;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	tcc_commit_durably();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, call->sql);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	due = (lock_global(call->gid, &status) == GLOBAL_LOCKED);
	if (due)
	{
		Oid			due_types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		due_values[3];

		due_values[0] = CStringGetTextDatum(call->gid);
		due_values[1] = CStringGetTextDatum(call->branch_id);
		due_values[2] = CStringGetTextDatum(call->phase);
		due = tcc_spi_exec(&branch_plan,
						   "SELECT 1 FROM tcc.branch"
						   " WHERE gid = $1 AND branch_id = $2"
						   "   AND status = $3",
						   3, due_types, due_values, NULL, false, 1) == 1;
	}
	SPI_finish();
	if (!due)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		free_call(call);
		return false;
	}

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(call->owner)))
	{
		call->outcome = TCC_CALL_ERROR;
		call->error = psprintf("role with OID %u, which owns the global "
							   "transaction, does not exist", call->owner);
		strlcpy(call->sqlstate, "42704", sizeof(call->sqlstate));
		call->permanent = true;
	}
	else
	{
		oldcontext = CurrentMemoryContext;
		oldowner = CurrentResourceOwner;
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcontext);

		PG_TRY();
		{
			Oid			save_userid;
			int			save_sec_context;
			int			nestlevel;

			GetUserIdAndSecContext(&save_userid, &save_sec_context);
			SetUserIdAndSecContext(call->owner,
								   save_sec_context |
								   SECURITY_LOCAL_USERID_CHANGE |
								   SECURITY_RESTRICTED_OPERATION);
			nestlevel = NewGUCNestLevel();
			(void) set_config_option("search_path",
									 GetConfigOptionResetString("search_path"),
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);

			/*
			 * The statement_timeout setting arms its timer only for a
			 * client's statements; arm it here.
			 */
			if (tcc_call_timeout > 0)
				enable_timeout_after(STATEMENT_TIMEOUT, tcc_call_timeout);

			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			tcc_spi_run_action(call);
			SPI_finish();

			disable_timeout(STATEMENT_TIMEOUT, false);
			AtEOXact_GUC(false, nestlevel);
			SetUserIdAndSecContext(save_userid, save_sec_context);

			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcontext);
			CurrentResourceOwner = oldowner;
		}
		PG_CATCH();
		{
			disable_timeout(STATEMENT_TIMEOUT, false);
			tcc_spi_action_failed(call, oldcontext, oldowner);
		}
		PG_END_TRY();

		forget_session_state();
	}

	/* the error text must outlive the transaction until free_call */
	if (call->error && GetMemoryChunkContext(call->error) != calls_context)
		call->error = MemoryContextStrdup(calls_context, call->error);

	/* the row is ours already, so this cannot find it busy */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) record_outcome(call);
	SPI_finish();

	PopActiveSnapshot();
	CommitTransactionCommand();

	free_call(call);
	return true;
}

/*
 * expire_transactions
 *		Cancel the transactions still trying after their deadline, with
 *		reason "timeout", exactly as tcc.rollback would; returns how many.
 *
 * SKIP LOCKED: a transaction whose row a user holds (a commit in progress)
 * is left for the next round rather than waited for; if that commit wins,
 * the status is no longer trying and the guard below leaves it alone.
 */
static uint64
expire_transactions(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	uint64		nrows;
	uint64		row;

	values[0] = Int32GetDatum(TCC_BATCH_SIZE);
	nrows = tcc_spi_exec(&plan,
						 "WITH expired AS ("
						 "  UPDATE tcc.global_transaction g"
						 "     SET status = CASE WHEN g.mode = 'tcc'"
						 "                        AND g.branch_count > 0"
						 "                  THEN 'cancelling'"
						 "                  ELSE 'cancelled' END,"
						 "         reason = 'timeout',"
						 "         updated_at = now(),"
						 "         finished_at = CASE WHEN g.mode = 'tcc'"
						 "                             AND g.branch_count > 0"
						 "                       THEN NULL ELSE now() END"
						 "   WHERE g.gid IN ("
						 "          SELECT gid FROM tcc.global_transaction"
						 "           WHERE status = 'trying'"
						 "             AND deadline < now()"
						 "           ORDER BY deadline LIMIT $1"
						 "             FOR UPDATE SKIP LOCKED)"
						 "     AND g.status = 'trying'"
						 "  RETURNING g.gid, g.status),"
						 " branches AS ("
						 "  UPDATE tcc.branch b"
						 "     SET status = CASE e.status WHEN 'cancelling'"
						 "                  THEN 'cancelling' ELSE 'skipped' END,"
						 "         next_attempt_at = CASE e.status"
						 "             WHEN 'cancelling' THEN now() END,"
						 "         updated_at = now()"
						 "    FROM expired e"
						 "   WHERE b.gid = e.gid)"
						 "SELECT gid, status = 'cancelled' FROM expired",
						 1, argtypes, values, NULL, false, 0);

	/* those that ended here: their tcc.wait callers can return */
	for (row = 0; row < nrows; row++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[row],
									   SPI_tuptable->tupdesc, 2, &isnull)))
			tcc_wake_waiters_at_commit(SPI_getvalue(SPI_tuptable->vals[row],
													SPI_tuptable->tupdesc,
													1));
	}
	return nrows;
}

/*
 * purge_batch
 *		Delete one batch of what retention allows from tcc.global_transaction
 *		(fence false) or tcc.fence (fence true); true when the batch was
 *		full, so there may be more.
 */
static bool
purge_batch(bool fence)
{
	static SPIPlanPtr tx_plan = NULL;
	static SPIPlanPtr fence_plan = NULL;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	uint64		deleted;

	values[0] = Int32GetDatum(fence ? tcc_fence_retention : tcc_retention);
	values[1] = Int32GetDatum(TCC_BATCH_SIZE);
	if (fence)
		deleted = tcc_spi_exec(&fence_plan,
							   "DELETE FROM tcc.fence"
							   " WHERE (gid, branch_id) IN ("
							   "        SELECT gid, branch_id FROM tcc.fence"
							   "         WHERE updated_at < now() -"
							   "               $1 * interval '1 second'"
							   "         LIMIT $2 FOR UPDATE SKIP LOCKED)",
							   2, argtypes, values, NULL, false, 0);
	else
		deleted = tcc_spi_exec(&tx_plan,
							   "DELETE FROM tcc.global_transaction"
							   " WHERE gid IN ("
							   "        SELECT gid FROM tcc.global_transaction"
							   "         WHERE finished_at < now() -"
							   "               $1 * interval '1 second'"
							   "         ORDER BY finished_at LIMIT $2"
							   "           FOR UPDATE SKIP LOCKED)",
							   2, argtypes, values, NULL, false, 0);

	return deleted == TCC_BATCH_SIZE;
}

/*
 * begin_round
 *		Start a transaction connected to SPI; false (with nothing started)
 *		when the extension has been dropped, in which case the worker exits.
 */
static bool
begin_round(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("tcc", true)))
	{
		CommitTransactionCommand();
		return false;
	}
	/* a timeout cancel is acted on as soon as it commits */
	tcc_commit_durably();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	return true;
}

/*
 * end_round
 *		Commit the transaction begin_round started.
 */
static void
end_round(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * purge
 *		Up to TCC_PURGE_BATCHES batches of purge_batch(fence), each its own
 *		transaction; false when the extension is gone.
 */
static bool
purge(bool fence)
{
	int			i;

	for (i = 0; i < TCC_PURGE_BATCHES; i++)
	{
		bool		more;

		if (!begin_round(fence ? "purging fence rows" :
						 "purging finished transactions"))
			return false;
		more = purge_batch(fence);
		end_round();
		if (!more)
			break;
	}
	return true;
}

/*
 * housekeeping
 *		Timeouts and retention; false when the extension is gone.
 *
 * Each kind of work is its own transaction, so a long purge does not hold
 * back the cancels of expired transactions, and all of it is bounded per
 * call so that phase two is never starved.
 */
static bool
housekeeping(void)
{
	if (!begin_round("cancelling expired transactions"))
		return false;
	(void) expire_transactions();
	end_round();

	return (tcc_retention == 0 || purge(false)) &&
		(tcc_fence_retention == 0 || purge(true));
}

/*
 * copy_value
 *		Column col of tuple as text in calls_context, or NULL.
 */
static char *
copy_value(HeapTuple tuple, TupleDesc tupdesc, int col)
{
	char	   *value = SPI_getvalue(tuple, tupdesc, col);

	return value ? MemoryContextStrdup(calls_context, value) : NULL;
}

/*
 * new_call
 *		A call for result row row of the due-branch query, allocated in
 *		calls_context.
 */
static TccCall *
new_call(int row)
{
	TccCall    *call = MemoryContextAllocZero(calls_context, sizeof(TccCall));
	HeapTuple	tuple = SPI_tuptable->vals[row];
	TupleDesc	tupdesc = SPI_tuptable->tupdesc;
	bool		isnull;

	/*
	 * Output functions leave garbage in the current (SPI) context; only the
	 * strings are copied to calls_context, which lives as long as the
	 * worker.
	 */
	call->gid = copy_value(tuple, tupdesc, 1);
	call->branch_id = copy_value(tuple, tupdesc, 2);
	call->mode = copy_value(tuple, tupdesc, 3);
	call->phase = copy_value(tuple, tupdesc, 4);
	call->server = copy_value(tuple, tupdesc, 5);
	call->sql = copy_value(tuple, tupdesc, 6);
	call->payload = copy_value(tuple, tupdesc, 7);
	call->attempts = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 8, &isnull));
	call->owner = DatumGetObjectId(SPI_getbinval(tuple, tupdesc, 9, &isnull));
	call->outcome = TCC_CALL_PENDING;

	return call;
}

/*
 * dispatch
 *		Send the actions of the branches that are due; local ones are run
 *		(and recorded) here, after the remote ones are on their way.
 *		Calls that fail before being sent go to *done.
 *
 * Returns false when the extension is gone.  *next_due is set to when the
 * next branch becomes due (0: none is waiting; now, after local calls, as
 * more may be due already).  When tcc.max_concurrent_calls are in flight,
 * the rest waits for answers to come back.
 */
static bool
dispatch(List **done, TimestampTz *next_due)
{
	static SPIPlanPtr due_plan = NULL;
	static SPIPlanPtr next_plan = NULL;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	List	   *local = NIL;
	ListCell   *lc;
	int			room = tcc_max_concurrent_calls - tcc_remote_in_flight();
	uint64		nrows;
	uint64		row;
	bool		isnull;

	*next_due = 0;

	if (!begin_round("sending due actions"))
		return false;

	if (room > 0)
	{
		/*
		 * Branches in flight are still due in the table; ask for enough
		 * rows to find room new ones among them (room plus those in
		 * flight).  Confirms go in registration order, cancels in reverse.
		 */
		values[0] = Int32GetDatum(tcc_max_concurrent_calls);
		nrows = tcc_spi_exec(&due_plan,
							 "SELECT b.gid, b.branch_id, g.mode, b.status,"
							 "       b.server,"
							 "       CASE b.status WHEN 'confirming'"
							 "       THEN b.confirm_sql ELSE b.cancel_sql END,"
							 "       b.payload, b.attempts, g.owner::oid"
							 "  FROM tcc.branch b"
							 "  JOIN tcc.global_transaction g ON g.gid = b.gid"
							 " WHERE b.status IN ('confirming', 'cancelling')"
							 "   AND b.next_attempt_at <= now()"
							 " ORDER BY b.next_attempt_at, b.gid,"
							 "          CASE b.status WHEN 'confirming'"
							 "          THEN b.seq ELSE -b.seq END"
							 " LIMIT $1",
							 1, argtypes, values, NULL, true, 0);

		for (row = 0; row < nrows && room > 0; row++)
		{
			InFlightKey key;
			bool		found;
			TccCall    *call;

			in_flight_key(&key,
						  SPI_getvalue(SPI_tuptable->vals[row],
									   SPI_tuptable->tupdesc, 1),
						  SPI_getvalue(SPI_tuptable->vals[row],
									   SPI_tuptable->tupdesc, 2));
			(void) hash_search(in_flight, &key, HASH_ENTER, &found);
			if (found)
				continue;

			call = new_call(row);
			room--;

			/* a compensation may be absent: nothing to undo */
			if (call->sql == NULL)
			{
				call->sql = MemoryContextStrdup(calls_context, "");
				call->outcome = TCC_CALL_DONE;
				add_call(done, call);
			}
			else if (call->server == NULL)
				add_call(&local, call);
			else
			{
				ForeignServer *server;
				TccRefusal	refusal;

				/* dropped or replaced since the registration */
				if (!tcc_participant_server(call->server, &server, &refusal))
				{
					call->outcome = TCC_CALL_ERROR;
					call->error = MemoryContextStrdup(calls_context,
													  refusal.message);
					strlcpy(call->sqlstate, refusal.sqlstate,
							sizeof(call->sqlstate));
					call->permanent = true;
					add_call(done, call);
				}
				else
				{
					call->serverid = server->serverid;
					tcc_remote_send(call, done);
				}
			}
		}
	}

	/* when the next retry is due, so the worker can sleep until then */
	if (tcc_spi_exec(&next_plan,
					 "SELECT min(next_attempt_at) FROM tcc.branch"
					 " WHERE status IN ('confirming', 'cancelling')"
					 "   AND next_attempt_at > now()",
					 0, NULL, NULL, NULL, true, 1) == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			*next_due = DatumGetTimestampTz(d);
	}

	end_round();

	foreach(lc, local)
	{
		/*
		 * Local calls are recorded here, so no answer will wake the worker
		 * for the branches the LIMIT left out (or the next saga step): look
		 * again at once, not a naptime later.  A call that could not run
		 * (its transaction busy) waits for the naptime instead.
		 */
		if (run_local_call((TccCall *) lfirst(lc)))
			*next_due = GetCurrentTimestamp();
	}
	list_free(local);

	return true;
}

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
	Oid			dboid = DatumGetObjectId(main_arg);
	List	   *done = NIL;		/* calls with an outcome to record */
	List	   *deferred = NIL; /* ... whose transaction was busy */
	TimestampTz next_housekeeping = 0;
	HASHCTL		ctl;
	bool		extension_exists;
	MemoryContext loop_context;

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

	calls_context = AllocSetContextCreate(TopMemoryContext, "tcc calls",
										  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(InFlightKey);
	ctl.entrysize = sizeof(InFlightKey);
	in_flight = hash_create("tcc calls in flight", 256, &ctl,
							HASH_ELEM | HASH_BLOBS);
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
		TimestampTz wake_at;
		long		sleep_ms;
		long		stats_ms;

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
		{
			List	   *again;

			done = list_concat(done, deferred);
			list_free(deferred);
			again = record_outcomes(done);
			list_free(done);
			done = NIL;
			deferred = again;
		}

		now = GetCurrentTimestamp();
		if (now >= next_housekeeping)
		{
			if (!housekeeping())
				worker_exit_absent();
			next_housekeeping = now + (int64) tcc_naptime * 1000;
		}

		if (!dispatch(&done, &next_due))
			worker_exit_absent();

		tcc_worker_count(calls_succeeded, calls_failed,
						 tcc_remote_open_connections());
		calls_succeeded = calls_failed = 0;

		/* calls that failed before being sent are recorded right away */
		if (done != NIL)
			continue;
		/* (deferred ones wait, at most a naptime, for their row's lock) */

		wake_at = next_housekeeping;
		if (next_due != 0 && next_due < wake_at)
			wake_at = next_due;
		now = GetCurrentTimestamp();
		sleep_ms = wake_at > now ? (long) ((wake_at - now + 999) / 1000) : 0;

		/*
		 * Publish what this worker's transactions did to the cumulative
		 * statistics (at most once a second), as a backend does when idle:
		 * otherwise autovacuum never hears of the rows it updates and
		 * deletes, nor pg_stat_* of its commits and WAL, until it exits.
		 * Pending counts are retried within the interval it returns.
		 */
		stats_ms = pgstat_report_stat(false);
		if (stats_ms > 0 && stats_ms < sleep_ms)
			sleep_ms = stats_ms;

		if (tcc_remote_in_flight() == 0)
			tcc_worker_set_state(TCC_SLOT_IDLE);
		MemoryContextSwitchTo(loop_context);
		tcc_remote_wait(sleep_ms, &done);
	}
}
