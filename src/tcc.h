/*-------------------------------------------------------------------------
 *
 * tcc.h
 *	  Declarations shared by the files of the tcc extension.
 *
 * src/tcc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_H
#define TCC_H

#include "executor/spi.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "storage/condition_variable.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

/* Longest gid or branch id, in bytes */
#define TCC_MAX_ID_LEN		128

/* Most bytes of a user's input quoted in a message (see tcc_clip) */
#define TCC_CLIP_LEN		32

/* settings, defined in tcc.c (see the README, Settings) */
extern int	tcc_default_timeout;	/* seconds */
extern int	tcc_naptime;			/* milliseconds */
extern int	tcc_retry_base;			/* milliseconds */
extern int	tcc_retry_max;			/* milliseconds */
extern int	tcc_max_attempts;		/* 0: no limit */
extern int	tcc_call_timeout;		/* milliseconds, 0: no limit */
extern int	tcc_connect_timeout;	/* milliseconds */
extern int	tcc_max_concurrent_calls;
extern int	tcc_server_connections;
extern int	tcc_retention;			/* seconds, 0: keep forever */
extern int	tcc_fence_retention;	/* seconds, 0: keep forever */
extern int	tcc_dispatchers;		/* per database */
extern int	tcc_local_processes;	/* runners per dispatcher */

/* a setting tcc's processes pin for their own statements (worker.c) */
typedef struct TccPin
{
	const char *name;
	const char *value;
} TccPin;

extern const TccPin tcc_planner_pins[];

/*
 * The statuses of a branch (doc/design.md, States); the names are what
 * tcc.branch.status holds (state.c).
 */
typedef enum BranchStatus
{
	BRANCH_REGISTERED,
	BRANCH_TRIED,
	BRANCH_TRY_FAILED,
	BRANCH_CONFIRMING,
	BRANCH_CONFIRMED,
	BRANCH_CANCELLING,
	BRANCH_CANCELLED,
	BRANCH_FAILED,
	BRANCH_ABORTED,
	BRANCH_SKIPPED
} BranchStatus;

#define BRANCH_STATUS_COUNT	(BRANCH_SKIPPED + 1)

/*
 * One call of an action (a confirm, a cancel, a step or a compensation)
 * that the worker makes, from the moment the branch is found due until its
 * outcome is recorded.  dispatch.c fills in what to run; remote_pipeline.c
 * (or action.c, for a local action) fills in the outcome.
 */
typedef enum TccCallOutcome
{
	TCC_CALL_PENDING,			/* in flight */
	TCC_CALL_DONE,				/* the statement completed */
	TCC_CALL_NOT_DONE,			/* it returned a single false */
	TCC_CALL_ERROR				/* it (or reaching the participant) failed */
} TccCallOutcome;

typedef struct TccCall
{
	/* what to run */
	char	   *gid;
	char	   *branch_id;
	BranchStatus ran_in;		/* the branch's status it runs in: confirming
								 * or cancelling, registered for a try */
	char	   *server;			/* foreign server name, NULL for local */
	Oid			serverid;		/* its OID, when remote */
	int			conn_slot;		/* ... and which of its connections */
	Oid			owner;			/* the global transaction's owner */
	char	   *sql;			/* the action */
	char	   *payload;		/* jsonb as text, or NULL */
	int			attempts;		/* attempts made before this one */

	/* a local call waits in its queue until then (its row was busy) */
	TimestampTz not_before;
	bool		sent;			/* a remote call handed to its connection */

	/* filled in by remote_pipeline.c while in flight */
	TimestampTz deadline;		/* give up waiting at this time (0: never) */
	bool		have_result;	/* the statement's result has arrived */

	/* the outcome */
	TccCallOutcome outcome;
	char	   *error;			/* message, when TCC_CALL_ERROR */
	char	   *detail;			/* ... its DETAIL, HINT and CONTEXT, or NULL */
	char	   *hint;
	char	   *context;
	char		sqlstate[6];	/* SQLSTATE of the error, "" if none */
	bool		permanent;		/* the error can never go away by itself */
} TccCall;

/*
 * A privileged SPI session: tcc's tables are private, so the functions that
 * read and write them run their SQL as the owner of the tcc schema, with a
 * search_path that user code cannot redirect.  See tcc_spi.c.
 */
typedef struct TccSpiSession
{
	Oid			caller;			/* the role that called the SQL function */
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} TccSpiSession;

/* tcc_spi.c */
extern void tcc_spi_begin(TccSpiSession *session);
extern void tcc_spi_end(TccSpiSession *session);
extern uint64 tcc_spi_exec(SPIPlanPtr *plan, const char *sql, int nargs,
						 Oid *argtypes, Datum *values, const char *nulls,
						 bool read_only, long count);
extern uint64 tcc_spi_exec_latest(SPIPlanPtr *plan, const char *sql,
								  int nargs, Oid *argtypes, Datum *values,
								  const char *nulls, long count);
extern void tcc_error_params(TccCall *call, Datum *values, char *nulls);
extern uint64 tcc_spi_exec_rows(SPIPlanPtr *plans, const char *one_sql,
								const char *many_sql, int ncols,
								const Oid *types, Datum **cols, bool **nulls,
								int n);
extern void tcc_text_column(const char *const *strings, int n,
							Datum **values, bool **nulls);
extern char *tcc_spi_getstring(int row, int col);
extern char *tcc_spi_strdup(const char *str);
extern Datum tcc_spi_getdatum(int row, int col, bool *isnull);

/* action.c */
extern void tcc_run_action_here(TccCall *call);

/* action_plan.c */
extern SPIPlanPtr tcc_action_plan(Oid owner, const char *sql);

/* action_sql.c */
extern void tcc_check_action_sql(const char *sql, const char *argname);
extern bool tcc_error_is_about_text(int sqlerrcode);
extern int	tcc_pin_action_settings(void);

/* register.c */
extern char *tcc_try_register(FunctionCallInfo fcinfo, Oid *owner);

/* durable.c */
extern void tcc_commit_durably(void);

/* args.c */
extern char *tcc_check_id(text *id, const char *what, bool may_generate);
extern char *tcc_id_arg(FunctionCallInfo fcinfo, int argno, const char *what);
extern char *tcc_generate_gid(void);
extern void tcc_check_not_null(FunctionCallInfo fcinfo, int argno,
							   const char *argname);
extern void tcc_check_interval(Interval *interval, const char *argname,
							   bool allow_zero);
extern char *tcc_interval_text(Interval *interval);
extern char *tcc_clip(const char *str);
extern TimestampTz tcc_add_interval(TimestampTz start, Interval *interval,
									bool subtract, const char *argname);
extern TimestampTz tcc_older_than_arg(FunctionCallInfo fcinfo, int argno);

/*
 * Why a participant cannot be reached for a transaction's owner, worded
 * once for registration (raised with tcc_refuse) and for phase two
 * (recorded on the branch).  See participant.c.
 */
typedef struct TccRefusal
{
	const char *sqlstate;		/* five characters */
	char	   *message;
	char	   *detail;			/* or NULL */
	char	   *hint;			/* or NULL */
} TccRefusal;

/* participant.c */
extern DefElem *tcc_option_named(List *options, const char *name);
extern bool tcc_participant_server(const char *name,
								   ForeignServer **server, TccRefusal *r);
extern bool tcc_participant_usage(Oid owner, const char *gid,
								  ForeignServer *server, TccRefusal *r);
extern bool tcc_participant_mapping(Oid owner, const char *gid,
									ForeignServer *server, List **mapping,
									Oid *umid, TccRefusal *r);
extern bool tcc_participant_password_unused(Oid owner, const char *gid,
											ForeignServer *server,
											TccRefusal *r);
extern int	tcc_participant_no_borrowed_credentials(List *mapping,
													const char **keywords,
													const char **values,
													int n);
extern void tcc_refuse(TccRefusal *r);

/* cancel.c (struct pg_conn is libpq's PGconn) */
struct pg_conn;
extern void tcc_cancel_async(struct pg_conn *conn);

/* remote_conn.c (see remote.h for what the remote_*.c files share) */
extern void tcc_remote_init(bool in_worker);
extern int	tcc_remote_open_connections(void);
extern int	tcc_remote_in_flight(void);

/* remote_pipeline.c */
extern void tcc_remote_send(TccCall *call, List **done);

/* remote_wait.c */
extern void tcc_remote_call(TccCall *call);
extern void tcc_remote_wait(long timeout_ms, List **done);

/* outcome.c */
extern bool tcc_sqlstate_is_permanent(const char *sqlstate);

/* shmem.c */
extern void tcc_shmem_request(void);
extern void tcc_shmem_startup(void);
extern void tcc_stop_database_worker(Oid dboid);

/* wakeup.c */
extern void tcc_wake_worker_at_commit(void);
extern void tcc_note_due_at_commit(const char *gid, TimestampTz due);
extern void tcc_wake_waiters_at_commit(const char *gid);
extern ConditionVariable *tcc_wait_variable(const char *gid);

/* dispatch.c */
extern int	tcc_gid_partition(const char *gid, int npartitions);

/* remote_conn.c */
extern int	tcc_connection_slot(const char *gid, int npartitions);

/* launcher.c and worker.c: bgw_function_name entry points */
extern PGDLLEXPORT void tcc_launcher_main(Datum main_arg);
extern PGDLLEXPORT void tcc_worker_main(Datum main_arg);
extern PGDLLEXPORT void tcc_child_main(Datum main_arg);
extern PGDLLEXPORT void tcc_runner_main(Datum main_arg);
extern void tcc_register_launcher(void);

#endif							/* TCC_H */
