/*-------------------------------------------------------------------------
 *
 * remote_connect.c
 *	  Connecting to a participant without waiting for it: starting a
 *	  connection with the owner's user mapping, driving it on as its
 *	  socket becomes ready, and what is checked and done once it is up.
 *	  The cache of connections is remote_conn.c's; remote_wait.c waits on
 *	  the sockets of the connects under way with those of the calls.
 *
 * A connect never blocks the process (a participant that accepts TCP and
 * never answers would otherwise hold every other call of the worker for
 * tcc.connect_timeout).  tcc_start_connect, which runs in the transaction
 * that found the call due, looks up the server and the mapping and calls
 * PQconnectStartParams; the cache entry is then being connected, and the
 * calls made for it meanwhile queue on it, unsent (remote_pipeline.c).
 * remote_wait.c waits on its socket for what PQconnectPoll last asked for
 * (readable or writeable), and until tcc.connect_timeout has passed since
 * the start; tcc_advance_connect polls again when the socket is ready.
 * The limit is read at every wait, so a reload that shortens it applies
 * to the connects under way.  Once PQconnectPoll says OK, the checks below
 * run, the connection is made non-blocking and pipelined, and the queued
 * calls are sent.  When connecting fails or times out, every queued call
 * fails with the same error (SQLSTATE 08001), and the worker remembers the
 * failure for a naptime (see tcc_connection_for).
 *
 * What is needed once the connection is up is found at the start, in the
 * transaction: the server's name for messages and, for an owner that is
 * not a superuser, the refusal of a connection that did not use the
 * mapping's password.  The rest happens outside any transaction, between
 * the worker's rounds.
 *
 * Security, as in postgres_fdw: for an owner that is not a superuser, the
 * user mapping must have a password and the connection must have used it,
 * else anybody could borrow the server's own trust (peer or trust
 * authentication on the participant) as the worker's superuser.  Such a
 * call is refused with SQLSTATE 2F003, which fails the branch until the
 * mapping is fixed and tcc.retry is called.
 *
 * A connection is opened with the settings action SQL is checked under
 * pinned in its startup packet (PINNED_OPTIONS), so that they are what
 * RESET ALL goes back to.
 *
 * src/remote_connect.c
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
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "remote.h"
#include "tcc.h"

/*
 * Settings every participant connection starts with, added to the
 * server's "options": those of tcc_pin_action_settings, under which action
 * SQL is checked at registration.  Set in the startup packet, they are
 * also the values RESET ALL (and so DISCARD ALL) goes back to, whatever an
 * action sets.
 */
#define PINNED_OPTIONS	"-c standard_conforming_strings=on"

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
 * prepare_entry
 *		Keep in entry, before its connect starts, what the connect needs
 *		later outside any transaction: the server's name, and for call's
 *		owner if it is not a superuser (is_superuser false) the refusal of
 *		a connection made without the mapping's password (see the file
 *		header); and the hash values by which remote_conn.c's invalidation
 *		callback knows the server and the mapping (umid).
 *
 * All of it is done first, so that nothing can fail once libpq has a
 * connection: an error then would leave the connection to nobody.
 */
static void
prepare_entry(ConnCacheEntry *entry, TccCall *call, ForeignServer *server,
			  Oid umid, bool is_superuser)
{
	TccRefusal	refusal;

	if (entry->servername)
		pfree(entry->servername);
	entry->servername = NULL;
	if (entry->password_refusal)
		pfree(entry->password_refusal);
	entry->password_refusal = NULL;

	entry->servername = MemoryContextStrdup(tcc_remote_context,
											server->servername);
	if (!is_superuser)
	{
		(void) tcc_participant_password_unused(call->owner, call->gid,
											   server, &refusal);
		entry->password_refusal = MemoryContextStrdup(tcc_remote_context,
													  refusal.message);
	}
	entry->server_hashvalue =
		GetSysCacheHashValue1(FOREIGNSERVEROID,
							  ObjectIdGetDatum(call->serverid));
	entry->mapping_hashvalue =
		GetSysCacheHashValue1(USERMAPPINGOID, ObjectIdGetDatum(umid));
}

/*
 * start_connection
 *		PQconnectStartParams with keywords and values; NULL when libpq gave
 *		up at once, with *error set to why.
 */
static PGconn *
start_connection(const char **keywords, const char **values,
				 const char *servername, char **error)
{
	PGconn	   *volatile conn;

	conn = PQconnectStartParams(keywords, values, false);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting to server \"%s\"",
						servername)));
	if (PQstatus(conn) != CONNECTION_BAD)
		return conn;

	PG_TRY();
	{
		*error = tcc_libpq_message(conn, "could not connect");
	}
	PG_FINALLY();
	{
		PQfinish(conn);
	}
	PG_END_TRY();
	return NULL;
}

/*
 * connect_error
 *		The error of a call whose connection to servername failed for this
 *		reason.
 */
static char *
connect_error(const char *servername, const char *error)
{
	return psprintf("could not connect to server \"%s\": %s", servername,
					error);
}

/*
 * tcc_start_connect
 *		Start connecting entry, which is not connected, for call: the
 *		server's options plus the owner's user mapping.  Returns false, with
 *		call's outcome set, when no connect could start; otherwise the
 *		entry is being connected, and the call is to be queued on it.  Runs
 *		inside a transaction (catalog lookups).
 */
bool
tcc_start_connect(ConnCacheEntry *entry, TccCall *call)
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
	Assert(entry->conn == NULL && entry->queue == NIL);

	/* the mapping may have changed since the registration checked it */
	if (!tcc_participant_mapping(call->owner, call->gid, server, &mapping,
								 &umid, &refusal))
	{
		tcc_set_call_error(call, refusal.message, refusal.sqlstate, true);
		return false;
	}

	prepare_entry(entry, call, server, umid, is_superuser);
	connection_options(server, mapping, is_superuser, &keywords, &values);
	conn = start_connection(keywords, values, server->servername, &error);
	if (conn == NULL)
	{
		tcc_set_call_error(call, connect_error(server->servername, error),
						   "08001", false);
		return false;
	}

	/*
	 * libpq has tried connect() already; as its documentation says, the
	 * first thing to wait for is a writeable socket.
	 */
	entry->conn = conn;
	entry->connecting = true;
	entry->connect_events = WL_SOCKET_WRITEABLE;
	entry->connect_start = GetCurrentTimestamp();
	entry->invalidated = false;
	return true;
}

/*
 * connect_failed
 *		Connecting entry failed for this reason: every call queued on it
 *		fails, the connection is closed, and the failure is remembered.
 */
static void
connect_failed(ConnCacheEntry *entry, const char *error, List **done)
{
	char	   *message = connect_error(entry->servername, error);

	tcc_remember_failure(entry, message, "08001");
	tcc_fail_entry(entry, message, "08001", false, done);
}

/*
 * connected
 *		PQconnectPoll said OK for entry: check the use of the password, make
 *		the connection non-blocking and pipelined, and send the calls that
 *		waited for it.
 */
static void
connected(ConnCacheEntry *entry, List **done)
{
	if (entry->password_refusal != NULL &&
		!PQconnectionUsedPassword(entry->conn))
	{
		/* a refusal, which costs nothing to find again: not remembered */
		tcc_fail_entry(entry, entry->password_refusal, "2F003", true, done);
		return;
	}
	if (PQsetnonblocking(entry->conn, 1) != 0 ||
		PQenterPipelineMode(entry->conn) != 1)
	{
		connect_failed(entry,
					   tcc_libpq_message(entry->conn,
										 "could not enter pipeline mode"),
					   done);
		return;
	}
	(void) PQsetNoticeReceiver(entry->conn, ignore_notice, NULL);

	entry->connecting = false;
	tcc_forget_failure(entry);
	tcc_send_queued(entry, done);
}

/*
 * tcc_advance_connect
 *		The socket of entry, which is being connected, is ready for what
 *		PQconnectPoll asked: poll again, and act on its answer.  Calls that
 *		got an outcome (all of them, when connecting failed) go to *done.
 */
void
tcc_advance_connect(ConnCacheEntry *entry, List **done)
{
	Assert(entry->connecting);

	switch (PQconnectPoll(entry->conn))
	{
		case PGRES_POLLING_READING:
			entry->connect_events = WL_SOCKET_READABLE;
			break;
		case PGRES_POLLING_WRITING:
			entry->connect_events = WL_SOCKET_WRITEABLE;
			break;
		case PGRES_POLLING_OK:
			connected(entry, done);
			break;
		default:
			connect_failed(entry,
						   tcc_libpq_message(entry->conn,
											 "could not connect"),
						   done);
			break;
	}
}

/*
 * tcc_connect_deadline
 *		When connecting entry times out: tcc.connect_timeout after its
 *		start, with the value in force now (a reload applies at once).
 */
TimestampTz
tcc_connect_deadline(ConnCacheEntry *entry)
{
	Assert(entry->connecting);
	return entry->connect_start + (int64) tcc_connect_timeout * 1000;
}

/*
 * tcc_connect_timed_out
 *		Connecting entry took longer than tcc.connect_timeout: give up, and
 *		fail the calls queued on it.  Nothing was sent, so nothing needs
 *		cancelling.
 */
void
tcc_connect_timed_out(ConnCacheEntry *entry, List **done)
{
	connect_failed(entry,
				   psprintf("could not connect: tcc.connect_timeout (%d ms) "
							"expired", tcc_connect_timeout),
				   done);
}
