/*-------------------------------------------------------------------------
 *
 * attempt.c
 *	  Writing the outcome of attempts to their branches: one call's (a
 *	  try, a local action, a failure) or those of a whole round.
 *
 * The caller holds the row lock of every attempt's global transaction
 * (global_tx.c), so no other writer changes the branches between what the
 * caller decided on and the write; the status the call ran in is checked
 * by the statement anyway, so that an attempt whose branch was moved on
 * before the lock was taken (a tcc.retry, a rollback while a try ran)
 * writes nothing.
 *
 * A round's attempts are written one statement each, by primary key.  One
 * UPDATE joined to arrays of the round's attempts was tried: under the
 * planner settings of tcc's processes its generic plan scans the
 * branches of the round's gids in the outer loop and the arrays in the
 * inner one, whatever the statistics, which is quadratic in the round
 * (40 ms for 100 attempts, where 100 lookups take about 5).  The locks and
 * the look for what is left, which can be written so that the arrays
 * drive the lookups, are taken for a whole round at once (global_tx.c,
 * branch.c).
 *
 * src/attempt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "state.h"
#include "tcc.h"

/*
 * record_one
 *		Write attempt a; whether its branch was still in the status its call
 *		ran in.
 */
static bool
record_one(TccAttempt *a)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[11] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		FLOAT8OID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[11];
	char		nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ',
		'n', 'n', 'n', 'n', 'n'};

	Assert(a->tx->locked && strcmp(a->tx->gid, a->call->gid) == 0);
	values[0] = CStringGetTextDatum(a->call->gid);
	values[1] = CStringGetTextDatum(a->call->branch_id);
	values[2] = CStringGetTextDatum(tcc_branch_status_name(a->call->ran_in));
	values[3] = CStringGetTextDatum(tcc_branch_status_name(a->new_status));
	values[4] = Float8GetDatum(a->retry_in_ms);
	nulls[4] = a->retry_in_ms < 0 ? 'n' : ' ';
	values[5] = BoolGetDatum(a->with_error);
	if (a->with_error)
	{
		const char *fields[5];
		int			i;

		tcc_error_fields(a->call, fields);
		for (i = 0; i < 5; i++)
		{
			values[6 + i] = fields[i] ? CStringGetTextDatum(fields[i]) :
				(Datum) 0;
			nulls[6 + i] = fields[i] ? ' ' : 'n';
		}
	}

	return tcc_spi_exec(&plan,
						"UPDATE tcc.branch"
						"   SET status = $4,"
						"       attempts = attempts +"
						"           CASE $3 WHEN 'registered' THEN 0"
						"           ELSE 1 END,"
						"       last_attempt_at = now(),"
						"       next_attempt_at ="
						"           now() + $5 * interval '1 millisecond',"
						"       last_error = CASE WHEN $6 THEN $7"
						"                    ELSE last_error END,"
						"       last_sqlstate = CASE WHEN $6 THEN $8"
						"                       ELSE last_sqlstate END,"
						"       last_detail = CASE WHEN $6 THEN $9"
						"                     ELSE last_detail END,"
						"       last_hint = CASE WHEN $6 THEN $10"
						"                   ELSE last_hint END,"
						"       last_context = CASE WHEN $6 THEN $11"
						"                      ELSE last_context END,"
						"       updated_at = now()"
						" WHERE gid = $1 AND branch_id = $2 AND status = $3",
						11, argtypes, values, nulls, false, 0) == 1;
}

/*
 * tcc_record_attempts
 *		Record the outcomes of the n attempts: put each one's branch, if
 *		still in the status its call ran in, in its new_status, due again in
 *		retry_in_ms (or never, when negative), with its call's error when
 *		with_error (else the last error stays, for the views); set recorded
 *		to whether it was.
 *
 * A try (CALL tcc.try, on a branch still registered) is not an attempt of
 * phase two, which is what tcc.max_attempts counts, so it leaves attempts
 * alone.
 */
void
tcc_record_attempts(int n, TccAttempt *attempts)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		TccAttempt *a = &attempts[i];

		a->recorded = record_one(a);
		if (a->recorded)
			tcc_note_due(a->call->gid, a->new_status, a->retry_in_ms);
	}
}

/*
 * tcc_record_attempt
 *		tcc_record_attempts of one attempt, call's on its branch of tx:
 *		false when the branch moved on meanwhile and nothing was written.
 *		The caller holds the row lock of tx, call's transaction.
 */
bool
tcc_record_attempt(GlobalTx *tx, TccCall *call, BranchStatus new_status,
				   double retry_in_ms, bool with_error)
{
	TccAttempt	attempt;

	attempt.tx = tx;
	attempt.call = call;
	attempt.new_status = new_status;
	attempt.retry_in_ms = retry_in_ms;
	attempt.with_error = with_error;
	tcc_record_attempts(1, &attempt);
	return attempt.recorded;
}
