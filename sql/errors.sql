--
-- errors: every wrong call of doc/design.md, Bad input,, and more.
--
-- Each case runs through pg_temp.try(label, sql), which prints
--   label: SQLSTATE | message | detail | hint | tables unchanged?
-- and records the error in the temporary table cases; the queries at the
-- end check what doc/design.md, Bad input, asks of every one of them: a fitting
-- SQLSTATE (never XX000), a lowercase message, a detail or hint saying what
-- to do, a hint that can be followed, and tcc's tables left as they were.
--
-- Works alone or after the other tests: all gids start with 'err-', all
-- other objects are this file's own, and everything is dropped at the end.
-- No background worker runs in this suite: where a case needs a status only the
-- worker (or CALL tcc.try, not there yet) can produce, a superuser UPDATE
-- simulates it, with a comment saying so.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS tcc;
RESET client_min_messages;

CREATE TEMP TABLE cases (
	n			serial,
	label		text,
	sqlstate	text,			-- NULL when the call did not fail
	message		text,
	detail		text,
	hint		text,
	unchanged	boolean
);

-- md5 of every column of every row of tcc's tables (readable by superusers
-- only, hence SECURITY DEFINER: the non-superuser cases use it too)
CREATE FUNCTION pg_temp.snapshot() RETURNS text
LANGUAGE sql SECURITY DEFINER AS $$
	SELECT md5(concat_ws(E'\n--\n',
		(SELECT string_agg(t::text, E'\n' ORDER BY t::text)
		   FROM tcc.global_transaction t),
		(SELECT string_agg(t::text, E'\n' ORDER BY t::text)
		   FROM tcc.branch t),
		(SELECT string_agg(t::text, E'\n' ORDER BY t::text)
		   FROM tcc.fence t)))
$$;

-- is s valid text in the server encoding?
CREATE FUNCTION pg_temp.valid(s text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM convert_from(convert_to(s, current_setting('server_encoding')),
						 current_setting('server_encoding'));
	RETURN true;
EXCEPTION WHEN OTHERS THEN
	RETURN false;
END
$$;

--
-- Run sql, catch its error and report it.  A call that does not fail is
-- reported as NO ERROR, and whatever it wrote is undone (by raising a
-- private SQLSTATE) so that the cases after it see the same tables.
-- show_message false prints only whether the message is valid text (for a
-- message whose exact bytes depend on the server encoding).
--
CREATE FUNCTION pg_temp.try(label text, sql text,
							show_message boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	before		text := pg_temp.snapshot();
	changed		boolean;
	st			text;
	msg			text;
	det			text;
	hnt			text;
BEGIN
	BEGIN
		EXECUTE sql;
		changed := pg_temp.snapshot() <> before;
		RAISE SQLSTATE 'TCCOK';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE,
								msg = MESSAGE_TEXT,
								det = PG_EXCEPTION_DETAIL,
								hnt = PG_EXCEPTION_HINT;
	END;
	IF st = 'TCCOK' THEN
		st := NULL;
		msg := 'NO ERROR';
		det := '';
		hnt := '';
	ELSE
		changed := pg_temp.snapshot() <> before;
	END IF;
	INSERT INTO cases (label, sqlstate, message, detail, hint, unchanged)
	VALUES (label, st, msg, det, hnt, NOT changed);
	IF NOT show_message THEN
		msg := 'message is valid text: ' || pg_temp.valid(msg);
	ELSIF NOT pg_temp.valid(msg) THEN
		msg := '<message not valid in the server encoding>';
	END IF;
	RETURN format('%s: %s | %s | %s | %s | %s', label, coalesce(st, '-----'),
				  msg, det, hnt,
				  CASE WHEN changed THEN 'TABLES CHANGED'
					   ELSE 'tables unchanged' END);
END
$$;

--
-- fixtures: transactions in every status a wrong call can meet
--
CREATE SERVER err_p1 FOREIGN DATA WRAPPER tcc_fdw;
CREATE USER MAPPING FOR PUBLIC SERVER err_p1 OPTIONS (password 'unused');
-- a participant nobody has a user mapping for
CREATE SERVER err_nomap FOREIGN DATA WRAPPER tcc_fdw;
CREATE FOREIGN DATA WRAPPER err_other_fdw;
CREATE SERVER err_s2 FOREIGN DATA WRAPPER err_other_fdw;

SELECT tcc.begin('err-tcc');
SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b1');
SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.begin('err-saga', mode => 'saga');
SELECT tcc.add_step('err-saga', NULL, 'SELECT 1', 'SELECT 2', NULL, 's1');
SELECT tcc.begin('err-msg', mode => 'msg');
SELECT tcc.add_step('err-msg', NULL, 'SELECT 1', NULL, NULL, 'm1');
SELECT tcc.begin('err-committed');
SELECT tcc.register_branch('err-committed', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.commit('err-committed');
SELECT tcc.begin('err-confirmed');
SELECT tcc.commit('err-confirmed');
SELECT tcc.begin('err-rolledback');
SELECT tcc.register_branch('err-rolledback', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.rollback('err-rolledback');
SELECT tcc.begin('err-cancelled');
SELECT tcc.rollback('err-cancelled');
SELECT tcc.begin('err-submitted', mode => 'saga');
SELECT tcc.add_step('err-submitted', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.submit('err-submitted');
SELECT tcc.begin('err-saga-cancelled', mode => 'saga');
SELECT tcc.add_step('err-saga-cancelled', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.rollback('err-saga-cancelled');
SELECT tcc.begin('err-tryfailed');
SELECT tcc.register_branch('err-tryfailed', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b1');
SELECT tcc.register_branch('err-tryfailed', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b2');
-- Simulate CALL tcc.try (not implemented yet): b1's try succeeded, b2's
-- failed.
UPDATE tcc.branch
   SET status = CASE branch_id WHEN 'b1' THEN 'tried' ELSE 'try_failed' END,
	   last_error = CASE branch_id WHEN 'b2' THEN 'insufficient stock' END,
	   last_sqlstate = CASE branch_id WHEN 'b2' THEN 'P0001' END
 WHERE gid = 'err-tryfailed';
SELECT tcc.begin('err-failed');
SELECT tcc.register_branch('err-failed', NULL, 'SELECT 1', 'SELECT 2');
SELECT tcc.commit('err-failed');
-- Simulate the worker (none runs here): the confirm failed for good.
UPDATE tcc.branch
   SET status = 'failed', attempts = 5, next_attempt_at = NULL,
	   last_error = 'function confirm() does not exist',
	   last_sqlstate = '42883'
 WHERE gid = 'err-failed';
UPDATE tcc.global_transaction
   SET status = 'failed', failed_phase = 'confirming',
	   last_error = 'branch 1: function confirm() does not exist'
 WHERE gid = 'err-failed';
SELECT gid, mode, status FROM tcc.global_transaction
 WHERE gid LIKE 'err-%' ORDER BY gid;
-- the participant side: a branch tried and confirmed, one tried and
-- cancelled, and one cancelled before any try (an empty rollback)
SELECT tcc.fence_try('err-fence', 'confirmed') AS tried;
SELECT tcc.fence_confirm('err-fence', 'confirmed') AS confirmed;
SELECT tcc.fence_try('err-fence', 'cancelled') AS tried;
SELECT tcc.fence_cancel('err-fence', 'cancelled') AS cancelled;
SELECT tcc.fence_cancel('err-fence', 'early') AS cancelled;
SELECT gid, branch_id, state FROM tcc.fence
 WHERE gid = 'err-fence' ORDER BY branch_id;

--
-- the limits, from the accepted side: 128 bytes are fine, multibyte
-- characters count their bytes
--
SELECT tcc.begin('err-' || repeat('a', 124)) = 'err-' || repeat('a', 124)
	   AS gid_128_ascii;
SELECT octet_length(tcc.begin('err-' || repeat('é', 62))) AS gid_128_bytes;
SELECT octet_length(tcc.register_branch('err-tcc', NULL, 'SELECT 1',
										'SELECT 2', NULL, repeat('é', 64)))
	   AS branch_id_128_bytes;
SELECT octet_length(tcc.add_step('err-saga', NULL, 'SELECT 1', NULL, NULL,
								 repeat('b', 128)))
	   AS step_id_128_bytes;
SELECT tcc.fence_try('err-' || repeat('a', 124), repeat('é', 64))
	   AS fence_128_bytes;
-- printable non-ASCII characters are fine too
SELECT tcc.begin('err-Zürich-東京') AS gid_unicode;
-- action SQL may use the parameters $1 to $3, and a $n inside a literal, a
-- quoted identifier or a comment is no parameter at all
SELECT tcc.register_branch('err-tcc', NULL,
						   'SELECT confirm($1::text, $2::text, $3::jsonb)',
						   $q$SELECT '$4', "$5", $x$ $6 $x$ /* $7 */ -- $8$q$)
	   IS NOT NULL AS parameters_1_to_3_accepted;
SELECT tcc.add_step('err-saga', NULL, 'INSERT INTO t VALUES ($3, $2, $1)',
					'DELETE FROM t WHERE a = $3 AND b = $2 AND c = $1')
	   IS NOT NULL AS parameters_1_to_3_accepted;

\pset format unaligned
\pset tuples_only on

--
-- unknown gid, on every function that takes one
--
SELECT pg_temp.try(name || ' gid: unknown', sql)
  FROM (VALUES
	(1, 'register_branch', $$SELECT tcc.register_branch('err-nosuch', NULL, 'SELECT 1', 'SELECT 2')$$),
	(2, 'add_step', $$SELECT tcc.add_step('err-nosuch', NULL, 'SELECT 1')$$),
	(3, 'commit', $$SELECT tcc.commit('err-nosuch')$$),
	(4, 'submit', $$SELECT tcc.submit('err-nosuch')$$),
	(5, 'rollback', $$SELECT tcc.rollback('err-nosuch', 'why')$$),
	(6, 'status', $$SELECT tcc.status('err-nosuch')$$),
	(7, 'retry', $$SELECT tcc.retry('err-nosuch')$$)
  ) AS f(o, name, sql)
 ORDER BY o;

--
-- bad gids: NULL, empty, 129 bytes, control characters
--
SELECT pg_temp.try(f.name || ' gid: ' || k.kind, format(f.tmpl, k.val))
  FROM (VALUES
	(1, 'begin', 'SELECT tcc.begin(%s)'),
	(2, 'register_branch', $$SELECT tcc.register_branch(%s, NULL, 'SELECT 1', 'SELECT 2')$$),
	(3, 'add_step', $$SELECT tcc.add_step(%s, NULL, 'SELECT 1')$$),
	(4, 'commit', 'SELECT tcc.commit(%s)'),
	(5, 'submit', 'SELECT tcc.submit(%s)'),
	(6, 'rollback', 'SELECT tcc.rollback(%s)'),
	(7, 'status', 'SELECT tcc.status(%s)'),
	(8, 'retry', 'SELECT tcc.retry(%s)')
  ) AS f(o, name, tmpl)
 CROSS JOIN (VALUES
	(1, 'null', 'NULL'),
	(2, 'empty', $$''$$),
	(3, '129 bytes', $$'err-' || repeat('a', 125)$$),
	(4, 'newline', $$E'err-\nx'$$),
	(5, 'tab', $$E'err-\tx'$$),
	(6, 'DEL (0x7f)', $$E'err-\x7fx'$$),
	(7, 'escape (0x1b)', $$E'err-\x1b[31mx'$$)
  ) AS k(o, kind, val)
 WHERE NOT (f.name = 'begin' AND k.kind = 'null')	-- generates one
 ORDER BY f.o, k.o;
-- 129 bytes of which most are two-byte characters: the message shows the
-- gid cut short, and must not cut a character in two (its exact bytes
-- depend on the server encoding, so only its validity is shown)
SELECT pg_temp.try('begin gid: 129 bytes, multibyte',
				   $$SELECT tcc.begin('err-x' || repeat('é', 62))$$, false);
SELECT pg_temp.try('register_branch branch_id: 129 bytes, multibyte',
				   $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELECT 2', NULL, 'x' || repeat('é', 64))$$,
				   false);

--
-- bad branch ids and step ids (NULL means generate one)
--
SELECT pg_temp.try(f.name || ' ' || f.arg || ': ' || k.kind,
				   format(f.tmpl, k.val))
  FROM (VALUES
	(1, 'register_branch', 'branch_id', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELECT 2', NULL, %s)$$),
	(2, 'add_step', 'step_id', $$SELECT tcc.add_step('err-saga', NULL, 'SELECT 1', NULL, NULL, %s)$$)
  ) AS f(o, name, arg, tmpl)
 CROSS JOIN (VALUES
	(2, 'empty', $$''$$),
	(3, '129 bytes', $$repeat('b', 129)$$),
	(4, 'newline', $$E'b\n'$$),
	(5, 'tab', $$E'b\tc'$$),
	(6, 'DEL (0x7f)', $$E'\x7f'$$)
  ) AS k(o, kind, val)
 ORDER BY f.o, k.o;

--
-- bad fence ids (participant side): both arguments of every fence function
--
SELECT pg_temp.try(f.name || ' ' || a.arg || ': ' || k.kind,
				   format('SELECT tcc.%s(%s, %s)', f.name,
						  CASE a.arg WHEN 'gid' THEN k.val ELSE $$'err-g'$$ END,
						  CASE a.arg WHEN 'branch_id' THEN k.val ELSE $$'b1'$$ END))
  FROM (VALUES (1, 'fence_try'), (2, 'fence_confirm'), (3, 'fence_cancel'))
	   AS f(o, name)
 CROSS JOIN (VALUES (1, 'gid'), (2, 'branch_id')) AS a(o, arg)
 CROSS JOIN (VALUES
	(1, 'null', 'NULL'),
	(2, 'empty', $$''$$),
	(3, '129 bytes', $$repeat('f', 129)$$),
	(4, 'newline', $$E'f\nf'$$),
	(5, 'tab', $$E'\tf'$$),
	(6, 'DEL (0x7f)', $$E'f\x7f'$$)
  ) AS k(o, kind, val)
 ORDER BY f.o, a.o, k.o;

--
-- NULL for the other required arguments
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'begin mode: null', $$SELECT tcc.begin('err-new', NULL, NULL)$$),
	(2, 'register_branch confirm_sql: null', $$SELECT tcc.register_branch('err-tcc', NULL, NULL, 'SELECT 2')$$),
	(3, 'register_branch cancel_sql: null', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', NULL)$$),
	(4, 'add_step action_sql: null', $$SELECT tcc.add_step('err-saga', NULL, NULL, 'SELECT 2')$$),
	(5, 'purge older_than: null', $$SELECT tcc.purge(NULL)$$),
	(6, 'fence_purge older_than: null', $$SELECT tcc.fence_purge(NULL)$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- participants: unknown server, server of another wrapper
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'register_branch server: unknown', $$SELECT tcc.register_branch('err-tcc', 'err_nosuch', 'SELECT 1', 'SELECT 2')$$),
	(2, 'add_step server: unknown', $$SELECT tcc.add_step('err-saga', 'err_nosuch', 'SELECT 1')$$),
	(3, 'register_branch server: other wrapper', $$SELECT tcc.register_branch('err-tcc', 'err_s2', 'SELECT 1', 'SELECT 2')$$),
	(4, 'add_step server: other wrapper', $$SELECT tcc.add_step('err-saga', 'err_s2', 'SELECT 1')$$),
	(5, 'register_branch server: no user mapping', $$SELECT tcc.register_branch('err-tcc', 'err_nomap', 'SELECT 1', 'SELECT 2')$$),
	(6, 'add_step server: no user mapping', $$SELECT tcc.add_step('err-saga', 'err_nomap', 'SELECT 1')$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- the tcc_fdw validator: where the participant is goes on the server, a
-- role's credentials on its user mapping, and tcc's own settings nowhere
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'server option user', $$CREATE SERVER err_v FOREIGN DATA WRAPPER tcc_fdw OPTIONS (user 'u')$$),
	(2, 'server option password', $$CREATE SERVER err_v FOREIGN DATA WRAPPER tcc_fdw OPTIONS (password 'p')$$),
	(3, 'server option client_encoding', $$CREATE SERVER err_v FOREIGN DATA WRAPPER tcc_fdw OPTIONS (client_encoding 'LATIN1')$$),
	(4, 'server option connect_timeout', $$CREATE SERVER err_v FOREIGN DATA WRAPPER tcc_fdw OPTIONS (connect_timeout '5')$$),
	(5, 'server option added later', $$ALTER SERVER err_p1 OPTIONS (ADD sslkey '/k')$$),
	(6, 'user mapping option host', $$CREATE USER MAPPING FOR CURRENT_USER SERVER err_nomap OPTIONS (host 'h')$$),
	(7, 'user mapping option dbname', $$ALTER USER MAPPING FOR PUBLIC SERVER err_p1 OPTIONS (ADD dbname 'd')$$),
	(8, 'wrapper option', $$ALTER FOREIGN DATA WRAPPER tcc_fdw OPTIONS (host 'h')$$),
	(9, 'server option replication', $$CREATE SERVER err_v FOREIGN DATA WRAPPER tcc_fdw OPTIONS (replication 'database')$$),
	(10, 'user mapping option fallback_application_name', $$CREATE USER MAPPING FOR CURRENT_USER SERVER err_nomap OPTIONS (fallback_application_name 'x')$$)
  ) AS c(o, label, sql)
 ORDER BY o;
-- an option libpq does not know: the hint lists the valid ones, which
-- depend on the libpq version, so only the message is shown
\set VERBOSITY terse
CREATE SERVER err_v FOREIGN DATA WRAPPER tcc_fdw OPTIONS (hots 'h');
CREATE USER MAPPING FOR CURRENT_USER SERVER err_nomap OPTIONS (pasword 'p');
\set VERBOSITY default
-- the right options in the right places are accepted
CREATE SERVER err_v FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '127.0.0.1', port '5432', dbname 'inventory',
			 sslmode 'prefer', application_name 'tcc');
CREATE USER MAPPING FOR CURRENT_USER SERVER err_v
	OPTIONS (user 'inventory', password 'secret');
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname = 'err_v';
DROP SERVER err_v CASCADE;

--
-- tcc.begin: mode, timeout, meta
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'begin mode: unknown', $$SELECT tcc.begin('err-new', NULL, 'xa')$$),
	(2, 'begin mode: upper case', $$SELECT tcc.begin('err-new', mode => 'TCC')$$),
	(3, 'begin mode: empty', $$SELECT tcc.begin('err-new', mode => '')$$),
	(4, 'begin timeout: zero', $$SELECT tcc.begin('err-new', '0')$$),
	(5, 'begin timeout: negative', $$SELECT tcc.begin('err-new', '-1 second')$$),
	(6, 'begin timeout: negative in sum', $$SELECT tcc.begin('err-new', '1 day -25 hours')$$),
	(7, 'begin timeout: zero, generated gid', $$SELECT tcc.begin(NULL, '0 months')$$),
	(8, 'begin timeout: beyond the calendar', $$SELECT tcc.begin('err-new', '300000 years')$$),
	(9, 'begin meta: array', $$SELECT tcc.begin('err-new', meta => '[1, 2]')$$),
	(10, 'begin meta: string', $$SELECT tcc.begin('err-new', meta => '"order 42"')$$),
	(11, 'begin meta: number', $$SELECT tcc.begin('err-new', meta => '42')$$),
	(12, 'begin meta: json null', $$SELECT tcc.begin('err-new', meta => 'null')$$),
	(13, 'begin timeout: positive, deadline not after now', $$SELECT tcc.begin('err-new', '-1 year 360 days 1 microsecond')$$),
	(14, 'begin mode: a megabyte, clipped in the message', $$SELECT tcc.begin('err-new', mode => repeat('x', 1000000))$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- calls that do not fit the mode
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'add_step mode: tcc', $$SELECT tcc.add_step('err-tcc', NULL, 'SELECT 1')$$),
	(2, 'register_branch mode: saga', $$SELECT tcc.register_branch('err-saga', NULL, 'SELECT 1', 'SELECT 2')$$),
	(3, 'register_branch mode: msg', $$SELECT tcc.register_branch('err-msg', NULL, 'SELECT 1', 'SELECT 2')$$),
	(4, 'commit mode: saga', $$SELECT tcc.commit('err-saga')$$),
	(5, 'commit mode: msg', $$SELECT tcc.commit('err-msg')$$),
	(6, 'submit mode: tcc', $$SELECT tcc.submit('err-tcc')$$),
	(7, 'add_step compensate_sql: msg', $$SELECT tcc.add_step('err-msg', NULL, 'SELECT 1', 'SELECT 2')$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- transitions that are not allowed
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'commit after rollback: cancelling', $$SELECT tcc.commit('err-rolledback')$$),
	(2, 'commit after rollback: cancelled', $$SELECT tcc.commit('err-cancelled')$$),
	(3, 'submit after rollback: cancelled', $$SELECT tcc.submit('err-saga-cancelled')$$),
	(4, 'rollback after commit: confirming', $$SELECT tcc.rollback('err-committed')$$),
	(5, 'rollback after commit: confirmed', $$SELECT tcc.rollback('err-confirmed')$$),
	(6, 'rollback after submit: confirming', $$SELECT tcc.rollback('err-submitted', 'too late')$$),
	(7, 'commit of failed', $$SELECT tcc.commit('err-failed')$$),
	(8, 'rollback of failed', $$SELECT tcc.rollback('err-failed')$$),
	(9, 'register_branch after commit', $$SELECT tcc.register_branch('err-committed', NULL, 'SELECT 1', 'SELECT 2')$$),
	(10, 'register_branch after rollback', $$SELECT tcc.register_branch('err-rolledback', NULL, 'SELECT 1', 'SELECT 2')$$),
	(11, 'register_branch after commit, no branches', $$SELECT tcc.register_branch('err-confirmed', NULL, 'SELECT 1', 'SELECT 2')$$),
	(12, 'add_step after submit', $$SELECT tcc.add_step('err-submitted', NULL, 'SELECT 1')$$),
	(13, 'add_step after rollback', $$SELECT tcc.add_step('err-saga-cancelled', NULL, 'SELECT 1')$$),
	(14, 'begin gid: exists, confirming', $$SELECT tcc.begin('err-committed')$$),
	(15, 'begin gid: exists, confirmed', $$SELECT tcc.begin('err-confirmed')$$),
	(16, 'begin gid: exists, cancelled', $$SELECT tcc.begin('err-cancelled')$$),
	(17, 'begin gid: exists, failed', $$SELECT tcc.begin('err-failed')$$),
	(18, 'begin gid: exists, other mode', $$SELECT tcc.begin('err-tcc', mode => 'saga')$$),
	(19, 'begin gid: exists, default mode', $$SELECT tcc.begin('err-msg')$$),
	(20, 'commit with a failed try', $$SELECT tcc.commit('err-tryfailed')$$),
	(21, 'retry of trying', $$SELECT tcc.retry('err-tcc')$$),
	(22, 'retry of confirming', $$SELECT tcc.retry('err-committed')$$),
	(23, 'retry of confirmed', $$SELECT tcc.retry('err-confirmed')$$),
	(24, 'retry of cancelling', $$SELECT tcc.retry('err-rolledback')$$),
	(25, 'retry of cancelled', $$SELECT tcc.retry('err-cancelled')$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- duplicate ids
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'register_branch branch_id: duplicate', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELECT 2', NULL, 'b1')$$),
	(2, 'add_step step_id: duplicate', $$SELECT tcc.add_step('err-saga', NULL, 'SELECT 1', NULL, NULL, 's1')$$),
	(3, 'register_branch branch_id: duplicate of a generated one', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELECT 2', NULL, '2')$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- action SQL that is not one valid statement, or that refers to a
-- parameter other than $1 (gid), $2 (branch id) and $3 (payload).  The
-- position of the error is not part of these lines: the direct calls below
-- show it.
--
SELECT pg_temp.try(f.name || ' ' || f.arg || ': ' || k.kind,
				   format(f.tmpl, quote_literal(k.val)))
  FROM (VALUES
	(1, 'register_branch', 'confirm_sql', $$SELECT tcc.register_branch('err-tcc', NULL, %s, 'SELECT 2')$$),
	(2, 'register_branch', 'cancel_sql', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', %s)$$),
	(3, 'add_step', 'action_sql', $$SELECT tcc.add_step('err-saga', NULL, %s, 'SELECT 2')$$),
	(4, 'add_step', 'compensate_sql', $$SELECT tcc.add_step('err-saga', NULL, 'SELECT 1', %s)$$)
  ) AS f(o, name, arg, tmpl)
 CROSS JOIN (VALUES
	(1, 'syntax error', 'SELEC reserve($1)'),
	(2, 'unterminated quote', $$SELECT 'x$$),
	(3, 'unexpected end', 'SELECT 1 FROM'),
	(4, 'two statements', 'SELECT 1; SELECT 2'),
	(5, 'empty', ''),
	(6, 'only a semicolon', ';'),
	(7, 'only a comment', '-- nothing'),
	(8, 'transaction control', 'COMMIT'),
	(9, 'savepoint', 'SAVEPOINT s'),
	(10, 'parameter $4', 'SELECT $4'),
	(11, 'parameter $0', 'SELECT $0'),
	(12, 'parameter $10', 'SELECT f($1, $2, $3, $10)'),
	(13, 'parameter $4 in an INSERT', 'INSERT INTO t VALUES ($1, $4)'),
	(14, 'parameter $00', 'SELECT $00'),
	(15, 'copy to the client', 'COPY (SELECT 1) TO STDOUT'),
	(16, 'copy from the client', 'COPY t FROM STDIN')
  ) AS k(o, kind, val)
 ORDER BY f.o, k.o;
-- nesting so deep that the parser's stack is exhausted
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'register_branch confirm_sql: deep nesting',
	 format($$SELECT tcc.register_branch('err-tcc', NULL, %L, 'SELECT 2')$$,
			'SELECT ' || repeat('(', 20000) || '1' || repeat(')', 20000))),
	(2, 'add_step compensate_sql: deep nesting',
	 format($$SELECT tcc.add_step('err-saga', NULL, 'SELECT 1', %L)$$,
			'SELECT ' || repeat('ARRAY[', 20000) || '1' || repeat(']', 20000)))
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- action SQL refused for other reasons than its syntax or its parameters,
-- which the parser finds too: an invalid string literal, a statement not
-- implemented.  Their wording is not shown, only what doc/design.md, Bad input, asks
-- of it: the message names the argument, a detail or hint says what to do,
-- and the tables are unchanged (the checks at the end look at them too).
--
SELECT count(pg_temp.try(label, sql)) AS cases_run
  FROM (VALUES
	('register_branch confirm_sql: null byte in a literal', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT E''\x00''', 'SELECT 2')$$),
	('add_step action_sql: not implemented', $$SELECT tcc.add_step('err-saga', NULL, 'CREATE ASSERTION a CHECK (true)')$$)
  ) AS c(label, sql);
SELECT label,
	   sqlstate IS NOT NULL AND sqlstate <> 'XX000' AS refused,
	   message || ' ' || detail LIKE '%' || substring(label from ' ([a-z_]+_sql):') || '%'
	   AS names_the_argument,
	   detail <> '' OR hint <> '' AS says_what_to_do,
	   message ~ '^[a-z]' AS lowercase,
	   unchanged
  FROM cases
 WHERE label IN ('register_branch confirm_sql: null byte in a literal',
				 'add_step action_sql: not implemented')
 ORDER BY n;

--
-- parameter numbers beyond the range of integer are refused too, and named
-- as written (whatever the wording: 42P02 like the others, or 42601 as from
-- a parser that rejects them)
--
SELECT count(pg_temp.try(label, sql)) AS cases_run
  FROM (VALUES
	('register_branch confirm_sql: parameter $2147483648', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT $2147483648', 'SELECT 2')$$),
	('register_branch confirm_sql: parameter $4294967297', $$SELECT tcc.register_branch('err-tcc', NULL, 'SELECT $4294967297', 'SELECT 2')$$)
  ) AS c(label, sql);
SELECT label,
	   sqlstate IS NOT NULL AND sqlstate IN ('42P02', '42601') AS refused,
	   strpos(message || ' ' || detail, substring(label from '\$[0-9]+$')) > 0
	   AS named_as_written,
	   unchanged
  FROM cases
 WHERE label LIKE 'register_branch confirm_sql: parameter $%'
   AND label ~ '\$[0-9]{10}$'
 ORDER BY n;

--
-- the position of the error in the action's text: in characters, as in
-- PostgreSQL's own errors (so also after a multibyte character), and also
-- when the call comes from a function
--
\pset format aligned
\pset tuples_only off
SELECT tcc.register_branch('err-tcc', NULL, 'SELEC reserve($1)', 'SELECT 2');
SELECT tcc.register_branch('err-tcc', NULL, E'SELECT 1\n  FROM', 'SELECT 2');
SELECT tcc.register_branch('err-tcc', NULL, 'SELECT ''é'' FROM FROM', 'SELECT 2');
SELECT tcc.add_step('err-saga', NULL, 'SELECT 1', 'SELECT f($1, $2, $4)');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.add_step('err-saga', NULL, 'SELECT ''é'', $4', NULL);
SELECT tcc.register_branch('err-tcc', NULL, E'SELECT ''ü'',\n       ''東京'', $5', 'SELECT 2');
DO $$
BEGIN
	PERFORM tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELEC 2');
END $$;
DO $$
BEGIN
	PERFORM tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELECT $3, $4');
END $$;

--
-- each backend remembers the action texts it found good (action_sql.c),
-- never the bad ones: a bad text is refused again, with the same error, and
-- a text that was good under backslash_quote = on is checked again, and
-- refused, once it is off
--
SELECT tcc.register_branch('err-tcc', NULL, 'SELEC reserve($1)', 'SELECT 2');
SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELEC 2');
SELECT tcc.register_branch('err-tcc', NULL, 'SELECT 1', 'SELEC 2');
BEGIN;
SET LOCAL backslash_quote = on;
SELECT tcc.register_branch('err-tcc', NULL, $$SELECT E'\''$$, 'SELECT 2')
	   IS NOT NULL AS registered;
SET LOCAL backslash_quote = off;
SELECT tcc.register_branch('err-tcc', NULL, $$SELECT E'\''$$, 'SELECT 2');
ROLLBACK;
\pset format unaligned
\pset tuples_only on

--
-- past the deadline: a trying transaction whose try phase is over can no
-- longer be extended or committed (api.sql shows that it can still be
-- rolled back).  Each is begun with a try phase of 1 ms, in a statement
-- that also adds its branch, which is in time since the statement's time
-- is the transaction's start; then 10 ms pass.  The detail names the
-- deadline, shown here as <deadline>.
--
DO $$
BEGIN
	PERFORM tcc.begin('err-expired', '1 ms');
	PERFORM tcc.register_branch('err-expired', NULL, 'SELECT 1', 'SELECT 2');
	PERFORM tcc.begin('err-expired-empty', '1 ms');
	PERFORM tcc.begin('err-expired-saga', '1 ms', 'saga');
	PERFORM tcc.add_step('err-expired-saga', NULL, 'SELECT 1', 'SELECT 2');
	PERFORM tcc.begin('err-expired-msg', '1 ms', 'msg');
END $$;
DO $$ BEGIN PERFORM pg_sleep(0.01); END $$;
SELECT gid || ': ' || status || ', branches ' ||
	   (SELECT count(*) FROM tcc.branch b WHERE b.gid = g.gid) ||
	   CASE WHEN deadline < statement_timestamp() THEN ', past its deadline'
			ELSE ', NOT PAST ITS DEADLINE' END
  FROM tcc.global_transaction g WHERE gid LIKE 'err-expired%' ORDER BY gid;
SELECT replace(pg_temp.try(c.label, c.sql), g.deadline::text, '<deadline>')
  FROM (VALUES
	(1, 'register_branch after the deadline', 'err-expired', $$SELECT tcc.register_branch('err-expired', NULL, 'SELECT 1', 'SELECT 2')$$),
	(2, 'register_branch after the deadline: with a server', 'err-expired', $$SELECT tcc.register_branch('err-expired', 'err_p1', 'SELECT 1', 'SELECT 2')$$),
	(3, 'register_branch after the deadline: no branches yet', 'err-expired-empty', $$SELECT tcc.register_branch('err-expired-empty', NULL, 'SELECT 1', 'SELECT 2')$$),
	(4, 'commit after the deadline', 'err-expired', $$SELECT tcc.commit('err-expired')$$),
	(5, 'commit after the deadline: no branches', 'err-expired-empty', $$SELECT tcc.commit('err-expired-empty')$$),
	(6, 'add_step after the deadline: saga', 'err-expired-saga', $$SELECT tcc.add_step('err-expired-saga', NULL, 'SELECT 1')$$),
	(7, 'submit after the deadline: saga', 'err-expired-saga', $$SELECT tcc.submit('err-expired-saga')$$),
	(8, 'add_step after the deadline: msg', 'err-expired-msg', $$SELECT tcc.add_step('err-expired-msg', NULL, 'SELECT 1')$$),
	(9, 'submit after the deadline: msg', 'err-expired-msg', $$SELECT tcc.submit('err-expired-msg')$$)
  ) AS c(o, label, gid, sql)
  JOIN tcc.global_transaction g ON g.gid = c.gid
 ORDER BY c.o;

--
-- the fence: a decision that contradicts the branch's earlier one, and a
-- confirm whose try never ran here
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'fence_confirm after the cancel', $$SELECT tcc.fence_confirm('err-fence', 'cancelled')$$),
	(2, 'fence_cancel after the confirm', $$SELECT tcc.fence_cancel('err-fence', 'confirmed')$$),
	(3, 'fence_confirm after an empty rollback', $$SELECT tcc.fence_confirm('err-fence', 'early')$$),
	(4, 'fence_confirm without a try', $$SELECT tcc.fence_confirm('err-fence', 'never')$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- purge
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'purge older_than: negative', $$SELECT tcc.purge('-1 day')$$),
	(2, 'fence_purge older_than: negative', $$SELECT tcc.fence_purge('-1 second')$$),
	(3, 'purge older_than: beyond the calendar', $$SELECT tcc.purge('1000000 years')$$),
	(4, 'fence_purge older_than: beyond the calendar', $$SELECT tcc.fence_purge('1000000 years')$$)
  ) AS c(o, label, sql)
 ORDER BY o;

--
-- action SQL is checked as it will run, with standard_conforming_strings
-- on: with it off here, a backslash would seem to end a string that goes
-- on there, and two statements would pass as one
--
SET standard_conforming_strings = off;
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'register_branch confirm_sql: two statements under standard_conforming_strings off',
	 $q$SELECT tcc.register_branch('err-tcc', NULL, $a$select 'a\'; insert into t values (42); --'$a$, 'SELECT 2')$q$),
	(2, 'add_step action_sql: two statements under standard_conforming_strings off',
	 $q$SELECT tcc.add_step('err-saga', NULL, $a$select 'a\'; insert into t values (42); --'$a$)$q$)
  ) AS c(o, label, sql)
 ORDER BY o;
RESET standard_conforming_strings;

--
-- input that names nothing is clipped in messages, as gids are
--
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'register_branch server: unknown, a megabyte long', $$SELECT tcc.register_branch('err-tcc', repeat('s', 1000000), 'SELECT 1', 'SELECT 2')$$)
  ) AS c(o, label, sql)
 ORDER BY o;
\set VERBOSITY terse
SELECT tcc.fdw_validator(ARRAY[repeat('o', 100000) || '=1'],
						 'pg_foreign_server'::regclass);
\set VERBOSITY default

-- leading zeros: $01 is $1, as PostgreSQL reads it
SELECT tcc.register_branch('err-tcc', NULL, 'SELECT $01, $002, $0003',
						   'SELECT $1', NULL, 'err-zeros') AS zeros_accepted;

--
-- a non-superuser without USAGE on the participant's server
--
\pset format aligned
\pset tuples_only off
CREATE ROLE regress_tcc_errors;
GRANT INSERT ON cases TO regress_tcc_errors;
GRANT USAGE ON SEQUENCE cases_n_seq TO regress_tcc_errors;
SET ROLE regress_tcc_errors;
SELECT tcc.begin('err-role');
SELECT tcc.begin('err-role-saga', mode => 'saga');
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(1, 'register_branch server: no usage', $$SELECT tcc.register_branch('err-role', 'err_p1', 'SELECT 1', 'SELECT 2')$$),
	(2, 'add_step server: no usage', $$SELECT tcc.add_step('err-role-saga', 'err_p1', 'SELECT 1')$$)
  ) AS c(o, label, sql)
 ORDER BY o;
\pset format aligned
\pset tuples_only off
RESET ROLE;
-- USAGE is checked for the transaction's owner: a member of it that has
-- USAGE itself is refused all the same
CREATE ROLE regress_tcc_errors_member IN ROLE regress_tcc_errors;
GRANT USAGE ON FOREIGN SERVER err_p1 TO regress_tcc_errors_member;
SET ROLE regress_tcc_errors_member;
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(3, 'register_branch server: usage of the caller, not of the owner', $$SELECT tcc.register_branch('err-role', 'err_p1', 'SELECT 1', 'SELECT 2')$$),
	(4, 'add_step server: usage of the caller, not of the owner', $$SELECT tcc.add_step('err-role-saga', 'err_p1', 'SELECT 1')$$)
  ) AS c(o, label, sql)
 ORDER BY o;
\pset format aligned
\pset tuples_only off
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER err_p1 TO regress_tcc_errors;
-- a user mapping without a password, for a role that is not a superuser:
-- the worker would refuse to connect, so registering is refused already
CREATE SERVER err_nopw FOREIGN DATA WRAPPER tcc_fdw;
CREATE USER MAPPING FOR regress_tcc_errors SERVER err_nopw
	OPTIONS (user 'app');
GRANT USAGE ON FOREIGN SERVER err_nopw TO regress_tcc_errors;
SET ROLE regress_tcc_errors;
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(5, 'register_branch server: mapping without password', $$SELECT tcc.register_branch('err-role', 'err_nopw', 'SELECT 1', 'SELECT 2')$$),
	(6, 'add_step server: mapping without password', $$SELECT tcc.add_step('err-role-saga', 'err_nopw', 'SELECT 1')$$)
  ) AS c(o, label, sql)
 ORDER BY o;
\pset format aligned
\pset tuples_only off
-- an empty password is no password to libpq, which would then look for
-- one in the server's own password file or environment: refused the same
RESET ROLE;
CREATE SERVER err_emptypw FOREIGN DATA WRAPPER tcc_fdw;
CREATE USER MAPPING FOR regress_tcc_errors SERVER err_emptypw
	OPTIONS (user 'app', password '');
GRANT USAGE ON FOREIGN SERVER err_emptypw TO regress_tcc_errors;
SET ROLE regress_tcc_errors;
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try(label, sql)
  FROM (VALUES
	(7, 'register_branch server: mapping with an empty password', $$SELECT tcc.register_branch('err-role', 'err_emptypw', 'SELECT 1', 'SELECT 2')$$),
	(8, 'add_step server: mapping with an empty password', $$SELECT tcc.add_step('err-role-saga', 'err_emptypw', 'SELECT 1')$$),
	(9, 'user mapping option sslcert by a non-superuser', $$CREATE USER MAPPING FOR regress_tcc_errors SERVER err_p1 OPTIONS (user 'u', password 'p', sslcert '/etc/ssl/certs/ssl-cert-snakeoil.pem')$$),
	(10, 'user mapping option sslkey by a non-superuser', $$CREATE USER MAPPING FOR regress_tcc_errors SERVER err_p1 OPTIONS (user 'u', password 'p', sslkey '/etc/ssl/private/ssl-cert-snakeoil.key')$$)
  ) AS c(o, label, sql)
 ORDER BY o;
\pset format aligned
\pset tuples_only off
-- with USAGE the same calls work
SELECT tcc.register_branch('err-role', 'err_p1', 'SELECT 1', 'SELECT 2');
SELECT tcc.add_step('err-role-saga', 'err_p1', 'SELECT 1');
RESET ROLE;

--
-- control characters outside ASCII (C1, here U+0085 NEXT LINE) are control
-- characters too; only checked in a UTF8 database
--
\pset format unaligned
\pset tuples_only on
SELECT CASE WHEN current_setting('server_encoding') = 'UTF8'
			THEN pg_temp.try('begin gid: C1 control (U+0085)',
							 $$SELECT tcc.begin(convert_from('\x6572722dc28578', 'UTF8'))$$)
			ELSE 'skipped: not a UTF8 database'
	   END ~ '^begin gid: C1 control \(U\+0085\): 22023 \| .* \| tables unchanged$'
	   AS c1_control_refused;
\pset format aligned
\pset tuples_only off

--
-- what doc/design.md, Bad input, asks of every case above: each list must be empty
--
SELECT count(*) > 150 AS enough_cases FROM cases;
-- calls that did not fail
SELECT label FROM cases WHERE sqlstate IS NULL ORDER BY n;
-- internal errors
SELECT label, message FROM cases WHERE sqlstate = 'XX000' ORDER BY n;
-- calls after which tcc's tables were not as before
SELECT label FROM cases WHERE NOT unchanged ORDER BY n;
-- messages that do not start in lower case
SELECT label, message FROM cases
 WHERE sqlstate IS NOT NULL AND message !~ '^[a-z]' ORDER BY n;
-- messages that are not valid text
SELECT label FROM cases WHERE NOT pg_temp.valid(message) ORDER BY n;
-- syntax errors in action SQL whose detail does not give the parser's
-- message
SELECT label, detail FROM cases
 WHERE sqlstate = '42601' AND detail NOT LIKE 'The parser reported: %'
 ORDER BY n;
-- errors with neither a detail nor a hint saying what to do
SELECT label, sqlstate, message FROM cases
 WHERE sqlstate IS NOT NULL AND detail = '' AND hint = '' ORDER BY n;
-- hints that say to pass NULL to have an id generated, on an argument for
-- which NULL is refused (only begin's gid, branch_id and step_id generate)
SELECT label, hint FROM cases
 WHERE hint LIKE '%to have one generated%'
   AND label !~ '^(begin gid|register_branch branch_id|add_step step_id):'
 ORDER BY n;
-- the SQLSTATE classes used
SELECT DISTINCT left(sqlstate, 2) AS class FROM cases
 WHERE sqlstate IS NOT NULL ORDER BY 1;

--
-- clean up.  No worker runs here to finish the transactions, so they are
-- deleted by hand, and so are the fence rows of this file.
--
DELETE FROM tcc.global_transaction WHERE gid LIKE 'err-%';
DELETE FROM tcc.fence WHERE gid LIKE 'err-%';
DROP OWNED BY regress_tcc_errors_member;
DROP ROLE regress_tcc_errors_member;
DROP OWNED BY regress_tcc_errors;
DROP ROLE regress_tcc_errors;
DROP USER MAPPING FOR PUBLIC SERVER err_p1;
DROP SERVER err_p1, err_nomap;
DROP SERVER err_nopw CASCADE;
DROP SERVER err_emptypw CASCADE;
DROP SERVER err_s2;
DROP FOREIGN DATA WRAPPER err_other_fdw;
