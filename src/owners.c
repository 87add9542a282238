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
 * due rows are passed over, so that a dispatcher never stops reading
 * because one owner's backlog filled its memory.  An owner at its limit
 * stays there until it is down to half of it.  From the moment it reached
 * its limit it is behind: the reads of dispatch.c pass over all of its
 * rows, and it keeps the position (resume) after which its rows are still
 * to be read; once below its limit, reads of its own rows from there
 * (dispatch.c, read_behind) catch it up, and when one of them reaches the
 * end of its due rows it is read with everyone's again.  And
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
	bool		behind;			/* its rows after resume are still unread */
	TccDuePos	resume;
} OwnerWork;

static HTAB *owners = NULL;

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
		work->behind = false;
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
	if (work->found == 0 && !work->in_turns && !work->behind)
		(void) hash_search(owners, &work->owner, HASH_REMOVE, NULL);
}

/*
 * tcc_owners_passed_over
 *		The owners behind, as an oid[] for the due query to pass their rows
 *		over (palloc'd in the current context).
 */
ArrayType *
tcc_owners_passed_over(void)
{
	HASH_SEQ_STATUS status;
	OwnerWork  *work;
	Datum	   *oids = palloc(sizeof(Datum) * (hash_get_num_entries(owners) + 1));
	int			n = 0;

	hash_seq_init(&status, owners);
	while ((work = hash_seq_search(&status)) != NULL)
		if (work->behind)
			oids[n++] = ObjectIdGetDatum(work->owner);
	return construct_array(oids, n, OIDOID, sizeof(Oid), true,
						   TYPALIGN_INT);
}

/*
 * fall_behind
 *		Owner's rows after from are still to be read: it is behind, from
 *		there at the latest.
 */
static void
fall_behind(OwnerWork *work, const TccDuePos *from)
{
	if (!work->behind)
		work->resume = *from;
	else
		tcc_due_pos_lower(&work->resume, from);
	work->behind = true;
}

/*
 * tcc_owner_take
 *		Count one more branch of owner found due, in due row row; false
 *		(nothing counted) when the owner has TCC_MAX_PER_OWNER already, in
 *		which case the row is passed over, and read again once the owner is
 *		below its limit (see the file header).
 */
bool
tcc_owner_take(Oid owner, const TccDuePos *row)
{
	OwnerWork  *work = work_of(owner);

	if (work->at_limit)
	{
		TccDuePos	before = *row;

		/* the position just before row: seq counts up from 1 */
		before.seq--;
		fall_behind(work, &before);
		return false;
	}
	if (++work->found == TCC_MAX_PER_OWNER)
	{
		work->at_limit = true;
		fall_behind(work, row);
	}
	return true;
}

/*
 * tcc_owners_rewind
 *		Rows may have become due after pos that reads have passed already:
 *		the owners behind read their own rows from there at the latest.
 */
void
tcc_owners_rewind(const TccDuePos *pos)
{
	HASH_SEQ_STATUS status;
	OwnerWork  *work;

	hash_seq_init(&status, owners);
	while ((work = hash_seq_search(&status)) != NULL)
		if (work->behind)
			fall_behind(work, pos);
}

/*
 * tcc_owners_behind
 *		The owners behind and below their limit, whose own rows are to be
 *		read (palloc'd in the current context in *result); returns how many.
 */
int
tcc_owners_behind(Oid **result)
{
	HASH_SEQ_STATUS status;
	OwnerWork  *work;
	int			n = 0;

	*result = palloc(sizeof(Oid) * (hash_get_num_entries(owners) + 1));
	hash_seq_init(&status, owners);
	while ((work = hash_seq_search(&status)) != NULL)
		if (work->behind && !work->at_limit)
			(*result)[n++] = work->owner;
	return n;
}

/*
 * tcc_owner_room
 *		How many more branches owner, which is behind, may be found now, and
 *		(in *from) the position after which its rows are to be read.
 */
int
tcc_owner_room(Oid owner, TccDuePos *from)
{
	OwnerWork  *work = work_of(owner);

	Assert(work->behind && !work->at_limit);
	*from = work->resume;
	return TCC_MAX_PER_OWNER - work->found;
}

/*
 * tcc_owner_read_behind
 *		A read of owner's own rows (dispatch.c, read_behind) went up to last
 *		(NULL: it found none) and, when at_end, found all that are due.  An
 *		owner below its limit that was read to the end is caught up: its rows
 *		are read with everyone's again.  One that reached its limit again
 *		stays behind, from last on.
 */
void
tcc_owner_read_behind(Oid owner, const TccDuePos *last, bool at_end)
{
	OwnerWork  *work = work_of(owner);

	Assert(work->behind);
	if (last != NULL)
		work->resume = *last;
	if (at_end && !work->at_limit)
	{
		work->behind = false;
		forget_if_idle(work);
	}
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
		work->at_limit = false; /* and behind: read_behind catches it up */
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
