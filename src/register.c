/*-------------------------------------------------------------------------
 *
 * register.c
 *	  Adding a branch to a trying global transaction: tcc.register_branch,
 *	  tcc.add_step and the first step of CALL tcc.try, which all check
 *	  their arguments, the transaction and the participant in the same
 *	  way, here.
 *
 * Arguments are checked before anything is locked or written; the
 * transaction is then locked and must be trying, of the right mode and
 * within its deadline; a remote branch's participant must be usable by
 * the transaction's owner (participant.c).  The branch takes the next
 * sequence number of its transaction (branch.c); the transaction's row is
 * only locked, not written, and that lock is what keeps a concurrent
 * commit from leaving the branch behind (global_tx.c, file header).
 *
 * src/register.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "foreign/foreign.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "state.h"
#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_register_branch);
PG_FUNCTION_INFO_V1(tcc_add_step);

/* A branch to add, from the function's arguments */
typedef struct NewBranch
{
	bool		tcc_mode;		/* a TCC branch, not a saga or msg step */
	const char *function;		/* the function called, for messages */
	char	   *gid;
	char	   *branch_id;		/* or NULL, to generate one */
	text	   *action_sql;
	text	   *undo_sql;		/* or NULL */
	Jsonb	   *payload;		/* or NULL */
	ForeignServer *server;		/* or NULL, for a local branch */
} NewBranch;

/*
 * read_branch_args
 *		Check the arguments (gid, server, action, undo, payload, id) of
 *		fcinfo and set *nb from them.
 */
static void
read_branch_args(FunctionCallInfo fcinfo, NewBranch *nb)
{
	const char *action_arg = nb->tcc_mode ? "confirm_sql" : "action_sql";
	const char *undo_arg = nb->tcc_mode ? "cancel_sql" : "compensate_sql";
	TccRefusal	refusal;

	nb->gid = tcc_id_arg(fcinfo, 0, "gid");

	tcc_check_not_null(fcinfo, 2, action_arg);
	nb->action_sql = PG_GETARG_TEXT_PP(2);
	tcc_check_action_sql(text_to_cstring(nb->action_sql), action_arg);

	if (nb->tcc_mode)
		tcc_check_not_null(fcinfo, 3, undo_arg);
	nb->undo_sql = NULL;
	if (!PG_ARGISNULL(3))
	{
		nb->undo_sql = PG_GETARG_TEXT_PP(3);
		tcc_check_action_sql(text_to_cstring(nb->undo_sql), undo_arg);
	}

	nb->payload = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	nb->branch_id = PG_ARGISNULL(5) ? NULL :
		tcc_check_id(PG_GETARG_TEXT_PP(5),
					 nb->tcc_mode ? "branch_id" : "step_id", true);

	nb->server = NULL;
	if (!PG_ARGISNULL(1) &&
		!tcc_participant_server(text_to_cstring(PG_GETARG_TEXT_PP(1)),
								&nb->server, &refusal))
		tcc_refuse(&refusal);
}

/*
 * check_branch_target
 *		Refuse to add nb to tx, locked, unless tx is a trying transaction
 *		of nb's kind within its deadline whose owner may use nb's
 *		participant.
 */
static void
check_branch_target(GlobalTx *tx, NewBranch *nb)
{
	TccRefusal	refusal;

	tcc_check_mode(tx, nb->tcc_mode, nb->function,
				   nb->tcc_mode ? "tcc.add_step" : "tcc.register_branch");
	if (!STATUS_IS(tx, TCC_TRYING))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot add to global transaction \"%s\" because it "
						"is %s", tx->gid, tcc_status_name(tx->status)),
				 errdetail("%s works only while the transaction is trying.",
						   nb->function)));
	tcc_check_not_expired(tx);
	if (nb->server != NULL)
	{
		List	   *mapping;
		Oid			umid;

		/* phase two checks the mapping again: it may change meanwhile */
		if (!tcc_participant_usage(tx->owner, tx->gid, nb->server,
								   &refusal) ||
			!tcc_participant_mapping(tx->owner, tx->gid, nb->server,
									 &mapping, &umid, &refusal))
			tcc_refuse(&refusal);
	}
	if (nb->undo_sql != NULL && tx->mode == TCC_MODE_MSG)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("global transaction \"%s\" is a msg transaction, "
						"which has no compensations", tx->gid),
				 errdetail("Steps of a msg transaction are retried until "
						   "they succeed and are never undone."),
				 errhint("Pass NULL as compensate_sql, or use mode saga.")));
}

/*
 * insert_new_branch
 *		Add nb to tx, locked and checked, and return its id.
 *
 * A generated id is the sequence number, which reads well in the views.
 * Should the user have taken that id for another branch already, fall
 * back to a UUID rather than fail a call that named no id.
 */
static char *
insert_new_branch(GlobalTx *tx, NewBranch *nb)
{
	const char *server = nb->server ? nb->server->servername : NULL;
	char	   *branch_id;

	branch_id = tcc_insert_branch(tx, nb->branch_id, server, nb->action_sql,
								  nb->undo_sql, nb->payload);
	if (branch_id == NULL && nb->branch_id != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("%s \"%s\" already exists in global transaction "
						"\"%s\"", nb->tcc_mode ? "branch" : "step",
						nb->branch_id, tx->gid),
				 errhint("Give each %s of a transaction its own id, or "
						 "pass NULL to have one generated.",
						 nb->tcc_mode ? "branch" : "step")));
	while (branch_id == NULL)
		branch_id = tcc_insert_branch(tx, tcc_generate_gid(), server,
									  nb->action_sql, nb->undo_sql,
									  nb->payload);
	return branch_id;
}

/*
 * add_branch
 *		The common body of tcc.register_branch, tcc.add_step and the
 *		registration of CALL tcc.try (function names the caller, for
 *		messages); returns the branch id and sets *owner (when not NULL) to
 *		the transaction's owner.
 */
static char *
add_branch(FunctionCallInfo fcinfo, bool tcc_mode, const char *function,
		   Oid *owner)
{
	TccSpiSession session;
	GlobalTx	tx;
	NewBranch	nb;
	char	   *branch_id;

	nb.tcc_mode = tcc_mode;
	nb.function = function;
	read_branch_args(fcinfo, &nb);

	tcc_spi_begin(&session);
	tcc_commit_durably();
	tcc_lock_global_tx(&session, nb.gid, &tx);
	check_branch_target(&tx, &nb);

	/* the id may live in SPI's memory, which tcc_spi_end frees */
	branch_id = tcc_spi_strdup(insert_new_branch(&tx, &nb));
	tcc_spi_end(&session);

	if (owner != NULL)
		*owner = tx.owner;
	return branch_id;
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
