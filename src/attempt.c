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
 * a round of one, written by the same statement with its values as
 * parameters instead of arrays (tcc_spi_exec_rows says why), so the rule
 * lives in one place, ATTEMPT_UPDATE.
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

/* the columns of an attempt, as the statement takes them */
#define ATTEMPT_COLUMNS	11

/*
 * The statement, with the attempts as rows a(gid, branch_id, ran_in,
 * new_status, retry_ms, with_error, error, sqlstate, detail, hint,
 * context, i): i numbers them from 1, and is what it returns for each
 * branch it wrote.
 *
 * With many attempts (arrays), bound also finds the branches by the gids
 * given, so that whichever way the join is planned no branch of another
 * transaction is read: a generic plan made while tcc.branch was nearly
 * empty scans the branches in the outer loop, and without the bound it
 * would scan all of them for every round once the table has grown.
 */
#define ATTEMPT_UPDATE(attempts, bound) \
	"UPDATE tcc.branch b" \
	"   SET status = a.new_status," \
	"       attempts = b.attempts +" \
	"           CASE a.ran_in WHEN 'registered' THEN 0 ELSE 1 END," \
	"       last_attempt_at = now()," \
	"       next_attempt_at =" \
	"           now() + a.retry_ms * interval '1 millisecond'," \
	"       last_error = CASE WHEN a.with_error" \
	"                    THEN a.error ELSE b.last_error END," \
	"       last_sqlstate = CASE WHEN a.with_error" \
	"                       THEN a.sqlstate ELSE b.last_sqlstate END," \
	"       last_detail = CASE WHEN a.with_error" \
	"                     THEN a.detail ELSE b.last_detail END," \
	"       last_hint = CASE WHEN a.with_error" \
	"                   THEN a.hint ELSE b.last_hint END," \
	"       last_context = CASE WHEN a.with_error" \
	"                      THEN a.context ELSE b.last_context END," \
	"       updated_at = now()" \
	"  FROM " attempts \
	"       AS a(gid, branch_id, ran_in, new_status, retry_ms, with_error," \
	"            error, sqlstate, detail, hint, context, i)" \
	" WHERE b.gid = a.gid AND b.branch_id = a.branch_id" \
	"   AND b.status = a.ran_in" bound \
	" RETURNING a.i"

/*
 * attempt_columns
 *		The columns of the n attempts, for tcc_spi_exec_rows.
 */
static void
attempt_columns(int n, TccAttempt *attempts, Datum **cols, bool **nulls)
{
	const char **text_cols[9];
	int			c;
	int			i;

	for (c = 0; c < 9; c++)
		text_cols[c] = palloc0(n * sizeof(char *));
	cols[4] = palloc(n * sizeof(Datum));
	nulls[4] = palloc(n * sizeof(bool));
	cols[5] = palloc(n * sizeof(Datum));
	nulls[5] = palloc0(n * sizeof(bool));
	for (i = 0; i < n; i++)
	{
		TccAttempt *a = &attempts[i];

		Assert(a->tx->locked && strcmp(a->tx->gid, a->call->gid) == 0);
		text_cols[0][i] = a->call->gid;
		text_cols[1][i] = a->call->branch_id;
		text_cols[2][i] = tcc_branch_status_name(a->call->ran_in);
		text_cols[3][i] = tcc_branch_status_name(a->new_status);
		cols[4][i] = Float8GetDatum(a->retry_in_ms);
		nulls[4][i] = a->retry_in_ms < 0;
		cols[5][i] = BoolGetDatum(a->with_error);
		if (a->with_error)
		{
			const char *fields[5];

			tcc_error_fields(a->call, fields);
			for (c = 0; c < 5; c++)
				text_cols[4 + c][i] = fields[c];
		}
	}
	for (c = 0; c < 4; c++)
		tcc_text_column(text_cols[c], n, &cols[c], &nulls[c]);
	for (c = 0; c < 5; c++)
		tcc_text_column(text_cols[4 + c], n, &cols[6 + c], &nulls[6 + c]);
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
 */
void
tcc_record_attempts(int n, TccAttempt *attempts)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static const Oid types[ATTEMPT_COLUMNS] = {TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, FLOAT8OID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID};
	Datum	   *cols[ATTEMPT_COLUMNS];
	bool	   *nulls[ATTEMPT_COLUMNS];
	uint64		nrows;
	uint64		row;
	int			i;

	if (n == 0)
		return;
	attempt_columns(n, attempts, cols, nulls);
	for (i = 0; i < n; i++)
		attempts[i].recorded = false;

	nrows = tcc_spi_exec_rows(plans,
							  ATTEMPT_UPDATE("(SELECT $1, $2, $3, $4, $5, $6,"
											 " $7, $8, $9, $10, $11,"
											 " 1::bigint)", ""),
							  ATTEMPT_UPDATE("unnest($1, $2, $3, $4, $5, $6,"
											 " $7, $8, $9, $10, $11)"
											 " WITH ORDINALITY",
											 " AND b.gid = ANY ($1)"),
							  ATTEMPT_COLUMNS, types, cols, nulls, n);

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
