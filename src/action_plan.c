/*-------------------------------------------------------------------------
 *
 * action_plan.c
 *	  The prepared plans of local actions that a process keeps, per owner
 *	  and SQL text, so that an action run again is not parsed, analyzed and
 *	  planned again each time.
 *
 * An application registers the same few texts over and over, and a
 * runner runs each of them thousands of times; parsing and planning a
 * one-line action cost as much as running it.  A kept plan is PostgreSQL's
 * own plan cache at work, with the rules of a prepared statement: it is
 * planned again when an object it uses changes or when search_path
 * differs from the one it was made under (every owner has its own,
 * action.c); plan_cache_mode decides between custom and generic plans;
 * table privileges are checked on every run, as the role that runs it.
 * It is not something an action can see or set, so it does not make one
 * call's session less clean for the next.  The key holds the owner all
 * the same, so that owners whose search_path differ do not plan each
 * other's texts over again in turn.
 *
 * Row security is decided when a statement is analyzed: which policies
 * apply, and whether the role bypasses them (BYPASSRLS, owning the table).
 * PostgreSQL's plan cache analyzes such a statement again when that may
 * have changed (013 checks a revoked BYPASSRLS); so that this does not rest
 * on how it learns of it, any change to a role or to a role's memberships
 * (pg_authid, pg_auth_members) also makes this process drop every kept
 * plan before it runs its next action (action_plans_stale), as if every
 * action were planned anew, which also covers an owner dropped and its
 * OID reused.  The drop waits for the next action because an invalidation
 * can arrive while a kept plan runs.
 *
 * At most ACTION_PLANS_MAX plans are kept in a process, and no text longer
 * than ACTION_PLAN_MAX_LEN; past that the cache starts again empty, and a
 * longer text is prepared for its one run.
 *
 * src/action_plan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "tcc.h"

#define ACTION_PLANS_MAX	128
#define ACTION_PLAN_MAX_LEN	8192

typedef struct ActionPlanKey
{
	Oid			owner;
	uint32		hash;			/* of the text */
} ActionPlanKey;

typedef struct ActionPlan
{
	ActionPlanKey key;			/* hash key: must be first */
	char	   *sql;			/* the text; another with the same key
								 * replaces it */
	SPIPlanPtr	plan;			/* kept (SPI_keepplan) */
} ActionPlan;

/* the three parameters of every action: $1 gid, $2 branch id, $3 payload */
static Oid	action_param_types[3] = {TEXTOID, TEXTOID, JSONBOID};

static HTAB *action_plans = NULL;
static MemoryContext action_plan_texts = NULL;

/* a role or membership changed since the plans were made (file header) */
static bool action_plans_stale = false;

/*
 * forget_all
 *		Free every kept plan and start again with an empty cache.
 */
static void
forget_all(void)
{
	HASH_SEQ_STATUS status;
	ActionPlan *entry;

	hash_seq_init(&status, action_plans);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->plan)
			SPI_freeplan(entry->plan);
	hash_destroy(action_plans);
	action_plans = NULL;
	MemoryContextReset(action_plan_texts);
}

/*
 * roles_changed
 *		Syscache callback for pg_authid and pg_auth_members: the kept plans
 *		are to be dropped before the next action (see the file header).
 */
static void
roles_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	action_plans_stale = true;
}

/*
 * make_cache
 *		Create the empty cache, and, the first time, the memory context its
 *		texts live in and the callbacks that tell of changed roles.
 */
static void
make_cache(void)
{
	HASHCTL		ctl;

	if (action_plan_texts == NULL)
	{
		action_plan_texts = AllocSetContextCreate(TopMemoryContext,
												  "tcc action plan texts",
												  ALLOCSET_DEFAULT_SIZES);
		CacheRegisterSyscacheCallback(AUTHOID, roles_changed, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, roles_changed,
									  (Datum) 0);
	}
	action_plans_stale = false;
	ctl.keysize = sizeof(ActionPlanKey);
	ctl.entrysize = sizeof(ActionPlan);
	ctl.hcxt = TopMemoryContext;
	action_plans = hash_create("tcc action plans", ACTION_PLANS_MAX, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * tcc_action_plan
 *		The plan of sql, an action of owner with its three parameters,
 *		under the settings in force (the caller runs it under the policy of
 *		action.c, SPI connected): a kept one when this process has prepared
 *		the text for owner before, else a new one, kept when it fits.
 *
 * Preparing it raises the errors of parse analysis (an unknown table, a
 * parameter of the wrong type), which are the action's; nothing is kept
 * then.
 */
SPIPlanPtr
tcc_action_plan(Oid owner, const char *sql)
{
	size_t		len = strlen(sql);
	ActionPlanKey key;
	ActionPlan *entry;
	SPIPlanPtr	plan;
	char	   *copy;
	bool		found;

	if (len > ACTION_PLAN_MAX_LEN)
	{
		/* freed by the caller's SPI_finish, with the rest of its memory */
		plan = SPI_prepare(sql, 3, action_param_types);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		return plan;
	}

	if (action_plans != NULL && action_plans_stale)
		forget_all();
	if (action_plans == NULL)
		make_cache();
	memset(&key, 0, sizeof(key));
	key.owner = owner;
	key.hash = hash_bytes((const unsigned char *) sql, (int) len);
	entry = hash_search(action_plans, &key, HASH_FIND, NULL);
	if (entry != NULL && entry->plan != NULL && strcmp(entry->sql, sql) == 0)
		return entry->plan;

	plan = SPI_prepare(sql, 3, action_param_types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));

	/*
	 * What can fail (running out of memory) is done before the plan is
	 * kept, so that a failure leaves neither a kept plan nobody frees nor
	 * an entry whose plan was freed.
	 */
	if (entry == NULL &&
		hash_get_num_entries(action_plans) >= ACTION_PLANS_MAX)
	{
		forget_all();
		make_cache();
	}
	copy = MemoryContextStrdup(action_plan_texts, sql);
	entry = hash_search(action_plans, &key, HASH_ENTER, &found);
	if (!found)
	{
		entry->sql = NULL;
		entry->plan = NULL;
	}
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");

	/* a text that had the same key gives way */
	if (entry->plan)
		SPI_freeplan(entry->plan);
	if (entry->sql)
		pfree(entry->sql);
	entry->sql = copy;
	entry->plan = plan;
	return plan;
}
