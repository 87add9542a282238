/*-------------------------------------------------------------------------
 *
 * coordinator.c
 *	  The coordinator's SQL API for a whole global transaction:
 *	  tcc.begin, tcc.commit, tcc.submit, tcc.rollback, tcc.status,
 *	  tcc.retry and tcc.purge.  Adding branches is in register.c, CALL
 *	  tcc.try in try.c, tcc.wait in wait.c.
 *
 * Each call checks its arguments, locks the transaction's row and decides
 * on the status it finds under the lock; state.c makes the change.  The
 * states, their edges and the races between these calls are in
 * doc/design.md.
 *
 * src/coordinator.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "state.h"
#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_begin);
PG_FUNCTION_INFO_V1(tcc_commit);
PG_FUNCTION_INFO_V1(tcc_submit);
PG_FUNCTION_INFO_V1(tcc_rollback);
PG_FUNCTION_INFO_V1(tcc_status);
PG_FUNCTION_INFO_V1(tcc_retry);
PG_FUNCTION_INFO_V1(tcc_purge);
PG_FUNCTION_INFO_V1(tcc_is_visible);

/*
 * deadline_after
 *		The end of a try phase of length timeout that starts at start;
 *		refused unless it is after start.
 *
 * tcc.begin starts the try phase at the start of the statement, the clock
 * that the deadline checks of register and commit use too, so that a
 * transaction begun late in a long SQL transaction is not born expired.
 * An interval can be positive as a value and still end before it starts
 * ('1 mon -30 days 1 microsecond' is after zero, yet a month can have 28
 * days): what counts is the deadline.
 */
static TimestampTz
deadline_after(TimestampTz start, Interval *timeout)
{
	TimestampTz deadline = tcc_add_interval(start, timeout, false, "timeout");

	if (deadline <= start)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be greater than zero"),
				 errdetail("Counted on the calendar from now, %s ends no "
						   "later than now.", tcc_interval_text(timeout)),
				 errhint("Months and days are counted on the calendar; "
						 "give the timeout in hours, minutes or seconds.")));
	return deadline;
}

/*
 * begin_args
 *		Check tcc.begin's arguments and set *gid, *mode, *meta and
 *		*deadline from them.
 */
static void
begin_args(FunctionCallInfo fcinfo, char **gid, TccMode *mode, Jsonb **meta,
		   TimestampTz *deadline)
{
	Interval   *timeout;
	char	   *mode_name;
	int			m;

	*gid = PG_ARGISNULL(0) ? tcc_generate_gid() :
		tcc_check_id(PG_GETARG_TEXT_PP(0), "gid", true);

	if (PG_ARGISNULL(1))
	{
		timeout = palloc0(sizeof(Interval));
		timeout->time = (TimeOffset) tcc_default_timeout * USECS_PER_SEC;
	}
	else
	{
		timeout = PG_GETARG_INTERVAL_P(1);
		tcc_check_interval(timeout, "timeout", false);
	}
	*deadline = deadline_after(GetCurrentStatementStartTimestamp(), timeout);

	tcc_check_not_null(fcinfo, 2, "mode");
	mode_name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if ((m = tcc_mode_from_name(mode_name)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown mode \"%s\"", tcc_clip(mode_name)),
				 errhint("The mode is one of tcc, saga and msg.")));
	*mode = (TccMode) m;

	*meta = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	if (*meta != NULL && !JB_ROOT_IS_OBJECT(*meta))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meta must be a JSON object"),
				 errhint("Pass NULL or an object such as "
						 "'{\"order\": 42}'.")));
}

/*
 * check_begin_again
 *		Refuse to begin gid, which exists as old, again as caller in mode:
 *		only its owner may, while it is trying, in the same mode.
 */
static void
check_begin_again(GlobalTx *old, Oid caller, TccMode mode)
{
	if (!has_privs_of_role(caller, old->owner))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("global transaction \"%s\" already exists", old->gid),
				 errdetail("It belongs to another role."),
				 errhint("Choose another gid, or pass NULL to have one "
						 "generated.")));
	if (!STATUS_IS(old, TCC_TRYING))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("global transaction \"%s\" already exists", old->gid),
				 errdetail("It is %s; only a transaction still trying "
						   "can be begun again.",
						   tcc_status_name(old->status)),
				 errhint("Choose another gid, or pass NULL to have one "
						 "generated.")));
	if (old->mode != mode)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("global transaction \"%s\" already exists with "
						"mode %s", old->gid, tcc_mode_name(old->mode)),
				 errhint("Begin it again with mode %s, or choose "
						 "another gid.", tcc_mode_name(old->mode))));
}

/*
 * tcc_begin
 *		tcc.begin(gid, timeout, mode, meta): start a global transaction.
 *
 * Beginning a gid that is still trying returns the gid, so that a client
 * that lost the answer can simply call again.
 */
Datum
tcc_begin(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	GlobalTx	old;
	char	   *gid;
	TccMode		mode;
	Jsonb	   *meta;
	TimestampTz deadline;

	begin_args(fcinfo, &gid, &mode, &meta, &deadline);

	tcc_spi_begin(&session);
	tcc_commit_durably();
	if (!tcc_insert_global_tx(gid, mode, session.caller, meta, deadline,
							  &old))
		check_begin_again(&old, session.caller, mode);
	tcc_spi_end(&session);

	/* the worker watches the deadline; make sure this database has one */
	tcc_wake_worker_at_commit();

	PG_RETURN_TEXT_P(cstring_to_text(gid));
}

/*
 * begin_transition
 *		The start of every call that moves a transaction: read the gid
 *		argument, open the SPI session, ask for a durable commit and lock
 *		the transaction's row into *tx, waiting for it.
 */
static void
begin_transition(FunctionCallInfo fcinfo, TccSpiSession *session,
				 GlobalTx *tx)
{
	char	   *gid = tcc_id_arg(fcinfo, 0, "gid");

	tcc_spi_begin(session);
	tcc_commit_durably();
	tcc_lock_global_tx(session, gid, tx);
}

/*
 * end_transition
 *		The end of every call that moves a transaction: close the SPI
 *		session, have the worker look at the transaction once this commits,
 *		and return its status.
 */
static Datum
end_transition(TccSpiSession *session, GlobalTx *tx)
{
	tcc_spi_end(session);
	tcc_wake_worker_at_commit();

	PG_RETURN_TEXT_P(cstring_to_text(tcc_status_name(tx->status)));
}

/*
 * start_phase_two
 *		The common body of tcc.commit and tcc.submit: trying -> confirming
 *		(tcc_start_confirm).  Repeating the call once the transaction is
 *		confirming or confirmed returns the status.
 */
static Datum
start_phase_two(FunctionCallInfo fcinfo, bool tcc_mode)
{
	TccSpiSession session;
	GlobalTx	tx;

	begin_transition(fcinfo, &session, &tx);
	tcc_check_mode(&tx, tcc_mode, tcc_mode ? "tcc.commit" : "tcc.submit",
				   tcc_mode ? "tcc.submit" : "tcc.commit");

	if (STATUS_IS(&tx, TCC_TRYING))
	{
		tcc_check_not_expired(&tx);
		tcc_start_confirm(&tx);
	}
	else if (!STATUS_IS(&tx, TCC_CONFIRMING) && !STATUS_IS(&tx, TCC_CONFIRMED))
		tcc_refuse_transition(&tx, tcc_mode ? "commit" : "submit");

	return end_transition(&session, &tx);
}

/*
 * tcc_commit
 *		tcc.commit(gid): a TCC transaction goes from trying to confirming.
 */
Datum
tcc_commit(PG_FUNCTION_ARGS)
{
	return start_phase_two(fcinfo, true);
}

/*
 * tcc_submit
 *		tcc.submit(gid): a saga or msg transaction goes from trying to
 *		confirming, which runs its steps.
 */
Datum
tcc_submit(PG_FUNCTION_ARGS)
{
	return start_phase_two(fcinfo, false);
}

/*
 * tcc_rollback
 *		tcc.rollback(gid, reason): trying -> cancelling (tcc_start_cancel).
 *		Repeating the call once the transaction is cancelling or cancelled
 *		returns the status.
 */
Datum
tcc_rollback(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	GlobalTx	tx;
	char	   *reason = PG_ARGISNULL(1) ? NULL :
		text_to_cstring(PG_GETARG_TEXT_PP(1));

	begin_transition(fcinfo, &session, &tx);

	if (STATUS_IS(&tx, TCC_TRYING))
		tcc_start_cancel(&tx, reason);
	else if (!STATUS_IS(&tx, TCC_CANCELLING) && !STATUS_IS(&tx, TCC_CANCELLED))
		tcc_refuse_transition(&tx, "roll back");

	return end_transition(&session, &tx);
}

/*
 * tcc_status
 *		tcc.status(gid): the current status of a global transaction.
 */
Datum
tcc_status(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	GlobalTx	tx;
	char	   *gid;

	gid = tcc_id_arg(fcinfo, 0, "gid");

	tcc_spi_begin(&session);
	tcc_read_global_tx(&session, gid, &tx, READ_PLAIN);
	tcc_spi_end(&session);

	PG_RETURN_TEXT_P(cstring_to_text(tcc_status_name(tx.status)));
}

/*
 * tcc_retry
 *		tcc.retry(gid): a failed transaction resumes the phase it left
 *		(tcc_resume).
 */
Datum
tcc_retry(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	GlobalTx	tx;

	begin_transition(fcinfo, &session, &tx);
	if (!STATUS_IS(&tx, TCC_FAILED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot retry global transaction \"%s\" because it "
						"is %s", tx.gid, tcc_status_name(tx.status)),
				 errdetail("Only a failed transaction can be retried.")));
	tcc_resume(&tx);

	return end_transition(&session, &tx);
}

/*
 * tcc_purge
 *		tcc.purge(older_than): delete the confirmed and cancelled
 *		transactions, of roles the caller is a member of, that finished more
 *		than older_than ago; returns how many.  Failed transactions are
 *		never purged: they wait for a human.
 */
Datum
tcc_purge(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	TimestampTz cutoff = tcc_older_than_arg(fcinfo, 0);
	uint64		deleted;

	tcc_spi_begin(&session);
	deleted = tcc_purge_finished(cutoff, session.caller);
	tcc_spi_end(&session);

	PG_RETURN_INT64((int64) deleted);
}

/*
 * tcc_is_visible
 *		tcc.is_visible(owner): may the current role see a transaction owned
 *		by owner?  The views filter on it.
 *
 * Unlike pg_has_role(), this does not fail when owner has been dropped: such
 * transactions are visible to superusers only.
 */
Datum
tcc_is_visible(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(has_privs_of_role(GetUserId(), PG_GETARG_OID(0)));
}
