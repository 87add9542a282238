/*-------------------------------------------------------------------------
 *
 * worker_status.c
 *	  tcc.worker_status(), behind the tcc.worker view: one row per running
 *	  worker, from a copy of the shared-memory slots (shmem.c) that the
 *	  workers keep up to date.
 *
 * The slots are copied under their lock, so that a row is one consistent
 * snapshot of a slot; database names are looked up after the lock is
 * released.  Without shared memory (tcc not preloaded) the view is empty.
 *
 * src/worker_status.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "tcc.h"
#include "tcc_shmem.h"

PG_FUNCTION_INFO_V1(tcc_worker_status);

static const char *const slot_state_names[] = {
	[TCC_SLOT_FREE] = "free",
	[TCC_SLOT_REQUESTED] = "requested",
	[TCC_SLOT_LAUNCHED] = "launched",
	[TCC_SLOT_STARTING] = "starting",
	[TCC_SLOT_IDLE] = "idle",
	[TCC_SLOT_WORKING] = "working",
	[TCC_SLOT_ABSENT] = "absent",
};

/*
 * tcc_worker_status
 *		tcc.worker_status(): one row per running worker.
 */
Datum
tcc_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TccWorkerSlot slots[TCC_MAX_WORKERS];
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	/* copy under the lock, look up database names after releasing it */
	if (!tcc_copy_slots(slots))
		return (Datum) 0;

	for (i = 0; i < TCC_MAX_WORKERS; i++)
	{
		TccWorkerSlot *slot = &slots[i];
		Datum		values[8];
		bool		nulls[8] = {0};
		char	   *datname;
		NameData	datname_data;

		if (slot->pid == 0)
			continue;

		datname = get_database_name(slot->dboid);
		if (datname)
		{
			namestrcpy(&datname_data, datname);
			values[0] = NameGetDatum(&datname_data);
		}
		else
			nulls[0] = true;
		values[1] = Int32GetDatum(slot->pid);
		values[2] = CStringGetTextDatum(slot_state_names[slot->state]);
		values[3] = TimestampTzGetDatum(slot->started_at);
		if (slot->last_wakeup != 0)
			values[4] = TimestampTzGetDatum(slot->last_wakeup);
		else
			nulls[4] = true;
		values[5] = Int64GetDatum((int64) slot->calls_succeeded);
		values[6] = Int64GetDatum((int64) slot->calls_failed);
		values[7] = Int32GetDatum(slot->open_connections);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}

	return (Datum) 0;
}
