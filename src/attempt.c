/*-------------------------------------------------------------------------
 *
 * attempt.c
 *	  Writing the outcome of attempts to their branches: one call's (a
 *	  try, a local action, a failure) or a whole round's at once, in one
 *	  statement either way.
 *
 * A dispatcher records the outcomes of every call that came back since its
 * last round in one transaction (outcome.c); it writes the branches of all
 * those that only move their branch on in one UPDATE, so that a round of
 * many outcomes pays for one statement, not one each.  A single outcome is
 * a round of one: there is one statement, and one place for its rule.
 *
 * The caller holds the row lock of every attempt's global transaction
 * (global_tx.c), so no other writer changes the branches between what the
 * caller decided on and the write; the status the call ran in is checked
 * by the statement anyway, so that an attempt whose branch was moved on
 * before the lock was taken (a tcc.retry, a rollback while a try ran)
 * writes nothing.
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

/* the columns of an attempt, as the arrays of the statement take them */
#define ATTEMPT_COLUMNS	11

/*
 * attempt_columns
 *		The parameters of the statement of tcc_record_attempts: one array per
 *		column, an element per attempt.
 */
static void
attempt_columns(int n, TccAttempt *attempts, Datum *values)
{
	const char **text_cols[9];
	Datum	   *retry = palloc(n * sizeof(Datum));
	bool	   *retry_null = palloc(n * sizeof(bool));
	Datum	   *with_error = palloc(n * sizeof(Datum));
	int			c;
	int			i;

	for (c = 0; c < 9; c++)
		text_cols[c] = palloc0(n * sizeof(char *));
	for (i = 0; i < n; i++)
	{
		TccAttempt *a = &attempts[i];
		const char *fields[5];

		Assert(a->tx->locked && strcmp(a->tx->gid, a->call->gid) == 0);
		text_cols[0][i] = a->call->gid;
		text_cols[1][i] = a->call->branch_id;
		text_cols[2][i] = tcc_branch_status_name(a->call->ran_in);
		text_cols[3][i] = tcc_branch_status_name(a->new_status);
		retry[i] = Float8GetDatum(a->retry_in_ms);
		retry_null[i] = a->retry_in_ms < 0;
		with_error[i] = BoolGetDatum(a->with_error);
		if (a->with_error)
		{
			tcc_error_fields(a->call, fields);
			for (c = 0; c < 5; c++)
				text_cols[4 + c][i] = fields[c];
		}
	}
	for (c = 0; c < 4; c++)
		values[c] = tcc_text_array_param(text_cols[c], n);
	values[4] = tcc_array_param(FLOAT8OID, retry, retry_null, n);
	values[5] = tcc_array_param(BOOLOID, with_error, NULL, n);
	for (c = 0; c < 5; c++)
		values[6 + c] = tcc_text_array_param(text_cols[4 + c], n);
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
 * alone.  No two attempts may be of one branch: the calls in flight are
 * kept apart by branch (dispatch.c), so a round never has two.
 *
 * The statement joins the attempts to the branches by primary key; with
 * the planner settings of tcc's processes (tcc_worker_pin_session) and of
 * the SQL functions (tcc_spi_begin) that is a nested loop over the
 * attempts with a lookup of each branch, whatever the statistics say.
 */
void
tcc_record_attempts(int n, TccAttempt *attempts)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[ATTEMPT_COLUMNS] = {TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, BOOLARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[ATTEMPT_COLUMNS];
	uint64		nrows;
	uint64		row;
	int			i;

	if (n == 0)
		return;
	attempt_columns(n, attempts, values);
	for (i = 0; i < n; i++)
		attempts[i].recorded = false;

	nrows = tcc_spi_exec(&plan,
						 "UPDATE tcc.branch b"
						 "   SET status = a.new_status,"
						 "       attempts = b.attempts +"
						 "           CASE a.ran_in WHEN 'registered' THEN 0"
						 "           ELSE 1 END,"
						 "       last_attempt_at = now(),"
						 "       next_attempt_at ="
						 "           now() + a.retry_ms * interval '1 millisecond',"
						 "       last_error = CASE WHEN a.with_error"
						 "                    THEN a.error ELSE b.last_error END,"
						 "       last_sqlstate = CASE WHEN a.with_error"
						 "                       THEN a.sqlstate"
						 "                       ELSE b.last_sqlstate END,"
						 "       last_detail = CASE WHEN a.with_error"
						 "                     THEN a.detail"
						 "                     ELSE b.last_detail END,"
						 "       last_hint = CASE WHEN a.with_error"
						 "                   THEN a.hint ELSE b.last_hint END,"
						 "       last_context = CASE WHEN a.with_error"
						 "                      THEN a.context"
						 "                      ELSE b.last_context END,"
						 "       updated_at = now()"
						 "  FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9,"
						 "              $10, $11) WITH ORDINALITY"
						 "       AS a(gid, branch_id, ran_in, new_status,"
						 "            retry_ms, with_error, error, sqlstate,"
						 "            detail, hint, context, i)"
						 " WHERE b.gid = a.gid AND b.branch_id = a.branch_id"
						 "   AND b.status = a.ran_in"
						 " RETURNING a.i",
						 ATTEMPT_COLUMNS, argtypes, values, NULL, false, 0);

	for (row = 0; row < nrows; row++)
	{
		bool		isnull;
		int64		ord = DatumGetInt64(tcc_spi_getdatum(row, 1, &isnull));
		TccAttempt *a;

		Assert(ord >= 1 && ord <= n);
		a = &attempts[ord - 1];
		a->recorded = true;
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
