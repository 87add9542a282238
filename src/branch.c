/*-------------------------------------------------------------------------
 *
 * branch.c
 *	  The rows of a global transaction's branches, and every statement
 *	  that writes them: registration, the edges their transaction moves
 *	  them along (through state.c), and the outcome of each attempt.
 *
 * Every statement here runs under the row lock of the branch's global
 * transaction, taken by the caller (global_tx.c), so two writers of one
 * branch never interleave: a user's call and the worker, or two worker
 * processes, decide on what they found under that lock.
 *
 * One rule sets a branch's schedule, and lives in BRANCH_SCHEDULE: a
 * branch that is put in confirming or cancelling starts that phase, due
 * now, with tcc.max_attempts counting its attempts from zero; a branch put
 * in any other status is due never.  An attempt's outcome reschedules the
 * branch itself (tcc_record_attempt).
 *
 * src/branch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "state.h"
#include "tcc.h"

/* see the file header; $2 is the new status */
#define BRANCH_SCHEDULE \
	"UPDATE tcc.branch" \
	"   SET status = $2," \
	"       attempts = CASE WHEN $2 IN ('confirming', 'cancelling')" \
	"                  THEN 0 ELSE attempts END," \
	"       next_attempt_at = CASE WHEN $2 IN ('confirming', 'cancelling')" \
	"                         THEN now() END," \
	"       updated_at = now()" \
	" WHERE gid = $1"

/* the statements of set_branches, by BranchSet; $3 is the branch id */
static const char *const set_branches_sql[] = {
	[BRANCHES_ALL] = BRANCH_SCHEDULE,
	[BRANCHES_REGISTERED] = BRANCH_SCHEDULE " AND status = 'registered'",
	[BRANCHES_FIRST_REGISTERED] = BRANCH_SCHEDULE
	"   AND seq = (SELECT min(seq) FROM tcc.branch"
	"               WHERE gid = $1 AND status = 'registered')",
	[BRANCHES_LAST_CONFIRMED] = BRANCH_SCHEDULE
	"   AND seq = (SELECT max(seq) FROM tcc.branch"
	"               WHERE gid = $1 AND status = 'confirmed')",
	[BRANCHES_TO_RETRY] = BRANCH_SCHEDULE
	"   AND status IN ('failed', $2)",
	[BRANCHES_ONE] = BRANCH_SCHEDULE " AND branch_id = $3",
};

/*
 * tcc_insert_branch
 *		Add branch branch_id, registered, to tx with sequence number seq;
 *		false when tx has a branch of that id already.
 */
bool
tcc_insert_branch(GlobalTx *tx, const char *branch_id, int32 seq,
				  const char *server, text *action_sql, text *undo_sql,
				  Jsonb *payload)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[7] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID,
		TEXTOID, JSONBOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	Assert(tx->locked);
	values[0] = CStringGetTextDatum(tx->gid);
	values[1] = CStringGetTextDatum(branch_id);
	values[2] = Int32GetDatum(seq);
	values[3] = server ? CStringGetTextDatum(server) : (Datum) 0;
	nulls[3] = server ? ' ' : 'n';
	values[4] = PointerGetDatum(action_sql);
	values[5] = PointerGetDatum(undo_sql);
	nulls[5] = undo_sql ? ' ' : 'n';
	values[6] = payload ? JsonbPGetDatum(payload) : (Datum) 0;
	nulls[6] = payload ? ' ' : 'n';

	return tcc_spi_exec(&plan,
						"INSERT INTO tcc.branch"
						"  (gid, branch_id, seq, server, confirm_sql,"
						"   cancel_sql, payload, created_at, updated_at)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())"
						" ON CONFLICT (gid, branch_id) DO NOTHING",
						7, argtypes, values, nulls, false, 0) == 1;
}

/*
 * set_branches
 *		Put the branches of tx that which (with branch_id, for BRANCHES_ONE)
 *		selects in new_status, scheduled as the file header says; true when
 *		there was one.
 */
static bool
set_branches(GlobalTx *tx, BranchSet which, const char *branch_id,
			 BranchStatus new_status)
{
	static SPIPlanPtr plans[lengthof(set_branches_sql)];
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	Assert(tx->locked);
	values[0] = CStringGetTextDatum(tx->gid);
	values[1] = CStringGetTextDatum(tcc_branch_status_name(new_status));
	values[2] = branch_id ? CStringGetTextDatum(branch_id) : (Datum) 0;
	nulls[2] = branch_id ? ' ' : 'n';

	Assert((which == BRANCHES_ONE) == (branch_id != NULL));
	return tcc_spi_exec(&plans[which], set_branches_sql[which],
						3, argtypes, values, nulls, false, 0) > 0;
}

/*
 * tcc_set_branches
 *		Put the branches of tx that which selects in new_status; true when
 *		there was one.  The caller holds tx's row lock.
 */
bool
tcc_set_branches(GlobalTx *tx, BranchSet which, BranchStatus new_status)
{
	return set_branches(tx, which, NULL, new_status);
}

/*
 * tcc_set_branch
 *		Put branch branch_id of tx in new_status.  The caller holds tx's row
 *		lock.
 */
void
tcc_set_branch(GlobalTx *tx, const char *branch_id, BranchStatus new_status)
{
	(void) set_branches(tx, BRANCHES_ONE, branch_id, new_status);
}

/*
 * tcc_record_attempt
 *		Record the outcome of call's attempt on its branch of tx, which must
 *		still be in the status the call ran in: put the branch in new_status,
 *		due again in retry_in_ms (or never, when negative), with call's
 *		error when with_error (else the last error stays, for the views); false
 *		when the branch moved on meanwhile (a tcc.retry, a rollback while a
 *		try ran) and nothing was written.
 *
 * A try (CALL tcc.try, on a branch still registered) is not an attempt of
 * phase two, which is what tcc.max_attempts counts, so it leaves attempts
 * alone.  The caller holds the row lock of tx, call's transaction.
 */
bool
tcc_record_attempt(GlobalTx *tx, TccCall *call, BranchStatus new_status,
				   double retry_in_ms, bool with_error)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[11] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		FLOAT8OID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[11];
	char		nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ',
		'n', 'n', 'n', 'n', 'n'};
	Assert(tx->locked && strcmp(tx->gid, call->gid) == 0);
	values[0] = CStringGetTextDatum(call->gid);
	values[1] = CStringGetTextDatum(call->branch_id);
	values[2] = CStringGetTextDatum(tcc_branch_status_name(call->ran_in));
	values[3] = CStringGetTextDatum(tcc_branch_status_name(new_status));
	values[4] = Float8GetDatum(retry_in_ms);
	nulls[4] = retry_in_ms < 0 ? 'n' : ' ';
	values[5] = BoolGetDatum(with_error);
	if (with_error)
		tcc_error_params(call, &values[6], &nulls[6]);

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
						11, argtypes, values, nulls, false, 0) > 0;
}

/*
 * tcc_branch_is
 *		Whether branch branch_id of global transaction gid is in status.
 */
bool
tcc_branch_is(const char *gid, const char *branch_id, BranchStatus status)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(gid);
	values[1] = CStringGetTextDatum(branch_id);
	values[2] = CStringGetTextDatum(tcc_branch_status_name(status));
	return tcc_spi_exec(&plan,
						"SELECT 1 FROM tcc.branch"
						" WHERE gid = $1 AND branch_id = $2 AND status = $3",
						3, argtypes, values, NULL, false, 1) == 1;
}

/*
 * tcc_first_branch_in
 *		The id of the first branch of global transaction gid (in
 *		registration order) that is in status, or NULL.
 */
char *
tcc_first_branch_in(const char *gid, BranchStatus status)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(gid);
	values[1] = CStringGetTextDatum(tcc_branch_status_name(status));
	if (tcc_spi_exec(&plan,
					 "SELECT branch_id FROM tcc.branch"
					 " WHERE gid = $1 AND status = $2"
					 " ORDER BY seq LIMIT 1",
					 2, argtypes, values, NULL, false, 1) == 0)
		return NULL;
	return tcc_spi_getstring(0, 1);
}

/*
 * tcc_branches_left
 *		Whether a branch of tx is still to run in its phase, whose branches
 *		end in status done.  Steps that never ran (skipped) and the saga
 *		step whose failure started the compensation (aborted) do not count.
 */
bool
tcc_branches_left(GlobalTx *tx, BranchStatus done)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(tx->gid);
	values[1] = CStringGetTextDatum(tcc_branch_status_name(done));
	return tcc_spi_exec(&plan,
						"SELECT 1 FROM tcc.branch"
						" WHERE gid = $1"
						"   AND status NOT IN ('skipped', 'aborted', $2)"
						" LIMIT 1",
						2, argtypes, values, NULL, false, 1) == 1;
}

/*
 * tcc_read_due_call
 *		Fill in what call must run (its action, payload and attempts so
 *		far) from its branch, if that is still in the status call runs in;
 *		false when it is not (it moved on, or is gone).  The strings are
 *		allocated in context.
 *
 * A process that runs local actions reads them here, under the global
 * transaction's lock, rather than trusting what the dispatcher read
 * earlier: the text run is the one in the table when the call runs.
 */
bool
tcc_read_due_call(TccCall *call, MemoryContext context)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	bool		isnull;
	char	   *value;

	values[0] = CStringGetTextDatum(call->gid);
	values[1] = CStringGetTextDatum(call->branch_id);
	values[2] = CStringGetTextDatum(tcc_branch_status_name(call->ran_in));
	if (tcc_spi_exec(&plan,
					 "SELECT CASE status WHEN 'confirming' THEN confirm_sql"
					 "       ELSE cancel_sql END, payload, attempts"
					 "  FROM tcc.branch"
					 " WHERE gid = $1 AND branch_id = $2 AND status = $3",
					 3, argtypes, values, NULL, false, 1) != 1)
		return false;

	value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	call->sql = value ? MemoryContextStrdup(context, value) : NULL;
	value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	call->payload = value ? MemoryContextStrdup(context, value) : NULL;
	call->attempts = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 3,
												 &isnull));
	return true;
}
