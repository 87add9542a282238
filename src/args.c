/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Checking the arguments users pass to tcc, and making gids.
 *
 * Every SQL-callable function is declared non-strict so that a NULL where a
 * value is required gets a clear error instead of a silent NULL result; the
 * checks for that, for the form of gids and branch ids, and for intervals
 * live here so that every function words them the same way.
 *
 * src/args.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "tcc.h"

/*
 * tcc_check_not_null
 *		Refuse a NULL for required argument argno, called argname, of the
 *		calling SQL function.
 */
void
tcc_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname),
				 errhint("Pass a value for %s to tcc.%s.", argname,
						 get_func_name(fcinfo->flinfo->fn_oid))));
}

/*
 * tcc_check_id
 *		Check a gid or branch id and return it as a C string.
 *
 * Ids travel to participants, into logs and into the fence's keys, so they
 * must be non-empty, at most TCC_MAX_ID_LEN bytes and free of control
 * characters (which would make log lines and psql output ambiguous).
 * may_generate says whether the caller could have passed NULL instead, to
 * have an id generated, which the hint then suggests.
 */
char *
tcc_check_id(text *id, const char *what, bool may_generate)
{
	char	   *str = text_to_cstring(id);
	size_t		len = strlen(str);
	size_t		i;

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what),
				 may_generate ?
				 errhint("Pass NULL to have one generated.") :
				 errhint("Pass the %s the coordinator gave.", what)));

	if (len > TCC_MAX_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is too long", what, tcc_clip(str)),
				 errdetail("It is %zu bytes long; the limit is %d bytes.",
						   len, TCC_MAX_ID_LEN)));

	/*
	 * Control characters are the ASCII ones and, in a UTF-8 database, the C1
	 * range U+0080 to U+009F, encoded as 0xC2 0x80 to 0xC2 0x9F.  The text
	 * is valid in the database encoding, so in UTF-8 a 0xC2 byte always
	 * starts a two-byte character.
	 */
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) str[i];
		bool		c1 = (c == 0xc2 && GetDatabaseEncoding() == PG_UTF8 &&
						  (unsigned char) str[i + 1] >= 0x80 &&
						  (unsigned char) str[i + 1] <= 0x9f);

		if (c < 0x20 || c == 0x7f || c1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s contains a control character", what),
					 errdetail("Byte %zu is 0x%02x.", i + 1,
							   c1 ? (unsigned char) str[i + 1] : c),
					 errhint("Use printable characters only.")));
	}

	return str;
}

/*
 * tcc_id_arg
 *		Argument argno of the calling SQL function, a required gid or branch
 *		id, checked and as a C string.
 */
char *
tcc_id_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	tcc_check_not_null(fcinfo, argno, what);
	return tcc_check_id(PG_GETARG_TEXT_PP(argno), what, false);
}

/*
 * tcc_generate_gid
 *		A new gid: a UUID of version 7 (RFC 9562) as text.
 *
 * Version 7 puts the time in milliseconds first, so gids generated close in
 * time sort close together and the primary key's B-tree gets its inserts at
 * its right edge, as with a sequence, instead of all over the index as with
 * a random UUID.  The remaining 74 bits come from pg_strong_random, so two
 * coordinators never make the same gid.
 */
char *
tcc_generate_gid(void)
{
	uint8		uuid[16];
	uint64		unix_ms;
	char	   *result;

	if (!pg_strong_random(uuid, sizeof(uuid)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values for a gid")));

	/* milliseconds since the Unix epoch, from the database clock */
	unix_ms = (uint64) (GetCurrentTimestamp() / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
		SECS_PER_DAY * 1000;

	uuid[0] = (uint8) (unix_ms >> 40);
	uuid[1] = (uint8) (unix_ms >> 32);
	uuid[2] = (uint8) (unix_ms >> 24);
	uuid[3] = (uint8) (unix_ms >> 16);
	uuid[4] = (uint8) (unix_ms >> 8);
	uuid[5] = (uint8) unix_ms;
	uuid[6] = (uuid[6] & 0x0f) | 0x70;	/* version 7 */
	uuid[8] = (uuid[8] & 0x3f) | 0x80;	/* variant RFC 9562 */

	result = psprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
					  "%02x%02x%02x%02x%02x%02x",
					  uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5],
					  uuid[6], uuid[7], uuid[8], uuid[9], uuid[10], uuid[11],
					  uuid[12], uuid[13], uuid[14], uuid[15]);
	return result;
}

/*
 * tcc_check_interval
 *		Refuse an interval below zero, or at zero unless allow_zero.
 *
 * Intervals mix months, days and microseconds; interval_gt compares them the
 * way the interval type orders itself (a month as 30 days), which is what a
 * user comparing to '0' in SQL would get.
 */
void
tcc_check_interval(Interval *interval, const char *argname, bool allow_zero)
{
	Interval	zero;
	PGFunction	cmp = allow_zero ? interval_ge : interval_gt;

	memset(&zero, 0, sizeof(zero));
	if (!DatumGetBool(DirectFunctionCall2(cmp,
										  IntervalPGetDatum(interval),
										  IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 allow_zero ?
				 errmsg("%s must not be negative", argname) :
				 errmsg("%s must be greater than zero", argname),
				 errdetail("The value given was %s.",
						   tcc_interval_text(interval))));
}

/*
 * tcc_interval_text
 *		interval as text, for a message.
 */
char *
tcc_interval_text(Interval *interval)
{
	return DatumGetCString(DirectFunctionCall1(interval_out,
											   IntervalPGetDatum(interval)));
}

/*
 * tcc_clip
 *		str, or its first TCC_CLIP_LEN bytes (whole characters) followed by
 *		"...", for quoting a user's input in a message.
 *
 * Messages go to the client and the server log: echoing an argument of a
 * megabyte in full would flood both.  Names of objects that exist are
 * bounded already; input that names nothing (an unknown mode or server,
 * an option the validator refuses) is clipped.
 */
char *
tcc_clip(const char *str)
{
	int			len = strlen(str);
	int			cut;

	if (len <= TCC_CLIP_LEN)
		return pstrdup(str);
	cut = pg_mbcliplen(str, len, TCC_CLIP_LEN);
	return psprintf("%.*s...", cut, str);
}

/*
 * tcc_add_interval
 *		start plus interval (minus, when subtract), for an argument called
 *		argname: the deadline of a timeout, or the cut-off of a retention.
 *
 * A value so large that the result leaves the timestamp range gets an
 * error about the argument (22023) instead of "timestamp out of range"
 * (22008) raised from deep inside tcc's own statement.  Catching that error
 * is safe because it is at once replaced by another ERROR, whose abort
 * cleans up; any other error is re-thrown unchanged.
 */
TimestampTz
tcc_add_interval(TimestampTz start, Interval *interval, bool subtract,
				 const char *argname)
{
	TimestampTz result = 0;
	MemoryContext oldcontext = CurrentMemoryContext;

	PG_TRY();
	{
		result = DatumGetTimestampTz(
			DirectFunctionCall2(subtract ? timestamptz_mi_interval :
								timestamptz_pl_interval,
								TimestampTzGetDatum(start),
								IntervalPGetDatum(interval)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_DATETIME_VALUE_OUT_OF_RANGE)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s is too long", argname,
						tcc_interval_text(interval)),
				 errdetail("The resulting time would fall outside the range "
						   "of timestamp with time zone."),
				 errhint("Use a value of at most a few years.")));
	}
	PG_END_TRY();

	return result;
}

/*
 * tcc_older_than_arg
 *		Argument argno of the calling SQL function, a retention period called
 *		older_than (required, not negative), as the time before which what
 *		ended is old: the start of the transaction minus that period.
 */
TimestampTz
tcc_older_than_arg(FunctionCallInfo fcinfo, int argno)
{
	Interval   *older_than;

	tcc_check_not_null(fcinfo, argno, "older_than");
	older_than = PG_GETARG_INTERVAL_P(argno);
	tcc_check_interval(older_than, "older_than", true);
	return tcc_add_interval(GetCurrentTransactionStartTimestamp(),
							older_than, true, "older_than");
}
