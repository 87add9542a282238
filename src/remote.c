/*-------------------------------------------------------------------------
 *
 * remote.c
 *	  Calling participants over libpq: the worker's connection cache and
 *	  its non-blocking, pipelined calls.  A backend running CALL tcc.try
 *	  uses the same cache for its one call at a time (tcc_remote_call).
 *
 * Connections are cached per (foreign server, owner role), as
 * postgres_fdw does per user mapping: the owner's user mapping supplies
 * the credentials, and the connection is dropped when the server or the
 * mapping changes (a syscache invalidation callback marks it; it is closed
 * as soon as no call is in flight on it).
 *
 * Many calls are in flight at once.  Each connection runs in libpq's
 * pipeline mode: every action is sent as one extended-protocol query
 * followed by a Sync, so each runs in a transaction of its own on the
 * participant and an error in one does not touch the next, yet none waits
 * for the previous one's answer to be sent.  The worker waits for all its
 * connections and its latch at once (tcc_remote_wait).
 *
 * A call succeeds only when its Sync comes back (ReadyForQuery): that is
 * when the participant has committed.  A connection lost between the
 * statement's result and the Sync leaves the outcome unknown, and the call
 * is retried; the participant's fence makes the repeat harmless.
 *
 * Every call starts from a clean session (doc/design.md, Running an action): after each
 * action's Sync, DISCARD ALL goes down the same pipeline with a Sync of
 * its own (it refuses to run in a transaction block, so it cannot share
 * the action's).  It drops whatever the action left behind: settings,
 * advisory locks, prepared statements, temporary objects, LISTEN, cursors.
 * The reset is an item of the connection's queue like a call, and its
 * results are read in turn; it has the deadline a call has when it
 * reaches the head.  The call's outcome was decided at its own Sync; a
 * reset that fails, returns anything unexpected or times out only closes
 * the connection, so that a dirty session is never used again (the calls
 * sent behind it fail, and are retried, on a new connection).  The
 * connection is opened with standard_conforming_strings pinned on in its
 * startup packet, which makes it the value RESET ALL goes back to: action
 * SQL is checked at registration under that setting.
 *
 * A call that times out, or that a backend gives up on (a query cancel
 * during CALL tcc.try), is cancelled on the participant with
 * tcc_cancel_async (cancel.c), which does not wait for the participant's
 * answer, and its connection closed: a participant that hangs never holds
 * the worker or the backend.  Nothing else here waits on a participant
 * without serving interrupts: connecting polls with WaitLatchOrSocket,
 * the connections are non-blocking once open, and PQfinish only queues a
 * Terminate message that fits in an empty socket buffer.
 *
 * Security, as in postgres_fdw: for an owner that is not a superuser, the
 * user mapping must have a password and the connection must have used it,
 * else anybody could borrow the server's own trust (peer or trust
 * authentication on the participant) as the worker's superuser.  Such a
 * call is refused with SQLSTATE 2F003, which fails the branch until the
 * mapping is fixed and tcc.retry is called.
 *
 * src/remote.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "libpq-fe.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "tcc.h"

/* the OIDs of the parameters' types: $1 gid, $2 branch id, $3 payload */
static const Oid action_param_types[3] = {TEXTOID, TEXTOID, JSONBOID};

typedef struct ConnCacheKey
{
	Oid			serverid;
	Oid			userid;			/* the owner of the global transactions */
} ConnCacheKey;

/*
 * The items of a connection's queue, in the order the participant answers
 * them, are TccCalls and, after each, SESSION_RESET for its DISCARD ALL.
 */
#define SESSION_RESET	((TccCall *) NULL)

/* sent after each call, in an implicit transaction of its own */
static const char session_reset_sql[] = "DISCARD ALL";

/*
 * Settings every participant connection starts with, added to the
 * server's "options": those of tcc_pin_action_settings, under which action
 * SQL is checked at registration.  Set in the startup
 * packet, they are also the values RESET ALL (and so DISCARD ALL) goes
 * back to, whatever an action sets.
 */
#define PINNED_OPTIONS	"-c standard_conforming_strings=on"

typedef struct ConnCacheEntry
{
	ConnCacheKey key;
	PGconn	   *conn;			/* NULL when not connected */
	List	   *queue;			/* calls and resets, oldest first */
	int			ncalls;			/* how many of them are calls */
	TimestampTz reset_deadline; /* of the reset at the head (0: none) */
	bool		reset_ok;		/* the reset at the head said DISCARD ALL */
	bool		flush_pending;	/* libpq has output left to send */
	bool		invalidated;	/* the server or mapping changed */
	TimestampTz failed_at;		/* when connecting last failed, or 0 */
	char	   *failed_error;	/* ... and why (in remote_context) */
	char		failed_sqlstate[6];
	uint32		server_hashvalue;
	uint32		mapping_hashvalue;
} ConnCacheEntry;

static HTAB *conn_cache = NULL;

/*
 * Whether a failed connect is remembered for a naptime (see
 * tcc_remote_send).  The worker does, so that a participant that is down
 * does not cost it a connect per branch; a backend running CALL tcc.try
 * makes one call at a time and tries every time.
 */
static bool remember_failures = false;

/* memory for the lists of calls in flight */
static MemoryContext remote_context = NULL;

/*
 * remote_inval_callback
 *		Mark the connections whose foreign server or user mapping changed;
 *		they are closed once idle.  hashvalue 0 means "all of them".
 */
static void
remote_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;

	hash_seq_init(&scan, conn_cache);
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

	hash_seq_init(&scan, conn_cache);
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
 * ignore_notice
 *		Notice receiver for participant connections: an action's NOTICEs are
 *		of no use to the worker, and libpq would print them on the server's
 *		stderr.
 */
static void
ignore_notice(void *arg, const PGresult *res)
{
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

	remote_context = AllocSetContextCreate(TopMemoryContext, "tcc remote",
										   ALLOCSET_SMALL_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ConnCacheKey);
	ctl.entrysize = sizeof(ConnCacheEntry);
	conn_cache = hash_create("tcc connections", 16, &ctl,
							 HASH_ELEM | HASH_BLOBS);

	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, remote_inval_callback,
								  (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, remote_inval_callback,
								  (Datum) 0);
	before_shmem_exit(remote_disconnect_all, (Datum) 0);
}

/*
 * add_done
 *		Append call to *done, a list that outlives any transaction.
 */
static void
add_done(List **done, TccCall *call)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(remote_context);

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
 * set_call_error
 *		Make call's outcome an error with this message and SQLSTATE.
 */
static void
set_call_error(TccCall *call, const char *message, const char *sqlstate,
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
 * libpq_message
 *		A libpq error message without its trailing newline, palloc'd.
 */
static char *
libpq_message(PGconn *conn, const char *fallback)
{
	char	   *msg = pstrdup(conn ? PQerrorMessage(conn) : "");
	int			len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	return len > 0 ? msg : pstrdup(fallback);
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
		entry->reset_ok = false;
	}
	else
		head->deadline = deadline;
}

/*
 * head_deadline
 *		When the item at the head of entry's queue times out (0: never).
 */
static TimestampTz
head_deadline(ConnCacheEntry *entry)
{
	TccCall    *head = (TccCall *) linitial(entry->queue);

	return head == SESSION_RESET ? entry->reset_deadline : head->deadline;
}

/*
 * disconnect
 *		Close entry's connection, which has no call in flight (the caller
 *		took care of them); pending session resets go with it, closing is
 *		the most thorough reset of all.
 */
static void
disconnect(ConnCacheEntry *entry)
{
	Assert(entry->ncalls == 0);

	if (entry->conn != NULL)
	{
		PQfinish(entry->conn);
		entry->conn = NULL;
	}
	list_free(entry->queue);
	entry->queue = NIL;
	entry->reset_deadline = 0;
	entry->reset_ok = false;
	entry->flush_pending = false;
	entry->invalidated = false;
}

/*
 * fail_entry
 *		Every call in flight on entry failed with this error: move them to
 *		*done and close the connection.
 */
static void
fail_entry(ConnCacheEntry *entry, const char *message, const char *sqlstate,
		   List **done)
{
	ListCell   *lc;

	foreach(lc, entry->queue)
	{
		TccCall    *call = (TccCall *) lfirst(lc);

		if (call == SESSION_RESET)
			continue;
		set_call_error(call, message, sqlstate, false);
		add_done(done, call);
	}
	entry->ncalls = 0;
	disconnect(entry);
}

/*
 * enqueue
 *		Append item (a call or SESSION_RESET) to entry's queue.  An item
 *		that is first in the queue starts its time limit now.
 */
static void
enqueue(ConnCacheEntry *entry, TccCall *item)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(remote_context);

	entry->queue = lappend(entry->queue, item);
	MemoryContextSwitchTo(oldcontext);

	if (item != SESSION_RESET)
	{
		item->deadline = 0;
		entry->ncalls++;
	}
	if (list_length(entry->queue) == 1)
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
 * wait_for_connection
 *		Drive a connection started with PQconnectStartParams to the end,
 *		waiting on its socket and the latch; false on failure or after
 *		tcc.connect_timeout.
 *
 * A latch set meanwhile (a backend waking the worker) is set again on the
 * way out, so the wake-up is not lost; interrupts are served as they come.
 * So is a reload in the worker, whose loop otherwise reloads between
 * rounds: a participant that accepts the connection and never answers
 * (a stopped postmaster) would hold a SIGHUP for tcc.connect_timeout.  The
 * time limit is read again after a reload, so a shorter one applies to
 * the connect under way.
 */
static bool
wait_for_connection(PGconn *conn, char **error)
{
	TimestampTz start = GetCurrentTimestamp();
	bool		latch_was_set = false;
	bool		ok = false;

	for (;;)
	{
		PostgresPollingStatusType status = PQconnectPoll(conn);
		int			events;
		long		remaining;
		int			rc;

		if (status == PGRES_POLLING_OK)
		{
			ok = true;
			break;
		}
		if (status == PGRES_POLLING_FAILED)
		{
			*error = libpq_message(conn, "could not connect");
			break;
		}

		events = (status == PGRES_POLLING_READING) ?
			WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
		remaining = (long) ((start + (int64) tcc_connect_timeout * 1000 -
							 GetCurrentTimestamp()) / 1000);
		if (remaining <= 0)
		{
			*error = psprintf("could not connect: tcc.connect_timeout (%d ms) "
							  "expired", tcc_connect_timeout);
			break;
		}

		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT |
							   WL_EXIT_ON_PM_DEATH | events,
							   PQsocket(conn), remaining, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_was_set = true;
			CHECK_FOR_INTERRUPTS();
			if (IsBackgroundWorker && ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
		}
	}

	if (latch_was_set)
		SetLatch(MyLatch);
	return ok;
}

/*
 * add_no_borrowed_credentials
 *		Append to the n connection options in keywords and values those
 *		that keep libpq from using credentials of the server's OS account
 *		for an owner that is not a superuser; returns the new count (at
 *		most n + 3).
 *
 * The password is settled already (a non-empty one from the mapping, so
 * libpq reads no password file, PGPASSWORD or service file for it).  But
 * libpq also sends a client certificate of its own finding when the
 * participant asks for one: PGSSLCERT and PGSSLKEY, a service file, or
 * ~/.postgresql/postgresql.crt of the server's OS account.  A participant
 * that wants a password and a certificate (clientcert=verify-ca) would
 * take the server's certificate as the second factor.  So, unless a
 * superuser put sslcert and sslkey on the mapping, they name a file that
 * cannot exist (a path under /dev/null, which libpq takes as "no
 * certificate"); and GSSAPI encryption, which would use the server's
 * Kerberos credentials, is off.
 */
static int
add_no_borrowed_credentials(List *mapping, const char **keywords,
							const char **values, int n)
{
	static const char *const no_file = "/dev/null/tcc-no-client-certificate";

	if (tcc_option_named(mapping, "sslcert") == NULL)
	{
		keywords[n] = "sslcert";
		values[n++] = no_file;
	}
	if (tcc_option_named(mapping, "sslkey") == NULL)
	{
		keywords[n] = "sslkey";
		values[n++] = no_file;
	}
	keywords[n] = "gssencmode";
	values[n++] = "disable";
	return n;
}

/*
 * connect_participant
 *		Open entry's connection for call: server options plus the owner's
 *		user mapping.  On failure the call's outcome is set and false is
 *		returned.  Runs inside a transaction (catalog lookups).
 */
static bool
connect_participant(ConnCacheEntry *entry, TccCall *call)
{
	ForeignServer *server = GetForeignServer(call->serverid);
	List	   *mapping;
	Oid			umid;
	TccRefusal	refusal;
	const char **keywords;
	const char **values;
	ListCell   *lc;
	int			n = 0;
	bool		have_options = false;
	PGconn	   *volatile conn = NULL;
	char	   *error = NULL;
	bool		is_superuser = superuser_arg(call->owner);

	Assert(IsTransactionState());

	/* the mapping may have changed since the registration checked it */
	if (!tcc_participant_mapping(call->owner, call->gid, server, &mapping,
								 &umid, &refusal))
	{
		set_call_error(call, refusal.message, refusal.sqlstate, true);
		return false;
	}

	keywords = palloc((list_length(server->options) +
					   list_length(mapping) + 7) * sizeof(char *));
	values = palloc((list_length(server->options) +
					 list_length(mapping) + 7) * sizeof(char *));
	foreach(lc, server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		keywords[n] = def->defname;
		values[n++] = defGetString(def);

		/* see PINNED_OPTIONS */
		if (strcmp(def->defname, "options") == 0)
		{
			values[n - 1] = psprintf("%s %s", values[n - 1], PINNED_OPTIONS);
			have_options = true;
		}
	}
	foreach(lc, mapping)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		keywords[n] = def->defname;
		values[n++] = defGetString(def);
	}
	if (!have_options)
	{
		keywords[n] = "options";
		values[n++] = PINNED_OPTIONS;
	}
	if (!is_superuser)
		n = add_no_borrowed_credentials(mapping, keywords, values, n);
	keywords[n] = "fallback_application_name";
	values[n++] = "tcc";
	keywords[n] = "client_encoding";
	values[n++] = GetDatabaseEncodingName();
	keywords[n] = NULL;
	values[n] = NULL;

	PG_TRY();
	{
		conn = PQconnectStartParams(keywords, values, false);
		if (conn == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while connecting to server \"%s\"",
							server->servername)));

		if (PQstatus(conn) == CONNECTION_BAD)
			error = libpq_message(conn, "could not connect");
		else if (!wait_for_connection(conn, &error))
			Assert(error != NULL);
		else if (!is_superuser && !PQconnectionUsedPassword(conn))
		{
			(void) tcc_participant_password_unused(call->owner, call->gid,
												   server, &refusal);
			set_call_error(call, refusal.message, refusal.sqlstate, true);
			PQfinish(conn);
			conn = NULL;
		}
		else if (PQsetnonblocking(conn, 1) != 0 ||
				 PQenterPipelineMode(conn) != 1)
			error = libpq_message(conn, "could not enter pipeline mode");
		else
			(void) PQsetNoticeReceiver(conn, ignore_notice, NULL);
	}
	PG_CATCH();
	{
		if (conn != NULL)
			PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (error != NULL)
	{
		set_call_error(call,
					   psprintf("could not connect to server \"%s\": %s",
								server->servername, error),
					   "08001", false);
		if (conn != NULL)
			PQfinish(conn);
		return false;
	}
	if (conn == NULL)
		return false;

	entry->conn = conn;
	entry->invalidated = false;
	entry->server_hashvalue =
		GetSysCacheHashValue1(FOREIGNSERVEROID,
							  ObjectIdGetDatum(call->serverid));
	entry->mapping_hashvalue =
		GetSysCacheHashValue1(USERMAPPINGOID, ObjectIdGetDatum(umid));
	return true;
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
	ConnCacheKey key;
	ConnCacheEntry *entry;
	bool		found;
	const char *values[3];
	int			rc;

	Assert(IsTransactionState());

	memset(&key, 0, sizeof(key));
	key.serverid = call->serverid;
	key.userid = call->owner;
	entry = hash_search(conn_cache, &key, HASH_ENTER, &found);
	if (!found)
	{
		entry->conn = NULL;
		entry->queue = NIL;
		entry->ncalls = 0;
		entry->reset_deadline = 0;
		entry->reset_ok = false;
		entry->flush_pending = false;
		entry->invalidated = false;
		entry->failed_at = 0;
		entry->failed_error = NULL;
	}

	/* (a reset still pending goes with the connection: see disconnect) */
	if (entry->conn != NULL && entry->invalidated && entry->ncalls == 0)
		disconnect(entry);
	if (entry->conn != NULL && PQstatus(entry->conn) == CONNECTION_BAD &&
		entry->ncalls == 0)
		disconnect(entry);

	if (entry->conn == NULL)
	{
		/*
		 * Connecting can take up to tcc.connect_timeout, during which the
		 * worker serves nobody: after a failure, the other calls for this
		 * participant fail the same way without trying again until the
		 * next naptime.
		 */
		if (remember_failures && entry->failed_at != 0 &&
			GetCurrentTimestamp() < entry->failed_at +
			(int64) tcc_naptime * 1000)
		{
			set_call_error(call, entry->failed_error, entry->failed_sqlstate,
						   false);
			add_done(done, call);
			return;
		}
		if (!connect_participant(entry, call))
		{
			/* a refusal (no mapping, no password) costs no time */
			if (call->permanent)
			{
				add_done(done, call);
				return;
			}
			if (entry->failed_error)
				pfree(entry->failed_error);
			entry->failed_at = GetCurrentTimestamp();
			entry->failed_error = MemoryContextStrdup(remote_context,
													  call->error);
			strlcpy(entry->failed_sqlstate, call->sqlstate,
					sizeof(entry->failed_sqlstate));
			add_done(done, call);
			return;
		}
		entry->failed_at = 0;
	}

	values[0] = call->gid;
	values[1] = call->branch_id;
	values[2] = call->payload;

	/* the call, then the reset of its session (see the file header) */
	enqueue(entry, call);
	enqueue(entry, SESSION_RESET);

	if (!PQsendQueryParams(entry->conn, call->sql, 3, action_param_types,
						   values, NULL, NULL, 0) ||
		!PQpipelineSync(entry->conn) ||
		!PQsendQueryParams(entry->conn, session_reset_sql, 0, NULL,
						   NULL, NULL, NULL, 0) ||
		!PQpipelineSync(entry->conn))
	{
		char	   *msg = libpq_message(entry->conn, "could not send");

		fail_entry(entry, msg, "08006", done);
		return;
	}

	rc = PQflush(entry->conn);
	if (rc < 0)
		fail_entry(entry, libpq_message(entry->conn, "could not send"),
				   "08006", done);
	else
		entry->flush_pending = (rc == 1);
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
					set_call_error(call, primary, sqlstate, false);
					set_call_diag(call, res);
				}
				else
				{
					char	   *msg = libpq_message(entry->conn,
													"the action failed");

					set_call_error(call, msg, sqlstate ? sqlstate : "08006",
								   false);
				}
				return true;
			}

		default:
			/* COPY and the like: the protocol state is beyond repair */
			set_call_error(call,
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
 *		results were not those of DISCARD ALL: close the connection, so
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
	fail_entry(entry, "connection closed after resetting its session "
			   "failed", "08006", done);
}

/*
 * reset_result
 *		Check one result of the session reset at the head of entry's queue:
 *		the command's, then its Sync.  false when the reset failed (the
 *		connection is closed then).
 */
static bool
reset_result(ConnCacheEntry *entry, PGresult *res, List **done)
{
	ExecStatusType status = PQresultStatus(res);

	if (status == PGRES_COMMAND_OK && !entry->reset_ok &&
		strcmp(PQcmdStatus(res), session_reset_sql) == 0)
	{
		entry->reset_ok = true;
		return true;
	}
	if (status == PGRES_PIPELINE_SYNC && entry->reset_ok)
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
			set_call_error(call, "the participant sent no result",
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
	fail_entry(entry, "connection closed after an unsupported result of "
			   "an earlier action", "08006", done);
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
		fail_entry(entry, libpq_message(entry->conn, "connection lost"),
				   "08006", done);
}

/*
 * timeout_entry
 *		The item at the head of entry's queue has run longer than
 *		tcc.call_timeout: ask the participant to cancel it, without waiting
 *		for the participant (which may hang: see cancel.c), then give up on
 *		the connection and every call on it (they are retried later).
 */
static void
timeout_entry(ConnCacheEntry *entry, List **done)
{
	bool		in_reset = (linitial(entry->queue) == SESSION_RESET);

	tcc_cancel_async(entry->conn);
	if (in_reset)
		fail_entry(entry,
				   psprintf("connection closed after resetting its session "
							"took longer than tcc.call_timeout (%d ms)",
							tcc_call_timeout),
				   "08006", done);
	else
		fail_entry(entry,
				   psprintf("the call took longer than tcc.call_timeout "
							"(%d ms) and was cancelled", tcc_call_timeout),
				   "57014", done);
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
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	WaitEventSet *set;
	WaitEvent  *occurred;
	int			nsockets = 0;
	int			nevents;
	int			i;
	TimestampTz now = GetCurrentTimestamp();
	int			ndone = list_length(*done);

	/*
	 * libpq may have read answers already, while it was sending (a
	 * non-blocking send reads when the socket's buffer is full): the
	 * socket would not be readable for them, so take them first.
	 */
	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn == NULL || entry->queue == NIL)
			continue;
		if (!PQconsumeInput(entry->conn))
			fail_entry(entry, libpq_message(entry->conn, "connection lost"),
					   "08006", done);
		else
			collect_results(entry, done);
	}
	if (list_length(*done) > ndone)
		timeout_ms = 0;

	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn != NULL && entry->queue != NIL)
		{
			TimestampTz deadline = head_deadline(entry);

			nsockets++;
			if (deadline != 0)
				timeout_ms = Min(timeout_ms,
								 Max((long) ((deadline - now + 999) /
											 1000), 0));
		}
	}

	set = CreateWaitEventSet(CurrentMemoryContext, nsockets + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL,
					  NULL);
	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn != NULL && entry->queue != NIL)
			AddWaitEventToSet(set,
							  WL_SOCKET_READABLE |
							  (entry->flush_pending ? WL_SOCKET_WRITEABLE : 0),
							  PQsocket(entry->conn), NULL, entry);
	}

	occurred = palloc(sizeof(WaitEvent) * (nsockets + 2));
	nevents = WaitEventSetWait(set, timeout_ms, occurred, nsockets + 2,
							   PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);

	for (i = 0; i < nevents; i++)
	{
		entry = (ConnCacheEntry *) occurred[i].user_data;
		if (entry == NULL || entry->conn == NULL)
			continue;

		if (occurred[i].events & WL_SOCKET_WRITEABLE)
		{
			int			rc = PQflush(entry->conn);

			if (rc < 0)
			{
				fail_entry(entry, libpq_message(entry->conn, "could not send"),
						   "08006", done);
				continue;
			}
			entry->flush_pending = (rc == 1);
		}
		if (occurred[i].events & WL_SOCKET_READABLE)
		{
			if (!PQconsumeInput(entry->conn))
			{
				fail_entry(entry,
						   libpq_message(entry->conn, "connection lost"),
						   "08006", done);
				continue;
			}
			collect_results(entry, done);
		}
	}
	pfree(occurred);

	/* time-outs, and idle connections whose server or mapping changed */
	now = GetCurrentTimestamp();
	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn == NULL)
			continue;
		if (entry->queue != NIL && head_deadline(entry) != 0 &&
			now >= head_deadline(entry))
			timeout_entry(entry, done);
		else if (entry->ncalls == 0 && entry->invalidated)
			disconnect(entry);
	}
}

/*
 * abandon_calls
 *		Give up on every call in flight, after an error (a query cancel) in
 *		a backend waiting for one: ask each participant to cancel, without
 *		waiting for it (see cancel.c), and drop the connection, whose
 *		protocol state is now unknown.  The calls' memory belongs to the
 *		aborted caller and is not touched.  A connection with only a reset
 *		pending is in a known state and is kept.
 */
static void
abandon_calls(void)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;

	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->ncalls == 0)
			continue;
		tcc_cancel_async(entry->conn);
		entry->ncalls = 0;
		disconnect(entry);
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
	if (conn_cache == NULL)
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

/*
 * tcc_remote_in_flight
 *		How many calls are waiting for an answer.
 */
int
tcc_remote_in_flight(void)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	int			n = 0;

	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
		n += entry->ncalls;
	return n;
}

/*
 * tcc_remote_open_connections
 *		How many participant connections are open.
 */
int
tcc_remote_open_connections(void)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	int			n = 0;

	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
		n += (entry->conn != NULL);
	return n;
}
