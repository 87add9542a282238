/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  A dispatcher's view of the due work: finding the branches of its
 *	  partition that are due, queueing them per owner, sending remote ones
 *	  (without waiting for the answer) in fair turns between owners, and
 *	  handing local ones to the local-action processes (local_pool.c); and
 *	  the table of the calls in flight, so that a branch is never sent
 *	  twice before its outcome is recorded.
 *
 * Partitions.  A database's gids are divided among its dispatchers by a
 * hash of the gid (family.c starts them): dispatcher k of n serves the
 * branches whose gid hashes to k modulo n, and nobody else does, so two
 * processes never send the same branch.  All branches of a transaction
 * are in the same partition, and so are all of its outcomes.
 *
 * Reading each due row once.  The due rows are read in the order of the
 * due index (next_attempt_at, gid, seq), from a mark: the position of the
 * last row read.  A read goes on from the mark, so rows already queued or
 * in flight are not read again; one that comes back short has read all
 * that is due, and the mark moves to the time of its snapshot.  Rows can
 * become due behind the mark only by a transaction that commits after the
 * read (its now(), the due time it writes, is when it began): whatever
 * makes a branch due notes its due time for this dispatcher at commit
 * (branch.c, tcc_note_due_at_commit), and the next read first moves the
 * mark back to the earliest noted.  A dispatcher starts from the
 * beginning, and reads from the beginning again every ten naptimes, which
 * finds what nothing noted (a DBA's UPDATE of next_attempt_at) at the cost
 * of reading what is in flight once.
 *
 * Owners behind.  An owner that has found its most is behind (owners.c):
 * the reads pass its rows over, and once it is below its limit, reads of
 * its own rows from where it fell behind catch it up.  So its backlog is
 * walked over once by a read that looks for others' rows, not once per
 * read.
 *
 * Fair turns.  Calls wait in one queue per owner, and are sent one per
 * owner in turn (owners.c), so that one owner's thousands of due branches
 * cannot hold back another owner's single one for longer than one turn;
 * and an owner that has found its most is passed over by the reads.
 *
 * src/dispatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "runner.h"
#include "state.h"
#include "tcc.h"
#include "tcc_shmem.h"
#include "worker.h"

/* due rows read per round at most */
#define TCC_SCAN_ROWS		500

/* naptimes between two reads from the beginning (see the file header) */
#define TCC_READ_ALL_NAPTIMES	10

/* a branch, as the key of the calls in flight */
typedef struct InFlightKey
{
	char		gid[TCC_MAX_ID_LEN + 1];
	char		branch_id[TCC_MAX_ID_LEN + 1];
} InFlightKey;

/* the branches found due and not yet recorded: queued, sent or running */
static HTAB *in_flight = NULL;

/* this dispatcher's partition */
static int	my_partition = 0;
static int	npartitions = 1;

/* the position of the last due row read (see the header) */
static TccDuePos mark = {DT_NOBEGIN, "", 0};

/* when the reads last started from the beginning */
static TimestampTz read_all_at = 0;

/* whether a read stopped before the end of what is due */
static bool more_due = false;

/* the calls, from the moment they are found due until recorded */
MemoryContext tcc_calls_context = NULL;

/*
 * tcc_dispatch_init
 *		Set up the memory of the calls, the table of those in flight and
 *		the owners' queues, once per dispatcher, for partition partition of
 *		partitions.
 */
void
tcc_dispatch_init(int partition, int partitions)
{
	HASHCTL		ctl;

	Assert(partition >= 0 && partition < partitions);
	my_partition = partition;
	npartitions = partitions;

	tcc_calls_context = AllocSetContextCreate(TopMemoryContext, "tcc calls",
											  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(InFlightKey);
	ctl.entrysize = sizeof(InFlightKey);
	in_flight = hash_create("tcc calls in flight", 1024, &ctl,
							HASH_ELEM | HASH_BLOBS);
	tcc_owners_init();
	tcc_local_pool_init();
}

/*
 * tcc_gid_partition
 *		The partition of gid, when a database's gids are divided into
 *		npartitions: as the due query computes it (hashtext under the
 *		column's collation, the database's default).
 */
int
tcc_gid_partition(const char *gid, int npartitions)
{
	Datum		hash = DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID,
											   CStringGetTextDatum(gid));

	Assert(npartitions > 0);
	return (int) ((DatumGetInt32(hash) & 0x7FFFFFFF) % npartitions);
}

/*
 * tcc_due_pos_lower
 *		Move *pos back to to, when to is earlier.
 *
 * The index orders gids by the column's collation, which this does not
 * know: two different gids at one due time make *pos the earliest
 * position of that time, which is never later than either.
 */
void
tcc_due_pos_lower(TccDuePos *pos, const TccDuePos *to)
{
	if (to->due < pos->due)
		*pos = *to;
	else if (to->due > pos->due)
		return;
	else if (strcmp(to->gid, pos->gid) == 0)
		pos->seq = Min(pos->seq, to->seq);
	else
	{
		pos->gid[0] = '\0';
		pos->seq = PG_INT32_MIN;
	}
}

/*
 * in_flight_key
 *		The hash key of a branch.
 */
static void
in_flight_key(InFlightKey *key, const char *gid, const char *branch_id)
{
	memset(key, 0, sizeof(InFlightKey));
	strlcpy(key->gid, gid, sizeof(key->gid));
	strlcpy(key->branch_id, branch_id, sizeof(key->branch_id));
}

/*
 * tcc_add_call
 *		Append call to a list that outlives the transaction.
 */
void
tcc_add_call(List **list, TccCall *call)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(tcc_calls_context);

	*list = lappend(*list, call);
	MemoryContextSwitchTo(oldcontext);
}

/*
 * tcc_free_call
 *		Release a call once its outcome is recorded, or once it turned out
 *		not to be due any more: its branch may be found due again.
 */
void
tcc_free_call(TccCall *call)
{
	InFlightKey key;

	in_flight_key(&key, call->gid, call->branch_id);
	(void) hash_search(in_flight, &key, HASH_REMOVE, NULL);
	tcc_owner_release(call);

	pfree(call->gid);
	pfree(call->branch_id);
	if (call->server)
		pfree(call->server);
	if (call->sql)
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
 * copy_value
 *		Column col of tuple as text in tcc_calls_context, or NULL.
 */
static char *
copy_value(HeapTuple tuple, TupleDesc tupdesc, int col)
{
	char	   *value = SPI_getvalue(tuple, tupdesc, col);

	return value ? MemoryContextStrdup(tcc_calls_context, value) : NULL;
}

/*
 * new_call
 *		A call for result row row of the due-branch query, allocated in
 *		tcc_calls_context.
 */
static TccCall *
new_call(int row)
{
	TccCall    *call = MemoryContextAllocZero(tcc_calls_context,
											  sizeof(TccCall));
	HeapTuple	tuple = SPI_tuptable->vals[row];
	TupleDesc	tupdesc = SPI_tuptable->tupdesc;
	bool		isnull;

	/*
	 * Output functions leave garbage in the current (SPI) context; only the
	 * strings are copied to tcc_calls_context, which lives as long as the
	 * worker.
	 */
	call->gid = copy_value(tuple, tupdesc, 1);
	call->branch_id = copy_value(tuple, tupdesc, 2);
	call->ran_in = tcc_branch_status_from_name(SPI_getvalue(tuple, tupdesc, 3));
	call->server = copy_value(tuple, tupdesc, 4);
	call->sql = copy_value(tuple, tupdesc, 5);
	call->payload = copy_value(tuple, tupdesc, 6);
	call->attempts = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 7, &isnull));
	call->owner = DatumGetObjectId(SPI_getbinval(tuple, tupdesc, 8, &isnull));
	call->outcome = TCC_CALL_PENDING;

	return call;
}

/*
 * queue_call
 *		Queue call, a branch found due: a remote one waits for its owner's
 *		turn to be sent, a local one goes to the local-action processes;
 *		one that needs no call (an absent compensation: nothing to undo)
 *		or cannot be made (its server was dropped or replaced since the
 *		registration) goes to *done with its outcome.
 */
static void
queue_call(TccCall *call, List **done)
{
	ForeignServer *server;
	TccRefusal	refusal;

	if (call->sql == NULL)
	{
		call->outcome = TCC_CALL_DONE;
		tcc_add_call(done, call);
	}
	else if (call->server == NULL)
		tcc_local_pool_add(call);
	else if (!tcc_participant_server(call->server, &server, &refusal))
	{
		call->outcome = TCC_CALL_ERROR;
		call->error = MemoryContextStrdup(tcc_calls_context,
										  refusal.message);
		strlcpy(call->sqlstate, refusal.sqlstate, sizeof(call->sqlstate));
		call->permanent = true;
		tcc_add_call(done, call);
	}
	else
	{
		call->serverid = server->serverid;
		call->conn_slot = tcc_connection_slot(call->gid, npartitions);
		tcc_owner_queue_remote(call);
	}
}

/*
 * scan_due
 *		Read up to limit due rows of this partition after from: of owner
 *		only, or (InvalidOid) of every owner not in except; returns how many
 *		(in SPI_tuptable).
 *
 * The query is written so that it has one good plan (with the settings of
 * tcc_worker_pin_session): a range scan of the partial due index, in its
 * order, and the owner from the primary key of the global transaction.
 * The owner is read by a LATERAL subquery, not a join: statistics that
 * say the tables are empty make a plain join's inner side a scan of the
 * whole primary key (the ordering useful to a merge join) cost as little
 * as a lookup, and the planner took it, once per due row.
 */
static uint64
scan_due(const TccDuePos *from, Oid owner, ArrayType *except, int limit)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[8] = {TIMESTAMPTZOID, TEXTOID, INT4OID,
	INT4OID, INT4OID, INT4OID, OIDARRAYOID, OIDOID};
	Datum		values[8];

	values[0] = TimestampTzGetDatum(from->due);
	values[1] = CStringGetTextDatum(from->gid);
	values[2] = Int32GetDatum(from->seq);
	values[3] = Int32GetDatum(npartitions);
	values[4] = Int32GetDatum(my_partition);
	values[5] = Int32GetDatum(limit);
	values[6] = PointerGetDatum(except);
	values[7] = ObjectIdGetDatum(owner);
	return tcc_spi_exec(&plan,
						"SELECT b.gid, b.branch_id, b.status, b.server,"
						"       CASE b.status WHEN 'confirming'"
						"       THEN b.confirm_sql ELSE b.cancel_sql END,"
						"       b.payload, b.attempts, g.owner::oid,"
						"       b.next_attempt_at, b.seq"
						"  FROM tcc.branch b"
						" CROSS JOIN LATERAL"
						"       (SELECT g.owner FROM tcc.global_transaction g"
						"         WHERE g.gid = b.gid OFFSET 0) g"
						" WHERE b.status IN ('confirming', 'cancelling')"
						"   AND b.next_attempt_at <= now()"
						"   AND (b.next_attempt_at, b.gid, b.seq) >"
						"       ($1, $2, $3)"
						"   AND (pg_catalog.hashtext(b.gid) & 2147483647)"
						"       % $4 = $5"
						"   AND g.owner::oid <> ALL ($7)"
						"   AND ($8 = 0 OR g.owner::oid = $8)"
						" ORDER BY b.next_attempt_at, b.gid, b.seq"
						" LIMIT $6",
						8, argtypes, values, NULL, true, 0);
}

/*
 * same_gid
 *		Whether due rows a and b are of the same global transaction.
 */
static bool
same_gid(uint64 a, uint64 b)
{
	return strcmp(SPI_getvalue(SPI_tuptable->vals[a],
							   SPI_tuptable->tupdesc, 1),
				  SPI_getvalue(SPI_tuptable->vals[b],
							   SPI_tuptable->tupdesc, 1)) == 0;
}

/*
 * row_owner
 *		The owner of due row row.
 */
static Oid
row_owner(uint64 row)
{
	bool		isnull;

	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[row],
										  SPI_tuptable->tupdesc, 8, &isnull));
}

/*
 * row_pos
 *		The position of due row row in the order of the due index.
 */
static void
row_pos(uint64 row, TccDuePos *pos)
{
	HeapTuple	tuple = SPI_tuptable->vals[row];
	TupleDesc	tupdesc = SPI_tuptable->tupdesc;
	bool		isnull;

	pos->due = DatumGetTimestampTz(SPI_getbinval(tuple, tupdesc, 9, &isnull));
	strlcpy(pos->gid, SPI_getvalue(tuple, tupdesc, 1), sizeof(pos->gid));
	pos->seq = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 10, &isnull));
}

/*
 * queue_rows
 *		Queue the due rows first .. last - 1, all of one transaction, that
 *		are not in flight yet: confirms in registration order, cancels in
 *		reverse (the rows come in registration order).
 */
static void
queue_rows(uint64 first, uint64 last, List **done)
{
	uint64		i;

	for (i = first; i < last; i++)
	{
		uint64		row = i;
		InFlightKey key;
		TccDuePos	pos;
		bool		found;

		if (strcmp(SPI_getvalue(SPI_tuptable->vals[first],
								SPI_tuptable->tupdesc, 3), "cancelling") == 0)
			row = last - 1 - (i - first);

		in_flight_key(&key,
					  SPI_getvalue(SPI_tuptable->vals[row],
								   SPI_tuptable->tupdesc, 1),
					  SPI_getvalue(SPI_tuptable->vals[row],
								   SPI_tuptable->tupdesc, 2));
		(void) hash_search(in_flight, &key, HASH_FIND, &found);
		if (found)
			continue;			/* ours already */
		row_pos(row, &pos);
		if (!tcc_owner_take(row_owner(row), &pos))
			continue;			/* its owner has enough: passed over */
		(void) hash_search(in_flight, &key, HASH_ENTER, NULL);
		queue_call(new_call((int) row), done);
	}
}

/*
 * queue_read
 *		Queue the rows of a read of nrows due rows of at most limit, a
 *		transaction at a time; returns how many rows it took (the next read
 *		goes on after the last of them).
 *
 * A full read may have cut the last transaction's rows in two; they are
 * left for the next read, so that a transaction's cancels are queued
 * together, newest first, unless one transaction alone fills a read.
 */
static uint64
queue_read(uint64 nrows, int limit, List **done)
{
	uint64		first = 0;
	uint64		end = nrows;
	uint64		i;

	if (nrows == (uint64) limit)
	{
		while (end > 1 && same_gid(end - 1, nrows - 1))
			end--;
		if (end == 1 && same_gid(0, nrows - 1))
			end = nrows;
	}

	for (i = 1; i <= end; i++)
	{
		if (i == end || !same_gid(i, first))
		{
			queue_rows(first, i, done);
			first = i;
		}
	}
	return end;
}

/*
 * move_mark_back
 *		Rows may have become due after pos behind the mark (see the file
 *		header): read from there on, and so do the owners behind.
 */
static void
move_mark_back(const TccDuePos *pos)
{
	tcc_due_pos_lower(&mark, pos);
	tcc_owners_rewind(pos);
}

/*
 * read_due
 *		Read the next due rows of this partition, passing over those of the
 *		owners behind, and queue those not in flight yet; noted is the
 *		earliest due time committed transactions noted (DT_NOEND: none).
 */
static void
read_due(TimestampTz noted, List **done)
{
	TimestampTz now = GetCurrentTimestamp();
	TccDuePos	pos = {noted, "", PG_INT32_MIN};
	uint64		nrows;
	uint64		end;

	/* from the beginning, every TCC_READ_ALL_NAPTIMES naptimes */
	if (read_all_at == 0 ||
		TimestampDifferenceExceeds(read_all_at, now,
								   TCC_READ_ALL_NAPTIMES * tcc_naptime))
	{
		pos.due = DT_NOBEGIN;
		read_all_at = now;
	}
	if (pos.due != DT_NOEND)
		move_mark_back(&pos);

	nrows = scan_due(&mark, InvalidOid, tcc_owners_passed_over(),
					 TCC_SCAN_ROWS);
	end = queue_read(nrows, TCC_SCAN_ROWS, done);
	if (nrows == TCC_SCAN_ROWS)
	{
		row_pos(end - 1, &mark);
		more_due = true;
	}
	else
	{
		/* all that the snapshot sees due up to now() has been read */
		mark.due = GetCurrentTransactionStartTimestamp();
		mark.gid[0] = '\0';
		mark.seq = PG_INT32_MIN;
	}
}

/*
 * read_behind
 *		Read on the own rows of each owner that is behind and below its
 *		limit (owners.c), at most as many as it may take.
 */
static void
read_behind(List **done)
{
	Oid		   *owners;
	int			nowners = tcc_owners_behind(&owners);
	ArrayType  *none;
	int			i;

	if (nowners == 0)
		return;					/* the common case: nobody is behind */
	none = construct_empty_array(OIDOID);
	for (i = 0; i < nowners; i++)
	{
		TccDuePos	from;
		TccDuePos	last;
		int			limit = Min(TCC_SCAN_ROWS,
								tcc_owner_room(owners[i], &from));
		uint64		nrows = scan_due(&from, owners[i], none, limit);
		uint64		end = queue_read(nrows, limit, done);

		if (end > 0)
			row_pos(end - 1, &last);
		tcc_owner_read_behind(owners[i], end > 0 ? &last : NULL,
							  nrows < (uint64) limit);
		if (nrows == (uint64) limit)
			more_due = true;
	}
}

/*
 * next_retry_at
 *		When the next branch of this partition that waits for a retry
 *		becomes due (0: none waits), so the dispatcher can sleep until then.
 */
static TimestampTz
next_retry_at(void)
{
	static SPIPlanPtr next_plan = NULL;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	bool		isnull;

	values[0] = Int32GetDatum(npartitions);
	values[1] = Int32GetDatum(my_partition);
	if (tcc_spi_exec(&next_plan,
					 "SELECT next_attempt_at FROM tcc.branch"
					 " WHERE status IN ('confirming', 'cancelling')"
					 "   AND next_attempt_at > now()"
					 "   AND (pg_catalog.hashtext(gid) & 2147483647)"
					 "       % $1 = $2"
					 " ORDER BY next_attempt_at LIMIT 1",
					 2, argtypes, values, NULL, true, 1) == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			return DatumGetTimestampTz(d);
	}
	return 0;
}

/*
 * tcc_dispatch
 *		Read what became due in this dispatcher's partition, send the
 *		queued remote calls in fair turns and hand the local ones to the
 *		local-action processes.  Calls that fail before being sent, and
 *		local calls whose process died, go to *done.
 *
 * Returns false when the extension is gone.  *wake_at is lowered to when
 * the dispatcher must look again at the latest (0: not set): when the
 * next retry is due, when the local pool needs a look, or now when the
 * read stopped before the end of what is due.
 */
bool
tcc_dispatch(List **done, TimestampTz *wake_at)
{
	/*
	 * What transactions noted is taken before the round's snapshot: one
	 * that notes after this is visible to the snapshot, or taken next time
	 * (a transaction notes once its commit is visible).
	 */
	TimestampTz noted = tcc_take_due_from();

	if (!tcc_begin_round("sending due actions"))
		return false;
	more_due = false;
	read_due(noted, done);
	read_behind(done);
	tcc_owners_send(done);		/* in a transaction: it reads catalogs */
	tcc_lower_time(wake_at, next_retry_at());
	tcc_end_round();

	tcc_lower_time(wake_at, tcc_local_pool_run(done));

	/* more rows to read: read on at once */
	if (more_due)
		tcc_lower_time(wake_at, GetCurrentTimestamp());
	return true;
}
