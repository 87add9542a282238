/*-------------------------------------------------------------------------
 *
 * action_sql.c
 *	  Checking an action's SQL text: one statement that tcc can run, valid
 *	  to the grammar, using only the parameters $1 to $3, parsed with the
 *	  settings it will run under.
 *
 * The text is checked when it is registered (register_branch, add_step,
 * CALL tcc.try), so that a typo is reported to whoever makes it, and again
 * before a local action runs (tcc_spi.c).  Only the grammar is checked:
 * the objects the text names live in the participant's database.  So the
 * answer depends on the text alone (and on the one setting that parsing
 * it here still depends on), and each backend remembers the texts it found
 * good: an application registers the same few texts over and over.  A
 * text found bad is checked again each time, so it gets the same error.
 *
 * src/action_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "nodes/parsenodes.h"
#include "parser/gramparse.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "tcc.h"

/*
 * The texts this backend found good, by hash, in their own memory context:
 * at most GOOD_TEXTS_MAX of them and GOOD_TEXTS_BYTES of text, after which
 * the cache starts again empty.  Longer texts than GOOD_TEXT_MAX_LEN are
 * checked every time.
 */
#define GOOD_TEXTS_MAX		256
#define GOOD_TEXTS_BYTES	(256 * 1024)
#define GOOD_TEXT_MAX_LEN	8192

typedef struct GoodText
{
	uint32		hash;			/* hash key: of the text */
	int			backslash_quote;	/* the setting it was parsed with */
	char	   *sql;			/* the text; another with the same hash
								 * replaces it */
} GoodText;

static HTAB *good_texts = NULL;
static MemoryContext good_texts_cxt = NULL;
static Size good_texts_bytes = 0;

/*
 * check_action_params
 *		Refuse a parameter reference other than $1, $2 and $3 in sql.
 *
 * The scanner, not the grammar, sees every token of every statement type,
 * so this works for any statement the grammar accepts.  sql has already
 * been parsed successfully (with the same settings), so scanning it cannot
 * fail.  The parameter's number is read from the text rather than from the
 * token's value, which the scanner computes with atol and so wraps for
 * numbers beyond int; leading zeros are skipped, as PostgreSQL reads $01
 * as $1.
 */
static void
check_action_params(const char *sql, const char *argname)
{
	core_yy_extra_type yyextra;
	core_yyscan_t yyscanner;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	int			token;

	yyscanner = scanner_init(sql, &yyextra, &ScanKeywords, ScanKeywordTokens);
	while ((token = core_yylex(&yylval, &yylloc, yyscanner)) != 0)
	{
		const char *digits = sql + yylloc + 1;	/* after the '$' */
		size_t		ndigits = strspn(digits, "0123456789");
		size_t		zeros = strspn(digits, "0");

		if (token != PARAM ||
			(ndigits - zeros == 1 && digits[zeros] >= '1' &&
			 digits[zeros] <= '3'))
			continue;

		/* positions count characters, yylloc counts bytes */
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_PARAMETER),
				 errmsg("%s refers to parameter $%.*s, which does not exist",
						argname, (int) ndigits, digits),
				 errdetail("An action gets three parameters: $1 (gid, "
						   "text), $2 (branch id, text) and $3 (payload, "
						   "jsonb)."),
				 internalerrposition(pg_mbstrlen_with_len(sql, yylloc) + 1),
				 internalerrquery(sql)));
	}
	scanner_finish(yyscanner);
}

/*
 * tcc_error_is_about_text
 *		Whether an error raised while checking action SQL is about the text,
 *		rather than about the moment: out of memory or another resource, a
 *		cancel or a shutdown, an internal error say nothing about it, and a
 *		retry may succeed.
 */
bool
tcc_error_is_about_text(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category != ERRCODE_INSUFFICIENT_RESOURCES &&
		category != ERRCODE_OPERATOR_INTERVENTION &&
		category != ERRCODE_INTERNAL_ERROR;
}

/*
 * tcc_pin_action_settings
 *		Enter a new GUC nest level with the settings under which action SQL
 *		is parsed and run, here and on participants (remote_conn.c pins the
 *		same in their startup packet): standard_conforming_strings on.  Returns
 *		the level, for AtEOXact_GUC.
 *
 * Parsed with the session's setting instead, a backslash could end a
 * string literal here that goes on there, and text that passed here as
 * one statement would run as two.
 */
int
tcc_pin_action_settings(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("standard_conforming_strings", "on",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * parse_action
 *		Parse sql, an action's text, into raw statements.
 *
 * A syntax error is reported under our own message, naming the argument,
 * with the parser's message as detail and the position marked in the
 * action's text; the same goes for the parser's other complaints (a bad
 * escape, a feature not implemented), keeping their SQLSTATE.  Catching the
 * parser's error is safe because it is at once replaced by another ERROR,
 * whose abort cleans up.  Errors that say nothing about the text (out of
 * memory, stack depth, a query cancel) are re-thrown unchanged.
 */
static List *
parse_action(const char *sql, const char *argname)
{
	List	   *stmts = NIL;
	MemoryContext oldcontext = CurrentMemoryContext;

	PG_TRY();
	{
		stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			category;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (!tcc_error_is_about_text(edata->sqlerrcode) ||
			category == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			PG_RE_THROW();
		FlushErrorState();

		/*
		 * Called from a function, the scanner reports the position as
		 * internalpos rather than cursorpos; either is relative to sql.
		 */
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s is not valid SQL", argname),
				 errdetail("The parser reported: %s.", edata->message),
				 internalerrposition(edata->cursorpos > 0 ?
									 edata->cursorpos : edata->internalpos),
				 internalerrquery(sql)));
	}
	PG_END_TRY();

	return stmts;
}

/*
 * check_action_stmts
 *		Check that stmts, the parse of action argname, is one statement that
 *		tcc can run as an action.
 *
 * The action runs inside a transaction that tcc controls (for a local
 * action, the one that also records the branch's outcome), so it must not
 * end or start transactions itself; and it is run by tcc, not by a client,
 * so there is nobody to copy to or from.
 */
static void
check_action_stmts(List *stmts, const char *argname)
{
	Node	   *stmt;

	if (stmts == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname),
				 errhint("Give the SQL statement to run; the values arrive "
						 "as $1 (gid), $2 (branch id) and $3 (payload).")));

	if (list_length(stmts) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be exactly one SQL statement", argname),
				 errdetail("It contains %d statements.", list_length(stmts)),
				 errhint("Wrap several statements in a function and call "
						 "that; the values arrive as $1 (gid), $2 (branch "
						 "id) and $3 (payload).")));

	stmt = linitial_node(RawStmt, stmts)->stmt;
	if (IsA(stmt, TransactionStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be a transaction control statement",
						argname),
				 errdetail("tcc runs every action in a transaction of its "
						   "own and commits it when the action succeeds.")));

	if (IsA(stmt, CopyStmt) && ((CopyStmt *) stmt)->filename == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not copy to or from the client", argname),
				 errdetail("An action is run by tcc, which has no client "
						   "to send rows to or read them from."),
				 errhint("Copy to or from a file or program on the "
						 "participant, or use INSERT or SELECT.")));
}

/*
 * known_good
 *		Whether sql, whose hash is hash, was found good by this backend
 *		with the current settings.
 */
static bool
known_good(const char *sql, uint32 hash)
{
	GoodText   *entry;

	if (good_texts == NULL)
		return false;
	entry = hash_search(good_texts, &hash, HASH_FIND, NULL);
	return entry != NULL && entry->backslash_quote == backslash_quote &&
		strcmp(entry->sql, sql) == 0;
}

/*
 * remember_good
 *		Remember that sql, of length len and hash hash, is good, unless it
 *		is too long; start the cache again when it is full.
 */
static void
remember_good(const char *sql, size_t len, uint32 hash)
{
	GoodText   *entry;
	HASHCTL		ctl;

	if (len > GOOD_TEXT_MAX_LEN)
		return;
	if (good_texts_cxt == NULL)
		good_texts_cxt = AllocSetContextCreate(TopMemoryContext,
											   "tcc action SQL checked",
											   ALLOCSET_SMALL_SIZES);
	if (good_texts != NULL &&
		(hash_get_num_entries(good_texts) >= GOOD_TEXTS_MAX ||
		 good_texts_bytes + len > GOOD_TEXTS_BYTES))
	{
		MemoryContextReset(good_texts_cxt);
		good_texts = NULL;
	}
	if (good_texts == NULL)
	{
		ctl.keysize = sizeof(uint32);
		ctl.entrysize = sizeof(GoodText);
		ctl.hcxt = good_texts_cxt;
		good_texts = hash_create("tcc action SQL checked", GOOD_TEXTS_MAX,
								 &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		good_texts_bytes = 0;
	}

	entry = hash_search(good_texts, &hash, HASH_ENTER, NULL);
	entry->backslash_quote = backslash_quote;
	entry->sql = MemoryContextStrdup(good_texts_cxt, sql);
	good_texts_bytes += len + 1;
}

/*
 * tcc_check_action_sql
 *		Check that sql, an action's text, is one syntactically valid SQL
 *		statement, using only $1 to $3, that tcc can run; so that a typo is
 *		reported to whoever registers it rather than found by the worker in
 *		phase two.  The worker checks a local action again before it runs
 *		it.
 *
 * Only the grammar is checked: the objects it names live in the
 * participant's database, not here.  The text is parsed as it will run
 * (tcc_pin_action_settings); the settings revert on the way out, and at
 * the abort of an error.  standard_conforming_strings is pinned, and
 * backslash_quote, the other setting the grammar reads, is part of what
 * known_good compares.
 */
void
tcc_check_action_sql(const char *sql, const char *argname)
{
	size_t		len = strlen(sql);
	uint32		hash = hash_bytes((const unsigned char *) sql, (int) len);
	int			nestlevel;

	if (known_good(sql, hash))
		return;

	nestlevel = tcc_pin_action_settings();
	check_action_stmts(parse_action(sql, argname), argname);
	check_action_params(sql, argname);
	AtEOXact_GUC(false, nestlevel);

	remember_good(sql, len, hash);
}
