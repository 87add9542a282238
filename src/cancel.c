/*-------------------------------------------------------------------------
 *
 * cancel.c
 *	  Asking a participant to cancel a call without waiting for it.
 *
 * When a call runs longer than tcc.call_timeout, or a backend running
 * CALL tcc.try is interrupted, the participant is asked to cancel what
 * the connection is doing, and the connection is closed.  PostgreSQL 15's
 * libpq has only the blocking PQcancel: it connects to the participant's
 * postmaster, sends the cancel request, then waits in recv() until the
 * postmaster closes the socket, retrying on EINTR.  A participant that
 * hangs (a postmaster stopped, a network that swallows packets) would then
 * hold the worker for as long as it hangs, deaf to SIGTERM, SIGHUP and a
 * fast stop of the server.  PostgreSQL 17's PQcancelStart/PQcancelPoll do
 * this without blocking; until then, the request is sent from a thread of
 * its own that nobody waits for.
 *
 * The thread calls PQcancel and PQfreeCancel and nothing else: PQcancel is
 * documented as safe to call from a signal handler, so it touches no state
 * shared with the rest of the process, and the PGcancel it is handed holds
 * a copy of all it needs (the connection itself may be closed at once).
 * The thread never touches PostgreSQL's state (no palloc, no elog), and
 * it runs with every signal blocked, so that PostgreSQL's signal handlers
 * only ever run in the main thread.
 *
 * A thread ends with its process.  So that a request is not lost to a
 * process that exits right after making it (a backend whose client leaves
 * once its CALL tcc.try was cancelled, a worker told to stop just after a
 * call timed out), the process waits at exit for its cancel threads, but
 * for at most TCC_CANCEL_EXIT_WAIT ms: a participant that answers takes a
 * millisecond, and one that hangs must not hold a shutdown.
 *
 * src/cancel.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "libpq-fe.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"

#include "tcc.h"

/*
 * At most this many cancel requests wait at once.  Each one that hangs
 * holds a thread (and a socket to the participant) until the participant
 * answers; the bound keeps a participant that hangs for long from making
 * the process pile them up.
 */
#define TCC_MAX_CANCEL_THREADS	16

/* longest wait at process exit for the cancel threads, in milliseconds */
#define TCC_CANCEL_EXIT_WAIT	500

/* cancel threads not yet finished (only this process's) */
static pg_atomic_uint32 cancel_threads;
static bool cancel_threads_initialized = false;

/*
 * cancel_thread_main
 *		Body of a cancel thread: send the request, free it, count down.
 *		Nothing here may use PostgreSQL's facilities (see the file header).
 */
static void *
cancel_thread_main(void *arg)
{
	PGcancel   *cancel = (PGcancel *) arg;
	char		errbuf[256];

	(void) PQcancel(cancel, errbuf, sizeof(errbuf));
	PQfreeCancel(cancel);
	pg_atomic_fetch_sub_u32(&cancel_threads, 1);
	return NULL;
}

/*
 * wait_for_cancel_threads
 *		At process exit: give the cancel threads still running up to
 *		TCC_CANCEL_EXIT_WAIT ms to send their requests (see the file
 *		header).
 */
static void
wait_for_cancel_threads(int code, Datum arg)
{
	int			waited;

	for (waited = 0; waited < TCC_CANCEL_EXIT_WAIT; waited += 5)
	{
		if (pg_atomic_read_u32(&cancel_threads) == 0)
			break;
		pg_usleep(5000L);
	}
}

/*
 * tcc_cancel_async
 *		Ask the participant at the other end of conn to cancel what it runs
 *		for conn, without waiting: the request goes from a detached thread.
 *		The caller may close conn right after.
 *
 * The cancel is only a courtesy: the caller closes the connection anyway,
 * and the participant ends the statement when it notices (at the latest
 * when it next writes to the socket).  So when the request cannot be
 * made, because TCC_MAX_CANCEL_THREADS requests are still waiting or no
 * thread can be created, it is skipped.
 */
void
tcc_cancel_async(PGconn *conn)
{
	PGcancel   *cancel;
	pthread_t	thread;
	pthread_attr_t attr;
	sigset_t	all;
	sigset_t	saved;
	int			rc;

	if (conn == NULL)
		return;

	/* only the main thread gets here, so this needs no lock */
	if (!cancel_threads_initialized)
	{
		pg_atomic_init_u32(&cancel_threads, 0);
		on_proc_exit(wait_for_cancel_threads, (Datum) 0);
		cancel_threads_initialized = true;
	}

	/* the bound: count this thread first, take it back if over */
	if (pg_atomic_fetch_add_u32(&cancel_threads, 1) >= TCC_MAX_CANCEL_THREADS)
	{
		pg_atomic_fetch_sub_u32(&cancel_threads, 1);
		return;
	}

	cancel = PQgetCancel(conn);
	if (cancel == NULL)
	{
		pg_atomic_fetch_sub_u32(&cancel_threads, 1);
		return;
	}

	/*
	 * A new thread inherits the creator's signal mask: block everything
	 * around pthread_create, so that no signal is ever delivered to the
	 * thread, and restore the caller's mask after.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);

	rc = pthread_attr_init(&attr);
	if (rc == 0)
	{
		rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (rc == 0)
			rc = pthread_create(&thread, &attr, cancel_thread_main, cancel);
		pthread_attr_destroy(&attr);
	}

	pthread_sigmask(SIG_SETMASK, &saved, NULL);

	if (rc != 0)
	{
		/* no thread: skip the request (see above) */
		PQfreeCancel(cancel);
		pg_atomic_fetch_sub_u32(&cancel_threads, 1);
	}
}
