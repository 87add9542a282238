/* tcc--1.0.sql: install script of the tcc extension, version 1.0 */

\echo Use "CREATE EXTENSION tcc" to load this file. \quit

/*
 * The schema is created by CREATE EXTENSION (tcc.control names it).  Its
 * tables are private: every write goes through the functions below, which
 * run their SQL as the extension's owner.  Everybody may call the
 * coordinator functions and read the views; the views show each role only
 * the transactions it may see.  The fence functions are for the roles a
 * participant grants them to.
 *
 * Security of this script.  It runs as a superuser with search_path set to
 * tcc, pg_temp (pg_catalog implicitly first), so it must not pick up
 * anything that somebody else put in schema tcc: CREATE EXTENSION would
 * install into a schema that already exists, whoever made it.  The first
 * statement therefore refuses a schema that is not the installer's own,
 * empty and private (see src/install.c); from then on only this script
 * creates objects in it.  Functions are called schema-qualified with their
 * exact argument types, so no other overload can be chosen.
 */
CREATE FUNCTION tcc.check_install_schema()
RETURNS void
AS 'MODULE_PATHNAME', 'tcc_check_install_schema'
LANGUAGE C;

SELECT tcc.check_install_schema();

DROP FUNCTION tcc.check_install_schema();

GRANT USAGE ON SCHEMA tcc TO PUBLIC;

/* ------------------------------------------------------------------------
 * Coordinator state
 * ------------------------------------------------------------------------
 */

/*
 * The values a status or mode column may hold.  They are domains rather
 * than CHECK constraints of the tables: PostgreSQL reads and plans a
 * table's CHECK constraints again at every statement that writes the
 * table, while a domain's are kept, planned, in the type cache of each
 * backend.  Every column of these types is text to the functions that
 * write it and to whoever reads it; the views show them as text.
 */
CREATE DOMAIN tcc.transaction_mode AS text
	CONSTRAINT transaction_mode_check
		CHECK (VALUE IN ('tcc', 'saga', 'msg'));

CREATE DOMAIN tcc.transaction_status AS text
	CONSTRAINT transaction_status_check
		CHECK (VALUE IN ('trying', 'confirming', 'confirmed',
						 'cancelling', 'cancelled', 'failed'));

/* the phase a failed transaction left, which tcc.retry resumes */
CREATE DOMAIN tcc.transaction_phase AS text
	CONSTRAINT transaction_phase_check
		CHECK (VALUE IN ('confirming', 'cancelling'));

COMMENT ON DOMAIN tcc.transaction_mode IS
'Mode of a global transaction: tcc, saga or msg';
COMMENT ON DOMAIN tcc.transaction_status IS
'Status of a global transaction (doc/design.md, States)';
COMMENT ON DOMAIN tcc.transaction_phase IS
'Phase two direction a failed global transaction left: confirming or cancelling';

/*
 * One row per global transaction.  owner is a regrole so that pg_dump writes
 * the role's name, not an OID that may mean another role after a restore.
 * status moves only along the edges of doc/design.md, States, always by one
 * UPDATE made while holding the row lock (src/global_tx.c), which sets
 * failed_phase and finished_at from the same new status: failed_phase is
 * set exactly while the transaction is failed, finished_at exactly once it
 * is confirmed or cancelled, and retention deletes only those.
 */
CREATE TABLE tcc.global_transaction (
	gid				text		NOT NULL,
	mode			tcc.transaction_mode	NOT NULL,
	status			tcc.transaction_status	NOT NULL,
	owner			regrole		NOT NULL,
	meta			jsonb,
	created_at		timestamptz	NOT NULL,
	updated_at		timestamptz	NOT NULL,
	deadline		timestamptz	NOT NULL,
	finished_at		timestamptz,
	failed_phase	tcc.transaction_phase,
	reason			text,
	last_error		text,
	CONSTRAINT global_transaction_pkey PRIMARY KEY (gid)
) WITH (fillfactor = 90);

/* the worker's timeout scan: only transactions still being tried */
CREATE INDEX global_transaction_deadline_idx
	ON tcc.global_transaction (deadline) WHERE status = 'trying';

/* retention: only finished transactions, oldest first */
CREATE INDEX global_transaction_finished_idx
	ON tcc.global_transaction (finished_at) WHERE finished_at IS NOT NULL;

CREATE DOMAIN tcc.branch_status AS text
	CONSTRAINT branch_status_check
		CHECK (VALUE IN ('registered', 'tried', 'try_failed',
						 'confirming', 'confirmed', 'cancelling',
						 'cancelled', 'failed', 'aborted', 'skipped'));

COMMENT ON DOMAIN tcc.branch_status IS
'Status of a branch or step of a global transaction (see tcc.branch)';

/*
 * One row per TCC branch or saga/msg step.  For a TCC branch confirm_sql
 * and cancel_sql are the confirm and cancel; for a step they are the forward
 * action and its compensation.  server is a foreign server's name (names,
 * unlike OIDs, survive pg_dump and pg_upgrade), or NULL for an action run in
 * this database.  seq is the registration order, one more than the
 * transaction's last, taken under the transaction's row lock.
 *
 * Branch states:
 *	registered	registered; a TCC try not reported, or a step not yet due
 *	tried		CALL tcc.try ran the try successfully
 *	try_failed	CALL tcc.try ran the try and it failed
 *	confirming	the confirm (or forward step) is due at next_attempt_at
 *	confirmed	the confirm (or forward step) succeeded
 *	cancelling	the cancel (or compensation) is due at next_attempt_at
 *	cancelled	the cancel (or compensation) succeeded
 *	failed		attempts exhausted or the error can never succeed
 *	aborted		a saga step that failed for good (so compensation starts)
 *	skipped		a step that never ran because the transaction ended first
 *
 * There is no foreign key to tcc.global_transaction: only tcc's functions
 * write these tables, and they insert a branch only under the lock of its
 * transaction's row, which is trying and so never deleted meanwhile.  The
 * branches of deleted transactions go with them, set-based, by the
 * statement triggers below (a foreign key's cascade would run one DELETE
 * per transaction, and its check one lookup per branch).
 */
CREATE TABLE tcc.branch (
	gid				text		NOT NULL,
	branch_id		text		NOT NULL,
	seq				integer		NOT NULL,
	server			text,
	confirm_sql		text		NOT NULL,
	cancel_sql		text,
	payload			jsonb,
	status			tcc.branch_status	NOT NULL DEFAULT 'registered',
	attempts		integer		NOT NULL DEFAULT 0,
	next_attempt_at	timestamptz,
	last_attempt_at	timestamptz,
	last_error		text,
	last_sqlstate	text,
	last_detail		text,
	last_hint		text,
	last_context	text,
	created_at		timestamptz	NOT NULL,
	updated_at		timestamptz	NOT NULL,
	CONSTRAINT branch_pkey PRIMARY KEY (gid, branch_id),
	CONSTRAINT branch_seq_key UNIQUE (gid, seq)
) WITH (fillfactor = 90);

/*
 * The worker's hot query, "which branches are due now", reads only this
 * partial index: finished branches never enter it, so millions of old rows
 * cost it nothing.  Its order (next_attempt_at, gid, seq) is the order the
 * dispatchers read due rows in, from the position of the last row read
 * (src/dispatch.c), so that no read needs a sort.
 */
CREATE INDEX branch_due_idx
	ON tcc.branch (next_attempt_at, gid, seq)
	WHERE status IN ('confirming', 'cancelling');

/*
 * A deleted transaction takes its branches with it: one DELETE of
 * tcc.branch per statement, for every gid the statement deleted (read from
 * its transition table), and all of them for a TRUNCATE.
 */
CREATE FUNCTION tcc.delete_branches()
RETURNS trigger
AS 'MODULE_PATHNAME', 'tcc_delete_branches'
LANGUAGE C;

REVOKE ALL ON FUNCTION tcc.delete_branches() FROM PUBLIC;

COMMENT ON FUNCTION tcc.delete_branches() IS
'Trigger of tcc.global_transaction: delete the branches of the transactions a statement deleted';

CREATE TRIGGER global_transaction_delete_branches
	AFTER DELETE ON tcc.global_transaction
	REFERENCING OLD TABLE AS deleted
	FOR EACH STATEMENT EXECUTE FUNCTION tcc.delete_branches();

CREATE TRIGGER global_transaction_truncate_branches
	AFTER TRUNCATE ON tcc.global_transaction
	FOR EACH STATEMENT EXECUTE FUNCTION tcc.delete_branches();

/* ------------------------------------------------------------------------
 * Participant fence
 * ------------------------------------------------------------------------
 */

/*
 * One row per branch (or saga/msg step) this participant has seen, with
 * what happened to it:
 *
 *	tried			the try (or forward action) ran
 *	confirmed		the try ran, then the confirm
 *	cancelled		the try ran, then the cancel (or compensation)
 *	cancelled_early	the cancel came and the try never ran (empty rollback);
 *					the row refuses the try if it arrives later (hanging)
 *
 * A try is an INSERT ... ON CONFLICT DO NOTHING of the row; a confirm or a
 * cancel is an UPDATE guarded by state = 'tried' (a cancel that finds no row
 * inserts one in cancelled_early).  Every decision about a branch therefore
 * writes the same single row, so two sessions racing on a branch are
 * serialised by that row and exactly one of them wins; no explicit lock, and
 * no deadlock, since no call touches two rows.
 */
CREATE DOMAIN tcc.fence_state AS text
	CONSTRAINT fence_state_check
		CHECK (VALUE IN ('tried', 'confirmed', 'cancelled',
						 'cancelled_early'));

COMMENT ON DOMAIN tcc.fence_state IS
'What a participant''s fence has seen of a branch (see tcc.fence)';

CREATE TABLE tcc.fence (
	gid				text		NOT NULL,
	branch_id		text		NOT NULL,
	state			tcc.fence_state	NOT NULL,
	created_at		timestamptz	NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz	NOT NULL DEFAULT pg_catalog.now(),
	CONSTRAINT fence_pkey PRIMARY KEY (gid, branch_id)
);

/* tcc.fence_purge: rows whose last decision is old */
CREATE INDEX fence_updated_idx ON tcc.fence (updated_at);

/* the state is data, not configuration: pg_dump must keep it */
SELECT pg_catalog.pg_extension_config_dump('tcc.global_transaction', '');
SELECT pg_catalog.pg_extension_config_dump('tcc.branch', '');
SELECT pg_catalog.pg_extension_config_dump('tcc.fence', '');

REVOKE ALL ON tcc.global_transaction, tcc.branch, tcc.fence FROM PUBLIC;

COMMENT ON TABLE tcc.global_transaction IS
'Global transactions of the tcc coordinator; written only by the tcc functions';
COMMENT ON TABLE tcc.branch IS
'Branches (TCC) and steps (saga, msg) of global transactions; written only by the tcc functions';
COMMENT ON TABLE tcc.fence IS
'Participant fence: the tries, confirms and cancels this database has seen';

/* ------------------------------------------------------------------------
 * Participants
 * ------------------------------------------------------------------------
 */

CREATE FUNCTION tcc.fdw_validator(options text[], catalog oid)
RETURNS void
AS 'MODULE_PATHNAME', 'tcc_fdw_validator'
LANGUAGE C STRICT;

COMMENT ON FUNCTION tcc.fdw_validator(text[], oid) IS
'Validator of tcc_fdw: libpq connection options on servers, credentials on user mappings';

CREATE FOREIGN DATA WRAPPER tcc_fdw VALIDATOR tcc.fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER tcc_fdw IS
'Participants of tcc global transactions: one foreign server per participant database';

/* ------------------------------------------------------------------------
 * Coordinator API
 * ------------------------------------------------------------------------
 */

CREATE FUNCTION tcc.begin(gid text DEFAULT NULL,
						  timeout interval DEFAULT NULL,
						  mode text DEFAULT 'tcc',
						  meta jsonb DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_begin'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.begin(text, interval, text, jsonb) IS
'Start a global transaction in status trying and return its gid (idempotent while trying)';

CREATE FUNCTION tcc.register_branch(gid text,
									server text,
									confirm_sql text,
									cancel_sql text,
									payload jsonb DEFAULT NULL,
									branch_id text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_register_branch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.register_branch(text, text, text, text, jsonb, text) IS
'Register a TCC branch (confirm and cancel SQL) of a trying transaction and return its branch id';

CREATE FUNCTION tcc.add_step(gid text,
							 server text,
							 action_sql text,
							 compensate_sql text DEFAULT NULL,
							 payload jsonb DEFAULT NULL,
							 step_id text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_add_step'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.add_step(text, text, text, text, jsonb, text) IS
'Append a step (action and compensation SQL) to a trying saga or msg transaction and return its step id';

CREATE FUNCTION tcc.commit(gid text)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_commit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.commit(text) IS
'Move a TCC transaction from trying to confirming (idempotent) and return its status';

CREATE FUNCTION tcc.submit(gid text)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_submit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.submit(text) IS
'Move a saga or msg transaction from trying to confirming (idempotent) and return its status';

CREATE FUNCTION tcc.rollback(gid text, reason text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_rollback'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.rollback(text, text) IS
'Move a transaction from trying to cancelling (idempotent) and return its status';

CREATE FUNCTION tcc.status(gid text)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_status'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION tcc.status(text) IS
'Current status of a global transaction';

CREATE FUNCTION tcc.wait(gid text, timeout interval DEFAULT '30 s')
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_wait'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.wait(text, interval) IS
'Wait until a global transaction is confirmed, cancelled or failed, or until the timeout passes, and return its status';

CREATE PROCEDURE tcc.try(gid text,
						 server text,
						 try_sql text,
						 confirm_sql text,
						 cancel_sql text,
						 payload jsonb DEFAULT NULL,
						 INOUT branch_id text DEFAULT NULL)
AS 'MODULE_PATHNAME', 'tcc_try'
LANGUAGE C;

COMMENT ON PROCEDURE tcc.try(text, text, text, text, text, jsonb, text) IS
'Register a TCC branch and commit, run its try on the participant, record the outcome (tried or try_failed) and commit; raises the participant''s error; not inside a transaction block';

CREATE FUNCTION tcc.retry(gid text)
RETURNS text
AS 'MODULE_PATHNAME', 'tcc_retry'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.retry(text) IS
'Resume a failed transaction in the phase it left, with attempts reset, and return its status';

CREATE FUNCTION tcc.purge(older_than interval)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tcc_purge'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.purge(interval) IS
'Delete the caller''s confirmed and cancelled transactions finished longer ago than older_than; returns how many';

/* ------------------------------------------------------------------------
 * Participant API
 * ------------------------------------------------------------------------
 */

CREATE FUNCTION tcc.fence_try(gid text, branch_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tcc_fence_try'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.fence_try(text, text) IS
'Participant fence for a try or saga action: true when the business code must run';

CREATE FUNCTION tcc.fence_confirm(gid text, branch_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tcc_fence_confirm'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.fence_confirm(text, text) IS
'Participant fence for a confirm: true when the business code must run';

CREATE FUNCTION tcc.fence_cancel(gid text, branch_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tcc_fence_cancel'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION tcc.fence_cancel(text, text) IS
'Participant fence for a cancel or compensation: true when the business code must run';

CREATE FUNCTION tcc.fence_purge(older_than interval)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tcc_fence_purge'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

/*
 * Any role that may call the fence can write a fence row for any branch: a
 * planted tried row makes the real try say "already ran" and its confirm
 * consume what was never reserved.  So the fence is for the roles a
 * participant grants it to (the role its user mapping on the coordinator
 * names), not for PUBLIC.
 */
REVOKE ALL ON FUNCTION tcc.fence_try(text, text), tcc.fence_confirm(text, text),
	tcc.fence_cancel(text, text), tcc.fence_purge(interval) FROM PUBLIC;

COMMENT ON FUNCTION tcc.fence_purge(interval) IS
'Delete the fence rows of branches last decided longer ago than older_than; returns how many (superuser or granted roles only)';

/* ------------------------------------------------------------------------
 * Monitoring
 * ------------------------------------------------------------------------
 */

/*
 * The views read the private tables with their owner's rights and show a
 * row only when tcc.is_visible(owner), evaluated as the querying role, says
 * so.  security_barrier keeps a caller's leaky function from seeing the rows
 * the filter removes.
 */
CREATE FUNCTION tcc.is_visible(owner oid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tcc_is_visible'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION tcc.is_visible(oid) IS
'Whether the current role may see a global transaction owned by this role (member or superuser)';

CREATE VIEW tcc.transactions WITH (security_barrier) AS
SELECT g.gid,
	   g.mode::pg_catalog.text AS mode,
	   g.status::pg_catalog.text AS status,
	   g.owner,
	   g.created_at,
	   g.updated_at,
	   g.deadline,
	   g.finished_at,
	   coalesce(b.branches, 0) AS branches,
	   coalesce(b.pending, 0) AS branches_pending,
	   coalesce(b.confirmed, 0) AS branches_confirmed,
	   coalesce(b.cancelled, 0) AS branches_cancelled,
	   coalesce(b.failed, 0) AS branches_failed,
	   g.failed_phase::pg_catalog.text AS failed_phase,
	   g.reason,
	   coalesce(g.last_error, b.last_error) AS last_error
  FROM tcc.global_transaction g
  LEFT JOIN LATERAL (
	SELECT pg_catalog.count(*) AS branches,
		   pg_catalog.count(*)
			   FILTER (WHERE br.status IN ('registered', 'tried',
										   'confirming',
										   'cancelling')) AS pending,
		   pg_catalog.count(*)
			   FILTER (WHERE br.status = 'confirmed') AS confirmed,
		   pg_catalog.count(*)
			   FILTER (WHERE br.status IN ('cancelled',
										   'skipped')) AS cancelled,
		   pg_catalog.count(*)
			   FILTER (WHERE br.status IN ('try_failed', 'failed',
										   'aborted')) AS failed,
		   (pg_catalog.array_agg(br.last_error ORDER BY br.updated_at DESC)
				FILTER (WHERE br.last_error IS NOT NULL
						  AND br.status NOT IN ('confirmed', 'cancelled',
												'skipped')))[1]
			   AS last_error
	  FROM tcc.branch br
	 WHERE br.gid = g.gid) b ON true
 WHERE tcc.is_visible(g.owner::pg_catalog.oid);

COMMENT ON VIEW tcc.transactions IS
'One row per global transaction the current role may see, with its branch counts by state';

CREATE VIEW tcc.branches WITH (security_barrier) AS
SELECT br.gid,
	   br.branch_id,
	   br.seq,
	   g.mode::pg_catalog.text AS mode,
	   br.server,
	   br.status::pg_catalog.text AS status,
	   br.attempts,
	   br.next_attempt_at,
	   br.last_attempt_at,
	   br.last_error,
	   br.last_sqlstate,
	   br.last_detail,
	   br.last_hint,
	   br.last_context,
	   br.confirm_sql,
	   br.cancel_sql,
	   br.payload,
	   br.created_at,
	   br.updated_at
  FROM tcc.branch br
  JOIN tcc.global_transaction g ON g.gid = br.gid
 WHERE tcc.is_visible(g.owner::pg_catalog.oid);

COMMENT ON VIEW tcc.branches IS
'One row per branch or step of the global transactions the current role may see';

CREATE VIEW tcc.stats WITH (security_barrier) AS
SELECT pg_catalog.count(*) FILTER (WHERE g.status = 'trying') AS trying,
	   pg_catalog.count(*) FILTER (WHERE g.status = 'confirming') AS confirming,
	   pg_catalog.count(*) FILTER (WHERE g.status = 'confirmed') AS confirmed,
	   pg_catalog.count(*) FILTER (WHERE g.status = 'cancelling') AS cancelling,
	   pg_catalog.count(*) FILTER (WHERE g.status = 'cancelled') AS cancelled,
	   pg_catalog.count(*) FILTER (WHERE g.status = 'failed') AS failed,
	   pg_catalog.now() -
		   pg_catalog.min(g.created_at) FILTER (WHERE g.finished_at IS NULL)
		   AS oldest_unfinished_age,
	   (SELECT pg_catalog.count(*)
		  FROM tcc.branch br
		  JOIN tcc.global_transaction g2 ON g2.gid = br.gid
		 WHERE br.status IN ('confirming', 'cancelling')
		   AND br.attempts > 0
		   AND tcc.is_visible(g2.owner::pg_catalog.oid)) AS retry_backlog
  FROM tcc.global_transaction g
 WHERE tcc.is_visible(g.owner::pg_catalog.oid);

COMMENT ON VIEW tcc.stats IS
'Counts of the visible global transactions by status, the oldest unfinished one''s age and the retry backlog';

CREATE FUNCTION tcc.worker_status(
	OUT datname name,
	OUT pid integer,
	OUT state text,
	OUT started_at timestamptz,
	OUT last_wakeup timestamptz,
	OUT calls_succeeded bigint,
	OUT calls_failed bigint,
	OUT open_connections integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tcc_worker_status'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION tcc.worker_status() IS
'Live state of the tcc background workers, read from shared memory';

CREATE VIEW tcc.worker AS SELECT * FROM tcc.worker_status();

COMMENT ON VIEW tcc.worker IS
'One row per running tcc worker: database, pid, state, start and last wake-up, calls and open participant connections';

GRANT SELECT ON tcc.transactions, tcc.branches, tcc.stats, tcc.worker
	TO PUBLIC;
