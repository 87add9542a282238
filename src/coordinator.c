/*-------------------------------------------------------------------------
 *
 * coordinator.c
 *	  The coordinator's SQL API: tcc.begin, tcc.register_branch,
 *	  tcc.add_step, tcc.commit, tcc.submit, tcc.rollback, tcc.status,
 *	  tcc.retry and tcc.purge, and the bookkeeping of CALL tcc.try (whose
 *	  calling of the participant is in try.c; tcc.wait is in wait.c).
 *
 * The states, their edges and the races between these calls are in
 * doc/design.md; state.c reads, locks and moves a transaction's row for
 * them.
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
PG_FUNCTION_INFO_V1(tcc_register_branch);
PG_FUNCTION_INFO_V1(tcc_add_step);
PG_FUNCTION_INFO_V1(tcc_commit);
PG_FUNCTION_INFO_V1(tcc_submit);
PG_FUNCTION_INFO_V1(tcc_rollback);
PG_FUNCTION_INFO_V1(tcc_status);
PG_FUNCTION_INFO_V1(tcc_retry);
PG_FUNCTION_INFO_V1(tcc_purge);
PG_FUNCTION_INFO_V1(tcc_is_visible);

/*
 * add_branch
 *		The common body of tcc.register_branch, tcc.add_step and the
 *		registration of CALL tcc.try (function names the caller, for
 *		messages); returns the branch id and sets *owner (when not NULL) to
 *		the transaction's owner.
 *
 * Arguments are checked before anything is locked or written.  The branch
 * takes the next sequence number of its transaction; that UPDATE also locks
 * out a concurrent commit (see the file header).
 */
static char *
add_branch(FunctionCallInfo fcinfo, bool tcc_mode, const char *function,
		   Oid *owner)
{
	const char *action_arg = tcc_mode ? "confirm_sql" : "action_sql";
	const char *undo_arg = tcc_mode ? "cancel_sql" : "compensate_sql";
	const char *id_arg = tcc_mode ? "branch_id" : "step_id";
	static SPIPlanPtr bump_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	TccSpiSession session;
	GlobalTx	tx;
	char	   *gid;
	char	   *branch_id = NULL;
	text	   *action_sql;
	text	   *undo_sql = NULL;
	ForeignServer *server = NULL;
	TccRefusal	refusal;
	Oid			argtypes[7] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID,
		TEXTOID, JSONBOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int32		seq;

	gid = tcc_id_arg(fcinfo, 0, "gid");

	tcc_check_not_null(fcinfo, 2, action_arg);
	action_sql = PG_GETARG_TEXT_PP(2);
	tcc_check_action_sql(text_to_cstring(action_sql), action_arg);

	if (tcc_mode)
		tcc_check_not_null(fcinfo, 3, undo_arg);
	if (!PG_ARGISNULL(3))
	{
		undo_sql = PG_GETARG_TEXT_PP(3);
		tcc_check_action_sql(text_to_cstring(undo_sql), undo_arg);
	}

	if (!PG_ARGISNULL(5))
		branch_id = tcc_check_id(PG_GETARG_TEXT_PP(5), id_arg, true);

	if (!PG_ARGISNULL(1) &&
		!tcc_participant_server(text_to_cstring(PG_GETARG_TEXT_PP(1)),
								&server, &refusal))
		tcc_refuse(&refusal);

	tcc_spi_begin(&session);
	tcc_commit_durably();

	tcc_lock_global_tx(&session, gid, &tx);
	tcc_check_mode(&tx, tcc_mode, function,
			   tcc_mode ? "tcc.add_step" : "tcc.register_branch");
	if (!STATUS_IS(&tx, TCC_TRYING))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot add to global transaction \"%s\" because it "
						"is %s", gid, tcc_status_name(tx.status)),
				 errdetail("%s works only while the transaction is trying.",
						   function)));
	tcc_check_not_expired(&tx);
	if (server != NULL)
	{
		List	   *mapping;
		Oid			umid;

		/* phase two checks the mapping again: it may change meanwhile */
		if (!tcc_participant_usage(tx.owner, gid, server, &refusal) ||
			!tcc_participant_mapping(tx.owner, gid, server, &mapping, &umid,
									 &refusal))
			tcc_refuse(&refusal);
	}
	if (undo_sql != NULL && strcmp(tx.mode, "msg") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("global transaction \"%s\" is a msg transaction, "
						"which has no compensations", gid),
				 errdetail("Steps of a msg transaction are retried until "
						   "they succeed and are never undone."),
				 errhint("Pass NULL as compensate_sql, or use mode saga.")));

	values[0] = CStringGetTextDatum(gid);
	tcc_spi_exec(&bump_plan,
				 "UPDATE tcc.global_transaction"
				 "   SET branch_count = branch_count + 1, updated_at = now()"
				 " WHERE gid = $1"
				 " RETURNING branch_count",
				 1, argtypes, values, NULL, false, 0);
	seq = DatumGetInt32(tcc_spi_getdatum(0, 1, &isnull));

	/*
	 * A generated id is the sequence number, which reads well in the views.
	 * Should the user have taken that id for another branch already, fall
	 * back to a UUID rather than fail a call that named no id.
	 */
	for (;;)
	{
		bool		generated = (branch_id == NULL);

		if (generated)
			branch_id = psprintf("%d", seq);

		values[1] = CStringGetTextDatum(branch_id);
		values[2] = Int32GetDatum(seq);
		values[3] = server ? CStringGetTextDatum(server->servername) :
			(Datum) 0;
		nulls[3] = server ? ' ' : 'n';
		values[4] = PointerGetDatum(action_sql);
		values[5] = PointerGetDatum(undo_sql);
		nulls[5] = undo_sql ? ' ' : 'n';
		values[6] = PG_ARGISNULL(4) ? (Datum) 0 :
			JsonbPGetDatum(PG_GETARG_JSONB_P(4));
		nulls[6] = PG_ARGISNULL(4) ? 'n' : ' ';

		if (tcc_spi_exec(&insert_plan,
						 "INSERT INTO tcc.branch"
						 "  (gid, branch_id, seq, server, confirm_sql,"
						 "   cancel_sql, payload, created_at, updated_at)"
						 " VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())"
						 " ON CONFLICT (gid, branch_id) DO NOTHING",
						 7, argtypes, values, nulls, false, 0) == 1)
			break;

		if (!generated)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("%s \"%s\" already exists in global transaction "
							"\"%s\"", tcc_mode ? "branch" : "step",
							branch_id, gid),
					 errhint("Give each %s of a transaction its own id, or "
							 "pass NULL to have one generated.",
							 tcc_mode ? "branch" : "step")));
		branch_id = tcc_generate_gid();
	}

	/* branch_id lives in SPI's memory, which tcc_spi_end frees */
	branch_id = tcc_spi_strdup(branch_id);
	tcc_spi_end(&session);

	if (owner != NULL)
		*owner = tx.owner;
	return branch_id;
}

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
						   "later than now.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(timeout)))),
				 errhint("Months and days are counted on the calendar; "
						 "give the timeout in hours, minutes or seconds.")));
	return deadline;
}

/*
 * tcc_begin
 *		tcc.begin(gid, timeout, mode, meta): start a global transaction.
 *
 * Beginning a gid that is still trying returns the gid, so that a client
 * that lost the answer can simply call again.  Two sessions beginning the
 * same new gid at once are serialised by the primary key: the second one's
 * INSERT ... ON CONFLICT waits for the first and then finds its row.
 */
Datum
tcc_begin(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr select_plan = NULL;
	TccSpiSession session;
	char	   *gid;
	char	   *mode;
	Interval   *timeout;
	Jsonb	   *meta;
	TimestampTz deadline;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, OIDOID, JSONBOID,
		TIMESTAMPTZOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	gid = PG_ARGISNULL(0) ? tcc_generate_gid() :
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

	deadline = deadline_after(GetCurrentStatementStartTimestamp(), timeout);

	tcc_check_not_null(fcinfo, 2, "mode");
	mode = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (strcmp(mode, "tcc") != 0 && strcmp(mode, "saga") != 0 &&
		strcmp(mode, "msg") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown mode \"%s\"", tcc_clip(mode)),
				 errhint("The mode is one of tcc, saga and msg.")));

	meta = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	if (meta != NULL && !JB_ROOT_IS_OBJECT(meta))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meta must be a JSON object"),
				 errhint("Pass NULL or an object such as "
						 "'{\"order\": 42}'.")));

	tcc_spi_begin(&session);
	tcc_commit_durably();

	values[0] = CStringGetTextDatum(gid);
	values[1] = CStringGetTextDatum(mode);
	values[2] = ObjectIdGetDatum(session.caller);
	values[3] = JsonbPGetDatum(meta);
	nulls[3] = meta ? ' ' : 'n';
	values[4] = TimestampTzGetDatum(deadline);

	if (tcc_spi_exec(&insert_plan,
					 "INSERT INTO tcc.global_transaction"
					 "  (gid, mode, status, owner, meta,"
					 "   created_at, updated_at, deadline)"
					 " VALUES ($1, $2, 'trying', $3, $4,"
					 "         now(), now(), $5)"
					 " ON CONFLICT (gid) DO NOTHING",
					 5, argtypes, values, nulls, false, 0) == 0)
	{
		char	   *old_mode;
		char	   *old_status;
		Oid			old_owner;
		bool		isnull;

		/*
		 * The gid exists.  ON CONFLICT waited for its inserter, so the row
		 * is visible now, unless it was purged in between: then report it
		 * as existing anyway rather than loop, the caller may retry.
		 */
		if (tcc_spi_exec(&select_plan,
						 "SELECT mode, status, owner"
						 "  FROM tcc.global_transaction WHERE gid = $1",
						 1, argtypes, values, NULL, false, 1) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("global transaction \"%s\" was purged while "
							"being begun again", gid),
					 errhint("Retry the call.")));

		old_mode = tcc_spi_getstring(0, 1);
		old_status = tcc_spi_getstring(0, 2);
		old_owner = DatumGetObjectId(tcc_spi_getdatum(0, 3, &isnull));

		if (!has_privs_of_role(session.caller, old_owner))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("global transaction \"%s\" already exists", gid),
					 errdetail("It belongs to another role."),
					 errhint("Choose another gid, or pass NULL to have one "
							 "generated.")));
		if (strcmp(old_status, "trying") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("global transaction \"%s\" already exists", gid),
					 errdetail("It is %s; only a transaction still trying "
							   "can be begun again.", old_status),
					 errhint("Choose another gid, or pass NULL to have one "
							 "generated.")));
		if (strcmp(old_mode, mode) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("global transaction \"%s\" already exists with "
							"mode %s", gid, old_mode),
					 errhint("Begin it again with mode %s, or choose "
							 "another gid.", old_mode)));
	}

	tcc_spi_end(&session);

	/* the worker watches the deadline; make sure this database has one */
	tcc_wake_worker_at_commit();

	PG_RETURN_TEXT_P(cstring_to_text(gid));
}

/*
 * tcc_register_branch
 *		tcc.register_branch(gid, server, confirm_sql, cancel_sql, payload,
 *		branch_id): add a branch to a trying TCC transaction.
 */
Datum
tcc_register_branch(PG_FUNCTION_ARGS)
{
	char	   *branch_id = add_branch(fcinfo, true, "tcc.register_branch",
										   NULL);

	PG_RETURN_TEXT_P(cstring_to_text(branch_id));
}

/*
 * tcc_add_step
 *		tcc.add_step(gid, server, action_sql, compensate_sql, payload,
 *		step_id): append a step to a trying saga or msg transaction.
 */
Datum
tcc_add_step(PG_FUNCTION_ARGS)
{
	char	   *step_id = add_branch(fcinfo, false, "tcc.add_step", NULL);

	PG_RETURN_TEXT_P(cstring_to_text(step_id));
}

/*
 * tcc_try_register
 *		The first step of CALL tcc.try: register the branch, given the
 *		procedure's arguments (gid, server, try_sql, confirm_sql,
 *		cancel_sql, payload, branch_id), exactly as tcc.register_branch
 *		would, with every check it makes.  Returns the branch id and sets
 *		*owner to the transaction's owner, as whom the try runs.
 */
char *
tcc_try_register(FunctionCallInfo fcinfo, Oid *owner)
{
	/* tcc.register_branch's arguments, from tcc.try's */
	static const int from[6] = {0, 1, 3, 4, 5, 6};
	LOCAL_FCINFO(regfcinfo, 6);
	int			i;

	/* tcc.try's flinfo, so that errors about arguments name tcc.try */
	InitFunctionCallInfoData(*regfcinfo, fcinfo->flinfo, 6, InvalidOid,
							 NULL, NULL);
	for (i = 0; i < 6; i++)
		regfcinfo->args[i] = fcinfo->args[from[i]];

	return add_branch(regfcinfo, true, "tcc.try", owner);
}

/*
 * tcc_try_record
 *		The last step of CALL tcc.try: record the try's outcome, tried or
 *		try_failed with its error, under the transaction's row lock.
 *
 * Only a branch still registered is changed: if the transaction was rolled
 * back or timed out while the try ran, its branches are being cancelled
 * already, and the cancel (with the participant's fence) takes care of the
 * try whatever its outcome.
 */
void
tcc_try_record(TccCall *call)
{
	static SPIPlanPtr plan = NULL;
	TccSpiSession session;
	GlobalTx	tx;
	Oid			argtypes[8] = {TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', 'n', 'n', 'n', 'n', 'n'};
	bool		tried = (call->outcome == TCC_CALL_DONE);

	tcc_spi_begin(&session);
	tcc_commit_durably();
	tcc_lock_global_tx(&session, call->gid, &tx);

	values[0] = CStringGetTextDatum(call->gid);
	values[1] = CStringGetTextDatum(call->branch_id);
	values[2] = BoolGetDatum(tried);
	if (!tried)
	{
		tcc_error_params(call, &values[3], &nulls[3]);
		if (call->error == NULL)
		{
			values[3] = CStringGetTextDatum("the try returned false");
			nulls[3] = ' ';
		}
	}

	tcc_spi_exec(&plan,
				 "UPDATE tcc.branch"
				 "   SET status = CASE WHEN $3 THEN 'tried'"
				 "                ELSE 'try_failed' END,"
				 "       last_attempt_at = now(),"
				 "       last_error = $4, last_sqlstate = $5,"
				 "       last_detail = $6, last_hint = $7,"
				 "       last_context = $8,"
				 "       updated_at = now()"
				 " WHERE gid = $1 AND branch_id = $2"
				 "   AND status = 'registered'",
				 8, argtypes, values, nulls, false, 0);

	tcc_spi_end(&session);
}

/*
 * start_phase_two
 *		The common body of tcc.commit and tcc.submit: trying -> confirming.
 *
 * A TCC transaction has all its branches confirmed (the worker sends them
 * in registration order); a saga or msg transaction runs its steps one
 * after the other, so only the first becomes due.  A transaction with
 * nothing to run is confirmed at once.  Repeating the call once the
 * transaction is confirming or confirmed returns the status.
 */
static Datum
start_phase_two(FunctionCallInfo fcinfo, bool tcc_mode)
{
	const char *action = tcc_mode ? "commit" : "submit";
	TccSpiSession session;
	GlobalTx	tx;
	char	   *gid;

	gid = tcc_id_arg(fcinfo, 0, "gid");

	tcc_spi_begin(&session);
	tcc_commit_durably();
	tcc_lock_global_tx(&session, gid, &tx);
	tcc_check_mode(&tx, tcc_mode, tcc_mode ? "tcc.commit" : "tcc.submit",
			   tcc_mode ? "tcc.submit" : "tcc.commit");

	if (STATUS_IS(&tx, TCC_TRYING))
	{
		tcc_check_not_expired(&tx);
		if (tcc_mode)
		{
			static SPIPlanPtr plan = NULL;
			Oid			argtypes[1] = {TEXTOID};
			Datum		values[1];

			values[0] = CStringGetTextDatum(gid);
			if (tcc_spi_exec(&plan,
							 "SELECT branch_id FROM tcc.branch"
							 " WHERE gid = $1 AND status = 'try_failed'"
							 " ORDER BY seq LIMIT 1",
							 1, argtypes, values, NULL, false, 1) > 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("cannot commit global transaction \"%s\" "
								"because the try of branch \"%s\" failed",
								gid, tcc_spi_getstring(0, 1)),
						 errhint("Roll it back with tcc.rollback.")));
		}

		if (tx.branch_count == 0)
			tcc_set_global_status(&tx, TCC_CONFIRMED, NULL);
		else
		{
			tcc_set_global_status(&tx, TCC_CONFIRMING, NULL);
			tcc_set_branch_status(&tx, "confirming", tcc_mode ? 0 : 1);
		}
	}
	else if (!STATUS_IS(&tx, TCC_CONFIRMING) && !STATUS_IS(&tx, TCC_CONFIRMED))
		tcc_refuse_transition(&tx, action);

	tcc_spi_end(&session);
	tcc_wake_worker_at_commit();

	PG_RETURN_TEXT_P(cstring_to_text(tcc_status_name(tx.status)));
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
 *		tcc.rollback(gid, reason): trying -> cancelling.
 *
 * A TCC transaction's branches may have run their tries, so every branch is
 * cancelled (the worker goes in reverse registration order; the fence turns
 * a cancel whose try never ran into an empty rollback).  The steps of a saga
 * or msg transaction run only after submit, so one still trying has nothing
 * to undo: it is cancelled at once and its steps are marked skipped.
 */
Datum
tcc_rollback(PG_FUNCTION_ARGS)
{
	TccSpiSession session;
	GlobalTx	tx;
	char	   *gid;
	text	   *reason = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);

	gid = tcc_id_arg(fcinfo, 0, "gid");

	tcc_spi_begin(&session);
	tcc_commit_durably();
	tcc_lock_global_tx(&session, gid, &tx);

	if (STATUS_IS(&tx, TCC_TRYING))
	{
		if (tx.branch_count == 0)
			tcc_set_global_status(&tx, TCC_CANCELLED, reason);
		else if (MODE_IS_TCC(&tx))
		{
			tcc_set_global_status(&tx, TCC_CANCELLING, reason);
			tcc_set_branch_status(&tx, "cancelling", 0);
		}
		else
		{
			tcc_set_global_status(&tx, TCC_CANCELLED, reason);
			tcc_set_branch_status(&tx, "skipped", 0);
		}
	}
	else if (!STATUS_IS(&tx, TCC_CANCELLING) && !STATUS_IS(&tx, TCC_CANCELLED))
		tcc_refuse_transition(&tx, "roll back");

	tcc_spi_end(&session);
	tcc_wake_worker_at_commit();

	PG_RETURN_TEXT_P(cstring_to_text(tcc_status_name(tx.status)));
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
 *		tcc.retry(gid): a failed transaction resumes the phase it left.
 *
 * The branches that failed, and those still waiting in that phase, become
 * due now with their attempts reset; the ones that succeeded are left alone.
 */
Datum
tcc_retry(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr global_plan = NULL;
	static SPIPlanPtr branch_plan = NULL;
	TccSpiSession session;
	GlobalTx	tx;
	char	   *gid;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	gid = tcc_id_arg(fcinfo, 0, "gid");

	tcc_spi_begin(&session);
	tcc_commit_durably();
	tcc_lock_global_tx(&session, gid, &tx);

	if (!STATUS_IS(&tx, TCC_FAILED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot retry global transaction \"%s\" because it "
						"is %s", gid, tcc_status_name(tx.status)),
				 errdetail("Only a failed transaction can be retried.")));

	values[0] = CStringGetTextDatum(gid);
	tcc_spi_exec(&global_plan,
				 "UPDATE tcc.global_transaction"
				 "   SET status = failed_phase, failed_phase = NULL,"
				 "       last_error = NULL, updated_at = now()"
				 " WHERE gid = $1"
				 " RETURNING status",
				 1, argtypes, values, NULL, false, 0);
	tx.status = tcc_status_from_name(tcc_spi_getstring(0, 1));

	tcc_spi_exec(&branch_plan,
				 "UPDATE tcc.branch"
				 "   SET status = g.status, attempts = 0,"
				 "       next_attempt_at = now(), updated_at = now()"
				 "  FROM tcc.global_transaction g"
				 " WHERE g.gid = $1 AND tcc.branch.gid = $1"
				 "   AND tcc.branch.status IN ('failed', g.status)",
				 1, argtypes, values, NULL, false, 0);

	tcc_spi_end(&session);
	tcc_wake_worker_at_commit();

	PG_RETURN_TEXT_P(cstring_to_text(tcc_status_name(tx.status)));
}

/*
 * tcc_purge
 *		tcc.purge(older_than): delete the confirmed and cancelled
 *		transactions, of roles the caller is a member of, that finished more
 *		than older_than ago; returns how many.
 *
 * Failed transactions are never purged: they wait for a human.
 */
Datum
tcc_purge(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	TccSpiSession session;
	TimestampTz cutoff = tcc_older_than_arg(fcinfo, 0);
	Oid			argtypes[3] = {TIMESTAMPTZOID, OIDOID, BOOLOID};
	Datum		values[3];
	uint64		deleted;

	tcc_spi_begin(&session);

	/*
	 * The owner test goes through pg_roles because pg_has_role() fails for
	 * a role that no longer exists; the transactions of a dropped role are
	 * a superuser's to purge.
	 */
	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = ObjectIdGetDatum(session.caller);
	values[2] = BoolGetDatum(superuser_arg(session.caller));
	deleted = tcc_spi_exec(&plan,
						   "DELETE FROM tcc.global_transaction"
						   " WHERE finished_at < $1"
						   "   AND ($3 OR owner IN (SELECT oid FROM pg_roles"
						   "                         WHERE pg_has_role($2, oid,"
						   "                                           'USAGE')))",
						   3, argtypes, values, NULL, false, 0);

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
