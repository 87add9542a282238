/*-------------------------------------------------------------------------
 *
 * remote_conn.c
 *	  The connections over which tcc calls participants: a cache of them,
 *	  and closing them when the server or the mapping changes.  The worker
 *	  keeps them for all its calls; a backend running CALL tcc.try uses
 *	  the same cache for its one call at a time (tcc_remote_call).
 *	  Connecting is in remote_connect.c, what runs on a connection in
 *	  remote_pipeline.c, waiting for the answers in remote_wait.c.
 *
 * Connections are cached per (foreign server, owner role), as
 * postgres_fdw does per user mapping, tcc.server_connections of them in a
 * dispatcher (tcc_connection_slot): the owner's user mapping supplies
 * the credentials, and a connection is dropped when the server or the
 * mapping changes (a syscache invalidation callback marks it; it is closed
 * as soon as no call is in flight on it).  A connection still being made
 * is marked the same way: the calls queued on it were found due with the
 * options it was started with, as those in flight on an open connection
 * were, and are made on it; the connection is closed after them.
 *
 * A call for an entry that is being connected is queued on it and sent
 * once the connection is up; connecting never blocks the process, and its
 * calls count as in flight meanwhile.  How a connection is made, and the
 * security checks made then (the password rule), are in remote_connect.c.
 * A connect that failed is remembered for the server and owner, whichever
 * of their connections it was for (failure_memory): a participant that is
 * down costs a dispatcher one connect per naptime, however many
 * connections it keeps there.
 *
 * src/remote_conn.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "libpq-fe.h"
#include "storage/ipc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "remote.h"
#include "tcc.h"

/* the connections, by (server, owner, slot); NULL until tcc_remote_init */
HTAB	   *tcc_conn_cache = NULL;

/*
 * Whether a failed connect is remembered for a naptime (see
 * tcc_connection_for).  The worker does, so that a participant that is
 * down does not cost it a connect per branch; a backend running CALL
 * tcc.try makes one call at a time and tries every time.
 */
static bool remember_failures = false;

/* memory for the lists of calls in flight */
MemoryContext tcc_remote_context = NULL;

/*
 * remote_inval_callback
 *		Mark the connections (open or being made) whose foreign server or
 *		user mapping changed; they are closed once idle.  hashvalue 0 means
 *		"all of them".
 */
static void
remote_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		/* a changed server or mapping may connect now: try it at once */
		entry->failed_at = 0;

		if (entry->conn == NULL)
			continue;
		if (hashvalue == 0 ||
			(cacheid == FOREIGNSERVEROID &&
			 entry->server_hashvalue == hashvalue) ||
			(cacheid == USERMAPPINGOID &&
			 entry->mapping_hashvalue == hashvalue))
			entry->invalidated = true;
	}
}

/*
 * remote_disconnect_all
 *		Close every connection when the process exits, so that participants
 *		see a proper goodbye.  Calls in flight are not cancelled: they end
 *		on the participant as they would, and are made again (the fence
 *		takes care of that) by the next worker.
 */
static void
remote_disconnect_all(int code, Datum arg)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn != NULL)
		{
			PQfinish(entry->conn);
			entry->conn = NULL;
		}
	}
}

/*
 * tcc_remote_init
 *		Set up the connection cache: once per worker (in_worker), or on the
 *		first CALL tcc.try of a backend.
 */
void
tcc_remote_init(bool in_worker)
{
	HASHCTL		ctl;

	remember_failures = in_worker;

	tcc_remote_context = AllocSetContextCreate(TopMemoryContext,
											   "tcc remote",
											   ALLOCSET_SMALL_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ConnCacheKey);
	ctl.entrysize = sizeof(ConnCacheEntry);
	tcc_conn_cache = hash_create("tcc connections", 16, &ctl,
								 HASH_ELEM | HASH_BLOBS);

	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, remote_inval_callback,
								  (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, remote_inval_callback,
								  (Datum) 0);
	before_shmem_exit(remote_disconnect_all, (Datum) 0);
}

/*
 * tcc_libpq_message
 *		A libpq error message without its trailing newline, palloc'd.
 */
char *
tcc_libpq_message(PGconn *conn, const char *fallback)
{
	char	   *msg = pstrdup(conn ? PQerrorMessage(conn) : "");
	int			len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	return len > 0 ? msg : pstrdup(fallback);
}

/*
 * tcc_disconnect
 *		Close entry's connection, which has no call in flight (the caller
 *		took care of them); pending session resets go with it, closing is
 *		the most thorough reset of all.
 */
void
tcc_disconnect(ConnCacheEntry *entry)
{
	Assert(entry->ncalls == 0);

	if (entry->conn != NULL)
	{
		PQfinish(entry->conn);
		entry->conn = NULL;
	}
	list_free(entry->queue);
	entry->queue = NIL;
	entry->connecting = false;
	entry->connect_events = 0;
	entry->connect_start = 0;
	entry->reset_deadline = 0;
	entry->reset_done = 0;
	entry->flush_pending = false;
	entry->invalidated = false;
}

/*
 * tcc_connection_slot
 *		Which of the tcc.server_connections connections to a server (for
 *		an owner) a dispatcher of npartitions sends the calls of gid over;
 *		a session's own calls (CALL tcc.try) use slot 0.
 *
 * One connection answers its pipelined calls one at a time, in one backend
 * of the participant's: however many calls are in flight, a participant
 * then works on one of a dispatcher's at a time, and that backend gets no
 * more of the participant's CPU than any of the clients' backends there.
 * Several connections let the participant run that many at once.  The
 * slot is a hash of the gid, independent of the partition (the hash
 * modulo npartitions) that chose this dispatcher, so that a transaction's
 * calls keep going over one connection, in the order they were sent,
 * while a change of the setting applies only to calls queued afterwards
 * (tcc_connection_for moves those queued before a lowering).
 */
int
tcc_connection_slot(const char *gid, int npartitions)
{
	Assert(npartitions > 0);
	return tcc_gid_partition(gid, npartitions * tcc_server_connections) /
		npartitions;
}

/*
 * cache_entry
 *		The cache entry of connection slot of server serverid for owner
 *		userid, made (unconnected) if there is none yet.
 */
static ConnCacheEntry *
cache_entry(Oid serverid, Oid userid, int slot)
{
	ConnCacheKey key;
	ConnCacheEntry *entry;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.serverid = serverid;
	key.userid = userid;
	key.slot = slot;
	entry = hash_search(tcc_conn_cache, &key, HASH_ENTER, &found);
	if (!found)
	{
		entry->conn = NULL;
		entry->queue = NIL;
		entry->ncalls = 0;
		entry->connecting = false;
		entry->connect_events = 0;
		entry->connect_start = 0;
		entry->servername = NULL;
		entry->password_refusal = NULL;
		entry->reset_deadline = 0;
		entry->reset_done = 0;
		entry->flush_pending = false;
		entry->invalidated = false;
		entry->failed_at = 0;
		entry->failed_error = NULL;
	}
	return entry;
}

/*
 * failure_memory
 *		The entry that remembers the failed connects of entry's server and
 *		owner for all of their connections: that of slot 0, which
 *		tcc_connection_for makes before any other.
 */
static ConnCacheEntry *
failure_memory(ConnCacheEntry *entry)
{
	ConnCacheKey key = entry->key;
	ConnCacheEntry *memory;

	key.slot = 0;
	memory = hash_search(tcc_conn_cache, &key, HASH_FIND, NULL);
	if (memory == NULL)
		elog(ERROR, "tcc connection slot 0 of server %u is missing",
			 key.serverid);
	return memory;
}

/*
 * tcc_remember_failure
 *		Connecting entry failed with this error: in the worker, the calls
 *		for its server and owner fail the same way, whichever connection
 *		they are for, without trying, until the next naptime (see
 *		tcc_connection_for).  A failure of a connect started before the
 *		server or the mapping changed says nothing of the new ones, and is
 *		not remembered.
 */
void
tcc_remember_failure(ConnCacheEntry *entry, const char *message,
					 const char *sqlstate)
{
	ConnCacheEntry *memory;

	if (!remember_failures || entry->invalidated)
		return;
	memory = failure_memory(entry);
	if (memory->failed_error)
		pfree(memory->failed_error);
	memory->failed_error = NULL;
	memory->failed_error = MemoryContextStrdup(tcc_remote_context, message);
	strlcpy(memory->failed_sqlstate, sqlstate,
			sizeof(memory->failed_sqlstate));
	memory->failed_at = GetCurrentTimestamp();
}

/*
 * tcc_forget_failure
 *		A connect of entry's server and owner succeeded: the participant is
 *		up, and calls for any of their connections try again.
 */
void
tcc_forget_failure(ConnCacheEntry *entry)
{
	failure_memory(entry)->failed_at = 0;
}

/*
 * tcc_connection_for
 *		The cache entry whose connection call is to be sent on: connected,
 *		or being connected (a connect is started if need be), in which case
 *		the call waits in its queue until the connection is up.  NULL when
 *		no connect could start, with call's outcome set.  Runs inside a
 *		transaction.
 */
ConnCacheEntry *
tcc_connection_for(TccCall *call)
{
	ConnCacheEntry *memory;
	ConnCacheEntry *entry;
	int			slot;

	Assert(IsTransactionState());

	/*
	 * A call queued before a reload lowered tcc.server_connections goes
	 * over one of the connections that are left.
	 */
	slot = call->conn_slot % tcc_server_connections;
	memory = cache_entry(call->serverid, call->owner, 0);
	entry = slot == 0 ? memory :
		cache_entry(call->serverid, call->owner, slot);

	/* (a reset still pending goes with the connection: see tcc_disconnect) */
	if (entry->conn != NULL && entry->invalidated && entry->ncalls == 0)
		tcc_disconnect(entry);
	if (entry->conn != NULL && PQstatus(entry->conn) == CONNECTION_BAD &&
		entry->ncalls == 0)
		tcc_disconnect(entry);

	if (entry->conn != NULL)
		return entry;

	/*
	 * A participant that is down would cost a connect per branch, each
	 * holding a socket (and, if it never answers, a place among
	 * tcc.max_concurrent_calls) for up to tcc.connect_timeout: after a
	 * failure, the other calls for it fail the same way without trying
	 * again until the next naptime.
	 */
	if (remember_failures && memory->failed_at != 0 &&
		GetCurrentTimestamp() < memory->failed_at +
		(int64) tcc_naptime * 1000)
	{
		tcc_set_call_error(call, memory->failed_error,
						   memory->failed_sqlstate, false);
		return NULL;
	}
	if (!tcc_start_connect(entry, call))
	{
		/* a refusal (no mapping, no password) costs no time */
		if (!call->permanent)
			tcc_remember_failure(entry, call->error, call->sqlstate);
		return NULL;
	}
	return entry;
}

/*
 * count_connections
 *		Over the cached connections: how many are open (calls false; one
 *		still being made is not), or how many calls are in flight (calls
 *		true: those queued on a connection being made included).
 */
static int
count_connections(bool calls)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	int			n = 0;

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
		n += calls ? entry->ncalls :
			(entry->conn != NULL && !entry->connecting);
	return n;
}

/*
 * tcc_remote_open_connections
 *		How many participant connections are open (connects under way not
 *		counted).
 */
int
tcc_remote_open_connections(void)
{
	return count_connections(false);
}

/*
 * tcc_remote_in_flight
 *		How many calls are waiting for an answer, or for their connection.
 */
int
tcc_remote_in_flight(void)
{
	return count_connections(true);
}
