/*-------------------------------------------------------------------------
 *
 * remote.h
 *	  Declarations shared by the files that call participants over libpq:
 *	  remote_conn.c (the connection cache), remote_connect.c (connecting
 *	  without blocking), remote_pipeline.c (what runs on one connection)
 *	  and remote_wait.c (waiting for the answers).  The rest of tcc uses
 *	  the functions declared in tcc.h.
 *
 * src/remote.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_REMOTE_H
#define TCC_REMOTE_H

#include "libpq-fe.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "tcc.h"

typedef struct ConnCacheKey
{
	Oid			serverid;
	Oid			userid;			/* the owner of the global transactions */
	int			slot;			/* which of tcc.server_connections */
} ConnCacheKey;

/*
 * A participant connection and what is in flight on it.  The items of its
 * queue, in the order the participant answers them, are TccCalls and,
 * after each, a session reset (see remote_pipeline.c).
 *
 * An entry is in one of three states: not connected (conn NULL, queue
 * empty); being connected (conn set, connecting true: its queue holds the
 * calls made meanwhile, none of them sent yet; see remote_connect.c); or
 * connected (conn set, connecting false, in pipeline mode).
 */
typedef struct ConnCacheEntry
{
	ConnCacheKey key;
	PGconn	   *conn;			/* NULL when not connected */
	List	   *queue;			/* calls and resets, oldest first */
	int			ncalls;			/* how many of them are calls */
	bool		connecting;		/* PQconnectPoll has not said OK yet */
	int			connect_events; /* what it waits for: WL_SOCKET_* */
	TimestampTz connect_start;	/* when the connect began */
	char	   *servername;		/* for messages (in tcc_remote_context) */
	char	   *password_refusal;	/* the error for a connection that did
									 * not use the mapping's password, or
									 * NULL when the owner is a superuser */
	TimestampTz reset_deadline; /* of the reset at the head (0: none) */
	int			reset_done;		/* statements of the reset at the head that
								 * answered as they should */
	bool		flush_pending;	/* libpq has output left to send */
	bool		invalidated;	/* the server or mapping changed */
	TimestampTz failed_at;		/* when connecting last failed, or 0 (slot
								 * 0 only: see tcc_remember_failure) */
	char	   *failed_error;	/* ... and why (in tcc_remote_context) */
	char		failed_sqlstate[6];
	uint32		server_hashvalue;
	uint32		mapping_hashvalue;
} ConnCacheEntry;

/* remote_conn.c */
extern HTAB *tcc_conn_cache;
extern MemoryContext tcc_remote_context;
extern ConnCacheEntry *tcc_connection_for(TccCall *call);
extern void tcc_disconnect(ConnCacheEntry *entry);
extern void tcc_remember_failure(ConnCacheEntry *entry, const char *message,
								 const char *sqlstate);
extern void tcc_forget_failure(ConnCacheEntry *entry);
extern char *tcc_libpq_message(PGconn *conn, const char *fallback);

/* remote_connect.c */
extern bool tcc_start_connect(ConnCacheEntry *entry, TccCall *call);
extern void tcc_advance_connect(ConnCacheEntry *entry, List **done);
extern TimestampTz tcc_connect_deadline(ConnCacheEntry *entry);
extern void tcc_connect_timed_out(ConnCacheEntry *entry, List **done);

/* remote_pipeline.c */
extern void tcc_set_call_error(TccCall *call, const char *message,
							   const char *sqlstate, bool permanent);
extern TimestampTz tcc_head_deadline(ConnCacheEntry *entry);
extern void tcc_fail_entry(ConnCacheEntry *entry, const char *message,
						   const char *sqlstate, bool permanent,
						   List **done);
extern void tcc_send_queued(ConnCacheEntry *entry, List **done);
extern bool tcc_flush_entry(ConnCacheEntry *entry, List **done);
extern void tcc_read_entry(ConnCacheEntry *entry, List **done);
extern void tcc_timeout_entry(ConnCacheEntry *entry, List **done);

#endif							/* TCC_REMOTE_H */
