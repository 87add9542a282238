/*-------------------------------------------------------------------------
 *
 * state.h
 *	  A global transaction and its branches: their statuses and edges
 *	  (state.c), and every change made to their rows (global_tx.c for the
 *	  transaction's, branch.c for its branches').
 *
 * src/state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_STATE_H
#define TCC_STATE_H

#include "utils/jsonb.h"

#include "tcc.h"

/*
 * The statuses of a global transaction (doc/design.md, States); their
 * names are what tcc.global_transaction.status holds and the API returns.
 */
typedef enum TccStatus
{
	TCC_TRYING,
	TCC_CONFIRMING,
	TCC_CONFIRMED,
	TCC_CANCELLING,
	TCC_CANCELLED,
	TCC_FAILED
} TccStatus;

#define TCC_STATUS_COUNT	(TCC_FAILED + 1)

/*
 * The modes of a global transaction (doc/design.md, States): the kind of
 * phase two it gets.  The names are what tcc.global_transaction.mode holds
 * and tcc.begin takes.
 */
typedef enum TccMode
{
	TCC_MODE_TCC,
	TCC_MODE_SAGA,
	TCC_MODE_MSG
} TccMode;

#define TCC_MODE_COUNT		(TCC_MODE_MSG + 1)

/* A global transaction's row, as read under its lock */
typedef struct GlobalTx
{
	const char *gid;
	TccMode		mode;
	TccStatus	status;
	TccStatus	failed_phase;	/* the phase a failed transaction left */
	Oid			owner;
	char	   *deadline;		/* as text, for messages */
	bool		expired;		/* deadline has passed */
	bool		changed_here;	/* the current transaction wrote or locked
								 * the row */
	bool		locked;			/* read under its row lock (global_tx.c) */
} GlobalTx;

/* how tcc_read_global_tx reads the row */
typedef enum GlobalTxRead
{
	READ_PLAIN,					/* with the statement's snapshot */
	READ_FOR_UPDATE,			/* ... and locked, waiting for the lock */
	READ_LATEST					/* as last committed, whatever the isolation */
} GlobalTxRead;

/* what tcc_lock_global_tx_nowait found */
typedef enum GlobalLock
{
	GLOBAL_LOCKED,				/* locked and read */
	GLOBAL_BUSY,				/* somebody else holds the row */
	GLOBAL_GONE					/* purged meanwhile */
} GlobalLock;

/* which of a transaction's branches tcc_set_branches changes */
typedef enum BranchSet
{
	BRANCHES_ALL,				/* every one */
	BRANCHES_ALL_TRIED,			/* every one, unless a try failed */
	BRANCHES_REGISTERED,		/* those that never ran */
	BRANCHES_FIRST_REGISTERED,	/* the first of those: the next saga step */
	BRANCHES_LAST_CONFIRMED,	/* the newest step done: the next to undo */
	BRANCHES_TO_RETRY,			/* failed, or waiting in the new status */
	BRANCHES_ONE				/* the one named (tcc_set_branch) */
} BranchSet;

/* the kind of phase two a transaction gets, from its mode */
#define MODE_IS_TCC(tx)		((tx)->mode == TCC_MODE_TCC)
#define STATUS_IS(tx, s)	((tx)->status == (s))

/* state.c: statuses and edges */
extern const char *tcc_status_name(TccStatus status);
extern TccStatus tcc_status_from_name(const char *name);
extern const char *tcc_mode_name(TccMode mode);
extern int	tcc_mode_from_name(const char *name);
extern const char *tcc_branch_status_name(BranchStatus status);
extern BranchStatus tcc_branch_status_from_name(const char *name);
extern void tcc_check_edge(GlobalTx *tx, TccStatus new_status);
extern void tcc_start_confirm(GlobalTx *tx);
extern void tcc_start_cancel(GlobalTx *tx, const char *reason);
extern void tcc_resume(GlobalTx *tx);
extern bool tcc_start_next(GlobalTx *tx);
extern void tcc_finish_if_done(GlobalTx *tx);
extern void tcc_finish_all_if_done(int n, GlobalTx **txs);
extern void tcc_refuse_transition(GlobalTx *tx, const char *action);
extern void tcc_check_not_expired(GlobalTx *tx);
extern void tcc_check_mode(GlobalTx *tx, bool want_tcc, const char *function,
						   const char *instead);

/* global_tx.c: the transaction's row */
extern void tcc_read_global_tx(TccSpiSession *session, const char *gid,
							   GlobalTx *tx, GlobalTxRead how);
extern void tcc_lock_global_tx(TccSpiSession *session, const char *gid,
							   GlobalTx *tx);
extern GlobalLock tcc_lock_global_tx_nowait(const char *gid, GlobalTx *tx);
extern void tcc_lock_global_txs_nowait(int n, const char *const *gids,
									   GlobalTx *txs, GlobalLock *locks);
extern bool tcc_insert_global_tx(const char *gid, TccMode mode,
								 Oid owner, Jsonb *meta,
								 TimestampTz deadline, GlobalTx *existing);
extern void tcc_set_global_status(GlobalTx *tx, TccStatus new_status,
								  const char *reason);
extern void tcc_fail_global_tx(GlobalTx *tx, const char *error);
extern uint64 tcc_purge_finished(TimestampTz cutoff, Oid caller);
extern uint64 tcc_purge_finished_batch(TimestampTz cutoff, int limit);
extern int	tcc_lock_expired(int limit, GlobalTx **txs);

/* branch.c: the branches' rows */
extern char *tcc_insert_branch(GlobalTx *tx, const char *branch_id,
							   const char *server, text *action_sql,
							   text *undo_sql, Jsonb *payload);
extern bool tcc_set_branches(GlobalTx *tx, BranchSet which,
							 BranchStatus new_status);
extern void tcc_set_branch(GlobalTx *tx, const char *branch_id,
						   BranchStatus new_status);
extern bool tcc_record_attempt(GlobalTx *tx, TccCall *call,
							   BranchStatus new_status, double retry_in_ms,
							   bool with_error);
extern bool tcc_branch_is(const char *gid, const char *branch_id,
						  BranchStatus status);
extern bool tcc_read_due_call(TccCall *call, MemoryContext context);
extern char *tcc_first_branch_in(const char *gid, BranchStatus status);
extern void tcc_branches_left_in(int n, GlobalTx **txs,
								 const BranchStatus *done, bool *left);
extern void tcc_check_branches_seen(const char *gid);

#endif							/* TCC_STATE_H */
