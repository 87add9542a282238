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
 * own plan cache at work, with its rules: it is planned again when an
 * object it uses changes, when search_path differs from the one it was
 * made under (every owner has its own, action.c), or when row security
 * applies and the role differs; privileges are checked at each execution
 * as the role that runs it.  It is not something an action can see or
 * set, so it does not make one call's session less clean for the next.
 * The key holds the owner all the same, so that owners whose search_path
 * differ do not plan each other's texts over again in turn.
 *
 * At most ACTION_PLANS_MAX plans are kept, and no text longer than
 * ACTION_PLAN_MAX_LEN; past that the cache starts again empty, and a
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
#include "utils/memutils.h"

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
		SPI_freeplan(entry->plan);
	hash_destroy(action_plans);
	action_plans = NULL;
	MemoryContextReset(action_plan_texts);
}

/*
 * make_cache
 *		Create the empty cache, and the memory context its texts live in.
 */
static void
make_cache(void)
{
	HASHCTL		ctl;

	if (action_plan_texts == NULL)
		action_plan_texts = AllocSetContextCreate(TopMemoryContext,
												  "tcc action plan texts",
												  ALLOCSET_DEFAULT_SIZES);
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

	if (action_plans == NULL)
		make_cache();
	memset(&key, 0, sizeof(key));
	key.owner = owner;
	key.hash = hash_bytes((const unsigned char *) sql, (int) len);
	entry = hash_search(action_plans, &key, HASH_FIND, NULL);
	if (entry != NULL && strcmp(entry->sql, sql) == 0)
		return entry->plan;

	plan = SPI_prepare(sql, 3, action_param_types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");

	if (entry == NULL &&
		hash_get_num_entries(action_plans) >= ACTION_PLANS_MAX)
	{
		forget_all();
		make_cache();
	}
	entry = hash_search(action_plans, &key, HASH_ENTER, &found);
	if (found)
		SPI_freeplan(entry->plan);	/* another text with the same hash */
	entry->sql = MemoryContextStrdup(action_plan_texts, sql);
	entry->plan = plan;
	return plan;
}
