--
-- ownership.sql: who may act on and see a global transaction (doc/design.md, Security)
--
-- alice begins transactions; bob, an unrelated role, may neither act on nor
-- see them; carol, a member of alice, may do everything alice may; so may a
-- superuser.  The tables are private: nobody but their owner reads or writes
-- them except through the functions.  USAGE on a participant's server is
-- checked for the transaction's owner, not for whoever registers the
-- branch.  The transactions of a role that has been dropped stay visible to
-- superusers, who may purge them.  Finally bob tries to hijack the
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

--
-- USAGE on a participant's server is checked for the transaction's owner,
-- whose user mapping phase two connects with, not for the caller: carol may
-- use own_p1 but alice, who owns own-usage, may not, so carol cannot lend
-- alice the server by registering a branch in alice's transaction.  Nor can
-- a superuser.
--
CREATE SERVER own_p1 FOREIGN DATA WRAPPER tcc_fdw;
CREATE USER MAPPING FOR PUBLIC SERVER own_p1 OPTIONS (password 'unused');
GRANT USAGE ON FOREIGN SERVER own_p1 TO carol;
SET ROLE alice;
SELECT tcc.begin('own-usage');
SELECT tcc.begin('own-usage-saga', mode => 'saga');
RESET ROLE;
SET ROLE carol;
SELECT has_server_privilege('own_p1', 'USAGE') AS carol_has_usage,
	   has_server_privilege('alice', 'own_p1', 'USAGE') AS alice_has_usage;
-- a local branch needs no server, so carol may add that
SELECT tcc.register_branch('own-usage', NULL, 'SELECT 1', 'SELECT 2', NULL,
						   'local');
RESET ROLE;
-- tcc's rows of the two, to show that the refused calls change nothing
CREATE FUNCTION pg_temp.usage_rows() RETURNS text
LANGUAGE sql AS $$
	SELECT md5(concat_ws(',',
		(SELECT string_agg(t::text, ',' ORDER BY t::text)
		   FROM tcc.global_transaction t WHERE gid LIKE 'own-usage%'),
		(SELECT string_agg(t::text, ',' ORDER BY t::text)
		   FROM tcc.branch t WHERE gid LIKE 'own-usage%')))
$$;
SELECT pg_temp.usage_rows() AS usage_rows \gset
SET ROLE carol;
SELECT tcc.register_branch('own-usage', 'own_p1', 'SELECT 1', 'SELECT 2');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.add_step('own-usage-saga', 'own_p1', 'SELECT 1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- the superuser may use every server, but alice may not
SELECT tcc.register_branch('own-usage', 'own_p1', 'SELECT 1', 'SELECT 2');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.usage_rows() = :'usage_rows' AS unchanged;
-- once alice has USAGE, the same calls work
GRANT USAGE ON FOREIGN SERVER own_p1 TO alice;
SET ROLE carol;
SELECT tcc.register_branch('own-usage', 'own_p1', 'SELECT 1', 'SELECT 2',
						   NULL, 'remote');
SELECT tcc.add_step('own-usage-saga', 'own_p1', 'SELECT 1', NULL, NULL,
					'remote');
RESET ROLE;
SELECT tcc.register_branch('own-usage', 'own_p1', 'SELECT 1', 'SELECT 2',
						   NULL, 'by-superuser');
SET ROLE alice;
SELECT gid, branch_id, server, status FROM tcc.branches
 WHERE gid LIKE 'own-usage%' ORDER BY gid, seq;
RESET ROLE;
DELETE FROM tcc.global_transaction WHERE gid LIKE 'own-usage%';

--
-- owner is a regrole.  When the role that owned a finished transaction is
-- dropped, the row stays: a superuser still sees it, with the owner shown
-- as the role's OID, and may purge it; nobody else sees it or purges it.
--
CREATE ROLE dave;
SET ROLE dave;
SELECT tcc.begin('own-dave');
SELECT tcc.commit('own-dave');
SELECT gid, status, owner FROM tcc.transactions;
RESET ROLE;
DROP ROLE dave;
-- (it finished long ago: simulated, so that only it is old enough below)
UPDATE tcc.global_transaction
   SET finished_at = now() - interval '1000 days'
 WHERE gid = 'own-dave';
SELECT gid, status, owner::text ~ '^[0-9]+$' AS owner_is_an_oid,
	   owner::oid NOT IN (SELECT oid FROM pg_roles) AS owner_is_gone
  FROM tcc.transactions WHERE gid = 'own-dave';
SELECT tcc.status('own-dave');
SET ROLE alice;
SELECT count(*) AS alice_sees FROM tcc.transactions WHERE gid = 'own-dave';
SELECT tcc.status('own-dave');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.purge('999 days') AS alice_purged;
RESET ROLE;
SET ROLE bob;
SELECT count(*) AS bob_sees FROM tcc.transactions WHERE gid = 'own-dave';
SELECT tcc.purge('999 days') AS bob_purged;
RESET ROLE;
SELECT count(*) AS still_there FROM tcc.global_transaction
 WHERE gid = 'own-dave';
SELECT tcc.purge('999 days') AS superuser_purged;
SELECT count(*) AS left_after_purge FROM tcc.global_transaction
 WHERE gid = 'own-dave';

-- a finished transaction of alice's for bob's purge below to miss
SET ROLE alice;
SELECT tcc.begin('own-6');
SELECT tcc.commit('own-6');
RESET ROLE;

--
-- search_path: the functions run their SQL as the owner of the tcc schema,
-- so bob must not be able to slip his own operators or functions into it.
-- His trap: an = on text that matches everything, a now() from the past, a
-- statement_timestamp() from the future (so that every transaction would
-- look past its deadline) and a pg_has_role that says yes (so his purge
-- would delete alice's own-6), each of which would leave a trace in
-- evil.calls and raise a notice.  A new session, so that the functions
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
CREATE FUNCTION evil.statement_timestamp() RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'evil statement_timestamp() called as %', current_user;
	INSERT INTO evil.calls VALUES ('statement_timestamp');
	RETURN 'infinity';
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
SELECT 'a'::text = 'b'::text AS evil_eq, now() < '2001-01-01' AS evil_now,
	   statement_timestamp() = 'infinity' AS evil_statement_timestamp;
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
SELECT gid, branch_id, state FROM tcc.fence
 WHERE gid LIKE 'own-%' ORDER BY gid, branch_id;

SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DELETE FROM tcc.fence WHERE gid LIKE 'own-%';
DELETE FROM tcc.global_transaction WHERE gid LIKE 'own-%';
DROP USER MAPPING FOR PUBLIC SERVER own_p1;
DROP SERVER own_p1;
DROP ROLE carol, bob, alice;
