--
-- modes: saga and msg transactions as the SQL API assembles them,
-- CALL tcc.try and tcc.wait (README, The API in brief; doc/design.md, States).
--
-- No background worker runs in this suite (test/tcc.conf), so a submitted
-- saga or msg stays confirming here; the worker's side (steps in order,
-- compensation, delivery, waking tcc.wait) is tested by test/t/006 and 007
-- against real participant servers.  CALL tcc.try needs no worker: it runs
-- the try itself, here in this session (server NULL), or over libpq
-- through the server modes_loop, which points back at this very database
-- and so plays a remote participant.
--
-- All gids of this file start with 'modes-'.
--
CREATE EXTENSION IF NOT EXISTS tcc;

-- the coordinator's rows of this file, without timestamps
CREATE FUNCTION pg_temp.rows(pattern text)
RETURNS TABLE (gid text, mode text, status text, reason text,
			   branch text, seq integer, server text, bstatus text,
			   attempts integer, last_error text, last_sqlstate text)
LANGUAGE sql AS $$
	SELECT g.gid, g.mode, g.status, g.reason, b.branch_id, b.seq, b.server,
		   b.status, b.attempts, b.last_error, b.last_sqlstate
	  FROM tcc.global_transaction g
	  LEFT JOIN tcc.branch b ON b.gid = g.gid
	 WHERE g.gid LIKE pattern
	 ORDER BY g.gid, b.seq
$$;

-- the participant: stock as in the reference scenario, no fence needed to
-- check what tcc.try does with outcomes
CREATE TABLE modes_stock (
	id		integer PRIMARY KEY,
	stock	integer NOT NULL CHECK (stock >= 0),
	frozen	integer NOT NULL DEFAULT 0
);
INSERT INTO modes_stock VALUES (1, 100);

-- everything tcc and the participant table hold, to show what a failed
-- call left behind (nothing)
CREATE FUNCTION pg_temp.state()
RETURNS text
LANGUAGE sql AS $$
	SELECT md5(concat_ws('|',
		(SELECT string_agg(g::text, ',' ORDER BY gid)
		   FROM tcc.global_transaction g),
		(SELECT string_agg(b::text, ',' ORDER BY gid, seq) FROM tcc.branch b),
		(SELECT string_agg(s::text, ',' ORDER BY id) FROM modes_stock s)))
$$;

--
-- saga: steps in the order added, a compensation per step or none
--
SELECT tcc.begin('modes-saga', mode => 'saga');
SELECT tcc.add_step('modes-saga', NULL, 'SELECT 1', 'SELECT 2');
-- a step with nothing to undo (a check) has no compensation
SELECT tcc.add_step('modes-saga', NULL, 'SELECT $3 IS NOT NULL', NULL,
					'{"qty": 2}');
SELECT tcc.add_step('modes-saga', NULL, 'SELECT 3', 'SELECT 4', NULL, 'last');
SELECT branch, seq, bstatus FROM pg_temp.rows('modes-saga');
-- submit makes the first step due, and only it: the worker runs the steps
-- one after the other
SELECT tcc.submit('modes-saga');
SELECT status, branch, bstatus FROM pg_temp.rows('modes-saga');
-- repeated, submit returns the status
SELECT tcc.submit('modes-saga');
-- a submitted saga can no longer be rolled back by the application: once a
-- step runs, only its failure leads to compensation
SELECT tcc.rollback('modes-saga');

-- a saga rolled back while it is being assembled ran nothing: it is
-- cancelled at once and its steps are skipped
SELECT tcc.begin('modes-saga-off', mode => 'saga');
SELECT tcc.add_step('modes-saga-off', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.rollback('modes-saga-off', 'changed my mind');
SELECT status, reason, branch, bstatus FROM pg_temp.rows('modes-saga-off');

--
-- msg: the steps are written in the application's own transaction
--
CREATE TABLE modes_orders (id integer PRIMARY KEY, gid text);

-- rolled back: neither the order nor the message exists
BEGIN;
INSERT INTO modes_orders VALUES (1, 'modes-msg-rolled-back');
SELECT tcc.begin('modes-msg-rolled-back', mode => 'msg');
SELECT tcc.add_step('modes-msg-rolled-back', NULL,
					'UPDATE modes_stock SET stock = stock - 2 WHERE id = 1');
SELECT tcc.submit('modes-msg-rolled-back');
ROLLBACK;
SELECT count(*) AS orders FROM modes_orders;
SELECT count(*) AS messages FROM pg_temp.rows('modes-msg-rolled-back');

-- committed: both exist, and the message is due
BEGIN;
INSERT INTO modes_orders VALUES (2, 'modes-msg');
SELECT tcc.begin('modes-msg', mode => 'msg');
SELECT tcc.add_step('modes-msg', NULL,
					'UPDATE modes_stock SET stock = stock - 2 WHERE id = 1');
SELECT tcc.submit('modes-msg');
COMMIT;
SELECT o.id, r.status, r.branch, r.bstatus
  FROM modes_orders o JOIN pg_temp.rows('modes-msg') r ON r.gid = o.gid;

-- a msg step has no compensation: it is retried until it succeeds
SELECT tcc.begin('modes-msg-undo', mode => 'msg');
SELECT tcc.add_step('modes-msg-undo', NULL, 'SELECT 1', 'SELECT 2');

--
-- CALL tcc.try
--
-- the participant behind a loopback server: this database, as this
-- superuser (a superuser's mapping needs no password)
SELECT setting AS port FROM pg_settings WHERE name = 'port' \gset
SELECT split_part(setting, ',', 1) AS sockdir
  FROM pg_settings WHERE name = 'unix_socket_directories' \gset
\set ECHO none
SELECT format('CREATE SERVER modes_loop FOREIGN DATA WRAPPER tcc_fdw '
			  'OPTIONS (host %L, port %L, dbname %L)',
			  :'sockdir', :'port', current_database()) \gexec
\set ECHO all
CREATE USER MAPPING FOR CURRENT_USER SERVER modes_loop;

SELECT tcc.begin('modes-try');
-- a try that succeeds, locally: the stock is frozen and the branch tried;
-- the CALL returns the branch id
CALL tcc.try('modes-try', NULL,
			 'UPDATE modes_stock SET stock = stock - 2, frozen = frozen + 2 WHERE id = 1',
			 'UPDATE modes_stock SET frozen = frozen - 2 WHERE id = 1',
			 'UPDATE modes_stock SET frozen = frozen - 2, stock = stock + 2 WHERE id = 1');
-- ... and remotely, with a payload and a branch id of our own
CALL tcc.try('modes-try', 'modes_loop',
			 'UPDATE modes_stock SET stock = stock - ($3->>''qty'')::int, frozen = frozen + ($3->>''qty'')::int WHERE id = 1',
			 'UPDATE modes_stock SET frozen = frozen - ($3->>''qty'')::int WHERE id = 1',
			 'UPDATE modes_stock SET frozen = frozen - ($3->>''qty'')::int, stock = stock + ($3->>''qty'')::int WHERE id = 1',
			 '{"qty": 3}', 'remote');
-- a payload too large to be stored inline is read before the first commit
CREATE TABLE modes_big (p jsonb);
ALTER TABLE modes_big ALTER p SET STORAGE EXTERNAL;
INSERT INTO modes_big
SELECT jsonb_build_object('pad', string_agg(md5(i::text), '')) FROM generate_series(1, 500) i;
CREATE FUNCTION pg_temp.big() RETURNS jsonb LANGUAGE sql
	AS 'SELECT p FROM modes_big';
CALL tcc.try('modes-try', NULL, 'SELECT length($3->>''pad'') = 16000',
			 'SELECT 1', 'SELECT 2', pg_temp.big(), 'big');
SELECT * FROM modes_stock;
SELECT branch, server, bstatus, last_error FROM pg_temp.rows('modes-try');
SELECT tcc.commit('modes-try');

-- a try that fails on the participant: its error, with its SQLSTATE,
-- reaches the caller; the branch is try_failed; the try's change is gone
SELECT tcc.begin('modes-try-fail');
CALL tcc.try('modes-try-fail', 'modes_loop',
			 'UPDATE modes_stock SET stock = stock - 1000 WHERE id = 1',
			 'SELECT 1', 'SELECT 2', NULL, 'too-many');
\echo :LAST_ERROR_SQLSTATE
CALL tcc.try('modes-try-fail', NULL, 'SELECT 1 / 0', 'SELECT 1', 'SELECT 2',
			 NULL, 'zero');
\echo :LAST_ERROR_SQLSTATE
-- false means the participant did not do the try
CALL tcc.try('modes-try-fail', NULL, 'SELECT false', 'SELECT 1', 'SELECT 2',
			 NULL, 'no');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM modes_stock;
SELECT branch, bstatus, last_error, last_sqlstate
  FROM pg_temp.rows('modes-try-fail');
-- such a transaction cannot be committed, only rolled back
SELECT tcc.commit('modes-try-fail');
SELECT tcc.rollback('modes-try-fail');

-- refused, with nothing written, inside a transaction block ...
SELECT tcc.begin('modes-try-dup');
SELECT tcc.register_branch('modes-try-dup', NULL, 'SELECT 1', 'SELECT 2',
						   NULL, 'b1');
SELECT pg_temp.state() AS before \gset
BEGIN;
CALL tcc.try('modes-try', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- ... and from a function, where it cannot commit either
CREATE FUNCTION pg_temp.try_in_function() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	b	text;
BEGIN
	CALL tcc.try('modes-try', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2', NULL, b);
	RETURN b;
END $$;
SELECT pg_temp.try_in_function();
BEGIN;
DO $$
DECLARE
	b	text;
BEGIN
	CALL tcc.try('modes-try', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2', NULL, b);
END $$;
ROLLBACK;
-- wrong calls are refused before anything is registered
CALL tcc.try('modes-nosuch', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2');
CALL tcc.try(NULL, NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2');
CALL tcc.try('modes-try-fail', NULL, NULL, 'SELECT 1', 'SELECT 2');
CALL tcc.try('modes-try-fail', NULL, 'SELEC 1', 'SELECT 1', 'SELECT 2');
CALL tcc.try('modes-try-fail', NULL, 'SELECT $4', 'SELECT 1', 'SELECT 2');
-- nobody to copy to: refused, not an internal error after registering
CALL tcc.try('modes-try-fail', NULL, 'COPY (SELECT 1) TO STDOUT', 'SELECT 1',
			 'SELECT 2');
CALL tcc.try('modes-try-fail', NULL, 'SELECT 1', NULL, 'SELECT 2');
CALL tcc.try('modes-try-fail', 'modes_nosuch', 'SELECT 1', 'SELECT 1',
			 'SELECT 2');
-- not trying any more (it was rolled back above)
CALL tcc.try('modes-try-fail', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2');
-- a branch id taken already
CALL tcc.try('modes-try-dup', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2', NULL,
			 'b1');
-- a try belongs to a tcc transaction
CALL tcc.try('modes-msg-undo', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2');
SELECT pg_temp.state() = :'before' AS unchanged;

-- a local try runs as every local action does (action.c): as the
-- transaction's owner in a restricted context, with the search_path a new
-- session of the owner would have, not the caller's, so that the try and
-- the confirm of a branch resolve names alike; its settings are undone
CREATE SCHEMA modes_sp;
CREATE FUNCTION modes_sp.which() RETURNS text LANGUAGE sql
	AS $$SELECT 'the session''s schema'$$;
CREATE FUNCTION public.which() RETURNS text LANGUAGE sql
	AS $$SELECT 'the default schema'$$;
SET search_path = modes_sp, public;
SELECT tcc.begin('modes-try-policy');
CALL tcc.try('modes-try-policy', NULL,
			 'SELECT which() = ''the default schema''', 'SELECT 1',
			 'SELECT 2', NULL, 'path');
CALL tcc.try('modes-try-policy', NULL,
			 'SELECT set_config(''work_mem'', ''1234kB'', false) IS NOT NULL',
			 'SELECT 1', 'SELECT 2', NULL, 'setting');
SHOW work_mem;
SHOW search_path;
CALL tcc.try('modes-try-policy', NULL, 'CREATE TEMP TABLE modes_tmp (i int)',
			 'SELECT 1', 'SELECT 2', NULL, 'temp');
\echo :LAST_ERROR_SQLSTATE
SELECT branch, bstatus, last_error, last_sqlstate
  FROM pg_temp.rows('modes-try-policy');
SELECT tcc.rollback('modes-try-policy');
RESET search_path;
-- an owner dropped since has nobody to run its try as: 42704, nothing runs
CREATE ROLE modes_gone;
SET ROLE modes_gone;
SELECT tcc.begin('modes-try-gone');
RESET ROLE;
DROP ROLE modes_gone;
\set VERBOSITY sqlstate
CALL tcc.try('modes-try-gone', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 2',
			 NULL, 'gone');
\set VERBOSITY default
SELECT branch, bstatus, last_sqlstate FROM pg_temp.rows('modes-try-gone');
SELECT tcc.rollback('modes-try-gone');

--
-- tcc.wait
--
-- a terminal status comes back at once
SELECT tcc.wait('modes-saga-off');
-- one that is not moves on only with the worker: the wait returns the
-- status when the timeout passes
SELECT clock_timestamp() AS t0 \gset
SELECT tcc.wait('modes-saga', '0.3 s');
SELECT clock_timestamp() - :'t0' >= interval '0.3 s' AS waited;
SELECT tcc.wait('modes-saga', '0');
-- failed is an answer too: it needs a human, not time
UPDATE tcc.global_transaction SET status = 'failed', failed_phase = 'confirming'
 WHERE gid = 'modes-saga';
SELECT tcc.wait('modes-saga', '1 h');
-- a transaction that changed the gid itself would wait for nothing
BEGIN;
SELECT tcc.begin('modes-wait-here');
SELECT tcc.wait('modes-wait-here', '1 s');
ROLLBACK;
-- ... and so would one that only locked its row, by repeating a commit
SELECT tcc.begin('modes-wait-locked');
SELECT tcc.register_branch('modes-wait-locked', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.commit('modes-wait-locked');
BEGIN;
SELECT tcc.commit('modes-wait-locked');
SELECT tcc.wait('modes-wait-locked', '1 s');
ROLLBACK;
-- ... unless the change made it terminal
BEGIN;
SELECT tcc.begin('modes-wait-here');
SELECT tcc.commit('modes-wait-here');
SELECT tcc.wait('modes-wait-here', '1 s');
ROLLBACK;
-- wrong calls
SELECT tcc.wait('modes-nosuch');
SELECT tcc.wait(NULL);
SELECT tcc.wait('modes-saga', NULL);
SELECT tcc.wait('modes-saga', '-1 s');
-- only those who may see a transaction may wait for it
CREATE ROLE regress_tcc_modes;
SET ROLE regress_tcc_modes;
SELECT tcc.wait('modes-saga', '0');
RESET ROLE;
-- a statement timeout ends the wait like any other (terse: it may strike
-- while the status is being read, which adds a context line)
SELECT tcc.begin('modes-wait-long');
SET statement_timeout = '200ms';
\set VERBOSITY terse
SELECT tcc.wait('modes-wait-long', '1 min');
\set VERBOSITY default
RESET statement_timeout;

--
-- clean up
--
DROP ROLE regress_tcc_modes;
DELETE FROM tcc.global_transaction WHERE gid LIKE 'modes-%';
DROP USER MAPPING FOR CURRENT_USER SERVER modes_loop;
DROP SERVER modes_loop;
DROP TABLE modes_stock, modes_orders, modes_big;
