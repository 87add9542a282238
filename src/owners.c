/*-------------------------------------------------------------------------
 *
 * owners.c
 *	  A dispatcher's work per owner: how many of each owner's branches it
 *	  has found due and not yet released, each owner's remote calls waiting
 *	  to be sent, and the turns in which owners send them; and the queue of
 *	  calls both this file and local_pool.c keep per owner.
 *
 * Owners are kept apart in two ways.  No owner may have more than
 * TCC_MAX_PER_OWNER branches found and not yet released: beyond that its
 * due rows are passed over (and found again later), so that a dispatcher
 * never stops reading because one owner's backlog filled its memory.  An
 * owner at its limit stays there until it is down to half of it, so that
 * the reads that pass its rows over are not made for every call that
 * comes back.  And
 * remote calls are sent one per owner in turn, from a round that goes on
 * where the last one stopped, each owner holding at most its share of
 * tcc.max_concurrent_calls in flight, so that an owner whose participant
 * hangs holds back only itself.
 *
 * src/owners.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "tcc.h"
#include "worker.h"

/* branches one owner may have found and not yet released */
#define TCC_MAX_PER_OWNER	2000

typedef struct OwnerWork
{
	Oid			owner;			/* hash key */
	int			found;			/* found due, not yet released */
	int			sent;			/* remote calls of it in flight */
	TccCallQueue remote;		/* remote calls waiting for a turn */
	bool		in_turns;		/* in the list of turns */
	bool		at_limit;		/* found its most; until down to half */
} OwnerWork;

static HTAB *owners = NULL;

/* how many owners are at their limit */
static int	owners_at_limit = 0;

/* owners whose remote calls wait, in the order of their turns */
static List *turns = NIL;

/*
 * tcc_owners_init
 *		Set up the table of owners, once per dispatcher.
 */
void
tcc_owners_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(OwnerWork);
	owners = hash_create("tcc work per owner", 64, &ctl,
						 HASH_ELEM | HASH_BLOBS);
}

/*
 * work_of
 *		Owner's entry, created empty if need be.
 */
static OwnerWork *
work_of(Oid owner)
{
	bool		found;
	OwnerWork  *work = hash_search(owners, &owner, HASH_ENTER, &found);

	if (!found)
	{
		work->found = 0;
		work->sent = 0;
		memset(&work->remote, 0, sizeof(work->remote));
		work->in_turns = false;
		work->at_limit = false;
	}
	return work;
}

/*
 * forget_if_idle
 *		Drop owner's entry once nothing of it is left.
 */
static void
forget_if_idle(OwnerWork *work)
{
	Assert(work->found > 0 || !work->at_limit);
	if (work->found == 0 && !work->in_turns)
		(void) hash_search(owners, &work->owner, HASH_REMOVE, NULL);
}

/*
 * tcc_owners_at_limit
 *		The owners at their limit of branches found, as an oid[]
 *		for the due query to pass their rows over (palloc'd in the current
 *		context).
 */
ArrayType *
tcc_owners_at_limit(void)
{
	HASH_SEQ_STATUS status;
	OwnerWork  *work;
	Datum	   *oids = palloc(sizeof(Datum) * (hash_get_num_entries(owners) + 1));
	int			n = 0;

	hash_seq_init(&status, owners);
	while ((work = hash_seq_search(&status)) != NULL)
		if (work->at_limit)
			oids[n++] = ObjectIdGetDatum(work->owner);
	return construct_array(oids, n, OIDOID, sizeof(Oid), true,
						   TYPALIGN_INT);
}

/*
 * tcc_owners_any_at_limit
 *		Whether some owner's rows are being passed over.
 */
bool
tcc_owners_any_at_limit(void)
{
	return owners_at_limit > 0;
}

/*
 * tcc_owner_take
 *		Count one more branch of owner found due; false (nothing counted)
 *		when the owner has TCC_MAX_PER_OWNER already, in which case the
 *		branch is to be passed over.
 */
bool
tcc_owner_take(Oid owner)
{
	OwnerWork  *work = work_of(owner);

	if (work->at_limit)
		return false;
	if (++work->found == TCC_MAX_PER_OWNER)
	{
		work->at_limit = true;
		owners_at_limit++;
	}
	return true;
}

/*
 * tcc_owner_release
 *		Call's branch is no longer the dispatcher's: its outcome is
 *		recorded, or it turned out not to be due.
 */
void
tcc_owner_release(TccCall *call)
{
	OwnerWork  *work = hash_search(owners, &call->owner, HASH_FIND, NULL);
	MemoryContext oldcontext;

	Assert(work != NULL && work->found > 0);
	work->found--;
	if (work->at_limit && work->found <= TCC_MAX_PER_OWNER / 2)
	{
		work->at_limit = false;
		owners_at_limit--;
	}
	if (call->sent)
	{
		work->sent--;
		/* back in the turns, if it waited because of its share */
		if (!work->in_turns && tcc_queue_length(&work->remote) > 0)
		{
			oldcontext = MemoryContextSwitchTo(tcc_calls_context);
			turns = lappend_oid(turns, work->owner);
			MemoryContextSwitchTo(oldcontext);
			work->in_turns = true;
		}
	}
	forget_if_idle(work);
}

/*
 * tcc_owner_queue_remote
 *		Put remote call at the end of its owner's queue.
 */
void
tcc_owner_queue_remote(TccCall *call)
{
	OwnerWork  *work = work_of(call->owner);

	tcc_queue_push(&work->remote, call);
	if (!work->in_turns)
	{
		MemoryContext oldcontext = MemoryContextSwitchTo(tcc_calls_context);

		turns = lappend_oid(turns, work->owner);
		MemoryContextSwitchTo(oldcontext);
		work->in_turns = true;
	}
}

/*
 * share
 *		How many remote calls one owner may have in flight: an equal part
 *		of tcc.max_concurrent_calls between the owners that send or wait to.
 */
static int
share(void)
{
	HASH_SEQ_STATUS status;
	OwnerWork  *work;
	int			active = 0;

	hash_seq_init(&status, owners);
	while ((work = hash_seq_search(&status)) != NULL)
		if (work->sent > 0 || work->in_turns)
			active++;
	return Max(1, tcc_max_concurrent_calls / Max(active, 1));
}

/*
 * tcc_owners_send
 *		Send waiting remote calls, one per owner in turn, while fewer than
 *		tcc.max_concurrent_calls are in flight; an owner that has its share
 *		in flight leaves the turns until one of its calls comes back.
 */
void
tcc_owners_send(List **done)
{
	int			room = tcc_max_concurrent_calls - tcc_remote_in_flight();
	int			limit = share();
	MemoryContext oldcontext;

	while (room > 0 && turns != NIL)
	{
		Oid			owner = linitial_oid(turns);
		OwnerWork  *work = hash_search(owners, &owner, HASH_FIND, NULL);
		TccCall    *call;

		Assert(work != NULL && work->in_turns);
		turns = list_delete_first(turns);
		work->in_turns = false;

		call = tcc_queue_pop(&work->remote);
		if (call == NULL)
		{
			forget_if_idle(work);
			continue;
		}
		call->sent = true;
		work->sent++;
		room--;
		if (work->sent < limit &&
			tcc_queue_length(&work->remote) > 0)
		{
			oldcontext = MemoryContextSwitchTo(tcc_calls_context);
			turns = lappend_oid(turns, owner);
			MemoryContextSwitchTo(oldcontext);
			work->in_turns = true;
		}
		tcc_remote_send(call, done);
	}
}

/*
 * tcc_queue_push
 *		Add call at the end of queue (in tcc_calls_context).
 */
void
tcc_queue_push(TccCallQueue *queue, TccCall *call)
{
	tcc_add_call(&queue->items, call);
}

/*
 * tcc_queue_peek
 *		The call at the head of queue, or NULL.
 */
TccCall *
tcc_queue_peek(TccCallQueue *queue)
{
	if (queue->head >= list_length(queue->items))
		return NULL;
	return (TccCall *) list_nth(queue->items, queue->head);
}

/*
 * tcc_queue_pop
 *		Take the call at the head of queue, or NULL.  The list is
 *		compacted once half of it has been taken, so that taking is cheap
 *		however long the queue.
 */
TccCall *
tcc_queue_pop(TccCallQueue *queue)
{
	TccCall    *call = tcc_queue_peek(queue);

	if (call == NULL)
		return NULL;
	queue->head++;
	if (queue->head == list_length(queue->items))
	{
		list_free(queue->items);
		queue->items = NIL;
		queue->head = 0;
	}
	else if (queue->head >= 64 && queue->head * 2 >= list_length(queue->items))
	{
		MemoryContext oldcontext = MemoryContextSwitchTo(tcc_calls_context);
		List	   *rest = list_copy_tail(queue->items, queue->head);

		MemoryContextSwitchTo(oldcontext);
		list_free(queue->items);
		queue->items = rest;
		queue->head = 0;
	}
	return call;
}

/*
 * tcc_queue_unpop
 *		Put call back at the head of queue, the next to be taken.
 */
void
tcc_queue_unpop(TccCallQueue *queue, TccCall *call)
{
	if (queue->head > 0)
		list_nth_cell(queue->items, --queue->head)->ptr_value = call;
	else
	{
		MemoryContext oldcontext = MemoryContextSwitchTo(tcc_calls_context);

		queue->items = lcons(call, queue->items);
		MemoryContextSwitchTo(oldcontext);
	}
}

/*
 * tcc_queue_length
 *		How many calls wait in queue.
 */
int
tcc_queue_length(TccCallQueue *queue)
{
	return list_length(queue->items) - queue->head;
}
