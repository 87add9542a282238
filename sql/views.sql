--
-- views: tcc.transactions, tcc.branches, tcc.stats, tcc.worker, and the
-- comments on every function and view of the extension.
--
-- The views show each role only the transactions of roles it belongs to,
-- so the counts below are taken as a role made for this file, which sees
-- nothing but its own transactions, whatever other tests left behind.
-- No background worker runs in this suite (test/tcc.conf does not preload
-- tcc): statuses only the worker can produce
-- are simulated by a superuser UPDATE, with a comment saying so.  No
-- timestamp is printed, only facts about them.  All gids start with
-- 'views-'.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS tcc;
RESET client_min_messages;

-- the columns of the four views
\d tcc.transactions
\d tcc.branches
\d tcc.stats
\d tcc.worker

CREATE ROLE regress_tcc_views;
CREATE SERVER views_p1 FOREIGN DATA WRAPPER tcc_fdw;
CREATE USER MAPPING FOR PUBLIC SERVER views_p1 OPTIONS (password 'unused');
GRANT USAGE ON FOREIGN SERVER views_p1 TO regress_tcc_views;

-- the views without timestamps
CREATE FUNCTION pg_temp.tx()
RETURNS TABLE (gid text, mode text, status text, owner regrole,
			   times_ok boolean, finished boolean, branches bigint,
			   pending bigint, confirmed bigint, cancelled bigint,
			   failed bigint, failed_phase text, reason text,
			   last_error text)
LANGUAGE sql AS $$
	SELECT t.gid, t.mode, t.status, t.owner,
		   t.created_at <= t.updated_at AND t.updated_at <= now()
			   AND t.deadline > t.created_at,
		   t.finished_at IS NOT NULL,
		   t.branches, t.branches_pending, t.branches_confirmed,
		   t.branches_cancelled, t.branches_failed, t.failed_phase,
		   t.reason, t.last_error
	  FROM tcc.transactions t
	 WHERE t.gid LIKE 'views-%'
	 ORDER BY t.gid
$$;
CREATE FUNCTION pg_temp.br(pattern text)
RETURNS TABLE (branch_id text, seq integer, mode text, server text,
			   status text, attempts integer, next_attempt text,
			   attempted boolean, last_error text, last_sqlstate text,
			   confirm_sql text, cancel_sql text, payload jsonb,
			   times_ok boolean)
LANGUAGE sql AS $$
	SELECT b.branch_id, b.seq, b.mode, b.server, b.status, b.attempts,
		   CASE WHEN b.next_attempt_at IS NULL THEN NULL
				WHEN b.next_attempt_at <= now() THEN 'due'
				ELSE 'later' END,
		   b.last_attempt_at IS NOT NULL,
		   b.last_error, b.last_sqlstate, b.confirm_sql, b.cancel_sql,
		   b.payload, b.created_at <= b.updated_at
	  FROM tcc.branches b
	 WHERE b.gid LIKE pattern
	 ORDER BY b.gid, b.seq
$$;
CREATE FUNCTION pg_temp.stats()
RETURNS TABLE (trying bigint, confirming bigint, confirmed bigint,
			   cancelling bigint, cancelled bigint, failed bigint,
			   has_unfinished boolean, retry_backlog bigint)
LANGUAGE sql AS $$
	SELECT s.trying, s.confirming, s.confirmed, s.cancelling, s.cancelled,
		   s.failed, s.oldest_unfinished_age IS NOT NULL, s.retry_backlog
	  FROM tcc.stats s
$$;

SET ROLE regress_tcc_views;

-- nothing visible yet: one row of zeros, no unfinished age
SELECT * FROM pg_temp.stats();
SELECT count(*) AS transactions FROM tcc.transactions;
SELECT count(*) AS branches FROM tcc.branches;

-- only finished transactions: still no unfinished age
SELECT tcc.begin('views-done');
SELECT tcc.commit('views-done');
SELECT * FROM pg_temp.stats();

--
-- a TCC transaction with a local branch, a participant's branch and an
-- explicit id
--
SELECT tcc.begin('views-a', '10 minutes');
SELECT tcc.register_branch('views-a', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.register_branch('views-a', 'views_p1', 'SELECT confirm($3)',
						   'SELECT cancel($3)', '{"qty": 2}');
SELECT tcc.register_branch('views-a', 'views_p1', 'SELECT 3', 'SELECT 4',
						   NULL, 'stock');
SELECT * FROM pg_temp.tx();
SELECT * FROM pg_temp.br('views-a');
SELECT * FROM pg_temp.stats();

SELECT tcc.commit('views-a');
SELECT * FROM pg_temp.tx();
SELECT branch_id, status, next_attempt FROM pg_temp.br('views-a');

-- Simulate the worker: branch 1 confirmed, branch 2's participant down
-- (two attempts so far, the next one later), branch stock not yet tried.
RESET ROLE;
UPDATE tcc.branch
   SET status = 'confirmed', attempts = 1, next_attempt_at = NULL,
	   last_attempt_at = now(), updated_at = now()
 WHERE gid = 'views-a' AND branch_id = '1';
UPDATE tcc.branch
   SET attempts = 2, next_attempt_at = now() + interval '1 hour',
	   last_attempt_at = now(), updated_at = now(),
	   last_error = 'could not connect to server "views_p1"',
	   last_sqlstate = '08001'
 WHERE gid = 'views-a' AND branch_id = '2';
SET ROLE regress_tcc_views;
-- the branch counts by state and the branch's error on the transaction
SELECT * FROM pg_temp.tx();
SELECT * FROM pg_temp.br('views-a');
-- one transaction confirming, one branch being retried
SELECT * FROM pg_temp.stats();

--
-- a saga rolled back while trying: its steps are skipped, which counts
-- as cancelled
--
SELECT tcc.begin('views-b', mode => 'saga');
SELECT tcc.add_step('views-b', 'views_p1', 'SELECT 1', 'SELECT 2');
SELECT tcc.add_step('views-b', NULL, 'SELECT 3');
SELECT tcc.rollback('views-b', 'customer left');
SELECT * FROM pg_temp.tx() WHERE gid = 'views-b';
SELECT * FROM pg_temp.br('views-b');

--
-- a TCC transaction whose try of one branch failed
--
SELECT tcc.begin('views-c');
SELECT tcc.register_branch('views-c', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b1');
SELECT tcc.register_branch('views-c', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b2');
-- Simulate CALL tcc.try (not implemented yet): b1 tried, b2's try failed.
RESET ROLE;
UPDATE tcc.branch
   SET status = CASE branch_id WHEN 'b1' THEN 'tried' ELSE 'try_failed' END,
	   last_attempt_at = now(), updated_at = now(),
	   last_error = CASE branch_id WHEN 'b2' THEN 'insufficient stock' END,
	   last_sqlstate = CASE branch_id WHEN 'b2' THEN 'P0001' END
 WHERE gid = 'views-c';
SET ROLE regress_tcc_views;
SELECT * FROM pg_temp.tx() WHERE gid = 'views-c';
SELECT branch_id, status, last_error, last_sqlstate FROM pg_temp.br('views-c');

--
-- a failed transaction: its own last error wins over its branches'
--
SELECT tcc.begin('views-d');
SELECT tcc.register_branch('views-d', NULL, 'SELECT confirm()', 'SELECT 2');
SELECT tcc.commit('views-d');
-- Simulate the worker: the confirm can never succeed, and the transaction
-- was begun two days ago.
RESET ROLE;
UPDATE tcc.branch
   SET status = 'failed', attempts = 1, next_attempt_at = NULL,
	   last_attempt_at = now(), updated_at = now(),
	   last_error = 'function confirm() does not exist',
	   last_sqlstate = '42883'
 WHERE gid = 'views-d';
UPDATE tcc.global_transaction
   SET status = 'failed', failed_phase = 'confirming',
	   last_error = 'branch 1 cannot succeed: function confirm() does not exist',
	   created_at = now() - interval '48 hours'
 WHERE gid = 'views-d';
SET ROLE regress_tcc_views;
SELECT * FROM pg_temp.tx() WHERE gid = 'views-d';
SELECT branch_id, status, attempts, next_attempt, last_error, last_sqlstate
  FROM pg_temp.br('views-d');

--
-- a TCC transaction rolled back, one cancel already retried once
--
SELECT tcc.begin('views-e');
SELECT tcc.register_branch('views-e', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.register_branch('views-e', 'views_p1', 'SELECT 1', 'SELECT 2');
SELECT tcc.rollback('views-e');
-- Simulate the worker: branch 2's cancel failed once.
RESET ROLE;
UPDATE tcc.branch
   SET attempts = 1, last_attempt_at = now(), updated_at = now(),
	   next_attempt_at = now() + interval '1 second',
	   last_error = 'canceling statement due to statement timeout',
	   last_sqlstate = '57014'
 WHERE gid = 'views-e' AND seq = 2;
SET ROLE regress_tcc_views;
SELECT * FROM pg_temp.tx() WHERE gid = 'views-e';

--
-- every status once: the counts, the retry backlog (branches 2 of views-a
-- and views-e) and the oldest unfinished transaction, views-d
--
SELECT * FROM pg_temp.stats();
SELECT oldest_unfinished_age > interval '47 hours'
	   AND oldest_unfinished_age < interval '49 hours' AS oldest_is_views_d
  FROM tcc.stats;
SELECT gid, status, branches, pending, confirmed, cancelled, failed
  FROM pg_temp.tx();

-- the views show this role only its own transactions: one begun by the
-- superuser is not counted
RESET ROLE;
SELECT tcc.begin('views-superuser');
SET ROLE regress_tcc_views;
SELECT count(*) AS visible FROM tcc.transactions WHERE gid = 'views-superuser';
SELECT trying FROM tcc.stats;
RESET ROLE;
SELECT count(*) AS visible_to_superuser FROM tcc.transactions
 WHERE gid LIKE 'views-%';

--
-- tcc.worker: no worker runs in this suite (tcc is not preloaded), but the
-- view answers with its columns
--
SELECT * FROM tcc.worker WHERE false;
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_attribute a
 WHERE a.attrelid = 'tcc.worker'::regclass AND a.attnum > 0
 ORDER BY a.attnum;
-- every role may read the views
SELECT c.relname,
	   has_table_privilege('regress_tcc_views', c.oid, 'SELECT') AS readable
  FROM pg_class c
 WHERE c.relnamespace = 'tcc'::regnamespace AND c.relkind = 'v'
 ORDER BY c.relname;

--
-- every function and view (and table, and the wrapper) of the extension
-- has a comment: the list of those without one must be empty
--
SELECT pg_describe_object(d.classid, d.objid, 0) AS without_comment
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tcc')
   AND d.deptype = 'e'
   AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass,
					 'pg_foreign_data_wrapper'::regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_description c
					WHERE c.classoid = d.classid AND c.objoid = d.objid
					  AND c.objsubid = 0
					  AND c.description <> '')
 ORDER BY 1;
-- (the check above did look at them: the extension's functions and views)
SELECT count(*) FILTER (WHERE d.classid = 'pg_proc'::regclass) >= 14
	   AS functions_checked,
	   count(*) FILTER (WHERE d.classid = 'pg_class'::regclass
						AND c.relkind = 'v') AS views_checked
  FROM pg_depend d
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tcc')
   AND d.deptype = 'e';

--
-- clean up.  No worker runs here to finish the transactions, so they are
-- deleted by hand.
--
DELETE FROM tcc.global_transaction WHERE gid LIKE 'views-%';
DROP USER MAPPING FOR PUBLIC SERVER views_p1;
DROP SERVER views_p1;
DROP OWNED BY regress_tcc_views;
DROP ROLE regress_tcc_views;
