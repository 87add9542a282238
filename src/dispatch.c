/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  The worker's dispatch: finding the branches that are due and sending
 *	  their actions (remote ones without waiting for the answer, local ones
 *	  run here), and the table of the calls in flight, so that a branch is
 *	  never sent twice before its outcome is recorded.
 *
 * src/dispatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "foreign/foreign.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "state.h"
#include "tcc.h"
#include "worker.h"

/* a branch, as the key of the calls in flight */
typedef struct InFlightKey
{
	char		gid[TCC_MAX_ID_LEN + 1];
	char		branch_id[TCC_MAX_ID_LEN + 1];
} InFlightKey;

/* the branches whose call has been sent and not yet recorded */
static HTAB *in_flight = NULL;

/* the calls, from the moment they are found due until recorded */
MemoryContext tcc_calls_context = NULL;

/*
 * tcc_dispatch_init
 *		Set up the memory of the calls and the table of those in flight,
 *		once per worker.
 */
void
tcc_dispatch_init(void)
{
	HASHCTL		ctl;

	tcc_calls_context = AllocSetContextCreate(TopMemoryContext, "tcc calls",
											  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(InFlightKey);
	ctl.entrysize = sizeof(InFlightKey);
	in_flight = hash_create("tcc calls in flight", 256, &ctl,
							HASH_ELEM | HASH_BLOBS);
}

/*
 * in_flight_key
 *		The hash key of call's branch.
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
 *		Release a call once its outcome is recorded.
 */
void
tcc_free_call(TccCall *call)
{
	InFlightKey key;

	in_flight_key(&key, call->gid, call->branch_id);
	(void) hash_search(in_flight, &key, HASH_REMOVE, NULL);

	pfree(call->gid);
	pfree(call->branch_id);
	if (call->server)
		pfree(call->server);
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
 * send_call
 *		Start call, a branch found due: a remote one is sent to its
 *		participant; a local one goes to *local, to be run once the remote
 *		ones are on their way; one that needs no call (an absent
 *		compensation: nothing to undo) or cannot be made (its server was
 *		dropped or replaced since the registration) goes to *done with its
 *		outcome.
 */
static void
send_call(TccCall *call, List **done, List **local)
{
	ForeignServer *server;
	TccRefusal	refusal;

	if (call->sql == NULL)
	{
		call->sql = MemoryContextStrdup(tcc_calls_context, "");
		call->outcome = TCC_CALL_DONE;
		tcc_add_call(done, call);
	}
	else if (call->server == NULL)
		tcc_add_call(local, call);
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
		tcc_remote_send(call, done);
	}
}

/*
 * send_due_calls
 *		Start the calls of up to room branches that are due and not in
 *		flight already (see send_call); local ones go to *local.
 */
static void
send_due_calls(int room, List **done, List **local)
{
	static SPIPlanPtr due_plan = NULL;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	uint64		nrows;
	uint64		row;

	/*
	 * Branches in flight are still due in the table; ask for enough rows to
	 * find room new ones among them (room plus those in flight).  Confirms
	 * go in registration order, cancels in reverse.
	 */
	values[0] = Int32GetDatum(tcc_max_concurrent_calls);
	nrows = tcc_spi_exec(&due_plan,
						 "SELECT b.gid, b.branch_id, b.status, b.server,"
						 "       CASE b.status WHEN 'confirming'"
						 "       THEN b.confirm_sql ELSE b.cancel_sql END,"
						 "       b.payload, b.attempts, g.owner::oid"
						 "  FROM tcc.branch b"
						 "  JOIN tcc.global_transaction g ON g.gid = b.gid"
						 " WHERE b.status IN ('confirming', 'cancelling')"
						 "   AND b.next_attempt_at <= now()"
						 " ORDER BY b.next_attempt_at, b.gid,"
						 "          CASE b.status WHEN 'confirming'"
						 "          THEN b.seq ELSE -b.seq END"
						 " LIMIT $1",
						 1, argtypes, values, NULL, true, 0);

	for (row = 0; row < nrows && room > 0; row++)
	{
		InFlightKey key;
		bool		found;
		TccCall    *call;

		in_flight_key(&key,
					  SPI_getvalue(SPI_tuptable->vals[row],
								   SPI_tuptable->tupdesc, 1),
					  SPI_getvalue(SPI_tuptable->vals[row],
								   SPI_tuptable->tupdesc, 2));
		(void) hash_search(in_flight, &key, HASH_ENTER, &found);
		if (found)
			continue;

		call = new_call(row);
		room--;
		send_call(call, done, local);
	}
}

/*
 * next_retry_at
 *		When the next branch that waits for a retry becomes due (0: none
 *		waits), so the worker can sleep until then.
 */
static TimestampTz
next_retry_at(void)
{
	static SPIPlanPtr next_plan = NULL;
	bool		isnull;

	if (tcc_spi_exec(&next_plan,
					 "SELECT min(next_attempt_at) FROM tcc.branch"
					 " WHERE status IN ('confirming', 'cancelling')"
					 "   AND next_attempt_at > now()",
					 0, NULL, NULL, NULL, true, 1) == 1)
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
 *		Send the actions of the branches that are due; local ones are run
 *		(and recorded) here, after the remote ones are on their way.
 *		Calls that fail before being sent go to *done.
 *
 * Returns false when the extension is gone.  *next_due is set to when the
 * next branch becomes due (0: none is waiting; now, after local calls, as
 * more may be due already).  When tcc.max_concurrent_calls are in flight,
 * the rest waits for answers to come back.
 */
bool
tcc_dispatch(List **done, TimestampTz *next_due)
{
	List	   *local = NIL;
	ListCell   *lc;
	int			room = tcc_max_concurrent_calls - tcc_remote_in_flight();

	*next_due = 0;

	if (!tcc_begin_round("sending due actions"))
		return false;

	if (room > 0)
		send_due_calls(room, done, &local);

	/* when the next retry is due, so the worker can sleep until then */
	*next_due = next_retry_at();

	tcc_end_round();

	foreach(lc, local)
	{
		/*
		 * Local calls are recorded here, so no answer will wake the worker
		 * for the branches the LIMIT left out (or the next saga step): look
		 * again at once, not a naptime later.  A call that could not run
		 * (its transaction busy) waits for the naptime instead.
		 */
		if (tcc_run_local_call((TccCall *) lfirst(lc)))
			*next_due = GetCurrentTimestamp();
	}
	list_free(local);

	return true;
}
