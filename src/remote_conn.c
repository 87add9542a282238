/*-------------------------------------------------------------------------
 *
 * remote_conn.c
 *	  The connections over which tcc calls participants: a cache of them,
 *	  connecting with the owner's user mapping, and closing them when the
 *	  server or the mapping changes.  The worker keeps them for all its
 *	  calls; a backend running CALL tcc.try uses the same cache for its
 *	  one call at a time (tcc_remote_call).  What runs on a connection is
 *	  in remote_pipeline.c, waiting for the answers in remote_wait.c.
 *
 * Connections are cached per (foreign server, owner role), as
 * postgres_fdw does per user mapping: the owner's user mapping supplies
 * the credentials, and the connection is dropped when the server or the
 * mapping changes (a syscache invalidation callback marks it; it is closed
 * as soon as no call is in flight on it).
 *
 * Connecting never waits on a participant without serving interrupts: it
 * polls with WaitLatchOrSocket, for at most tcc.connect_timeout; once open,
 * a connection is non-blocking and in libpq's pipeline mode.  It is opened
 * with the settings action SQL is checked under pinned in its startup
 * packet (PINNED_OPTIONS), so that they are what RESET ALL goes back to.
 *
 * Security, as in postgres_fdw: for an owner that is not a superuser, the
 * user mapping must have a password and the connection must have used it,
 * else anybody could borrow the server's own trust (peer or trust
 * authentication on the participant) as the worker's superuser.  Such a
 * call is refused with SQLSTATE 2F003, which fails the branch until the
 * mapping is fixed and tcc.retry is called.
 *
 * src/remote_conn.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
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
#include "utils/syscache.h"

#include "remote.h"
#include "tcc.h"

/*
 * Settings every participant connection starts with, added to the
 * server's "options": those of tcc_pin_action_settings, under which action
 * SQL is checked at registration.  Set in the startup
 * packet, they are also the values RESET ALL (and so DISCARD ALL) goes
 * back to, whatever an action sets.
 */
#define PINNED_OPTIONS	"-c standard_conforming_strings=on"

/* the connections, by (server, owner); NULL until tcc_remote_init */
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
 *		Mark the connections whose foreign server or user mapping changed;
 *		they are closed once idle.  hashvalue 0 means "all of them".
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
	entry->reset_deadline = 0;
	entry->reset_ok = false;
	entry->flush_pending = false;
	entry->invalidated = false;
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
			*error = tcc_libpq_message(conn, "could not connect");
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
 * connection_options
 *		The libpq connection options, in *keywords_p and *values_p (NULL
 *		terminated), with which to reach server for the owner whose user
 *		mapping has the options in mapping: the server's, the mapping's,
 *		then tcc's own (PINNED_OPTIONS, no borrowed credentials for an owner
 *		that is not a superuser, the application name and encoding).
 */
static void
connection_options(ForeignServer *server, List *mapping, bool is_superuser,
				   const char ***keywords_p, const char ***values_p)
{
	const char **keywords;
	const char **values;
	ListCell   *lc;
	int			n = 0;
	bool		have_options = false;

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
		n = tcc_participant_no_borrowed_credentials(mapping, keywords,
													values, n);
	keywords[n] = "fallback_application_name";
	values[n++] = "tcc";
	keywords[n] = "client_encoding";
	values[n++] = GetDatabaseEncodingName();
	keywords[n] = NULL;
	values[n] = NULL;

	*keywords_p = keywords;
	*values_p = values;
}

/*
 * open_connection
 *		Connect to server with keywords and values for call, serving
 *		interrupts meanwhile, and make the connection non-blocking and
 *		pipelined.  Returns the connection; on failure *error says why, and
 *		the connection returned (if any) is the caller's to close.  NULL
 *		without *error set means that an owner who is not a superuser got
 *		connected without the mapping's password: call's outcome is that
 *		refusal.
 */
static PGconn *
open_connection(TccCall *call, ForeignServer *server, bool is_superuser,
				const char **keywords, const char **values, char **error)
{
	PGconn	   *volatile conn = NULL;
	TccRefusal	refusal;

	PG_TRY();
	{
		conn = PQconnectStartParams(keywords, values, false);
		if (conn == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while connecting to server \"%s\"",
							server->servername)));

		if (PQstatus(conn) == CONNECTION_BAD)
			*error = tcc_libpq_message(conn, "could not connect");
		else if (!wait_for_connection(conn, error))
			Assert(*error != NULL);
		else if (!is_superuser && !PQconnectionUsedPassword(conn))
		{
			(void) tcc_participant_password_unused(call->owner, call->gid,
												   server, &refusal);
			tcc_set_call_error(call, refusal.message, refusal.sqlstate,
							   true);
			PQfinish(conn);
			conn = NULL;
		}
		else if (PQsetnonblocking(conn, 1) != 0 ||
				 PQenterPipelineMode(conn) != 1)
			*error = tcc_libpq_message(conn,
									   "could not enter pipeline mode");
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

	return conn;
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
	PGconn	   *conn;
	char	   *error = NULL;
	bool		is_superuser = superuser_arg(call->owner);

	Assert(IsTransactionState());

	/* the mapping may have changed since the registration checked it */
	if (!tcc_participant_mapping(call->owner, call->gid, server, &mapping,
								 &umid, &refusal))
	{
		tcc_set_call_error(call, refusal.message, refusal.sqlstate, true);
		return false;
	}

	connection_options(server, mapping, is_superuser, &keywords, &values);
	conn = open_connection(call, server, is_superuser, keywords, values,
						   &error);

	if (error != NULL)
	{
		tcc_set_call_error(call,
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
 * cache_entry
 *		The cache entry of call's server and owner, made (unconnected) if
 *		there is none yet.
 */
static ConnCacheEntry *
cache_entry(TccCall *call)
{
	ConnCacheKey key;
	ConnCacheEntry *entry;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.serverid = call->serverid;
	key.userid = call->owner;
	entry = hash_search(tcc_conn_cache, &key, HASH_ENTER, &found);
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
	return entry;
}

/*
 * tcc_connection_for
 *		The cache entry whose connection call is to be sent on, connected
 *		first if need be; NULL when it cannot be connected, with call's
 *		outcome set.  Runs inside a transaction.
 */
ConnCacheEntry *
tcc_connection_for(TccCall *call)
{
	ConnCacheEntry *entry;

	Assert(IsTransactionState());

	entry = cache_entry(call);

	/* (a reset still pending goes with the connection: see tcc_disconnect) */
	if (entry->conn != NULL && entry->invalidated && entry->ncalls == 0)
		tcc_disconnect(entry);
	if (entry->conn != NULL && PQstatus(entry->conn) == CONNECTION_BAD &&
		entry->ncalls == 0)
		tcc_disconnect(entry);

	if (entry->conn != NULL)
		return entry;

	/*
	 * Connecting can take up to tcc.connect_timeout, during which the worker
	 * serves nobody: after a failure, the other calls for this participant
	 * fail the same way without trying again until the next naptime.
	 */
	if (remember_failures && entry->failed_at != 0 &&
		GetCurrentTimestamp() < entry->failed_at +
		(int64) tcc_naptime * 1000)
	{
		tcc_set_call_error(call, entry->failed_error, entry->failed_sqlstate,
						   false);
		return NULL;
	}
	if (!connect_participant(entry, call))
	{
		/* a refusal (no mapping, no password) costs no time */
		if (call->permanent)
			return NULL;
		if (entry->failed_error)
			pfree(entry->failed_error);
		entry->failed_at = GetCurrentTimestamp();
		entry->failed_error = MemoryContextStrdup(tcc_remote_context,
												  call->error);
		strlcpy(entry->failed_sqlstate, call->sqlstate,
				sizeof(entry->failed_sqlstate));
		return NULL;
	}
	entry->failed_at = 0;
	return entry;
}

/*
 * count_connections
 *		Over the cached connections: how many are open (calls false), or how
 *		many calls are waiting for an answer (calls true).
 */
static int
count_connections(bool calls)
{
	HASH_SEQ_STATUS scan;
	ConnCacheEntry *entry;
	int			n = 0;

	hash_seq_init(&scan, tcc_conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
		n += calls ? entry->ncalls : (entry->conn != NULL);
	return n;
}

/*
 * tcc_remote_open_connections
 *		How many participant connections are open.
 */
int
tcc_remote_open_connections(void)
{
	return count_connections(false);
}

/*
 * tcc_remote_in_flight
 *		How many calls are waiting for an answer.
 */
int
tcc_remote_in_flight(void)
{
	return count_connections(true);
}
