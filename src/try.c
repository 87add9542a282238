/*-------------------------------------------------------------------------
 *
 * try.c
 *	  CALL tcc.try: a TCC branch's try, run for SQL-only callers.
 *
 * A client that speaks only SQL cannot easily run a try on another
 * database itself.  CALL tcc.try does it in three steps, each its own
 * transaction:
 *
 *	1. register the branch (as tcc.register_branch would) and commit,
 *	   durably whatever synchronous_commit says (durable.c), so that the
 *	   coordinator knows of the branch before the participant does:
 *	   whatever crashes next, the branch is cancelled (or confirmed) in the
 *	   end and the participant's try is never orphaned;
 *	2. run the try on the participant (over libpq, with the connection
 *	   cache and the user mapping of the transaction's owner that the
 *	   worker uses; or, for a local branch, here, as the owner, under the
 *	   policy of every local action, action.c);
 *	3. record the outcome, tried or try_failed, and commit; a failed try's
 *	   error is then raised to the caller with the participant's SQLSTATE.
 *
 * A local try runs in step 3's transaction, so it commits exactly when its
 * outcome is recorded.  A remote try commits on the participant in step 2;
 * if the caller is cancelled, or the coordinator crashes, before step 3,
 * the branch stays registered and its outcome unknown: the transaction is
 * then rolled back (by the caller, or by the worker at its deadline) and
 * the participant's fence turns the cancel into an empty rollback if the
 * try never ran, or into a refusal of a try that arrives late.
 *
 * Committing in the middle is what a procedure called non-atomically may
 * do; inside a transaction block (or from a function) that is impossible,
 * and tcc.try refuses to run rather than call the participant about a
 * registration that might still be rolled back.
 *
 * src/try.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "state.h"
#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_try);

/*
 * report_failed_try
 *		Raise the error of call's failed try to the caller: the
 *		participant's own message, SQLSTATE, detail, hint (else ours: roll
 *		back) and context, with where it happened, as postgres_fdw's
 *		pgfdw_report_error passes a remote error on.
 */
static void
report_failed_try(TccCall *call)
{
	if (call->outcome == TCC_CALL_NOT_DONE)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("try of branch \"%s\" of global transaction \"%s\" "
						"returned false", call->branch_id, call->gid),
				 errdetail("The participant reported that it did not do "
						   "the try."),
				 errhint("Roll the global transaction back with "
						 "tcc.rollback.")));

	/* libpq's own failures all have one; be safe */
	if (call->sqlstate[0] == '\0')
		strlcpy(call->sqlstate, "08006", sizeof(call->sqlstate));

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(call->sqlstate[0], call->sqlstate[1],
								   call->sqlstate[2], call->sqlstate[3],
								   call->sqlstate[4])),
			 errmsg_internal("%s", call->error),
			 call->detail ? errdetail_internal("%s", call->detail) : 0,
			 call->hint ? errhint("%s", call->hint) :
			 errhint("Roll the global transaction back with tcc.rollback."),
			 call->context ? errcontext("%s", call->context) : 0,
			 errcontext("try of branch \"%s\" of global transaction \"%s\" "
						"on %s", call->branch_id, call->gid,
						call->server ?
						psprintf("server \"%s\"", call->server) :
						"this database")));
}

/*
 * record_try
 *		Step 3: record the try's outcome, tried or try_failed with its
 *		error, under the transaction's row lock.
 *
 * Only a branch still registered is changed: if the transaction was rolled
 * back or timed out while the try ran, its branches are being cancelled
 * already, and the cancel (with the participant's fence) takes care of the
 * try whatever its outcome.
 */
static void
record_try(TccCall *call)
{
	TccSpiSession session;
	GlobalTx	tx;
	bool		tried = (call->outcome == TCC_CALL_DONE);

	if (call->outcome == TCC_CALL_NOT_DONE)
		call->error = "the try returned false";

	tcc_spi_begin(&session);
	tcc_commit_durably();
	tcc_lock_global_tx(&session, call->gid, &tx);
	(void) tcc_record_attempt(&tx, call,
							  tried ? BRANCH_TRIED : BRANCH_TRY_FAILED,
							  -1, !tried);
	tcc_spi_end(&session);
}

/*
 * result_row
 *		The procedure's result: its one output argument, branch_id.
 */
static Datum
result_row(FunctionCallInfo fcinfo, const char *branch_id)
{
	TupleDesc	tupdesc;
	Datum		values[1];
	bool		nulls[1] = {false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	values[0] = CStringGetTextDatum(branch_id);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * new_try_call
 *		Check tcc.try's own arguments and make the call of its try, in the
 *		procedure's memory: the call, and the error it may bring back, must
 *		outlive the commits and SPI_finish.
 *
 * It is filled in now, while there is a snapshot: an argument may still be
 * toasted (a large payload read from a table), and fetching it after the
 * first commit would fail.
 */
static TccCall *
new_try_call(FunctionCallInfo fcinfo)
{
	TccCall    *call;

	tcc_check_not_null(fcinfo, 0, "gid");
	tcc_check_not_null(fcinfo, 2, "try_sql");

	call = palloc0(sizeof(TccCall));
	call->sql = text_to_cstring(PG_GETARG_TEXT_PP(2));
	tcc_check_action_sql(call->sql, "try_sql");
	call->gid = text_to_cstring(PG_GETARG_TEXT_PP(0));
	call->ran_in = BRANCH_REGISTERED;
	call->server = PG_ARGISNULL(1) ? NULL :
		text_to_cstring(PG_GETARG_TEXT_PP(1));
	call->payload = PG_ARGISNULL(5) ? NULL :
		DatumGetCString(DirectFunctionCall1(jsonb_out,
											PG_GETARG_DATUM(5)));
	call->outcome = TCC_CALL_PENDING;
	return call;
}

/*
 * run_try
 *		Step 2: run call's try here (action.c) or on its participant, whose
 *		server may have been dropped or replaced since the registration;
 *		what the outcome needs is copied to callcxt.
 */
static void
run_try(TccCall *call, MemoryContext callcxt)
{
	ForeignServer *server;
	TccRefusal	refusal;

	if (call->server == NULL)
		tcc_run_action_here(call);
	else if (!tcc_participant_server(call->server, &server, &refusal))
	{
		call->outcome = TCC_CALL_ERROR;
		call->error = MemoryContextStrdup(callcxt, refusal.message);
		strlcpy(call->sqlstate, refusal.sqlstate, sizeof(call->sqlstate));
	}
	else
	{
		call->serverid = server->serverid;
		tcc_remote_call(call);
	}
}

/*
 * tcc_try
 *		CALL tcc.try(gid, server, try_sql, confirm_sql, cancel_sql, payload,
 *		branch_id): register a TCC branch, run its try, record the outcome.
 *		See the file header.  branch_id is INOUT: the generated id comes
 *		back when NULL is passed.
 */
Datum
tcc_try(PG_FUNCTION_ARGS)
{
	CallContext *callcontext = (CallContext *) fcinfo->context;
	MemoryContext callcxt = CurrentMemoryContext;
	TccCall    *call;
	char	   *branch_id;

	if (callcontext == NULL || !IsA(callcontext, CallContext) ||
		callcontext->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("tcc.try cannot run inside a transaction block"),
				 errdetail("It commits the branch's registration before it "
						   "calls the participant, and the outcome after."),
				 errhint("CALL it on its own, outside BEGIN ... COMMIT and "
						 "not from a function; inside a transaction, use "
						 "tcc.register_branch and run the try yourself.")));

	call = new_try_call(fcinfo);

	/*
	 * A non-atomic SPI connection may commit; its memory lives in the
	 * portal, across the commits, until SPI_finish.
	 */
	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect_ext failed");

	/*
	 * 1. the registration, durable before the participant hears of it
	 * (registering asks for a durable commit, see durable.c)
	 */
	branch_id = tcc_try_register(fcinfo, &call->owner);
	call->branch_id = MemoryContextStrdup(callcxt, branch_id);
	SPI_commit();

	/* 2. the try */
	run_try(call, callcxt);

	/* 3. the outcome */
	record_try(call);
	SPI_commit();

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	MemoryContextSwitchTo(callcxt);

	if (call->outcome != TCC_CALL_DONE)
		report_failed_try(call);

	PG_RETURN_DATUM(result_row(fcinfo, call->branch_id));
}
