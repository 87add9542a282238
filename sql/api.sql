--
-- api: every coordinator function in its normal use (README, The API in brief; doc/design.md, States).
--
-- No background worker runs in this suite (test/tcc.conf does not preload
-- tcc), so statuses move only through the SQL
-- API.  Where a test needs a status that only the worker can produce
-- (confirmed after phase two, failed, an old finished_at) it says so and
-- simulates the worker with a superuser UPDATE of tcc's tables.
--
-- Nothing here prints a timestamp or a generated id: the output shows facts
-- derived from them.  All gids of this file start with 'api-', except the
-- generated ones, which are kept in psql variables.
--
CREATE EXTENSION tcc;
-- the schema, the tables and the wrapper exist
SELECT c.relname, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'tcc'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY c.relname;
SELECT fdwname FROM pg_foreign_data_wrapper WHERE fdwname = 'tcc_fdw';
-- a transaction's owner is a role and a branch's server is a name, so that
-- pg_dump writes names rather than OIDs
SELECT a.attrelid::regclass AS "table", a.attname,
	   format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
 WHERE (a.attrelid, a.attname) IN (('tcc.global_transaction'::regclass, 'owner'),
								   ('tcc.branch'::regclass, 'server'))
 ORDER BY 1, 2;

-- the coordinator's view of its own rows, without timestamps or generated ids
CREATE FUNCTION pg_temp.gtx(pattern text)
RETURNS TABLE (gid text, mode text, status text, owner_is_me boolean,
			   meta jsonb, branch_count integer, finished boolean,
			   failed_phase text, reason text, last_error text)
LANGUAGE sql AS $$
	SELECT g.gid, g.mode, g.status, g.owner = current_user::regrole,
		   g.meta,
		   (SELECT count(*)::integer FROM tcc.branch b WHERE b.gid = g.gid),
		   g.finished_at IS NOT NULL,
		   g.failed_phase, g.reason, g.last_error
	  FROM tcc.global_transaction g
	 WHERE g.gid LIKE pattern
	 ORDER BY g.gid
$$;
CREATE FUNCTION pg_temp.br(pattern text)
RETURNS TABLE (gid text, seq integer, branch_id text, server text,
			   status text, attempts integer, due boolean,
			   confirm_sql text, cancel_sql text, payload jsonb,
			   last_error text)
LANGUAGE sql AS $$
	SELECT b.gid, b.seq,
		   CASE WHEN b.branch_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
				THEN '<uuidv7>' ELSE b.branch_id END,
		   b.server, b.status, b.attempts,
		   b.next_attempt_at IS NOT NULL AND b.next_attempt_at <= now(),
		   b.confirm_sql, b.cancel_sql, b.payload, b.last_error
	  FROM tcc.branch b
	 WHERE b.gid LIKE pattern
	 ORDER BY b.gid, b.seq
$$;

--
-- tcc.begin
--
-- a generated gid is a UUID of version 7 whose first 48 bits are the time in
-- milliseconds, so gids generated later sort later
SELECT tcc.begin() AS g1 \gset
SELECT tcc.begin() AS g2 \gset
SELECT :'g1' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS g1_is_uuidv7,
	   :'g2' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS g2_is_uuidv7,
	   :'g1' <> :'g2' AS distinct_gids,
	   left(:'g1', 13) <= left(:'g2', 13) AS time_ordered,
	   abs(('x' || lpad(replace(left(:'g1', 13), '-', ''), 16, '0'))::bit(64)::bigint
		   - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 60000
		   AS carries_current_time;
-- a generated gid's transaction: tcc, trying, mine, the default timeout
SELECT mode, status, owner = current_user::regrole AS owner_is_me, meta,
	   (SELECT count(*) FROM tcc.branch b WHERE b.gid = g.gid)
		   AS branch_count,
	   deadline - created_at AS timeout,
	   created_at = updated_at AND created_at <= now() AS stamped,
	   finished_at IS NULL AS unfinished
  FROM tcc.global_transaction g WHERE gid = :'g1';

-- an explicit gid is returned as given; tcc.default_timeout is 60 s
SHOW tcc.default_timeout;
SELECT tcc.begin('api-t');
SELECT deadline - created_at AS timeout FROM tcc.global_transaction
 WHERE gid = 'api-t';
-- the default timeout follows the setting
SET tcc.default_timeout = '5min';
SELECT tcc.begin('api-timeout-5min');
RESET tcc.default_timeout;
SELECT tcc.begin('api-timeout-explicit', '90 seconds');
SELECT tcc.begin(gid => 'api-timeout-2h', timeout => '2 hours');
SELECT gid, deadline - created_at AS timeout FROM tcc.global_transaction
 WHERE gid LIKE 'api-timeout-%' ORDER BY gid;
-- tcc.default_timeout takes any number of seconds an integer holds
SET tcc.default_timeout = 2147483647;
SHOW tcc.default_timeout;
SELECT tcc.begin('api-long-timeout');
RESET tcc.default_timeout;
SELECT deadline - created_at AS timeout FROM tcc.global_transaction
 WHERE gid = 'api-long-timeout';
DELETE FROM tcc.global_transaction WHERE gid = 'api-long-timeout';

-- begin is idempotent while trying: same gid back, nothing changed
SELECT updated_at AS t_updated, deadline AS t_deadline
  FROM tcc.global_transaction WHERE gid = 'api-t' \gset
SELECT tcc.begin('api-t');
SELECT tcc.begin('api-t', '1 hour', 'tcc', '{"again": true}');
SELECT count(*) AS rows_for_gid,
	   bool_and(updated_at = :'t_updated' AND deadline = :'t_deadline'
				AND meta IS NULL) AS unchanged
  FROM tcc.global_transaction WHERE gid = 'api-t';

-- the three modes, and meta
SELECT tcc.begin('api-saga', NULL, 'saga', '{"order": 42, "tags": ["a"]}');
SELECT tcc.begin(gid => 'api-msg', mode => 'msg');
SELECT tcc.begin('api-saga', mode => 'saga');	-- idempotent with its mode
SELECT * FROM pg_temp.gtx('api-%');

--
-- tcc.register_branch
--
CREATE SERVER p1 FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '127.0.0.1', dbname 'participant');
CREATE USER MAPPING FOR PUBLIC SERVER p1 OPTIONS (password 'unused');
-- a local branch (server NULL) gets the generated id 1
SELECT tcc.register_branch('api-t', NULL,
						   'UPDATE stock SET frozen = frozen - 2 WHERE $3 IS NOT NULL',
						   'UPDATE stock SET frozen = frozen - 2, stock = stock + 2');
-- a branch on a participant, with a payload: id 2
SELECT tcc.register_branch('api-t', 'p1', 'SELECT confirm_order($1, $2, $3)',
						   'SELECT cancel_order($1, $2, $3)', '{"qty": 2}');
-- an explicit id
SELECT tcc.register_branch(gid => 'api-t', server => 'p1',
						   confirm_sql => 'SELECT 1', cancel_sql => 'SELECT 2',
						   branch_id => 'inventory');
-- the user takes the id "5" for the fourth branch ...
SELECT tcc.register_branch('api-t', NULL, 'SELECT 1', 'SELECT 2', NULL, '5');
-- ... so the fifth branch, which would get "5", gets a UUID instead
SELECT tcc.register_branch('api-t', NULL, 'SELECT 1', 'SELECT 2')
	   ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
	   AS fifth_id_is_uuidv7;
-- and the sixth is numbered again
SELECT tcc.register_branch('api-t', NULL, 'SELECT 1', 'SELECT 2');
SELECT * FROM pg_temp.br('api-t');
-- six branches now; registering does not change the transaction, which is
-- still trying
SELECT * FROM pg_temp.gtx('api-t');
SELECT tcc.status('api-t');

--
-- tcc.add_step (saga and msg)
--
SELECT tcc.add_step('api-saga', NULL, 'SELECT reserve($1, $2, $3)',
					'SELECT unreserve($1, $2, $3)', '{"qty": 2}');
SELECT tcc.add_step('api-saga', 'p1', 'SELECT charge($3)');	-- no compensation
SELECT tcc.add_step(gid => 'api-saga', server => 'p1',
					action_sql => 'SELECT ship($3)',
					compensate_sql => 'SELECT unship($3)', step_id => 'ship');
SELECT tcc.add_step('api-msg', NULL, 'INSERT INTO outbox VALUES ($1, $3)');
SELECT tcc.add_step('api-msg', 'p1', 'SELECT notify($3)', NULL, '{"to": "x"}',
					'notify');
SELECT * FROM pg_temp.br('api-saga');
SELECT * FROM pg_temp.br('api-msg');

--
-- tcc.commit: trying -> confirming, every branch confirming and due
--
SELECT tcc.commit('api-t');
SELECT * FROM pg_temp.gtx('api-t');
SELECT seq, status, attempts, due FROM pg_temp.br('api-t');
-- a repeated commit returns the status and changes nothing
SELECT updated_at AS t_updated FROM tcc.global_transaction
 WHERE gid = 'api-t' \gset
SELECT tcc.commit('api-t');
SELECT updated_at = :'t_updated' AS unchanged FROM tcc.global_transaction
 WHERE gid = 'api-t';

--
-- tcc.submit: trying -> confirming, only the first step due
--
SELECT tcc.submit('api-saga');
SELECT tcc.submit('api-saga');	-- idempotent
SELECT tcc.submit('api-msg');
SELECT * FROM pg_temp.gtx('api-msg');
SELECT gid, seq, status, due FROM pg_temp.br('api-saga')
UNION ALL
SELECT gid, seq, status, due FROM pg_temp.br('api-msg')
ORDER BY 1, 2;
SELECT tcc.status('api-saga'), tcc.status('api-msg');

--
-- a transaction with no branches goes straight to its terminal status
--
SELECT tcc.begin('api-empty-commit');
SELECT tcc.commit('api-empty-commit');
SELECT tcc.commit('api-empty-commit');	-- idempotent when confirmed
SELECT tcc.begin('api-empty-submit', mode => 'saga');
SELECT tcc.submit('api-empty-submit');
SELECT tcc.begin('api-empty-msg', mode => 'msg');
SELECT tcc.submit('api-empty-msg');
SELECT tcc.submit('api-empty-msg');		-- idempotent when confirmed
SELECT tcc.begin('api-empty-rollback');
SELECT tcc.rollback('api-empty-rollback', 'nothing to do');
SELECT tcc.rollback('api-empty-rollback');	-- idempotent when cancelled
SELECT * FROM pg_temp.gtx('api-empty-%');

--
-- tcc.rollback of a TCC transaction: trying -> cancelling, every branch
-- cancelling and due (the worker cancels in reverse order)
--
SELECT tcc.begin('api-r');
SELECT tcc.register_branch('api-r', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.register_branch('api-r', 'p1', 'SELECT 3', 'SELECT 4');
SELECT tcc.rollback('api-r', 'out of stock');
SELECT * FROM pg_temp.gtx('api-r');
SELECT seq, status, attempts, due FROM pg_temp.br('api-r');
-- repeated: the status back, the first reason kept
SELECT tcc.rollback('api-r', 'another reason');
SELECT tcc.rollback('api-r');
SELECT status, reason FROM tcc.global_transaction WHERE gid = 'api-r';
-- no reason given: none recorded
SELECT tcc.begin('api-r2');
SELECT tcc.register_branch('api-r2', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.rollback('api-r2');
SELECT * FROM pg_temp.gtx('api-r2');

--
-- tcc.rollback of a saga still trying: its steps never ran, so it is
-- cancelled at once and the steps are skipped
--
SELECT tcc.begin('api-saga-r', mode => 'saga');
SELECT tcc.add_step('api-saga-r', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.add_step('api-saga-r', 'p1', 'SELECT 3', 'SELECT 4');
SELECT tcc.rollback('api-saga-r', 'customer changed mind');
SELECT tcc.rollback('api-saga-r');		-- idempotent
SELECT * FROM pg_temp.gtx('api-saga-r');
SELECT seq, status, attempts, due FROM pg_temp.br('api-saga-r');
-- the same for a msg transaction
SELECT tcc.begin('api-msg-r', mode => 'msg');
SELECT tcc.add_step('api-msg-r', NULL, 'SELECT 1');
SELECT tcc.rollback('api-msg-r');
SELECT * FROM pg_temp.gtx('api-msg-r');
SELECT seq, status, due FROM pg_temp.br('api-msg-r');

--
-- tcc.retry in the confirming phase.
--
-- Simulate the worker (none runs here): branch 1's confirm failed for
-- good, the others were confirmed, and the transaction became failed.
UPDATE tcc.branch
   SET status = 'confirmed', attempts = 1, next_attempt_at = NULL,
	   last_attempt_at = now(), updated_at = now()
 WHERE gid = 'api-t' AND seq <> 1;
UPDATE tcc.branch
   SET status = 'failed', attempts = 5, next_attempt_at = NULL,
	   last_attempt_at = now(), updated_at = now(),
	   last_error = 'function confirm_stock() does not exist',
	   last_sqlstate = '42883'
 WHERE gid = 'api-t' AND seq = 1;
-- and the last branch was still waiting for its next retry
UPDATE tcc.branch
   SET status = 'confirming', attempts = 3,
	   next_attempt_at = now() + interval '1 hour', updated_at = now()
 WHERE gid = 'api-t'
   AND seq = (SELECT max(seq) FROM tcc.branch WHERE gid = 'api-t');
UPDATE tcc.global_transaction
   SET status = 'failed', failed_phase = 'confirming', updated_at = now(),
	   last_error = 'branch 1: function confirm_stock() does not exist'
 WHERE gid = 'api-t';
SELECT tcc.status('api-t');
SELECT tcc.retry('api-t');
-- back to confirming; the failed branch and the waiting one are due now
-- with attempts reset, the confirmed ones are left alone
SELECT * FROM pg_temp.gtx('api-t');
SELECT seq, status, attempts, due, last_error FROM pg_temp.br('api-t');
SELECT tcc.status('api-t');
SELECT tcc.commit('api-t');		-- still idempotent

--
-- tcc.retry in the cancelling phase.
--
-- Simulate the worker: branch 2's cancel failed for good, branch 1 was
-- cancelled, and the transaction became failed.
UPDATE tcc.branch
   SET status = CASE seq WHEN 1 THEN 'cancelled' ELSE 'failed' END,
	   attempts = CASE seq WHEN 1 THEN 1 ELSE 10 END,
	   next_attempt_at = NULL, updated_at = now(),
	   last_error = CASE seq WHEN 2 THEN 'connection refused' END,
	   last_sqlstate = CASE seq WHEN 2 THEN '08001' END
 WHERE gid = 'api-r';
UPDATE tcc.global_transaction
   SET status = 'failed', failed_phase = 'cancelling', updated_at = now(),
	   last_error = 'attempts exhausted'
 WHERE gid = 'api-r';
SELECT tcc.status('api-r');
SELECT tcc.retry('api-r');
SELECT * FROM pg_temp.gtx('api-r');
SELECT seq, status, attempts, due FROM pg_temp.br('api-r');
SELECT tcc.rollback('api-r');	-- idempotent again

--
-- tcc.purge deletes finished (confirmed, cancelled) transactions only, and
-- their branches with them.
--
-- Simulate the worker: api-t's confirms all succeeded.
UPDATE tcc.branch SET status = 'confirmed', next_attempt_at = NULL,
	   updated_at = now()
 WHERE gid = 'api-t';
UPDATE tcc.global_transaction SET status = 'confirmed', finished_at = now(),
	   updated_at = now()
 WHERE gid = 'api-t';
SELECT tcc.commit('api-t');		-- idempotent when confirmed
-- a failed transaction, which purge must keep however old
SELECT tcc.begin('api-failed');
SELECT tcc.register_branch('api-failed', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.commit('api-failed');
-- Simulate the worker: the confirm failed for good, long ago.
UPDATE tcc.branch SET status = 'failed', next_attempt_at = NULL
 WHERE gid = 'api-failed';
UPDATE tcc.global_transaction
   SET status = 'failed', failed_phase = 'confirming',
	   created_at = now() - interval '30 days',
	   updated_at = now() - interval '30 days'
 WHERE gid = 'api-failed';
-- Simulate age: two finished transactions finished two days ago.
UPDATE tcc.global_transaction
   SET finished_at = finished_at - interval '2 days'
 WHERE gid IN ('api-empty-commit', 'api-saga-r');
SELECT gid, status FROM tcc.global_transaction
 WHERE finished_at IS NOT NULL ORDER BY gid;
SELECT count(*) AS saga_r_steps FROM tcc.branch WHERE gid = 'api-saga-r';
-- nothing finished three days ago
SELECT tcc.purge('3 days');
-- the two that finished two days ago
SELECT tcc.purge('1 day');
SELECT tcc.purge('1 day');
SELECT gid FROM tcc.global_transaction
 WHERE gid IN ('api-empty-commit', 'api-saga-r');
-- their steps went with them
SELECT count(*) AS saga_r_steps FROM tcc.branch WHERE gid = 'api-saga-r';
-- everything else that has finished
SELECT tcc.purge('0');
SELECT count(*) AS finished_left FROM tcc.global_transaction
 WHERE finished_at IS NOT NULL;
SELECT count(*) AS branches_of_purged FROM tcc.branch
 WHERE gid IN ('api-t', 'api-saga-r', 'api-msg-r', 'api-empty-commit',
			   'api-empty-submit', 'api-empty-msg', 'api-empty-rollback');
-- trying, confirming, cancelling and failed ones are all kept
SELECT gid, tcc.status(gid) FROM tcc.global_transaction
 WHERE gid LIKE 'api-%' ORDER BY gid;
SELECT count(*) AS generated_kept FROM tcc.global_transaction
 WHERE gid IN (:'g1', :'g2');

--
-- The tables' rules (doc/design.md, The tables and what a call costs).
--
-- No CHECK constraint and no foreign key, which PostgreSQL would read (or
-- run) again at every write: statuses and modes are domains, and a trigger
-- deletes a deleted transaction's branches
SELECT conrelid::regclass AS "table", contype, conname FROM pg_constraint
 WHERE conrelid IN ('tcc.global_transaction'::regclass, 'tcc.branch'::regclass,
					'tcc.fence'::regclass)
 ORDER BY 1, 3;
SELECT a.attrelid::regclass AS "table", a.attname,
	   format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
 WHERE a.attrelid IN ('tcc.global_transaction'::regclass,
					  'tcc.branch'::regclass, 'tcc.fence'::regclass)
   AND a.atttypid IN (SELECT oid FROM pg_type WHERE typtype = 'd')
 ORDER BY 1, 2;
SELECT tgname, pg_get_triggerdef(oid) ~ 'FOR EACH STATEMENT' AS per_statement
  FROM pg_trigger WHERE tgrelid = 'tcc.global_transaction'::regclass
 ORDER BY tgname;
-- what a purchase writes: begin inserts the row, the registrations only
-- lock it and insert their branches, commit updates it once and makes both
-- branches due
-- (counted as the difference of this backend's counters, which are not
-- flushed inside a transaction block)
BEGIN;
CREATE TEMP TABLE api_cost AS
SELECT relid, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables
 WHERE relid IN ('tcc.global_transaction'::regclass, 'tcc.branch'::regclass);
SELECT tcc.begin('api-cost');
SELECT tcc.register_branch('api-cost', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.register_branch('api-cost', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.commit('api-cost');
SELECT s.relid::regclass AS "table", s.n_tup_ins - c.n_tup_ins AS inserted,
	   s.n_tup_upd - c.n_tup_upd AS updated,
	   s.n_tup_del - c.n_tup_del AS deleted
  FROM pg_stat_xact_user_tables s JOIN api_cost c USING (relid)
 ORDER BY 1;
ROLLBACK;
-- a value that no status, mode or phase has is refused, naming the domain,
-- even for a superuser writing the table by hand
UPDATE tcc.global_transaction SET status = 'done' WHERE gid = 'api-failed';
UPDATE tcc.global_transaction SET mode = 'xa' WHERE gid = 'api-failed';
UPDATE tcc.global_transaction SET failed_phase = 'trying'
 WHERE gid = 'api-failed';
UPDATE tcc.branch SET status = 'done' WHERE gid = 'api-failed';
INSERT INTO tcc.fence (gid, branch_id, state) VALUES ('api-x', 'b', 'maybe');
-- the views show them as text
SELECT pg_typeof(mode) AS mode, pg_typeof(status) AS status,
	   pg_typeof(failed_phase) AS failed_phase
  FROM tcc.transactions WHERE gid = 'api-failed';
SELECT pg_typeof(mode) AS mode, pg_typeof(status) AS status
  FROM tcc.branches WHERE gid = 'api-failed';
-- retention deletes only confirmed and cancelled transactions, whatever
-- finished_at says: a failed one stamped finished by hand stays
UPDATE tcc.global_transaction SET finished_at = now() - interval '1 year'
 WHERE gid = 'api-failed';
SELECT tcc.purge('1 day');
SELECT g.status, count(b.*) AS branches
  FROM tcc.global_transaction g LEFT JOIN tcc.branch b USING (gid)
 WHERE gid = 'api-failed' GROUP BY g.status;
UPDATE tcc.global_transaction SET finished_at = NULL WHERE gid = 'api-failed';
-- one DELETE of many transactions takes all their branches (more than the
-- 10,000 transactions whose branches the trigger deletes per statement), and
-- nobody else's
BEGIN;
INSERT INTO tcc.global_transaction
	(gid, mode, status, owner, created_at, updated_at, deadline)
SELECT 'api-del-' || i, 'tcc', 'trying', current_user::regrole,
	   now(), now(), now() + interval '1 hour'
  FROM generate_series(1, 10001) i;
INSERT INTO tcc.branch
	(gid, branch_id, seq, confirm_sql, cancel_sql, created_at, updated_at)
SELECT 'api-del-' || i, b::text, b, 'SELECT 1', 'SELECT 2', now(), now()
  FROM generate_series(1, 10001) i, generate_series(1, 2) b;
SELECT count(*) AS branches_before FROM tcc.branch;
DELETE FROM tcc.global_transaction WHERE gid LIKE 'api-del-%';
SELECT count(*) AS deleted_branches_left FROM tcc.branch
 WHERE gid LIKE 'api-del-%';
SELECT count(*) AS others_kept FROM tcc.branch;
-- TRUNCATE empties the branches too
TRUNCATE tcc.global_transaction;
SELECT count(*) AS branches_after_truncate FROM tcc.branch;
ROLLBACK;
-- the trigger's function is no function to call, nor a trigger of anything
-- else
SELECT tcc.delete_branches();
CREATE TEMP TABLE api_trigger_target (gid text);
CREATE TRIGGER api_wrong AFTER DELETE ON api_trigger_target
	REFERENCING OLD TABLE AS deleted
	FOR EACH STATEMENT EXECUTE FUNCTION tcc.delete_branches();
DELETE FROM api_trigger_target;
DROP TABLE api_trigger_target;

--
-- tcc.status sees a transaction begun in the same statement (it is
-- volatile, so it takes a new snapshot)
--
SELECT provolatile FROM pg_proc WHERE oid = 'tcc.status(text)'::regprocedure;
SELECT tcc.status(tcc.begin('api-status-same-statement'));

--
-- the deadline.  A transaction still trying once its try phase is over can
-- no longer get branches or steps, nor be committed or submitted
-- (errors.sql shows those errors); it can still be rolled back, and a
-- commit or submit made in time stays idempotent.
--
-- Each of these is begun with a try phase of 1 ms in one statement that
-- also adds its branches and, for some, commits: all of it is in time,
-- since a statement's time is its transaction's start.  Then 10 ms pass.
DO $$
BEGIN
	PERFORM tcc.begin('api-dl-committed', '1 ms');
	PERFORM tcc.register_branch('api-dl-committed', NULL, 'SELECT 1', 'SELECT 2');
	PERFORM tcc.commit('api-dl-committed');
	PERFORM tcc.begin('api-dl-committed-empty', '1 ms');
	PERFORM tcc.commit('api-dl-committed-empty');
	PERFORM tcc.begin('api-dl-submitted', '1 ms', 'msg');
	PERFORM tcc.add_step('api-dl-submitted', NULL, 'SELECT 1');
	PERFORM tcc.submit('api-dl-submitted');
	PERFORM tcc.begin('api-dl-r', '1 ms');
	PERFORM tcc.register_branch('api-dl-r', NULL, 'SELECT 1', 'SELECT 2');
	PERFORM tcc.register_branch('api-dl-r', 'p1', 'SELECT 3', 'SELECT 4');
	PERFORM tcc.begin('api-dl-r-empty', '1 ms');
	PERFORM tcc.begin('api-dl-saga-r', '1 ms', 'saga');
	PERFORM tcc.add_step('api-dl-saga-r', NULL, 'SELECT 1', 'SELECT 2');
END $$;
SELECT pg_sleep(0.01);
SELECT gid, mode, status,
	   (SELECT count(*) FROM tcc.branch b WHERE b.gid = g.gid) AS branch_count,
	   deadline < statement_timestamp() AS past_deadline
  FROM tcc.global_transaction g WHERE gid LIKE 'api-dl-%' ORDER BY gid;
-- committed or submitted in time: repeating it returns the status
SELECT tcc.commit('api-dl-committed');
SELECT tcc.commit('api-dl-committed-empty');
SELECT tcc.submit('api-dl-submitted');
-- rolled back after the deadline: as before it
SELECT tcc.rollback('api-dl-r', 'too slow');
SELECT tcc.rollback('api-dl-r');	-- idempotent
SELECT seq, status, attempts, due FROM pg_temp.br('api-dl-r');
SELECT tcc.rollback('api-dl-r-empty');
SELECT tcc.rollback('api-dl-saga-r');
SELECT seq, status, due FROM pg_temp.br('api-dl-saga-r');
-- beginning a gid again that is still trying returns it even after the
-- deadline, which stays as it was
SELECT tcc.begin('api-dl-again', '1 ms');
SELECT deadline AS dl_deadline FROM tcc.global_transaction
 WHERE gid = 'api-dl-again' \gset
SELECT pg_sleep(0.01);
SELECT tcc.begin('api-dl-again', '1 hour');
SELECT status, deadline = :'dl_deadline' AS deadline_unchanged
  FROM tcc.global_transaction WHERE gid = 'api-dl-again';
SELECT * FROM pg_temp.gtx('api-dl-%');

--
-- a transaction that records a tcc decision cannot be prepared for
-- two-phase commit: whoever ran COMMIT PREPARED would decide whether it is
-- durable on the synchronous standbys, and the worker would not be woken
--
BEGIN;
SELECT tcc.begin('api-prepare');
PREPARE TRANSACTION 'tcc_api_prepare';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS prepared_begins FROM tcc.global_transaction
 WHERE gid = 'api-prepare';
SELECT count(*) AS prepared_xacts FROM pg_prepared_xacts
 WHERE gid = 'tcc_api_prepare';
-- a transaction that only reads is not concerned
BEGIN;
SELECT tcc.status('api-dl-committed') AS status_read;
PREPARE TRANSACTION 'tcc_api_prepare';
\echo :LAST_ERROR_SQLSTATE

--
-- clean up: roll back what is still trying; what the worker would have to
-- finish is deleted by hand (no worker runs in this suite)
--
SELECT gid, tcc.rollback(gid) FROM tcc.global_transaction
 WHERE status = 'trying' AND gid LIKE 'api-%' ORDER BY gid;
SELECT tcc.rollback(:'g1') AS g1, tcc.rollback(:'g2') AS g2;
DELETE FROM tcc.global_transaction
 WHERE gid LIKE 'api-%' OR gid IN (:'g1', :'g2');
SELECT count(*) AS branches_left FROM tcc.branch
 WHERE gid LIKE 'api-%' OR gid IN (:'g1', :'g2');
DROP USER MAPPING FOR PUBLIC SERVER p1;
DROP SERVER p1;
