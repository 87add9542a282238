/*-------------------------------------------------------------------------
 *
 * state.h
 *	  A global transaction's row as the SQL API reads and moves it; see
 *	  state.c.
 *
 * src/state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_STATE_H
#define TCC_STATE_H

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

/* A global transaction's row, as read under its lock */
typedef struct GlobalTx
{
	const char *gid;
	const char *mode;
	TccStatus	status;
	Oid			owner;
	int32		branch_count;
	char	   *deadline;		/* as text, for messages */
	bool		expired;		/* deadline has passed */
	bool		changed_here;	/* the current transaction wrote or locked
								 * the row */
} GlobalTx;

/* how tcc_read_global_tx reads the row */
typedef enum GlobalTxRead
{
	READ_PLAIN,					/* with the statement's snapshot */
	READ_FOR_UPDATE,			/* ... and locked */
	READ_LATEST					/* as last committed, whatever the isolation */
} GlobalTxRead;

/* the kind of phase two a transaction gets, from its mode */
#define MODE_IS_TCC(tx)		(strcmp((tx)->mode, "tcc") == 0)
#define STATUS_IS(tx, s)	((tx)->status == (s))

/* state.c */
extern const char *tcc_status_name(TccStatus status);
extern TccStatus tcc_status_from_name(const char *name);
extern void tcc_read_global_tx(TccSpiSession *session, const char *gid,
							   GlobalTx *tx, GlobalTxRead how);
extern void tcc_lock_global_tx(TccSpiSession *session, const char *gid,
							   GlobalTx *tx);
extern void tcc_refuse_transition(GlobalTx *tx, const char *action);
extern void tcc_check_not_expired(GlobalTx *tx);
extern void tcc_check_mode(GlobalTx *tx, bool want_tcc, const char *function,
						   const char *instead);
extern void tcc_set_global_status(GlobalTx *tx, TccStatus new_status,
								  text *reason);
extern void tcc_set_branch_status(GlobalTx *tx, const char *new_status,
								  int32 seq);

#endif							/* TCC_STATE_H */
