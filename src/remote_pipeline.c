/*-------------------------------------------------------------------------
 *
 * remote_pipeline.c
 *	  What runs on one participant connection: sending a call and the
 *	  reset of the session after it down the connection's pipeline, and
 *	  reading their results back in order into the calls' outcomes, with
 *	  the time limit of each.  The connections themselves are in
 *	  remote_conn.c and remote_connect.c; remote_wait.c waits for their
 *	  answers.
 *
 * Many calls are in flight at once.  Each connection runs in libpq's
 * pipeline mode: every action is sent as one extended-protocol query
 * followed by a Sync, so each runs in a transaction of its own on the
 * participant and an error in one does not touch the next, yet none waits
 * for the previous one's answer to be sent.  The calls made while a
 * connection is being made wait in its queue, unsent, and go out in order
 * once it is up (tcc_send_queued); no time limit runs for them before.
 *
 * A call succeeds only when its Sync comes back (ReadyForQuery): that is
 * when the participant has committed.  A connection lost between the
 * statement's result and the Sync leaves the outcome unknown, and the call
 * is retried; the participant's fence makes the repeat harmless.
 *
 * Every call starts from a clean session (doc/design.md, Running an
 * action): after each action's Sync, the statements DISCARD ALL stands for
 * go down the same pipeline, in a transaction of their own with a Sync of
 * their own, all but DISCARD PLANS.  They drop whatever the action left
 * behind: settings, role, advisory locks, prepared statements, temporary
 * objects, LISTEN, cursors, sequence state.  The cached plans are kept:
 * they are not something an action sets, only what the participant's
 * functions (the fence's included) learnt of how to run their statements,
 * and dropping them made every call parse and plan all of them again.
 * (An action cannot leave a transaction block open for the reset to run
 * in: action SQL that is a transaction statement is refused when it is
 * registered.)  The reset is an item of the connection's queue like a
 * call, and its results are read in turn; it has the deadline a call
 * has when it reaches the head.  The call's outcome was decided at its own
 * Sync; a reset that fails, returns anything unexpected or times out only
 * closes the connection, so that a dirty session is never used again (the
 * calls sent behind it fail, and are retried, on a new connection).  The
 * connection is opened with standard_conforming_strings pinned on in its
 * startup packet (remote_connect.c), which makes it the value RESET ALL goes
 * back to: action SQL is checked at registration under that setting.
 *
 * src/remote_pipeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "libpq-fe.h"
#include "utils/memutils.h"

#include "remote.h"
#include "tcc.h"

/* the OIDs of the parameters' types: $1 gid, $2 branch id, $3 payload */
static const Oid action_param_types[3] = {TEXTOID, TEXTOID, JSONBOID};

/*
 * The items of a connection's queue, in the order the participant answers
 * them, are TccCalls and, after each, SESSION_RESET for its session reset.
 */
#define SESSION_RESET	((TccCall *) NULL)

/*
 * The session reset sent after each call, in an implicit transaction of
 * its own: what DISCARD ALL does, in its order, but DISCARD PLANS (see the
 * file header); and the command tag each statement answers with.
 */
typedef struct SessionResetStatement
{
	const char *sql;
	const char *tag;
} SessionResetStatement;

static const SessionResetStatement session_reset[] = {
	{"CLOSE ALL", "CLOSE CURSOR ALL"},
	{"SET SESSION AUTHORIZATION DEFAULT", "SET"},
	{"RESET ALL", "RESET"},
	{"DEALLOCATE ALL", "DEALLOCATE ALL"},
	{"UNLISTEN *", "UNLISTEN"},
	{"SELECT pg_catalog.pg_advisory_unlock_all()", "SELECT 1"},
	{"DISCARD TEMP", "DISCARD TEMP"},
	{"DISCARD SEQUENCES", "DISCARD SEQUENCES"}
};

#define SESSION_RESET_STATEMENTS	lengthof(session_reset)

/*
 * add_done
 *		Append call to *done, a list that outlives any transaction.
 */
static void
add_done(List **done, TccCall *call)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(tcc_remote_context);

	*done = lappend(*done, call);
	MemoryContextSwitchTo(oldcontext);
}

/*
 * copy_field
 *		Replace *field, in context, by field fieldcode of res (NULL: none).
 */
static void
copy_field(char **field, const PGresult *res, int fieldcode,
		   MemoryContext context)
{
	const char *value = res ? PQresultErrorField(res, fieldcode) : NULL;

	if (*field)
		pfree(*field);
	*field = value ? MemoryContextStrdup(context, value) : NULL;
}

/*
 * set_call_diag
 *		Keep the DETAIL, HINT and CONTEXT of the participant's error res
 *		with call's error (none when res is NULL), as postgres_fdw's
 *		pgfdw_report_error passes them on: they are recorded on the branch
 *		next to the message, and CALL tcc.try raises them again.
 */
static void
set_call_diag(TccCall *call, const PGresult *res)
{
	MemoryContext context = GetMemoryChunkContext(call);

	copy_field(&call->detail, res, PG_DIAG_MESSAGE_DETAIL, context);
	copy_field(&call->hint, res, PG_DIAG_MESSAGE_HINT, context);
	copy_field(&call->context, res, PG_DIAG_CONTEXT, context);
}

/*
 * tcc_set_call_error
 *		Make call's outcome an error with this message and SQLSTATE.
 */
void
tcc_set_call_error(TccCall *call, const char *message, const char *sqlstate,
				   bool permanent)
{
	MemoryContext context = GetMemoryChunkContext(call);

	if (call->error)
		pfree(call->error);
	call->outcome = TCC_CALL_ERROR;
	call->error = MemoryContextStrdup(context, message);
	set_call_diag(call, NULL);
	strlcpy(call->sqlstate, sqlstate ? sqlstate : "", sizeof(call->sqlstate));
	call->permanent = permanent;
}

/*
 * start_head
 *		The item at the head of entry's queue is now the one the
 *		participant runs: its time limit starts.  The participant runs a
 *		connection's items one after the other, so none is charged for the
 *		time it waits behind others.  A reset has the limit of a call, so
 *		that a participant that hangs in it cannot hold the connection for
 *		ever.
 */
static void
start_head(ConnCacheEntry *entry)
{
	TccCall    *head = (TccCall *) linitial(entry->queue);
	TimestampTz deadline = (tcc_call_timeout > 0) ?
		GetCurrentTimestamp() + (int64) tcc_call_timeout * 1000 : 0;

	if (head == SESSION_RESET)
	{
		entry->reset_deadline = deadline;
		entry->reset_done = 0;
	}
	else
		head->deadline = deadline;
}

/*
 * tcc_head_deadline
 *		When the item at the head of entry's queue times out (0: never).
 */
TimestampTz
tcc_head_deadline(ConnCacheEntry *entry)
{
	TccCall    *head = (TccCall *) linitial(entry->queue);

	return head == SESSION_RESET ? entry->reset_deadline : head->deadline;
}

/*
 * tcc_fail_entry
 *		Every call in flight on entry (or queued on it while it was being
 *		connected) failed with this error: move them to *done and close the
 *		connection.
 */
void
tcc_fail_entry(ConnCacheEntry *entry, const char *message,
			   const char *sqlstate, bool permanent, List **done)
{
	ListCell   *lc;

	foreach(lc, entry->queue)
	{
		TccCall    *call = (TccCall *) lfirst(lc);

		if (call == SESSION_RESET)
			continue;
		tcc_set_call_error(call, message, sqlstate, permanent);
		add_done(done, call);
	}
	entry->ncalls = 0;
	tcc_disconnect(entry);
}

/*
 * enqueue
 *		Append item (a call or SESSION_RESET) to entry's queue.  An item
 *		that is first in the queue starts its time limit now, or, on a
 *		connection being made, once it is up (tcc_send_queued).
 */
static void
enqueue(ConnCacheEntry *entry, TccCall *item)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(tcc_remote_context);

	entry->queue = lappend(entry->queue, item);
	MemoryContextSwitchTo(oldcontext);

	if (item != SESSION_RESET)
	{
		item->deadline = 0;
		entry->ncalls++;
	}
	if (list_length(entry->queue) == 1 && !entry->connecting)
		start_head(entry);
}

/*
 * dequeue
 *		Take the item at the head of entry's queue off it; the next one
 *		starts its time limit.
 */
static void
dequeue(ConnCacheEntry *entry)
{
	if (linitial(entry->queue) != SESSION_RESET)
		entry->ncalls--;
	entry->queue = list_delete_first(entry->queue);
	if (entry->queue != NIL)
		start_head(entry);
}

/*
 * send_failed
 *		libpq could not send on entry's connection: every call on it fails,
 *		and the connection is closed.
 */
static void
send_failed(ConnCacheEntry *entry, List **done)
{
	tcc_fail_entry(entry, tcc_libpq_message(entry->conn, "could not send"),
				   "08006", false, done);
}

/*
 * tcc_flush_entry
 *		Hand the socket what libpq still holds of entry's output, as much
 *		as it takes without blocking; false when that failed, and the
 *		connection with it (its calls went to *done).
 */
bool
tcc_flush_entry(ConnCacheEntry *entry, List **done)
{
	int			rc = PQflush(entry->conn);

	if (rc < 0)
	{
		send_failed(entry, done);
		return false;
	}
	entry->flush_pending = (rc == 1);
	return true;
}

/*
 * send_items
 *		Hand libpq call's action and the reset of its session after it (see
 *		the file header), each with its Sync; false when libpq refused,
 *		having lost the connection.
 */
static bool
send_items(ConnCacheEntry *entry, TccCall *call)
{
	const char *values[3];
	int			i;

	values[0] = call->gid;
	values[1] = call->branch_id;
	values[2] = call->payload;

	if (!PQsendQueryParams(entry->conn, call->sql, 3, action_param_types,
						   values, NULL, NULL, 0) ||
		!PQpipelineSync(entry->conn))
		return false;
	for (i = 0; i < SESSION_RESET_STATEMENTS; i++)
		if (!PQsendQueryParams(entry->conn, session_reset[i].sql, 0, NULL,
							   NULL, NULL, NULL, 0))
			return false;
	return PQpipelineSync(entry->conn);
}

/*
 * tcc_remote_send
 *		Send call's action to its participant without waiting for the
 *		answer; a call that cannot be sent gets its outcome and goes to
 *		*done.  Runs inside a transaction.
 */
void
tcc_remote_send(TccCall *call, List **done)
{
	ConnCacheEntry *entry;

	Assert(IsTransactionState());

	entry = tcc_connection_for(call);
	if (entry == NULL)
	{
		add_done(done, call);
		return;
	}

	/* the call, then the reset of its session (see the file header) */
	enqueue(entry, call);
	enqueue(entry, SESSION_RESET);

	/* a connection being made sends it once up (tcc_send_queued) */
	if (entry->connecting)
		return;
	if (!send_items(entry, call))
		send_failed(entry, done);
	else
		(void) tcc_flush_entry(entry, done);
}

/*
 * tcc_send_queued
 *		entry's connection has just been made: send the calls that were
 *		queued on it meanwhile, in order; the first one's time limit starts
 *		now.
 */
void
tcc_send_queued(ConnCacheEntry *entry, List **done)
{
	ListCell   *lc;

	Assert(!entry->connecting);

	foreach(lc, entry->queue)
	{
		TccCall    *call = (TccCall *) lfirst(lc);

		/* each reset went with its call */
		if (call == SESSION_RESET)
			continue;
		if (!send_items(entry, call))
		{
			send_failed(entry, done);
			return;
		}
	}
	if (entry->queue != NIL)
		start_head(entry);
	(void) tcc_flush_entry(entry, done);
}

/*
 * result_outcome
 *		Read one result of the call at the head of entry's pipeline into the
 *		call; false when the connection must be given up.
 */
static bool
result_outcome(ConnCacheEntry *entry, TccCall *call, PGresult *res)
{
	switch (PQresultStatus(res))
	{
		case PGRES_TUPLES_OK:
			call->have_result = true;
			call->outcome = TCC_CALL_DONE;
			if (PQntuples(res) == 1 && PQnfields(res) == 1 &&
				PQftype(res, 0) == BOOLOID && !PQgetisnull(res, 0, 0) &&
				strcmp(PQgetvalue(res, 0, 0), "f") == 0)
				call->outcome = TCC_CALL_NOT_DONE;
			return true;

		case PGRES_COMMAND_OK:
		case PGRES_EMPTY_QUERY:
			call->have_result = true;
			call->outcome = TCC_CALL_DONE;
			return true;

		case PGRES_FATAL_ERROR:
		case PGRES_PIPELINE_ABORTED:
			{
				const char *primary =
					PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
				const char *sqlstate = PQresultErrorField(res,
														  PG_DIAG_SQLSTATE);

				call->have_result = true;
				if (primary != NULL)
				{
					tcc_set_call_error(call, primary, sqlstate, false);
					set_call_diag(call, res);
				}
				else
				{
					char	   *msg = tcc_libpq_message(entry->conn,
														"the action failed");

					tcc_set_call_error(call, msg,
									   sqlstate ? sqlstate : "08006", false);
				}
				return true;
			}

		default:
			/* COPY and the like: the protocol state is beyond repair */
			tcc_set_call_error(call,
							   psprintf("the action returned an unsupported "
										"result (%s)",
										PQresStatus(PQresultStatus(res))),
							   "0A000", true);
			return false;
	}
}

/*
 * reset_failed
 *		The session reset at the head of entry's queue failed, or its
 *		results were not those it asked for: close the connection, so
 *		that its session is never used again.  The call before the reset
 *		keeps its outcome; the calls sent behind it fail and are retried
 *		(if they ran, they ran in the dirty session: the fence makes the
 *		repeat harmless).
 */
static void
reset_failed(ConnCacheEntry *entry, const char *why, List **done)
{
	ereport(LOG,
			(errmsg("closing a connection to the participant of foreign "
					"server with OID %u: resetting its session failed",
					entry->key.serverid),
			 errdetail_internal("%s", why)));
	tcc_fail_entry(entry, "connection closed after resetting its session "
				   "failed", "08006", false, done);
}

/*
 * reset_result
 *		Check one result of the session reset at the head of entry's queue:
 *		each statement's, in order, then the Sync.  false when the reset
 *		failed (the connection is closed then).
 */
static bool
reset_result(ConnCacheEntry *entry, PGresult *res, List **done)
{
	ExecStatusType status = PQresultStatus(res);
	int			next = entry->reset_done;

	if (next < SESSION_RESET_STATEMENTS &&
		(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) &&
		strcmp(PQcmdStatus(res), session_reset[next].tag) == 0)
	{
		entry->reset_done++;
		return true;
	}
	if (status == PGRES_PIPELINE_SYNC && next == SESSION_RESET_STATEMENTS)
	{
		dequeue(entry);
		return true;
	}

	if (status == PGRES_FATAL_ERROR &&
		PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) != NULL)
		reset_failed(entry, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
					 done);
	else
		reset_failed(entry, psprintf("unexpected result %s",
									 PQresStatus(status)), done);
	return false;
}

/*
 * call_result
 *		Take one result of the call at the head of entry's queue; at its
 *		Sync, the call goes to *done.  false when the connection had to be
 *		given up.
 */
static bool
call_result(ConnCacheEntry *entry, TccCall *call, PGresult *res,
			List **done)
{
	if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
	{
		/* committed (or rolled back) on the participant */
		if (!call->have_result)
			tcc_set_call_error(call, "the participant sent no result",
							   "08P01", false);
		dequeue(entry);
		add_done(done, call);
		return true;
	}
	if (result_outcome(entry, call, res))
		return true;

	/* the head call keeps its own error; the others get this one */
	dequeue(entry);
	add_done(done, call);
	tcc_fail_entry(entry, "connection closed after an unsupported result "
				   "of an earlier action", "08006", false, done);
	return false;
}

/*
 * collect_results
 *		Take every complete result off entry's connection, in the order of
 *		its queue: calls whose Sync came back go to *done, resets are
 *		checked.
 */
static void
collect_results(ConnCacheEntry *entry, List **done)
{
	int			nulls_in_a_row = 0;
	bool		keep = true;

	while (keep && entry->queue != NIL && !PQisBusy(entry->conn))
	{
		TccCall    *head = (TccCall *) linitial(entry->queue);
		PGresult   *volatile res = PQgetResult(entry->conn);

		if (res == NULL)
		{
			/* the end of one statement's results; two mean nothing more */
			if (++nulls_in_a_row > 1)
				break;
			continue;
		}
		nulls_in_a_row = 0;

		PG_TRY();
		{
			if (head == SESSION_RESET)
				keep = reset_result(entry, res, done);
			else
				keep = call_result(entry, head, res, done);
		}
		PG_FINALLY();
		{
			PQclear(res);
		}
		PG_END_TRY();
	}

	/* libpq gives up on a connection that lost protocol sync */
	if (keep && entry->queue != NIL &&
		PQstatus(entry->conn) == CONNECTION_BAD)
		tcc_fail_entry(entry,
					   tcc_libpq_message(entry->conn, "connection lost"),
					   "08006", false, done);
}

/*
 * tcc_read_entry
 *		Read what has arrived on entry's socket, and take the complete
 *		results off the connection (collect_results); a connection found
 *		lost fails every call on it.
 */
void
tcc_read_entry(ConnCacheEntry *entry, List **done)
{
	if (!PQconsumeInput(entry->conn))
		tcc_fail_entry(entry,
					   tcc_libpq_message(entry->conn, "connection lost"),
					   "08006", false, done);
	else
		collect_results(entry, done);
}

/*
 * tcc_timeout_entry
 *		The item at the head of entry's queue has run longer than
 *		tcc.call_timeout: ask the participant to cancel it, without waiting
 *		for the participant (which may hang: see cancel.c), then give up on
 *		the connection and every call on it (they are retried later).
 */
void
tcc_timeout_entry(ConnCacheEntry *entry, List **done)
{
	bool		in_reset = (linitial(entry->queue) == SESSION_RESET);

	tcc_cancel_async(entry->conn);
	if (in_reset)
		tcc_fail_entry(entry,
					   psprintf("connection closed after resetting its "
								"session took longer than tcc.call_timeout "
								"(%d ms)", tcc_call_timeout),
					   "08006", false, done);
	else
		tcc_fail_entry(entry,
					   psprintf("the call took longer than tcc.call_timeout "
								"(%d ms) and was cancelled", tcc_call_timeout),
					   "57014", false, done);
}
