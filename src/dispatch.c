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
 * last row read.  A round reads on from the mark, so rows already queued
 * or in flight are not read again while there is a backlog.  When a read
 * comes back short, it has reached the end, and the next one starts from
 * the beginning again: that is how rows that became due behind the mark
 * are found (a transaction that committed after the mark passed the time
 * it began, a branch put back by a busy row or a process that died), at
 * the cost of reading what is in flight once per pass.
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

#include "executor/spi.h"
#include "foreign/foreign.h"
#include "utils/hsearch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "runner.h"
#include "state.h"
#include "tcc.h"
#include "worker.h"

/* due rows read per round at most */
#define TCC_SCAN_ROWS		500

/*
 * milliseconds between two reads that only pass over the rows of owners
 * at their limit (see read_due)
 */
#define TCC_PASS_OVER_PAUSE	200

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
static bool have_mark = false;
static TimestampTz mark_due;
static char mark_gid[TCC_MAX_ID_LEN + 1];
static int32 mark_seq;

/* while only owners at their limit have rows due: do not read before */
static TimestampTz pass_over_until = 0;

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
 * tcc_dispatch_rescan
 *		Read the due rows from the beginning at the next round: some branch
 *		that was found due earlier is due again without having moved.
 */
void
tcc_dispatch_rescan(void)
{
	have_mark = false;
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
		tcc_owner_queue_remote(call);
	}
}

/*
 * scan_due
 *		Read up to limit due rows of this partition from the mark on (all
 *		of them, when there is no mark); returns how many (in SPI_tuptable).
 *
 * The query is written so that it has one good plan (with the settings of
 * tcc_worker_pin_session): a range scan of the partial due index, in its
 * order, and the owner from the primary key of the global transaction.
 * The owner is read by a LATERAL subquery, not a join: statistics that
 * say the tables are empty make a plain join's inner side a scan of the
 * whole primary key (the ordering useful to a merge join) cost as little
 * as a lookup, and the planner took it, once per due row.
 * The rows of owners that have found as many branches as they may
 * (tcc_owners_at_limit) are passed over, to be found again later.
 */
static uint64
scan_due(int limit)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[7] = {TIMESTAMPTZOID, TEXTOID, INT4OID,
	INT4OID, INT4OID, INT4OID, OIDARRAYOID};
	Datum		values[7];

	values[0] = TimestampTzGetDatum(have_mark ? mark_due : DT_NOBEGIN);
	values[1] = CStringGetTextDatum(have_mark ? mark_gid : "");
	values[2] = Int32GetDatum(have_mark ? mark_seq : PG_INT32_MIN);
	values[3] = Int32GetDatum(npartitions);
	values[4] = Int32GetDatum(my_partition);
	values[5] = Int32GetDatum(limit);
	values[6] = PointerGetDatum(tcc_owners_at_limit());
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
						" ORDER BY b.next_attempt_at, b.gid, b.seq"
						" LIMIT $6",
						7, argtypes, values, NULL, true, 0);
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
		if (found || !tcc_owner_take(row_owner(row)))
			continue;			/* ours already, or its owner has enough */
		(void) hash_search(in_flight, &key, HASH_ENTER, NULL);
		queue_call(new_call((int) row), done);
	}
}

/*
 * set_mark
 *		Remember due row row as the last one read.
 */
static void
set_mark(uint64 row)
{
	HeapTuple	tuple = SPI_tuptable->vals[row];
	TupleDesc	tupdesc = SPI_tuptable->tupdesc;
	bool		isnull;

	mark_due = DatumGetTimestampTz(SPI_getbinval(tuple, tupdesc, 9, &isnull));
	strlcpy(mark_gid, SPI_getvalue(tuple, tupdesc, 1), sizeof(mark_gid));
	mark_seq = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 10, &isnull));
	have_mark = true;
}

/*
 * read_due
 *		Read the next due rows of this partition and queue those not in
 *		flight yet, a transaction at a time.
 *
 * A full read may have cut the last transaction's rows in two; they are
 * left for the next read (the mark stays before them), so that a
 * transaction's cancels are queued together, newest first, unless one
 * transaction alone fills a read.  A short read reached the end: the next
 * one starts from the beginning.
 */
static void
read_due(List **done)
{
	uint64		nrows;
	uint64		first = 0;
	uint64		end;
	uint64		i;
	bool		passing_over = tcc_owners_any_at_limit();

	/*
	 * A read that found nothing but rows of owners at their limit will
	 * find the same again, walking the whole backlog to do so, until one of
	 * them is down to half its limit or another owner's rows become due:
	 * wait a little for the latter instead of walking it on every round.
	 */
	if (!passing_over)
		pass_over_until = 0;
	else if (pass_over_until != 0 && GetCurrentTimestamp() < pass_over_until)
		return;

	nrows = scan_due(TCC_SCAN_ROWS);
	if (passing_over && nrows < TCC_SCAN_ROWS)
		pass_over_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  TCC_PASS_OVER_PAUSE);
	if (nrows == 0)
	{
		have_mark = false;
		return;
	}

	end = nrows;
	if (nrows == TCC_SCAN_ROWS)
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

	if (nrows < TCC_SCAN_ROWS)
		have_mark = false;
	else
		set_mark(end - 1);
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
	if (!tcc_begin_round("sending due actions"))
		return false;
	read_due(done);
	tcc_owners_send(done);		/* in a transaction: it reads catalogs */
	tcc_lower_time(wake_at, next_retry_at());
	tcc_end_round();

	tcc_lower_time(wake_at, tcc_local_pool_run(done));

	/* more rows to read: read on at once */
	if (have_mark)
		tcc_lower_time(wake_at, GetCurrentTimestamp());
	tcc_lower_time(wake_at, pass_over_until);
	return true;
}
