--
-- ownership.sql: who may act on and see a global transaction (SPEC 2, 6)
--
-- alice begins transactions; bob, an unrelated role, may neither act on nor
-- see them; carol, a member of alice, may do everything alice may; so may a
-- superuser.  The tables are private: nobody but their owner reads or writes
-- them except through the functions.  Finally bob tries to hijack the
-- functions' own SQL with a search_path of his own.
--
-- Other tests may share this database: every gid here starts with 'own-'
-- and everything is cleaned up at the end.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS tcc;
RESET client_min_messages;

CREATE ROLE alice;
CREATE ROLE bob;
CREATE ROLE carol IN ROLE alice;

--
-- alice's transactions
--
SET ROLE alice;
SELECT tcc.begin('own-1');
SELECT tcc.register_branch('own-1', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b1');
SELECT tcc.begin('own-2');
SELECT tcc.begin('own-3', mode => 'saga');
SELECT tcc.add_step('own-3', NULL, 'SELECT 1', 'SELECT 2', NULL, 's1');
SELECT tcc.begin('own-4');
SELECT tcc.begin('own-5');
SELECT tcc.register_branch('own-5', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b1');
-- own-2 has no branches: committing it confirms it at once
SELECT tcc.commit('own-2');
SELECT gid, mode, status, owner, branches FROM tcc.transactions ORDER BY gid;
SELECT gid, branch_id, status FROM tcc.branches ORDER BY gid, seq;
SELECT trying, confirming, confirmed, cancelling, cancelled, failed
  FROM tcc.stats;
RESET ROLE;

--
-- bob may not act on alice's transactions ...
--
SET ROLE bob;
SELECT tcc.status('own-1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.register_branch('own-1', NULL, 'SELECT 1', 'SELECT 2', NULL, 'bob');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.add_step('own-3', NULL, 'SELECT 1', 'SELECT 2', NULL, 'bob');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.commit('own-1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.submit('own-3');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.rollback('own-1', 'bob says so');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.retry('own-1');
\echo :LAST_ERROR_SQLSTATE
-- not even when the call would only repeat what is already done
SELECT tcc.commit('own-2');
\echo :LAST_ERROR_SQLSTATE
-- nor take over alice's gid by beginning it again
SELECT tcc.begin('own-1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.begin('own-2');
\echo :LAST_ERROR_SQLSTATE

-- ... nor see them
SELECT * FROM tcc.transactions;
SELECT * FROM tcc.branches;
SELECT * FROM tcc.stats;

-- ... nor reach the tables directly
SELECT * FROM tcc.global_transaction;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tcc.branch;
\echo :LAST_ERROR_SQLSTATE
UPDATE tcc.global_transaction SET status = 'cancelled' WHERE gid = 'own-1';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM tcc.global_transaction WHERE gid = 'own-1';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO tcc.branch (gid, branch_id, seq, confirm_sql, created_at,
						updated_at)
VALUES ('own-1', 'bob', 99, 'SELECT 1', now(), now());
\echo :LAST_ERROR_SQLSTATE
UPDATE tcc.branch SET confirm_sql = 'SELECT 666' WHERE gid = 'own-1';
\echo :LAST_ERROR_SQLSTATE

-- bob's own transaction is his to run, and the only one he sees
SELECT tcc.begin('own-bob');
SELECT tcc.commit('own-bob');
SELECT gid, status, owner FROM tcc.transactions;
SELECT confirmed FROM tcc.stats;
RESET ROLE;

-- nothing bob did changed alice's transactions
SET ROLE alice;
SELECT gid, mode, status, owner, branches, reason FROM tcc.transactions
 ORDER BY gid;
SELECT gid, branch_id, status, confirm_sql FROM tcc.branches
 ORDER BY gid, seq;
-- and alice does not see bob's
SELECT tcc.status('own-bob');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- carol, a member of alice, may do all of it
--
SET ROLE carol;
SELECT tcc.status('own-1');
SELECT tcc.begin('own-1');
SELECT tcc.register_branch('own-1', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b2');
SELECT tcc.add_step('own-3', NULL, 'SELECT 1', 'SELECT 2', NULL, 's2');
SELECT gid, mode, status, owner, branches FROM tcc.transactions ORDER BY gid;
SELECT gid, branch_id, status FROM tcc.branches ORDER BY gid, seq;
SELECT trying, confirming, confirmed, cancelling, cancelled, failed
  FROM tcc.stats;
SELECT tcc.commit('own-1');
SELECT tcc.submit('own-3');
SELECT tcc.rollback('own-4', 'carol cancels');
SELECT tcc.commit('own-2');
-- a transaction carol begins herself is hers: alice does not see it
SELECT tcc.begin('own-carol');
SELECT gid, status, owner FROM tcc.transactions ORDER BY gid;
RESET ROLE;
SET ROLE alice;
SELECT gid, status, owner, reason FROM tcc.transactions ORDER BY gid;
SELECT tcc.rollback('own-carol');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- a failed transaction (the worker's doing; simulated here by hand) may be
-- retried by carol but not by bob
UPDATE tcc.global_transaction
   SET status = 'failed', failed_phase = 'confirming', last_error = 'boom'
 WHERE gid = 'own-1';
UPDATE tcc.branch SET status = 'failed', attempts = 5, last_error = 'boom'
 WHERE gid = 'own-1' AND branch_id = 'b2';
SET ROLE bob;
SELECT tcc.retry('own-1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE carol;
SELECT tcc.retry('own-1');
SELECT gid, branch_id, status, attempts FROM tcc.branches
 WHERE gid = 'own-1' ORDER BY seq;
RESET ROLE;

--
-- so may a superuser
--
SELECT tcc.status('own-5');
SELECT tcc.register_branch('own-5', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b2');
SELECT tcc.rollback('own-5', 'the superuser cancels');
SELECT tcc.status('own-bob'), tcc.status('own-carol');
SELECT gid, status, owner, branches, reason FROM tcc.transactions
 WHERE gid LIKE 'own-%' ORDER BY gid;

--
-- tcc.purge deletes only the finished transactions of roles the caller is
-- a member of
--
-- (own-5's cancels done by hand, as the worker would)
UPDATE tcc.branch SET status = 'cancelled' WHERE gid = 'own-5';
UPDATE tcc.global_transaction SET status = 'cancelled', finished_at = now()
 WHERE gid = 'own-5';
SET ROLE bob;
SELECT tcc.purge('0');
RESET ROLE;
SELECT gid, status, owner FROM tcc.transactions
 WHERE gid LIKE 'own-%' ORDER BY gid;
SET ROLE alice;
SELECT tcc.purge('1 day');
SELECT tcc.purge('0');
SELECT gid, status, owner FROM tcc.transactions ORDER BY gid;
RESET ROLE;

-- a finished transaction of alice's for bob's purge below to miss
SET ROLE alice;
SELECT tcc.begin('own-6');
SELECT tcc.commit('own-6');
RESET ROLE;

--
-- search_path: the functions run their SQL as the owner of the tcc schema,
-- so bob must not be able to slip his own operators or functions into it.
-- His trap: an = on text that matches everything, a now() from the past and
-- a pg_has_role that says yes (so his purge would delete alice's own-6),
-- each of which would leave a trace in evil.calls and raise a notice.  A new session, so that the functions
-- prepare their statements with bob's search_path in force.
--
\c
CREATE SCHEMA evil AUTHORIZATION bob;
SET ROLE bob;
CREATE TABLE evil.calls (what text);
CREATE FUNCTION evil.texteq(a text, b text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'evil = called as %', current_user;
	INSERT INTO evil.calls VALUES ('=');
	RETURN true;
END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text,
						FUNCTION = evil.texteq);
CREATE FUNCTION evil.now() RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'evil now() called as %', current_user;
	INSERT INTO evil.calls VALUES ('now');
	RETURN '2000-01-01 00:00:00+00';
END $$;
CREATE FUNCTION evil.pg_has_role(oid, oid, text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'evil pg_has_role() called as %', current_user;
	INSERT INTO evil.calls VALUES ('pg_has_role');
	RETURN true;
END $$;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.calls TO PUBLIC;
SET search_path = evil, pg_catalog;

-- the trap is armed: bob's own queries fall into it
SELECT 'a'::text = 'b'::text AS evil_eq, now() < '2001-01-01' AS evil_now;
DELETE FROM evil.calls;

-- the tcc functions do not
SELECT tcc.begin('own-evil');
SELECT tcc.register_branch('own-evil', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.status('own-evil');
SELECT tcc.commit('own-evil');
SELECT tcc.begin('own-evil-2');
SELECT tcc.rollback('own-evil-2');
SELECT tcc.begin('own-evil-3', mode => 'saga');
SELECT tcc.add_step('own-evil-3', NULL, 'SELECT 1');
SELECT tcc.submit('own-evil-3');
SELECT tcc.fence_try('own-evil', '1'), tcc.fence_confirm('own-evil', '1'),
	   tcc.fence_cancel('own-evil', '2');
SELECT tcc.status('own-1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.commit('own-1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.begin('own-1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.purge('0');
SELECT gid, status FROM tcc.transactions ORDER BY gid;
SELECT count(*) AS evil_calls FROM evil.calls;
RESET ROLE;
RESET search_path;

SELECT gid, status, owner, branches,
	   created_at > '2020-01-01' AS real_clock,
	   deadline > created_at AS deadline_ok
  FROM tcc.transactions WHERE gid LIKE 'own-%' ORDER BY gid;
SELECT gid, branch_id, op, by_cancel FROM tcc.fence
 WHERE gid LIKE 'own-%' ORDER BY gid, branch_id, op DESC;

SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DELETE FROM tcc.fence WHERE gid LIKE 'own-%';
DELETE FROM tcc.global_transaction WHERE gid LIKE 'own-%';
DROP ROLE carol, bob, alice;
