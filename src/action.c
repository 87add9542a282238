/*-------------------------------------------------------------------------
 *
 * action.c
 *	  Running an action's SQL in this database (a branch with server
 *	  NULL): the one routine, with the one policy, for the try of CALL
 *	  tcc.try and for the worker's confirms, cancels, steps and
 *	  compensations.
 *
 * The policy, for every local action, in whichever process runs it:
 *
 * - identity: the global transaction's owner, never the worker's
 *	 superuser; the caller of CALL tcc.try has the owner's privileges
 *	 already, or it could not have registered the branch; an owner that
 *	 has been dropped fails the action for good (42704);
 * - security context: restricted, as functions in index expressions run
 *	 for maintenance commands, so the action can create no temporary
 *	 objects, LISTEN, nor change the session's role;
 * - search_path: the one a new session of the owner in this database
 *	 would start with (action_search_path), so that a try and the confirm
 *	 of the same branch resolve names alike, whatever the calling session
 *	 or the worker has set or was started with;
 * - timeout: tcc.call_timeout, as a statement timeout the action cannot
 *	 catch;
 * - planner: the server's settings, not those tcc's processes pin for
 *	 their own statements (tcc_worker_pin_session);
 * - settings: every setting the action changes is rolled back after it,
 *	 as ANALYZE does; and an error is the action's outcome, not the
 *	 caller's, because the action runs in a subtransaction.
 *
 * What else an action leaves in its session (session-level advisory
 * locks, prepared statements, sequence state) outlives the action's
 * transaction.  The worker's session serves every owner, so the worker
 * drops it after each action (local.c); CALL tcc.try's session is the
 * caller's own, whose state is the caller's, and is left alone.
 *
 * src/action.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_db_role_setting.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "tcc.h"

/* what running an action under the policy changed, to be put back */
typedef struct ActionPolicy
{
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	TimestampTz caller_timeout; /* the caller's statement timeout, or 0 */
	TimestampTz own_timeout;	/* tcc.call_timeout's, when armed, or 0 */
} ActionPolicy;

/*
 * said_false
 *		Whether the statement just run returned a single boolean false, an
 *		action's way to say "not done" (doc/design.md, Running an action).
 */
static bool
said_false(void)
{
	bool		isnull;
	Datum		result;

	if (SPI_tuptable == NULL || SPI_processed != 1 ||
		SPI_tuptable->tupdesc->natts != 1 ||
		TupleDescAttr(SPI_tuptable->tupdesc, 0)->atttypid != BOOLOID)
		return false;

	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						   &isnull);
	return !isnull && !DatumGetBool(result);
}

/*
 * run_action
 *		Run call's action here, through SPI (connected by the caller), with
 *		its three typed parameters, and set its outcome: done, or not done
 *		when it returned a single false.  Errors propagate; the caller runs
 *		this in a subtransaction to record them.
 *
 * The text is checked again as it was at registration, and run with the
 * same standard_conforming_strings, on, that the check assumed: SPI runs
 * every statement of a string, so text that the two read differently
 * could otherwise run as two statements.  A text that fails the check now
 * (rows from before the check existed, say) can never succeed, and the
 * call says so in call->permanent (action_failed takes that back
 * for an error that is not about the text).  Settings the action itself
 * makes are rolled back by the caller (tcc_run_action_here).
 */
static void
run_action(TccCall *call)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			nestlevel;
	int			rc;

	call->permanent = true;
	tcc_check_action_sql(call->sql, "the action");
	call->permanent = false;

	nestlevel = tcc_pin_action_settings();

	values[0] = CStringGetTextDatum(call->gid);
	values[1] = CStringGetTextDatum(call->branch_id);
	if (call->payload)
		values[2] = DirectFunctionCall1(jsonb_in,
										CStringGetDatum(call->payload));
	else
		nulls[2] = 'n';

	rc = SPI_execute_plan(tcc_action_plan(call->owner, call->sql),
						  values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s",
			 SPI_result_code_string(rc));

	call->outcome = said_false() ? TCC_CALL_NOT_DONE : TCC_CALL_DONE;

	/* commit: the pinned setting reverts, the action's own SETs stay */
	AtEOXact_GUC(true, nestlevel);
}

/*
 * action_failed
 *		In the PG_CATCH of an action run by run_action in an
 *		internal subtransaction: roll the subtransaction back, return to
 *		oldcontext and oldowner (those of the caller before the
 *		subtransaction began), and make the error call's outcome, copied
 *		into the call's own memory.
 */
static void
action_failed(TccCall *call, MemoryContext oldcontext,
			  ResourceOwner oldowner)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(oldcontext);
	edata = CopyErrorData();
	FlushErrorState();

	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;

	call->outcome = TCC_CALL_ERROR;
	if (call->permanent && !tcc_error_is_about_text(edata->sqlerrcode))
		call->permanent = false;
	call->error = MemoryContextStrdup(GetMemoryChunkContext(call),
									  edata->message);
	call->detail = edata->detail ?
		MemoryContextStrdup(GetMemoryChunkContext(call), edata->detail) :
		NULL;
	call->hint = edata->hint ?
		MemoryContextStrdup(GetMemoryChunkContext(call), edata->hint) : NULL;
	call->context = edata->context ?
		MemoryContextStrdup(GetMemoryChunkContext(call), edata->context) :
		NULL;
	strlcpy(call->sqlstate, unpack_sql_state(edata->sqlerrcode),
			sizeof(call->sqlstate));
	FreeErrorData(edata);
}

/*
 * search_path_in
 *		The value of search_path in setconfig, a pg_db_role_setting array of
 *		"name=value" texts, in palloc'd memory, or NULL.
 */
static char *
search_path_in(ArrayType *setconfig)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;

	deconstruct_array(setconfig, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	for (i = 0; i < nelems; i++)
	{
		char	   *name;
		char	   *value;
		char	   *path = NULL;

		if (nulls[i])
			continue;

		/* ParseLongOption mallocs both, as guc.c's ProcessGUCArray knows */
		ParseLongOption(TextDatumGetCString(elems[i]), &name, &value);
		if (value != NULL && pg_strcasecmp(name, "search_path") == 0)
			path = pstrdup(value);
		free(name);
		if (value)
			free(value);
		if (path)
			return path;
	}
	return NULL;
}

/*
 * configured_search_path
 *		The search_path that ALTER ROLE or ALTER DATABASE set for role roleid
 *		in database databaseid (either InvalidOid for all), or NULL; rel is
 *		pg_db_role_setting, opened by the caller.
 */
static char *
configured_search_path(Relation rel, Oid databaseid, Oid roleid)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *path = NULL;

	ScanKeyInit(&keys[0], Anum_pg_db_role_setting_setdatabase,
				BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(databaseid));
	ScanKeyInit(&keys[1], Anum_pg_db_role_setting_setrole,
				BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(roleid));
	scan = systable_beginscan(rel, DbRoleSettingDatidRolidIndexId, true,
							  NULL, 2, keys);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		setconfig = heap_getattr(tuple,
											 Anum_pg_db_role_setting_setconfig,
											 RelationGetDescr(rel), &isnull);

		if (!isnull)
			path = search_path_in(DatumGetArrayTypeP(setconfig));
	}
	systable_endscan(scan);
	return path;
}

/*
 * file_search_path
 *		The search_path that the configuration files set (postgresql.conf,
 *		and postgresql.auto.conf for ALTER SYSTEM), or NULL.
 *
 * Read from the files themselves, as the pg_file_settings view does: this
 * backend's own value hides theirs once a database or role setting or the
 * client's connection options replaced it.  The files are read as they
 * are now, which is what every backend has applied since the last reload
 * (a file changed but not reloaded yet counts early; no backend acts on
 * that for long).
 */
static char *
file_search_path(void)
{
	ConfigVariable *head = NULL;
	ConfigVariable *tail = NULL;
	ConfigVariable *item;
	char	   *path = NULL;

	(void) ParseConfigFile(ConfigFileName, true, NULL, 0, 0, DEBUG1,
						   &head, &tail);
	(void) ParseConfigFile(PG_AUTOCONF_FILENAME, false, NULL, 0, 0, DEBUG1,
						   &head, &tail);
	for (item = head; item != NULL; item = item->next)
		if (!item->ignore && pg_strcasecmp(item->name, "search_path") == 0)
			path = item->value;	/* the last one wins */
	if (path)
		path = pstrdup(path);
	FreeConfigVariables(head);
	return path;
}

/*
 * server_search_path_value
 *		search_path as the server's configuration sets it, the same in every
 *		backend: this backend's reset value when that came from the
 *		configuration files or the server's command line (its reset source
 *		says so), else what the files say (file_search_path), else
 *		PostgreSQL's built-in default.
 *
 * The setting's entry is found once per backend: the entries stay where
 * they are, only the array that points to them grows.
 */
static const char *
server_search_path_value(void)
{
	static struct config_string *conf = NULL;
	char	   *path;

	if (conf == NULL)
	{
		struct config_generic **vars = get_guc_variables();
		int			nvars = GetNumConfigOptions();
		int			i;

		for (i = 0; i < nvars && conf == NULL; i++)
			if (strcmp(vars[i]->name, "search_path") == 0)
				conf = (struct config_string *) vars[i];
		if (conf == NULL)
			elog(ERROR, "search_path is not a setting");
	}

	if (conf->gen.reset_source <= PGC_S_ARGV)
		return conf->reset_val;
	path = file_search_path();
	return path ? path : conf->boot_val;
}

/*
 * action_search_path
 *		The search_path a new session of role owner in this database would
 *		start with: the setting for the role in this database, for the role,
 *		for this database, for every role (PostgreSQL's own order of
 *		precedence), else the server's.
 *
 * Found once per transaction and owner: a runner's batch is one
 * transaction of one owner's actions, and the lookup (up to four index
 * scans of pg_db_role_setting, which has no syscache to say when it
 * changed) cost each action of it as much as a statement.  A setting
 * committed while a batch runs applies from the next batch on, as it
 * applies to sessions that start after it.
 */
static const char *
action_search_path(Oid owner)
{
	static LocalTransactionId path_lxid = InvalidLocalTransactionId;
	static Oid	path_owner = InvalidOid;
	static char *path_found = NULL; /* in TopTransactionContext */
	const Oid	levels[4][2] = {
		{MyDatabaseId, owner}, {InvalidOid, owner},
		{MyDatabaseId, InvalidOid}, {InvalidOid, InvalidOid}
	};
	Relation	rel;
	const char *path = NULL;
	int			i;

	if (path_lxid == MyProc->lxid && path_owner == owner)
		return path_found;

	rel = table_open(DbRoleSettingRelationId, AccessShareLock);
	for (i = 0; i < lengthof(levels) && path == NULL; i++)
		path = configured_search_path(rel, levels[i][0], levels[i][1]);
	table_close(rel, AccessShareLock);

	path_found = MemoryContextStrdup(TopTransactionContext,
									 path ? path : server_search_path_value());
	path_owner = owner;
	path_lxid = MyProc->lxid;
	return path_found;
}

/*
 * unpin_planner
 *		Give the action the server's values of the planner settings that
 *		tcc's processes pin for their own statements (tcc_planner_pins):
 *		those are for tcc's statements, not for the owner's.
 */
static void
unpin_planner(void)
{
	int			i;

	for (i = 0; tcc_planner_pins[i].name != NULL; i++)
	{
		const char *name = tcc_planner_pins[i].name;
		char	   *reset = pstrdup(GetConfigOptionResetString(name));

		if (strcmp(reset, GetConfigOption(name, false, false)) != 0)
			(void) set_config_option(name, reset, PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
		pfree(reset);
	}
}

/*
 * enter_policy
 *		Make the current subtransaction run call's action under the policy
 *		of the file header, saving in *policy what to put back.
 *
 * tcc.call_timeout is armed as the statement timeout, since that setting
 * arms its timer only for a client's statement; in CALL tcc.try, the
 * caller's own statement timeout, when sooner, stays in force instead
 * (tcc_run_action_here decides which).
 */
static void
enter_policy(TccCall *call, ActionPolicy *policy)
{
	const char *path = action_search_path(call->owner);

	GetUserIdAndSecContext(&policy->save_userid, &policy->save_sec_context);
	SetUserIdAndSecContext(call->owner,
						   policy->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	policy->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	unpin_planner();

	if (policy->own_timeout != 0)
		enable_timeout_at(STATEMENT_TIMEOUT, policy->own_timeout);
}

/*
 * restore_timeout
 *		Disarm tcc.call_timeout's timer, when armed, and re-arm the caller's
 *		in its place.  A caller's deadline that passed meanwhile (the action
 *		caught tcc's cancel and ran on) fires at once, as it would have
 *		without tcc; a caller's timer that was never replaced is left alone.
 */
static void
restore_timeout(ActionPolicy *policy)
{
	if (policy->own_timeout == 0)
		return;
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (policy->caller_timeout != 0)
		enable_timeout_at(STATEMENT_TIMEOUT, policy->caller_timeout);
}

/*
 * tcc_run_action_here
 *		Run call's action (server NULL) in this database under the policy of
 *		the file header, and set its outcome.
 *
 * In a subtransaction, so that its error becomes the outcome rather than
 * the caller's; the subtransaction's abort restores the user id and the
 * settings when the action fails, and its release is preceded by that
 * restoring when it succeeds.
 */
void
tcc_run_action_here(TccCall *call)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ActionPolicy policy;

	/*
	 * The owner may have been dropped since (its transactions are then a
	 * superuser's): there is nobody to run the action as, and never will be.
	 */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(call->owner)))
	{
		call->outcome = TCC_CALL_ERROR;
		call->error = MemoryContextStrdup(GetMemoryChunkContext(call),
										  psprintf("role with OID %u, which "
												   "owns the global "
												   "transaction, does not "
												   "exist", call->owner));
		strlcpy(call->sqlstate, "42704", sizeof(call->sqlstate));
		call->permanent = true;
		return;
	}

	/*
	 * Which statement timeout applies is settled here, before PG_TRY, so
	 * that PG_CATCH reads nothing that PG_TRY changed.
	 */
	policy.caller_timeout = get_timeout_active(STATEMENT_TIMEOUT) ?
		get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
	policy.own_timeout = 0;
	if (tcc_call_timeout > 0)
	{
		TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  tcc_call_timeout);

		if (policy.caller_timeout == 0 || end < policy.caller_timeout)
			policy.own_timeout = end;
	}

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		enter_policy(call, &policy);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		run_action(call);
		SPI_finish();

		restore_timeout(&policy);
		AtEOXact_GUC(false, policy.nestlevel);
		SetUserIdAndSecContext(policy.save_userid, policy.save_sec_context);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		restore_timeout(&policy);
		action_failed(call, oldcontext, oldowner);
	}
	PG_END_TRY();
}
