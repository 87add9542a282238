/*-------------------------------------------------------------------------
 *
 * global_tx.c
 *	  The row of a global transaction in tcc.global_transaction, and every
 *	  statement that reads under a lock, creates, moves or deletes it:
 *	  the two lock modes (the API's, which waits, and the worker's, which
 *	  skips a busy row), and the one UPDATE that moves a transaction along
 *	  an edge of state.c, stamping its times and waking its tcc.wait
 *	  callers.
 *
 * Concurrency.  Every call that changes a transaction first locks its row
 * (SELECT ... FOR UPDATE; the worker without waiting) and decides on the
 * status it finds under that lock, so a commit racing a rollback (or the
 * worker's timeout cancel) has exactly one winner and the loser sees the
 * winner's status; and every change to a branch is made under the same
 * lock.  A branch registration takes the lock too, but writes only its
 * branch (branch.c), not this row.  That is enough for the race between
 * registering a branch and committing the same transaction in two
 * sessions:
 *
 * - register first: the commit's FOR UPDATE waits for the registering
 *	 transaction to end.  Under READ COMMITTED every statement the commit
 *	 runs after that takes a new snapshot, which sees the new branch, so
 *	 the commit confirms it (and does not take the branch-less edge to
 *	 confirmed).  Under REPEATABLE READ or SERIALIZABLE the commit's
 *	 snapshot may be older than the registration; tcc_lock_global_tx then
 *	 fails to serialize, as an UPDATE of a row changed since the snapshot
 *	 would, instead of leaving the branch behind.
 * - commit first: the commit UPDATEs the row, so the registration's FOR
 *	 UPDATE waits, then finds the status no longer trying (or, under
 *	 REPEATABLE READ, fails to serialize) and refuses.
 *
 * So a branch registered concurrently with a commit is either confirmed or
 * refused, never left behind (doc/design.md, Concurrency).  Two
 * registrations of one transaction queue on the lock the same way, which
 * is what makes the next sequence number (branch.c) unique.
 *
 * src/global_tx.c
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

/*
 * GLOBAL_TX_COLUMNS
 *		What every read of a transaction's row takes, in the order
 *		fill_global_tx reads it.
 */
#define GLOBAL_TX_COLUMNS \
	"SELECT gid, mode, status, failed_phase, owner," \
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
	int			mode;
	bool		isnull;

	tx->gid = tcc_spi_getstring(row, 1);
	mode = tcc_mode_from_name(tcc_spi_getstring(row, 2));
	if (mode < 0)
		elog(ERROR, "unknown mode of global transaction \"%s\"", tx->gid);
	tx->mode = (TccMode) mode;
	tx->status = tcc_status_from_name(tcc_spi_getstring(row, 3));
	failed_phase = tcc_spi_getstring(row, 4);
	tx->failed_phase = failed_phase ? tcc_status_from_name(failed_phase) :
		TCC_FAILED;
	tx->owner = DatumGetObjectId(tcc_spi_getdatum(row, 5, &isnull));
	tx->deadline = tcc_spi_getstring(row, 6);
	tx->expired = DatumGetBool(tcc_spi_getdatum(row, 7, &isnull));

	/*
	 * Written (xmin) or locked (xmax) by the current transaction.  xmax may
	 * be a MultiXactId instead, when several transactions lock the row;
	 * the current one is then among them only by a coincidence of numbers,
	 * which at worst refuses a tcc.wait with a clear error.
	 */
	tx->changed_here =
		TransactionIdIsCurrentTransactionId(
			DatumGetTransactionId(tcc_spi_getdatum(row, 8, &isnull))) ||
		TransactionIdIsCurrentTransactionId(
			DatumGetTransactionId(tcc_spi_getdatum(row, 9, &isnull)));
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
 *
 * A registration only locks the row, so a REPEATABLE READ or SERIALIZABLE
 * transaction gets the lock even when a registration committed after its
 * snapshot was taken, and fails to serialize instead (branch.c,
 * tcc_check_branches_seen).  Only a trying transaction takes
 * registrations.
 */
void
tcc_lock_global_tx(TccSpiSession *session, const char *gid, GlobalTx *tx)
{
	tcc_read_global_tx(session, gid, tx, READ_FOR_UPDATE);
	if (STATUS_IS(tx, TCC_TRYING))
		tcc_check_branches_seen(gid);
}

/*
 * gid_index
 *		The index of gid among the n gids, sorted by strcmp.
 */
static int
gid_index(const char *gid, const char *const *gids, int n)
{
	int			lo = 0;
	int			hi = n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			cmp = strcmp(gid, gids[mid]);

		if (cmp == 0)
			return mid;
		if (cmp < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	elog(ERROR, "global transaction \"%s\" was not asked for", gid);
	return -1;					/* keep the compiler quiet */
}

/*
 * tcc_lock_global_txs_nowait
 *		Lock and read the rows of the n global transactions gids (sorted by
 *		strcmp, no two alike) for the worker, without waiting: the second
 *		lock mode.  locks[i] says what became of gids[i], and txs[i] is its
 *		row when locked.
 *
 * The worker never waits for a row lock: a user's transaction may keep one
 * for as long as it likes (a repeated tcc.rollback in an open transaction),
 * and waiting would stall every other transaction's phase two behind it,
 * or deadlock with a user transaction that locks several gids in another
 * order.  A row that is busy is simply dealt with in a later round.  The
 * worker acts for every owner, so nothing is filtered out.  All of a
 * round's rows are locked by one statement; as it never waits, the order
 * it locks them in does not matter.
 */
void
tcc_lock_global_txs_nowait(int n, const char *const *gids, GlobalTx *txs,
						   GlobalLock *locks)
{
	static SPIPlanPtr lock_plans[2] = {NULL, NULL};
	static SPIPlanPtr exists_plans[2] = {NULL, NULL};
	static const Oid types[1] = {TEXTOID};
	Datum	   *cols[1];
	bool	   *nulls[1];
	uint64		nrows;
	uint64		row;
	int			i;

	for (i = 0; i < n; i++)
	{
		Assert(i == 0 || strcmp(gids[i - 1], gids[i]) < 0);
		locks[i] = GLOBAL_GONE;
	}
	tcc_text_column(gids, n, &cols[0], &nulls[0]);
	nrows = tcc_spi_exec_rows(lock_plans,
							  GLOBAL_TX_COLUMNS
							  " WHERE gid = $1 FOR UPDATE SKIP LOCKED",
							  GLOBAL_TX_COLUMNS
							  " WHERE gid = ANY ($1) FOR UPDATE SKIP LOCKED",
							  1, types, cols, nulls, n);
	for (row = 0; row < nrows; row++)
	{
		i = gid_index(SPI_getvalue(SPI_tuptable->vals[row],
								   SPI_tuptable->tupdesc, 1), gids, n);
		fill_global_tx(&txs[i], (int) row);
		txs[i].locked = true;
		locks[i] = GLOBAL_LOCKED;
	}
	if (nrows == (uint64) n)
		return;

	/* the others are held by somebody, or were purged meanwhile */
	nrows = tcc_spi_exec_rows(exists_plans,
							  "SELECT gid FROM tcc.global_transaction"
							  " WHERE gid = $1",
							  "SELECT gid FROM tcc.global_transaction"
							  " WHERE gid = ANY ($1)",
							  1, types, cols, nulls, n);
	for (row = 0; row < nrows; row++)
	{
		i = gid_index(SPI_getvalue(SPI_tuptable->vals[row],
								   SPI_tuptable->tupdesc, 1), gids, n);
		if (locks[i] != GLOBAL_LOCKED)
			locks[i] = GLOBAL_BUSY;
	}
}

/*
 * tcc_lock_global_tx_nowait
 *		tcc_lock_global_txs_nowait of the one transaction gid.
 */
GlobalLock
tcc_lock_global_tx_nowait(const char *gid, GlobalTx *tx)
{
	GlobalLock	lock;

	tcc_lock_global_txs_nowait(1, &gid, tx, &lock);
	return lock;
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
tcc_insert_global_tx(const char *gid, TccMode mode, Oid owner,
					 Jsonb *meta, TimestampTz deadline, GlobalTx *existing)
{
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr select_plan = NULL;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, OIDOID, JSONBOID,
		TIMESTAMPTZOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(gid);
	values[1] = CStringGetTextDatum(tcc_mode_name(mode));
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
 * move_global_tx
 *		The one statement that changes a transaction's status: move tx,
 *		whose row the caller has locked, to new_status along a legal edge.
 *
 * It stamps updated_at, and finished_at for a terminal status; keeps the
 * phase a failed transaction left, and its error, for exactly as long as
 * it is failed; keeps reason unless given a new one.  The end of a
 * transaction (confirmed, cancelled, or failed, which waits for a human)
 * wakes its tcc.wait callers once this transaction commits.  The caller
 * decided on the edge from what it found under the lock; an edge that
 * does not exist is a bug, and stops here (tcc_check_edge).
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
	tcc_check_edge(tx, new_status);

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
 * PURGEABLE
 *		What retention may delete: confirmed and cancelled transactions that
 *		finished before $1.  finished_at is set for nothing else
 *		(move_global_tx), and the status says so once more, so that a row
 *		changed by hand is never taken for a finished one.  Failed
 *		transactions are never deleted: they wait for a human.  Their
 *		branches go with them, in one statement (branch.c,
 *		tcc_delete_branches).
 */
#define PURGEABLE \
	"finished_at < $1 AND status IN ('confirmed', 'cancelled')"

/*
 * tcc_purge_finished
 *		tcc.purge's DELETE: the PURGEABLE transactions of roles whose
 *		privileges caller has; returns how many.
 *
 * The owner test goes through pg_roles because pg_has_role() fails for a
 * role that no longer exists; the transactions of a dropped role are a
 * superuser's to purge.
 */
uint64
tcc_purge_finished(TimestampTz cutoff, Oid caller)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TIMESTAMPTZOID, OIDOID, BOOLOID};
	Datum		values[3];

	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = ObjectIdGetDatum(caller);
	values[2] = BoolGetDatum(superuser_arg(caller));
	return tcc_spi_exec(&plan,
						"DELETE FROM tcc.global_transaction"
						" WHERE " PURGEABLE
						"   AND ($3 OR owner IN (SELECT oid FROM pg_roles"
						"                         WHERE pg_has_role($2, oid,"
						"                                           'USAGE')))",
						3, argtypes, values, NULL, false, 0);
}

/*
 * tcc_purge_finished_batch
 *		The worker's retention: up to limit of anybody's PURGEABLE
 *		transactions, oldest first, skipping rows that are locked; returns
 *		how many.
 *
 * The rows are found through the index on finished_at and deleted by the
 * address at which they were locked: a finished transaction's row is not
 * updated any more, and nobody else can while we hold its lock.  So the
 * plan is the same whatever the statistics say, and no batch reads more
 * of the table than it deletes.
 */
uint64
tcc_purge_finished_batch(TimestampTz cutoff, int limit)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];

	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = Int32GetDatum(limit);
	return tcc_spi_exec(&plan,
						"DELETE FROM tcc.global_transaction"
						" WHERE ctid = ANY (ARRAY("
						"        SELECT ctid FROM tcc.global_transaction"
						"         WHERE " PURGEABLE
						"         ORDER BY finished_at LIMIT $2"
						"           FOR UPDATE SKIP LOCKED))",
						2, argtypes, values, NULL, false, 0);
}
