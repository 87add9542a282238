/*-------------------------------------------------------------------------
 *
 * state.c
 *	  A global transaction's row as the SQL API reads, locks and moves it:
 *	  the edges users ask for (commit, submit, rollback, retry, and the
 *	  registration that extends a trying transaction), and their refusals.
 *	  The worker's edges are in outcome.c and housekeeping.c.
 *
 * A global transaction's status moves only along these edges:
 *
 *		trying -> confirming -> confirmed
 *		trying -> cancelling -> cancelled
 *		confirming | cancelling -> failed -> (the phase it left)
 *
 * plus trying -> confirmed and trying -> cancelled for a transaction that
 * has nothing to run in phase two.  This file makes the edges that users
 * ask for; the background worker makes the others.
 *
 * Concurrency.  Every call that changes a transaction first locks its row
 * with SELECT ... FOR UPDATE and decides on the status it finds under that
 * lock, so a commit racing a rollback (or the worker's timeout cancel) has
 * exactly one winner and the loser sees the winner's status.  A branch
 * registration does not only read the row: it UPDATEs it (branch_count).
 * That matters for the race between registering a branch and committing
 * the same transaction in two sessions:
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
 * refused, never left behind.
 *
 * src/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
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
	bool		isnull;
	uint64		nrows = 0;

#define GLOBAL_TX_SELECT \
	"SELECT mode, status, owner, branch_count, deadline," \
	"       deadline < statement_timestamp(), xmin, xmax" \
	"  FROM tcc.global_transaction" \
	" WHERE gid = $1 AND pg_has_role($2, owner, 'USAGE')"

	values[0] = CStringGetTextDatum(gid);
	values[1] = ObjectIdGetDatum(session->caller);
	switch (how)
	{
		case READ_PLAIN:
			nrows = tcc_spi_exec(&plans[how], GLOBAL_TX_SELECT,
								 2, argtypes, values, NULL, false, 1);
			break;
		case READ_FOR_UPDATE:
			nrows = tcc_spi_exec(&plans[how], GLOBAL_TX_SELECT " FOR UPDATE",
								 2, argtypes, values, NULL, false, 1);
			break;
		case READ_LATEST:
			nrows = tcc_spi_exec_latest(&plans[how], GLOBAL_TX_SELECT,
										2, argtypes, values, NULL, 1);
			break;
	}
#undef GLOBAL_TX_SELECT

	if (nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("global transaction \"%s\" does not exist", gid),
				 errhint("Check the gid; finished transactions are deleted "
						 "by tcc.purge, and transactions of other roles "
						 "are not shown.")));

	tx->gid = gid;
	tx->mode = tcc_spi_getstring(0, 1);
	tx->status = tcc_status_from_name(tcc_spi_getstring(0, 2));
	tx->owner = DatumGetObjectId(tcc_spi_getdatum(0, 3, &isnull));
	tx->branch_count = DatumGetInt32(tcc_spi_getdatum(0, 4, &isnull));
	tx->deadline = tcc_spi_getstring(0, 5);
	tx->expired = DatumGetBool(tcc_spi_getdatum(0, 6, &isnull));
	/*
	 * Written (xmin) or locked (xmax) by the current transaction.  xmax may
	 * be a MultiXactId instead, when several transactions lock the row;
	 * the current one is then among them only by a coincidence of numbers,
	 * which at worst refuses a tcc.wait with a clear error.
	 */
	tx->changed_here =
		TransactionIdIsCurrentTransactionId(
			DatumGetTransactionId(tcc_spi_getdatum(0, 7, &isnull))) ||
		TransactionIdIsCurrentTransactionId(
			DatumGetTransactionId(tcc_spi_getdatum(0, 8, &isnull)));
}

/*
 * tcc_lock_global_tx
 *		tcc_read_global_tx with the row locked, which every transition needs.
 */
void
tcc_lock_global_tx(TccSpiSession *session, const char *gid, GlobalTx *tx)
{
	tcc_read_global_tx(session, gid, tx, READ_FOR_UPDATE);
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

/*
 * tcc_set_global_status
 *		Move tx, whose row the caller has locked, to new_status, stamping
 *		finished_at for a terminal status and keeping a reason; a terminal
 *		status wakes the transaction's tcc.wait callers at commit.
 *
 * The caller decided on the edge from the status it found under the lock;
 * an edge that does not exist is a bug, and stops here.
 */
void
tcc_set_global_status(GlobalTx *tx, TccStatus new_status, text *reason)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (!legal_edges[tx->status][new_status])
		elog(ERROR, "global transaction \"%s\" cannot go from %s to %s",
			 tx->gid, tcc_status_name(tx->status),
			 tcc_status_name(new_status));

	values[0] = CStringGetTextDatum(tx->gid);
	values[1] = CStringGetTextDatum(tcc_status_name(new_status));
	values[2] = PointerGetDatum(reason);
	if (reason == NULL)
		nulls[2] = 'n';

	tcc_spi_exec(&plan,
				 "UPDATE tcc.global_transaction"
				 "   SET status = $2,"
				 "       reason = coalesce($3, reason),"
				 "       updated_at = now(),"
				 "       finished_at = CASE WHEN $2 IN ('confirmed', 'cancelled')"
				 "                          THEN now() END"
				 " WHERE gid = $1",
				 3, argtypes, values, nulls, false, 0);
	tx->status = new_status;

	if (new_status == TCC_CONFIRMED || new_status == TCC_CANCELLED)
		tcc_wake_waiters_at_commit(tx->gid);
}

/*
 * tcc_set_branch_status
 *		Set the status of tx's branches (or only of the one with sequence
 *		number seq, when seq > 0).  A branch entering confirming or cancelling
 *		becomes due at once.
 */
void
tcc_set_branch_status(GlobalTx *tx, const char *new_status, int32 seq)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(tx->gid);
	values[1] = CStringGetTextDatum(new_status);
	values[2] = Int32GetDatum(seq);

	tcc_spi_exec(&plan,
				 "UPDATE tcc.branch"
				 "   SET status = $2,"
				 "       next_attempt_at = CASE WHEN $2 IN ('confirming',"
				 "                                          'cancelling')"
				 "                              THEN now() END,"
				 "       updated_at = now()"
				 " WHERE gid = $1 AND ($3 <= 0 OR seq = $3)",
				 3, argtypes, values, NULL, false, 0);
}
