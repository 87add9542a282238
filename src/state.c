/*-------------------------------------------------------------------------
 *
 * state.c
 *	  A global transaction's row, and the only code that changes it: the
 *	  names of its statuses, the table of legal edges, reading it under
 *	  either of the two lock modes, the one statement that moves it along
 *	  an edge, and the edges that move its branches with it (their rows
 *	  are written by branch.c).  The SQL API (coordinator.c, register.c)
 *	  and the worker (outcome.c, housekeeping.c) call these; neither writes
 *	  tcc.global_transaction or tcc.branch itself.
 *
 * A global transaction's status moves only along these edges:
 *
 *		trying -> confirming -> confirmed
 *		trying -> cancelling -> cancelled
 *		confirming | cancelling -> failed -> (the phase it left)
 *
 * plus trying -> confirmed and trying -> cancelled for a transaction that
 * has nothing to run in phase two, and confirming -> cancelling for a saga
 * whose forward step fails for good.
 *
 * Concurrency.  Every call that changes a transaction first locks its row
 * (SELECT ... FOR UPDATE; the worker without waiting) and decides on the
 * status it finds under that lock, so a commit racing a rollback (or the
 * worker's timeout cancel) has exactly one winner and the loser sees the
 * winner's status; and every change to a branch is made under the same
 * lock.  A branch registration does not only read the row: it UPDATEs it
 * (branch_count).  That matters for the race between registering a branch
 * and committing the same transaction in two sessions:
 *
 * - register first: the commit's FOR UPDATE waits for the registering
 *	 transaction to end.  Under READ COMMITTED the commit then reads the
 *	 branches with a new snapshot, sees the new branch and confirms it.
 *	 Under REPEATABLE READ or SERIALIZABLE the commit's snapshot could not
 *	 see the branch, but because the registration updated the row, the
 *	 commit's FOR UPDATE fails with a serialization error instead of
 *	 leaving the branch behind.
 * - commit first: the registration's FOR UPDATE waits, then finds the
 *	 status no longer trying (or fails to serialize) and refuses.
 *
 * So a branch registered concurrently with a commit is either confirmed or
 * refused, never left behind (doc/design.md, Concurrency).
 *
 * src/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "state.h"
#include "tcc.h"

static const char *const status_names[TCC_STATUS_COUNT] = {
	[TCC_TRYING] = "trying",
	[TCC_CONFIRMING] = "confirming",
	[TCC_CONFIRMED] = "confirmed",
	[TCC_CANCELLING] = "cancelling",
	[TCC_CANCELLED] = "cancelled",
	[TCC_FAILED] = "failed",
};

/*
 * The edges of doc/design.md, States: legal_edges[from][to].  A
 * transaction with nothing to run goes from trying straight to its end; a
 * saga whose forward step fails for good goes from confirming to
 * cancelling; tcc.retry goes from failed back to the phase it left.
 */
static const bool legal_edges[TCC_STATUS_COUNT][TCC_STATUS_COUNT] = {
	[TCC_TRYING] = {
		[TCC_CONFIRMING] = true, [TCC_CONFIRMED] = true,
		[TCC_CANCELLING] = true, [TCC_CANCELLED] = true,
	},
	[TCC_CONFIRMING] = {
		[TCC_CONFIRMED] = true, [TCC_CANCELLING] = true, [TCC_FAILED] = true,
	},
	[TCC_CANCELLING] = {
		[TCC_CANCELLED] = true, [TCC_FAILED] = true,
	},
	[TCC_FAILED] = {
		[TCC_CONFIRMING] = true, [TCC_CANCELLING] = true,
	},
};

/*
 * tcc_status_name
 *		The name of status, as the tables hold it.
 */
const char *
tcc_status_name(TccStatus status)
{
	Assert(status >= 0 && status < TCC_STATUS_COUNT);
	return status_names[status];
}

/*
 * tcc_status_from_name
 *		The status called name; the tables' CHECK constraint allows no
 *		other, so an unknown name is a can't-happen error.
 */
TccStatus
tcc_status_from_name(const char *name)
{
	int			i;

	for (i = 0; i < TCC_STATUS_COUNT; i++)
		if (strcmp(status_names[i], name) == 0)
			return (TccStatus) i;
	elog(ERROR, "unknown global transaction status \"%s\"", name);
	return TCC_TRYING;			/* keep the compiler quiet */
}

/*
 * GLOBAL_TX_COLUMNS
 *		What every read of a transaction's row takes, in the order
 *		fill_global_tx reads it.
 */
#define GLOBAL_TX_COLUMNS \
	"SELECT gid, mode, status, failed_phase, owner, branch_count," \
	"       deadline, deadline < statement_timestamp(), xmin, xmax" \
	"  FROM tcc.global_transaction"

/*
 * fill_global_tx
 *		Set *tx from row row of the last statement, which read
 *		GLOBAL_TX_COLUMNS; strings are copied to the caller's memory.
 */
static void
fill_global_tx(GlobalTx *tx, int row)
{
	char	   *failed_phase;
	bool		isnull;

	tx->gid = tcc_spi_getstring(row, 1);
	tx->mode = tcc_spi_getstring(row, 2);
	tx->status = tcc_status_from_name(tcc_spi_getstring(row, 3));
	failed_phase = tcc_spi_getstring(row, 4);
	tx->failed_phase = failed_phase ? tcc_status_from_name(failed_phase) :
		TCC_FAILED;
	tx->owner = DatumGetObjectId(tcc_spi_getdatum(row, 5, &isnull));
	tx->branch_count = DatumGetInt32(tcc_spi_getdatum(row, 6, &isnull));
	tx->deadline = tcc_spi_getstring(row, 7);
	tx->expired = DatumGetBool(tcc_spi_getdatum(row, 8, &isnull));

	/*
	 * Written (xmin) or locked (xmax) by the current transaction.  xmax may
	 * be a MultiXactId instead, when several transactions lock the row;
	 * the current one is then among them only by a coincidence of numbers,
	 * which at worst refuses a tcc.wait with a clear error.
	 */
	tx->changed_here =
		TransactionIdIsCurrentTransactionId(
			DatumGetTransactionId(tcc_spi_getdatum(row, 9, &isnull))) ||
		TransactionIdIsCurrentTransactionId(
			DatumGetTransactionId(tcc_spi_getdatum(row, 10, &isnull)));
	tx->locked = false;
}

/*
 * tcc_read_global_tx
 *		Read the row of global transaction gid into *tx, as how says, if the
 *		caller may see it.
 *
 * A transaction of a role whose privileges the caller does not have is
 * reported exactly as one that does not exist, so that no role learns
 * which gids another role uses (only tcc.begin says that a gid is taken).
 * The statement itself leaves such a row out, before FOR UPDATE would lock
 * it: waiting for another role's lock would tell the same thing by taking
 * time.  The owner of a row never changes, so the filter cannot go stale.
 * pg_has_role with USAGE is has_privs_of_role, and does not fail for a
 * role that has been dropped (its transactions are a superuser's).
 */
void
tcc_read_global_tx(TccSpiSession *session, const char *gid, GlobalTx *tx,
				   GlobalTxRead how)
{
	static SPIPlanPtr plans[3] = {NULL, NULL, NULL};
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		values[2];
	uint64		nrows = 0;

#define GLOBAL_TX_VISIBLE \
	GLOBAL_TX_COLUMNS " WHERE gid = $1 AND pg_has_role($2, owner, 'USAGE')"

	values[0] = CStringGetTextDatum(gid);
	values[1] = ObjectIdGetDatum(session->caller);
	switch (how)
	{
		case READ_PLAIN:
			nrows = tcc_spi_exec(&plans[how], GLOBAL_TX_VISIBLE,
								 2, argtypes, values, NULL, false, 1);
			break;
		case READ_FOR_UPDATE:
			nrows = tcc_spi_exec(&plans[how], GLOBAL_TX_VISIBLE " FOR UPDATE",
								 2, argtypes, values, NULL, false, 1);
			break;
		case READ_LATEST:
			nrows = tcc_spi_exec_latest(&plans[how], GLOBAL_TX_VISIBLE,
										2, argtypes, values, NULL, 1);
			break;
	}
#undef GLOBAL_TX_VISIBLE

	if (nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("global transaction \"%s\" does not exist", gid),
				 errhint("Check the gid; finished transactions are deleted "
						 "by tcc.purge, and transactions of other roles "
						 "are not shown.")));
	fill_global_tx(tx, 0);
	tx->locked = (how == READ_FOR_UPDATE);
}

/*
 * tcc_lock_global_tx
 *		tcc_read_global_tx with the row locked, which every transition the
 *		SQL API makes needs: the first of the two lock modes, which waits.
 *
 * A user's call waits for the lock as any UPDATE would, so that a commit
 * racing a rollback, or the worker's timeout cancel, has exactly one
 * winner and the loser decides on the winner's status.
 */
void
tcc_lock_global_tx(TccSpiSession *session, const char *gid, GlobalTx *tx)
{
	tcc_read_global_tx(session, gid, tx, READ_FOR_UPDATE);
}

/*
 * tcc_lock_global_tx_nowait
 *		Lock and read global transaction gid's row for the worker, without
 *		waiting: the second lock mode.
 *
 * The worker never waits for a row lock: a user's transaction may keep one
 * for as long as it likes (a repeated tcc.rollback in an open transaction),
 * and waiting would stall every other transaction's phase two behind it,
 * or deadlock with a user transaction that locks several gids in another
 * order.  A row that is busy is simply dealt with in a later round.  The
 * worker acts for every owner, so nothing is filtered out.
 */
GlobalLock
tcc_lock_global_tx_nowait(const char *gid, GlobalTx *tx)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr exists_plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(gid);
	if (tcc_spi_exec(&lock_plan,
					 GLOBAL_TX_COLUMNS " WHERE gid = $1 FOR UPDATE SKIP LOCKED",
					 1, argtypes, values, NULL, false, 1) == 1)
	{
		fill_global_tx(tx, 0);
		tx->locked = true;
		return GLOBAL_LOCKED;
	}
	if (tcc_spi_exec(&exists_plan,
					 "SELECT 1 FROM tcc.global_transaction WHERE gid = $1",
					 1, argtypes, values, NULL, false, 1) == 1)
		return GLOBAL_BUSY;
	return GLOBAL_GONE;
}

/*
 * tcc_lock_expired
 *		Lock, without waiting, up to limit transactions still trying after
 *		their deadline, oldest deadline first, and set *txs to them;
 *		returns how many.
 *
 * SKIP LOCKED: a transaction whose row a user holds (a commit in progress)
 * is left for the next round rather than waited for; if that commit wins,
 * the status is no longer trying and the next round does not find it.
 */
int
tcc_lock_expired(int limit, GlobalTx **txs)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	int			nrows;
	int			row;

	values[0] = Int32GetDatum(limit);
	nrows = (int) tcc_spi_exec(&plan,
							   GLOBAL_TX_COLUMNS
							   " WHERE status = 'trying' AND deadline < now()"
							   " ORDER BY deadline LIMIT $1"
							   " FOR UPDATE SKIP LOCKED",
							   1, argtypes, values, NULL, false, 0);
	*txs = palloc0(sizeof(GlobalTx) * Max(nrows, 1));
	for (row = 0; row < nrows; row++)
	{
		fill_global_tx(&(*txs)[row], row);
		(*txs)[row].locked = true;
	}
	return nrows;
}

/*
 * tcc_insert_global_tx
 *		Create global transaction gid, trying, and return true; or, when the
 *		gid exists, set *existing to its mode, status and owner (whoever
 *		owns it) and return false.
 *
 * Two sessions beginning the same new gid at once are serialised by the
 * primary key: the second one's INSERT ... ON CONFLICT waits for the first
 * and then finds its row.
 */
bool
tcc_insert_global_tx(const char *gid, const char *mode, Oid owner,
					 Jsonb *meta, TimestampTz deadline, GlobalTx *existing)
{
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr select_plan = NULL;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, OIDOID, JSONBOID,
		TIMESTAMPTZOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(gid);
	values[1] = CStringGetTextDatum(mode);
	values[2] = ObjectIdGetDatum(owner);
	values[3] = JsonbPGetDatum(meta);
	nulls[3] = meta ? ' ' : 'n';
	values[4] = TimestampTzGetDatum(deadline);

	if (tcc_spi_exec(&insert_plan,
					 "INSERT INTO tcc.global_transaction"
					 "  (gid, mode, status, owner, meta,"
					 "   created_at, updated_at, deadline)"
					 " VALUES ($1, $2, 'trying', $3, $4,"
					 "         now(), now(), $5)"
					 " ON CONFLICT (gid) DO NOTHING",
					 5, argtypes, values, nulls, false, 0) == 1)
		return true;

	/*
	 * ON CONFLICT waited for the row's inserter, so the row is visible now,
	 * unless it was purged in between: then report it as existing anyway
	 * rather than loop, the caller may retry.
	 */
	if (tcc_spi_exec(&select_plan, GLOBAL_TX_COLUMNS " WHERE gid = $1",
					 1, argtypes, values, NULL, false, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("global transaction \"%s\" was purged while "
						"being begun again", gid),
				 errhint("Retry the call.")));
	fill_global_tx(existing, 0);
	return false;
}

/*
 * tcc_count_branch
 *		Count a new branch of tx, whose row the caller has locked, and
 *		return its sequence number.
 *
 * The UPDATE is also what locks a concurrent commit out of the
 * transaction under REPEATABLE READ (see the file header).
 */
int32
tcc_count_branch(GlobalTx *tx)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;

	Assert(tx->locked);
	values[0] = CStringGetTextDatum(tx->gid);
	tcc_spi_exec(&plan,
				 "UPDATE tcc.global_transaction"
				 "   SET branch_count = branch_count + 1, updated_at = now()"
				 " WHERE gid = $1"
				 " RETURNING branch_count",
				 1, argtypes, values, NULL, false, 0);
	tx->branch_count = DatumGetInt32(tcc_spi_getdatum(0, 1, &isnull));
	return tx->branch_count;
}

/*
 * move_global_tx
 *		The one statement that changes a transaction's status: move tx,
 *		whose row the caller has locked, to new_status along a legal edge.
 *
 * It stamps updated_at, and finished_at for a terminal status; keeps the
 * phase a failed transaction left, and its error, for exactly as long as
 * it is failed; keeps reason unless given a new one.  The end of a
 * transaction (confirmed, cancelled, or failed, which waits for a human)
 * wakes its tcc.wait callers once this transaction commits.  The caller
 * decided on the edge from the status it found under the lock; an edge
 * that does not exist is a bug, and stops here, as in xact.c.
 */
static void
move_global_tx(GlobalTx *tx, TccStatus new_status, const char *reason,
			   const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	Assert(tx->locked);
	if (!legal_edges[tx->status][new_status])
		elog(ERROR, "global transaction \"%s\" cannot go from %s to %s",
			 tx->gid, tcc_status_name(tx->status),
			 tcc_status_name(new_status));

	values[0] = CStringGetTextDatum(tx->gid);
	values[1] = CStringGetTextDatum(tcc_status_name(new_status));
	values[2] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[2] = reason ? ' ' : 'n';
	values[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[3] = error ? ' ' : 'n';

	tcc_spi_exec(&plan,
				 "UPDATE tcc.global_transaction"
				 "   SET status = $2,"
				 "       reason = coalesce($3, reason),"
				 "       failed_phase = CASE WHEN $2 = 'failed'"
				 "                      THEN status END,"
				 "       last_error = CASE WHEN $2 = 'failed' THEN $4 END,"
				 "       updated_at = now(),"
				 "       finished_at = CASE WHEN $2 IN ('confirmed',"
				 "                                      'cancelled')"
				 "                     THEN now() END"
				 " WHERE gid = $1",
				 4, argtypes, values, nulls, false, 0);

	if (new_status == TCC_FAILED)
		tx->failed_phase = tx->status;
	tx->status = new_status;

	if (new_status == TCC_CONFIRMED || new_status == TCC_CANCELLED ||
		new_status == TCC_FAILED)
		tcc_wake_waiters_at_commit(tx->gid);
}

/*
 * tcc_set_global_status
 *		Move tx, whose row the caller has locked, to new_status, with a
 *		reason (or NULL to keep the one it has).
 */
void
tcc_set_global_status(GlobalTx *tx, TccStatus new_status, const char *reason)
{
	Assert(new_status != TCC_FAILED);
	move_global_tx(tx, new_status, reason, NULL);
}

/*
 * tcc_fail_global_tx
 *		Fail tx, which is confirming or cancelling, with error: it waits for
 *		a human and tcc.retry.
 */
void
tcc_fail_global_tx(GlobalTx *tx, const char *error)
{
	move_global_tx(tx, TCC_FAILED, NULL, error);
}

/*
 * tcc_delete_finished
 *		Delete the confirmed and cancelled transactions that finished before
 *		cutoff, with their branches; returns how many.
 *
 * For tcc.purge (caller valid): only those of roles the caller has the
 * privileges of, all at once.  For the worker's retention (caller
 * InvalidOid): anybody's, up to limit, skipping rows that are locked.  The
 * owner test goes through pg_roles because pg_has_role() fails for a role
 * that no longer exists; the transactions of a dropped role are a
 * superuser's to purge.  Failed transactions are never deleted: they wait
 * for a human.
 */
uint64
tcc_delete_finished(TimestampTz cutoff, Oid caller, int limit)
{
	static SPIPlanPtr user_plan = NULL;
	static SPIPlanPtr batch_plan = NULL;
	Oid			argtypes[3] = {TIMESTAMPTZOID, OIDOID, BOOLOID};
	Datum		values[3];

	values[0] = TimestampTzGetDatum(cutoff);
	if (!OidIsValid(caller))
	{
		argtypes[1] = INT4OID;
		values[1] = Int32GetDatum(limit);
		return tcc_spi_exec(&batch_plan,
							"DELETE FROM tcc.global_transaction"
							" WHERE gid IN ("
							"        SELECT gid FROM tcc.global_transaction"
							"         WHERE finished_at < $1"
							"         ORDER BY finished_at LIMIT $2"
							"           FOR UPDATE SKIP LOCKED)",
							2, argtypes, values, NULL, false, 0);
	}

	values[1] = ObjectIdGetDatum(caller);
	values[2] = BoolGetDatum(superuser_arg(caller));
	return tcc_spi_exec(&user_plan,
						"DELETE FROM tcc.global_transaction"
						" WHERE finished_at < $1"
						"   AND ($3 OR owner IN (SELECT oid FROM pg_roles"
						"                         WHERE pg_has_role($2, oid,"
						"                                           'USAGE')))",
						3, argtypes, values, NULL, false, 0);
}

/*
 * tcc_start_confirm
 *		trying -> confirming, for tcc.commit and tcc.submit.
 *
 * A TCC transaction has all its branches confirmed (the worker sends them
 * in registration order); a saga or msg transaction runs its steps one
 * after the other, so only the first becomes due.  A transaction with
 * nothing to run is confirmed at once.
 */
void
tcc_start_confirm(GlobalTx *tx)
{
	if (tx->branch_count == 0)
	{
		tcc_set_global_status(tx, TCC_CONFIRMED, NULL);
		return;
	}
	tcc_set_global_status(tx, TCC_CONFIRMING, NULL);
	(void) tcc_set_branches(tx, MODE_IS_TCC(tx) ? BRANCHES_ALL :
							BRANCHES_FIRST_REGISTERED, BRANCH_CONFIRMING);
}

/*
 * tcc_start_cancel
 *		trying -> cancelling, for tcc.rollback and for the worker's cancel of
 *		a transaction past its deadline (reason "timeout"), which must do
 *		exactly the same.
 *
 * A TCC transaction's branches may have run their tries, so every branch is
 * cancelled (the worker goes in reverse registration order; the fence turns
 * a cancel whose try never ran into an empty rollback).  The steps of a saga
 * or msg transaction run only after submit, so one still trying has nothing
 * to undo: it is cancelled at once and its steps are marked skipped.
 */
void
tcc_start_cancel(GlobalTx *tx, const char *reason)
{
	if (tx->branch_count == 0)
		tcc_set_global_status(tx, TCC_CANCELLED, reason);
	else if (MODE_IS_TCC(tx))
	{
		tcc_set_global_status(tx, TCC_CANCELLING, reason);
		(void) tcc_set_branches(tx, BRANCHES_ALL, BRANCH_CANCELLING);
	}
	else
	{
		tcc_set_global_status(tx, TCC_CANCELLED, reason);
		(void) tcc_set_branches(tx, BRANCHES_ALL, BRANCH_SKIPPED);
	}
}

/*
 * tcc_resume
 *		failed -> the phase it left, for tcc.retry.
 *
 * The branches that failed, and those still waiting in that phase, become
 * due now with their attempts reset; the ones that succeeded are left alone.
 */
void
tcc_resume(GlobalTx *tx)
{
	Assert(STATUS_IS(tx, TCC_FAILED));
	tcc_set_global_status(tx, tx->failed_phase, NULL);
	(void) tcc_set_branches(tx, BRANCHES_TO_RETRY,
							STATUS_IS(tx, TCC_CONFIRMING) ?
							BRANCH_CONFIRMING : BRANCH_CANCELLING);
}

/*
 * tcc_start_next
 *		Make the next saga or msg step of tx due, and return true; false
 *		when there is none left.
 *
 * Confirming, the next step is the first one not yet run.  Cancelling (a
 * saga being compensated), it is the last one that completed: the steps are
 * undone one at a time, newest first, each with attempts of its own.
 */
bool
tcc_start_next(GlobalTx *tx)
{
	Assert(!MODE_IS_TCC(tx));
	if (STATUS_IS(tx, TCC_CONFIRMING))
		return tcc_set_branches(tx, BRANCHES_FIRST_REGISTERED,
								BRANCH_CONFIRMING);
	Assert(STATUS_IS(tx, TCC_CANCELLING));
	return tcc_set_branches(tx, BRANCHES_LAST_CONFIRMED, BRANCH_CANCELLING);
}

/*
 * tcc_finish_if_done
 *		End tx, confirming or cancelling, when none of its branches is left
 *		to run: confirming becomes confirmed, cancelling becomes cancelled.
 *
 * Every branch is written under its transaction's row lock, which the
 * caller holds, so the branches cannot change between the look and the
 * move.
 */
void
tcc_finish_if_done(GlobalTx *tx)
{
	bool		confirming = STATUS_IS(tx, TCC_CONFIRMING);

	Assert(confirming || STATUS_IS(tx, TCC_CANCELLING));
	if (tcc_branches_left(tx, confirming ? BRANCH_CONFIRMED :
						  BRANCH_CANCELLED))
		return;
	tcc_set_global_status(tx, confirming ? TCC_CONFIRMED : TCC_CANCELLED,
						  NULL);
}

/*
 * tcc_refuse_transition
 *		Report that tx cannot take the transition action in its status.
 */
void
tcc_refuse_transition(GlobalTx *tx, const char *action)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s global transaction \"%s\" because it is %s",
					action, tx->gid, tcc_status_name(tx->status)),
			 STATUS_IS(tx, TCC_FAILED) ?
			 errhint("Resume it with tcc.retry, or inspect tcc.branches "
					 "for the error.") :
			 errdetail("A transaction can be %s while it is trying; "
					   "repeating that once it is %s returns its status.",
					   strcmp(action, "commit") == 0 ? "committed" :
					   strcmp(action, "submit") == 0 ? "submitted" :
					   "rolled back",
					   strcmp(action, "roll back") == 0 ?
					   "cancelling or cancelled" :
					   "confirming or confirmed")));
}

/*
 * tcc_check_not_expired
 *		Refuse to extend or commit a trying transaction whose deadline has
 *		passed.
 *
 * Such a transaction is due to be cancelled by the worker; letting a commit
 * win or lose against that depending on when the worker wakes up would make
 * the outcome a matter of timing.  After the deadline the answer is always
 * no, and rolling back is always allowed.
 */
void
tcc_check_not_expired(GlobalTx *tx)
{
	if (tx->expired)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("global transaction \"%s\" has passed its deadline",
						tx->gid),
				 errdetail("Its try phase ended at %s.", tx->deadline),
				 errhint("Roll it back with tcc.rollback; the worker cancels "
						 "it in any case.")));
}

/*
 * tcc_check_mode
 *		Refuse a call that does not fit tx's mode: register_branch and commit
 *		are for tcc transactions, add_step and submit for saga and msg ones.
 */
void
tcc_check_mode(GlobalTx *tx, bool want_tcc, const char *function,
		   const char *instead)
{
	if (MODE_IS_TCC(tx) != want_tcc)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("global transaction \"%s\" is a %s transaction",
						tx->gid, tx->mode),
				 errdetail("%s applies to %s transactions only.", function,
						   want_tcc ? "tcc" : "saga and msg"),
				 errhint("Use %s.", instead)));
}
