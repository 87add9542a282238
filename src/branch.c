/*-------------------------------------------------------------------------
 *
 * branch.c
 *	  The rows of a global transaction's branches, and every statement
 *	  that writes them: registration, the edges their transaction moves
 *	  them along (through state.c), the outcome of each attempt, and their
 *	  deletion with their transaction (the trigger tcc_delete_branches).
 *
 * Every statement here runs under the row lock of the branch's global
 * transaction, taken by the caller (global_tx.c; the trigger's by the
 * DELETE that fired it), so two writers of one branch never interleave: a
 * user's call and the worker, or two worker processes, decide on what they
 * found under that lock.
 *
 * One rule sets a branch's schedule, and lives in BRANCH_SCHEDULE: a
 * branch that is put in confirming or cancelling starts that phase, due
 * now, with tcc.max_attempts counting its attempts from zero; a branch put
 * in any other status is due never.  An attempt's outcome reschedules the
 * branch itself (tcc_record_attempt).  Whatever makes a branch due tells
 * its dispatcher at commit how far back to look (note_due).
 *
 * src/branch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "state.h"
#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_delete_branches);

/* how many transactions' branches one DELETE of tcc_delete_branches takes */
#define DELETE_CHUNK	10000

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
	[BRANCHES_ALL_TRIED] = BRANCH_SCHEDULE
	"   AND NOT EXISTS (SELECT 1 FROM tcc.branch"
	"                    WHERE gid = $1 AND status = 'try_failed')",
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
 *		Add a branch, registered, to tx with the next sequence number, and
 *		return its id: branch_id, or the sequence number when branch_id is
 *		NULL; NULL when tx has a branch of that id already.
 *
 * The next sequence number is one more than the largest, read through the
 * (gid, seq) index in the same statement, which also looks for the id.
 * The caller holds tx's row lock, which every registration takes, so no
 * other can take the same number or id meanwhile: under READ COMMITTED
 * this statement's snapshot sees every registration that held the lock
 * before, and under a transaction snapshot tcc_lock_global_tx refused to
 * go on if it did not.  So a plain INSERT does, without the speculative
 * insertion of ON CONFLICT; the unique indexes stay the last word.
 */
char *
tcc_insert_branch(GlobalTx *tx, const char *branch_id, const char *server,
				  text *action_sql, text *undo_sql, Jsonb *payload)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		JSONBOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	Assert(tx->locked);
	values[0] = CStringGetTextDatum(tx->gid);
	values[1] = branch_id ? CStringGetTextDatum(branch_id) : (Datum) 0;
	nulls[1] = branch_id ? ' ' : 'n';
	values[2] = server ? CStringGetTextDatum(server) : (Datum) 0;
	nulls[2] = server ? ' ' : 'n';
	values[3] = PointerGetDatum(action_sql);
	values[4] = PointerGetDatum(undo_sql);
	nulls[4] = undo_sql ? ' ' : 'n';
	values[5] = payload ? JsonbPGetDatum(payload) : (Datum) 0;
	nulls[5] = payload ? ' ' : 'n';

	if (tcc_spi_exec(&plan,
					 "INSERT INTO tcc.branch"
					 "  (gid, branch_id, seq, server, confirm_sql,"
					 "   cancel_sql, payload, created_at, updated_at)"
					 " SELECT $1, new.id, new.seq, $3, $4, $5, $6,"
					 "        now(), now()"
					 "   FROM (SELECT coalesce($2, (last.seq + 1)::text) AS id,"
					 "                last.seq + 1 AS seq"
					 "           FROM (SELECT coalesce(max(seq), 0) AS seq"
					 "                   FROM tcc.branch"
					 "                  WHERE gid = $1) last) new"
					 "  WHERE NOT EXISTS (SELECT 1 FROM tcc.branch"
					 "                     WHERE gid = $1"
					 "                       AND branch_id = new.id)"
					 " RETURNING branch_id",
					 6, argtypes, values, nulls, false, 0) == 0)
		return NULL;
	return tcc_spi_getstring(0, 1);
}

/*
 * note_due
 *		Branches of gid were put in status, due retry_in_ms after now()
 *		(never, when negative): have the dispatcher of their partition told
 *		at commit (tcc_note_due_at_commit).  The time noted is never later
 *		than the one written (interval arithmetic rounds to microseconds).
 */
static void
note_due(const char *gid, BranchStatus status, double retry_in_ms)
{
	if ((status != BRANCH_CONFIRMING && status != BRANCH_CANCELLING) ||
		retry_in_ms < 0)
		return;
	tcc_note_due_at_commit(gid, GetCurrentTransactionStartTimestamp() +
						   (int64) floor(retry_in_ms * 1000.0) - 1);
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
	if (tcc_spi_exec(&plans[which], set_branches_sql[which],
					 3, argtypes, values, nulls, false, 0) == 0)
		return false;
	note_due(tx->gid, new_status, 0);
	return true;
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

	if (tcc_spi_exec(&plan,
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
					 11, argtypes, values, nulls, false, 0) == 0)
		return false;
	note_due(call->gid, new_status, retry_in_ms);
	return true;
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

/* the look of tcc_branches_left_in, with the transactions as rows t */
#define BRANCHES_LEFT(txs) \
	"SELECT t.i FROM " txs " AS t(gid, done, i)" \
	" CROSS JOIN LATERAL" \
	"       (SELECT 1 FROM tcc.branch b" \
	"         WHERE b.gid = t.gid" \
	"           AND b.status NOT IN ('skipped', 'aborted', t.done)" \
	"         LIMIT 1) l"

/*
 * tcc_branches_left_in
 *		For each of the n transactions txs, whose branches end their phase in
 *		done[i], set left[i] to whether a branch is still to run in that
 *		phase.  Steps that never ran (skipped) and the saga step whose
 *		failure started the compensation (aborted) do not count.
 *
 * The look at each transaction is a LATERAL subquery with a LIMIT, which
 * the planner cannot turn into a join: a lookup by the primary key's gid
 * per transaction, whatever the statistics say.
 */
void
tcc_branches_left_in(int n, GlobalTx **txs, const BranchStatus *done,
					 bool *left)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static const Oid types[2] = {TEXTOID, TEXTOID};
	const char **gids = palloc(n * sizeof(char *));
	const char **dones = palloc(n * sizeof(char *));
	Datum	   *cols[2];
	bool	   *nulls[2];
	uint64		nrows;
	uint64		row;
	int			i;

	for (i = 0; i < n; i++)
	{
		gids[i] = txs[i]->gid;
		dones[i] = tcc_branch_status_name(done[i]);
		left[i] = false;
	}
	tcc_text_column(gids, n, &cols[0], &nulls[0]);
	tcc_text_column(dones, n, &cols[1], &nulls[1]);
	nrows = tcc_spi_exec_rows(plans,
							  BRANCHES_LEFT("(SELECT $1, $2, 1::bigint)"),
							  BRANCHES_LEFT("unnest($1, $2) WITH ORDINALITY"),
							  2, types, cols, nulls, n);
	for (row = 0; row < nrows; row++)
	{
		bool		isnull;
		int64		ord = DatumGetInt64(tcc_spi_getdatum(row, 1, &isnull));

		Assert(ord >= 1 && ord <= n);
		left[ord - 1] = true;
	}
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

/*
 * refuse_unseen_branch
 *		Fail to serialize because a branch of global transaction gid (or,
 *		when NULL, of one being deleted) was registered by a transaction
 *		that committed after the current one's snapshot was taken.
 *
 * A registration only locks its transaction's row, so under a transaction
 * snapshot neither locking nor deleting that row fails by itself; what the
 * current transaction would then decide without the branch it cannot see
 * (a commit confirming only the others, a sequence number taken twice, a
 * branch left without its transaction) would be wrong.  It fails the way an
 * UPDATE of a row changed since its snapshot would.
 */
static void
refuse_unseen_branch(const char *gid)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent update"),
			 gid ?
			 errdetail("A branch of global transaction \"%s\" was registered "
					   "by a transaction that committed after this one took "
					   "its snapshot.", gid) :
			 errdetail("A branch of a deleted global transaction was "
					   "registered by a transaction that committed after "
					   "this one took its snapshot."),
			 errhint("Retry the transaction.")));
}

/*
 * tcc_check_branches_seen
 *		Under a transaction snapshot, refuse_unseen_branch unless every
 *		branch of global transaction gid, whose row the caller has locked,
 *		is visible to it.
 *
 * Branches are deleted only with their transaction, so the last one
 * committed having a higher sequence number than the last one seen is the
 * same thing.  The lock is held, so no branch can be registered meanwhile.
 */
void
tcc_check_branches_seen(const char *gid)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	int32		seen;

#define LAST_SEQ "SELECT coalesce(max(seq), 0) FROM tcc.branch WHERE gid = $1"

	if (!IsolationUsesXactSnapshot())
		return;
	values[0] = CStringGetTextDatum(gid);
	tcc_spi_exec(&plan, LAST_SEQ, 1, argtypes, values, NULL, false, 1);
	seen = DatumGetInt32(tcc_spi_getdatum(0, 1, &isnull));
	tcc_spi_exec_latest(&plan, LAST_SEQ, 1, argtypes, values, NULL, 1);
	if (DatumGetInt32(tcc_spi_getdatum(0, 1, &isnull)) != seen)
		refuse_unseen_branch(gid);
#undef LAST_SEQ
}

/*
 * delete_branches_of
 *		Delete the branches of the ngids global transactions gids, which
 *		are being deleted: one statement, through the index on gid.
 *
 * Under a transaction snapshot, a branch that the DELETE could not see is
 * still there afterwards, and refused (refuse_unseen_branch), as
 * PostgreSQL's cascade of a foreign key would (it checks against the newest
 * snapshot in the same way).
 */
static void
delete_branches_of(Datum *gids, int ngids)
{
	static SPIPlanPtr delete_plan = NULL;
	static SPIPlanPtr left_plan = NULL;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		values[1];

	values[0] = PointerGetDatum(construct_array(gids, ngids, TEXTOID, -1,
												false, TYPALIGN_INT));
	tcc_spi_exec(&delete_plan, "DELETE FROM tcc.branch WHERE gid = ANY ($1)",
				 1, argtypes, values, NULL, false, 0);

	if (IsolationUsesXactSnapshot() &&
		tcc_spi_exec_latest(&left_plan,
							"SELECT 1 FROM tcc.branch WHERE gid = ANY ($1)",
							1, argtypes, values, NULL, 1) > 0)
		refuse_unseen_branch(NULL);
}

/*
 * delete_branches_in
 *		Delete the branches of the global transactions in deleted, the
 *		transition table of a DELETE of rel, tcc.global_transaction:
 *		DELETE_CHUNK transactions at a time, so that the memory a large
 *		tcc.purge takes stays bounded.
 *
 * The transition table may be read by others after us, so we read it
 * with a read pointer of our own.
 */
static void
delete_branches_in(Tuplestorestate *deleted, Relation rel)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	int			gid_attnum = SPI_fnumber(tupdesc, "gid");
	TupleTableSlot *slot = MakeSingleTupleTableSlot(tupdesc,
													&TTSOpsMinimalTuple);
	MemoryContext chunkcxt = AllocSetContextCreate(CurrentMemoryContext,
												   "tcc deleted gids",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(chunkcxt);
	Datum	   *gids = MemoryContextAlloc(oldcxt,
										  sizeof(Datum) * DELETE_CHUNK);
	int			ngids = 0;

	if (gid_attnum <= 0)
		elog(ERROR, "tcc.global_transaction has no column gid");
	tuplestore_select_read_pointer(deleted,
								   tuplestore_alloc_read_pointer(deleted, 0));
	tuplestore_rescan(deleted);

	while (tuplestore_gettupleslot(deleted, true, false, slot))
	{
		bool		isnull;

		gids[ngids++] = datumCopy(slot_getattr(slot, gid_attnum, &isnull),
								  false, -1);
		if (ngids == DELETE_CHUNK)
		{
			delete_branches_of(gids, ngids);
			MemoryContextReset(chunkcxt);
			ngids = 0;
		}
	}
	if (ngids > 0)
		delete_branches_of(gids, ngids);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(chunkcxt);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * tcc_delete_branches
 *		The statement trigger of tcc.global_transaction by which a deleted
 *		transaction takes its branches with it: those of every transaction
 *		a DELETE deleted, or all of them after a TRUNCATE.
 *
 * This is what a foreign key with ON DELETE CASCADE would do, without its
 * DELETE per deleted row; retention deletes thousands of transactions per
 * statement.  Nothing else needs the foreign key: only tcc's functions
 * write these tables, and a branch is inserted only under the lock of its
 * transaction's row while that transaction is trying, which retention
 * never deletes.
 */
Datum
tcc_delete_branches(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr truncate_plan = NULL;
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TccSpiSession session;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("trigger functions can only be called as triggers")));
	if (!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event)) ||
		RelationGetRelid(trigdata->tg_relation) !=
		get_relname_relid("global_transaction",
						  get_func_namespace(fcinfo->flinfo->fn_oid)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tcc.delete_branches must be fired after DELETE or "
						"TRUNCATE of tcc.global_transaction, for each "
						"statement"),
				 errdetail("It is the trigger by which tcc's transactions "
						   "take their branches with them.")));

	tcc_spi_begin(&session);

	/*
	 * Planned for the array at hand, the DELETE would read all of tcc.branch
	 * once the array is long; the generic plan looks every gid up in the
	 * index, which is what a batch of retention wants.  The setting reverts
	 * at tcc_spi_end.
	 */
	(void) set_config_option("plan_cache_mode", "force_generic_plan",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		(void) tcc_spi_exec(&truncate_plan, "TRUNCATE tcc.branch",
							0, NULL, NULL, NULL, false, 0);
	else if (trigdata->tg_oldtable != NULL)
		delete_branches_in(trigdata->tg_oldtable, trigdata->tg_relation);
	else
		elog(ERROR, "tcc.delete_branches was fired without a transition "
			 "table");
	tcc_spi_end(&session);

	return PointerGetDatum(NULL);
}
