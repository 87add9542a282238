/*-------------------------------------------------------------------------
 *
 * remote_wait.c
 *	  Waiting for participants' answers: the worker waits for all its
 *	  connections and its latch at once (tcc_remote_wait); a backend
 *	  running CALL tcc.try makes its one call and waits for it
 *	  (tcc_remote_call).  What is read off each connection, and when a
 *	  call times out, is remote_pipeline.c's business; the connections are
 *	  remote_conn.c's, and connecting them remote_connect.c's.
 *
 * The wait covers the connections being made too: each socket is waited
 * on for what PQconnectPoll last asked for, and until tcc.connect_timeout
 * has passed since its connect began, so that a participant that accepts
 * TCP and never answers holds nothing but the calls queued for it.
 *
 * A call that times out, or that a backend gives up on (a query cancel
 * during CALL tcc.try), is cancelled on the participant with
 * tcc_cancel_async (cancel.c), which does not wait for the participant's
 * answer, and its connection closed: a participant that hangs never holds
 * the worker or the backend.  Nothing else in these files waits on a
 * participant: connecting is polled from here, the connections are
 * non-blocking once open, and PQfinish only queues a Terminate message
 * that fits in an empty socket buffer.
 *
 * src/remote_wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/hsearch.h"
#include "utils/snapmgr.h"

#include "remote.h"
#include "tcc.h"

/*
 * read_buffered
 *		Take the answers that libpq may have read already, while it was
 *		sending (a non-blocking send reads when the socket's buffer is
 *		full): the socket would not be readable for them.  true when that
 *		gave some call its outcome.
 */
static bool
read_buffered(List **done)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	int			ndone = list_length(*done);

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn == NULL || entry->connecting || entry->queue == NIL)
			continue;
		tcc_read_entry(entry, done);
	}
	return list_length(*done) > ndone;
}

/*
 * entry_deadline
 *		When entry, which has calls in flight, times out (0: never): its
 *		connect, while it is being made, else the item at the head of its
 *		queue.
 */
static TimestampTz
entry_deadline(ConnCacheEntry *entry)
{
	return entry->connecting ? tcc_connect_deadline(entry) :
		tcc_head_deadline(entry);
}

/*
 * busy_connections
 *		How many connections have something in flight (or are being made),
 *		and so a socket to wait on; *timeout_ms is lowered to when the first
 *		of them times out, counted from now.
 */
static int
busy_connections(TimestampTz now, long *timeout_ms)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	int			nsockets = 0;

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn != NULL && entry->queue != NIL)
		{
			TimestampTz deadline = entry_deadline(entry);

			nsockets++;
			if (deadline != 0)
				*timeout_ms = Min(*timeout_ms,
								  Max((long) ((deadline - now + 999) /
											  1000), 0));
		}
	}
	return nsockets;
}

/*
 * serve_event
 *		Act on what event says of a connection's socket: go on connecting
 *		when it is being made; else send more of its output when it is
 *		writeable, read its answers when it is readable.
 */
static void
serve_event(WaitEvent *event, List **done)
{
	ConnCacheEntry *entry = (ConnCacheEntry *) event->user_data;

	if (entry == NULL || entry->conn == NULL)
		return;
	if (entry->connecting)
	{
		tcc_advance_connect(entry, done);
		return;
	}

	if ((event->events & WL_SOCKET_WRITEABLE) &&
		!tcc_flush_entry(entry, done))
		return;
	if (event->events & WL_SOCKET_READABLE)
		tcc_read_entry(entry, done);
}

/*
 * wait_for_sockets
 *		Wait up to timeout_ms on the latch and the sockets of the nsockets
 *		busy connections, and serve the sockets that are ready.
 */
static void
wait_for_sockets(long timeout_ms, int nsockets, List **done)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	WaitEventSet *set;
	WaitEvent  *occurred;
	int			nevents;
	int			i;

	set = CreateWaitEventSet(CurrentMemoryContext, nsockets + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL,
					  NULL);
	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		int			events;

		if (entry->conn == NULL || entry->queue == NIL)
			continue;
		if (entry->connecting)
			events = entry->connect_events;
		else
			events = WL_SOCKET_READABLE |
				(entry->flush_pending ? WL_SOCKET_WRITEABLE : 0);
		AddWaitEventToSet(set, events, PQsocket(entry->conn), NULL, entry);
	}

	occurred = palloc(sizeof(WaitEvent) * (nsockets + 2));
	nevents = WaitEventSetWait(set, timeout_ms, occurred, nsockets + 2,
							   PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);

	for (i = 0; i < nevents; i++)
		serve_event(&occurred[i], done);
	pfree(occurred);
}

/*
 * check_connections
 *		After a wait: time out the connects and the items that ran too
 *		long, and close the idle connections whose server or mapping
 *		changed, or that tcc.server_connections has no room for since a
 *		reload lowered it.
 */
static void
check_connections(List **done)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	TimestampTz now = GetCurrentTimestamp();

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		TimestampTz deadline;

		if (entry->conn == NULL)
			continue;
		deadline = (entry->queue != NIL) ? entry_deadline(entry) : 0;
		if (deadline != 0 && now >= deadline && entry->connecting)
			tcc_connect_timed_out(entry, done);
		else if (deadline != 0 && now >= deadline)
			tcc_timeout_entry(entry, done);
		else if (entry->ncalls == 0 &&
				 (entry->invalidated ||
				  entry->key.slot >= tcc_server_connections))
			tcc_disconnect(entry);
	}
}

/*
 * tcc_remote_wait
 *		Wait up to timeout_ms for answers from participants or for the
 *		latch; calls whose answer came (or that timed out) go to *done.
 *
 * The latch is not reset here: the worker's loop resets it before it
 * looks for work, so a wake-up that arrives meanwhile is never lost.
 */
void
tcc_remote_wait(long timeout_ms, List **done)
{
	TimestampTz now = GetCurrentTimestamp();
	int			nsockets;

	/* answers read already: do not sleep before they are recorded */
	if (read_buffered(done))
		timeout_ms = 0;

	nsockets = busy_connections(now, &timeout_ms);
	wait_for_sockets(timeout_ms, nsockets, done);

	/* time-outs, and idle connections whose server or mapping changed */
	check_connections(done);
}

/*
 * abandon_calls
 *		Give up on every call in flight, after an error (a query cancel) in
 *		a backend waiting for one: ask each participant to cancel, without
 *		waiting for it (see cancel.c), and drop the connection, whose
 *		protocol state is now unknown; a connection still being made has
 *		sent nothing, and is only dropped.  The calls' memory belongs to the
 *		aborted caller and is not touched.  A connection with only a reset
 *		pending is in a known state and is kept.
 */
static void
abandon_calls(void)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->ncalls == 0)
			continue;
		if (!entry->connecting)
			tcc_cancel_async(entry->conn);
		entry->ncalls = 0;
		tcc_disconnect(entry);
	}
}

/*
 * tcc_remote_call
 *		Make call in a backend (CALL tcc.try) and wait for its outcome.
 *
 * The wait is the worker's (tcc.call_timeout and tcc.connect_timeout
 * apply), and serves interrupts: on a query cancel (or a statement
 * timeout) the call is cancelled on the participant too, and the
 * connection dropped, before the error goes on.  A terminated backend
 * only closes the connection (remote_disconnect_all): the participant may
 * still finish the call, which the fence then takes care of.
 *
 * It returns as soon as the call's own Sync is back; the reset of the
 * session that follows it stays queued on the connection, and its results
 * are read, in order, before those of the next call sent there.
 */
void
tcc_remote_call(TccCall *call)
{
	if (tcc_conn_cache == NULL)
		tcc_remote_init(false);

	PG_TRY();
	{
		List	   *done = NIL;

		tcc_remote_send(call, &done);

		/* hold no catalog snapshot back while the participant works */
		InvalidateCatalogSnapshot();

		while (done == NIL)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			tcc_remote_wait(tcc_naptime, &done);
		}
		list_free(done);
	}
	PG_CATCH();
	{
		abandon_calls();
		PG_RE_THROW();
	}
	PG_END_TRY();
}
