--
-- fence.sql: the participant fence (doc/design.md, Concurrency and The reference scenario)
--
-- An inventory participant in the textbook shape: a product with stock 100;
-- a try freezes (stock -= n, frozen += n), a confirm sells (frozen -= n,
-- sold += n), a cancel releases (frozen -= n, stock += n).  Each participant
-- function calls the fence first, inside the same local transaction as the
-- business change, and changes the stock only when the fence says so.  After
-- every step stock + frozen + sold must still be 100.
--
-- The fence keeps one row per branch, in state tried, confirmed, cancelled
-- or cancelled_early (a cancel that came before any try); the view fences
-- below shows them.
--
-- Other tests may share this database: everything here uses gids starting
-- with 'f-' and cleans up after itself.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS tcc;
RESET client_min_messages;

CREATE TABLE inventory (
	product	text PRIMARY KEY,
	stock	integer NOT NULL CHECK (stock >= 0),
	frozen	integer NOT NULL DEFAULT 0 CHECK (frozen >= 0),
	sold	integer NOT NULL DEFAULT 0 CHECK (sold >= 0)
);
INSERT INTO inventory (product, stock) VALUES ('widget', 100);

CREATE VIEW inv AS
SELECT stock, frozen, sold, stock + frozen + sold AS total
  FROM inventory WHERE product = 'widget';

CREATE FUNCTION inv_try(gid text, bid text, qty integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT tcc.fence_try(gid, bid) THEN
		RETURN false;
	END IF;
	UPDATE inventory SET stock = stock - qty, frozen = frozen + qty
	 WHERE product = 'widget';
	RETURN true;
END $$;

CREATE FUNCTION inv_confirm(gid text, bid text, qty integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT tcc.fence_confirm(gid, bid) THEN
		RETURN false;
	END IF;
	UPDATE inventory SET frozen = frozen - qty, sold = sold + qty
	 WHERE product = 'widget';
	RETURN true;
END $$;

CREATE FUNCTION inv_cancel(gid text, bid text, qty integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT tcc.fence_cancel(gid, bid) THEN
		RETURN false;
	END IF;
	UPDATE inventory SET frozen = frozen - qty, stock = stock + qty
	 WHERE product = 'widget';
	RETURN true;
END $$;

-- the fence rows of this test
CREATE VIEW fences AS
SELECT gid, branch_id, state
  FROM tcc.fence WHERE gid LIKE 'f-%'
 ORDER BY gid, branch_id;

SELECT * FROM inv;

--
-- try, then confirm
--
SELECT inv_try('f-1', 'b1', 2) AS ran;
SELECT * FROM inv;
SELECT inv_confirm('f-1', 'b1', 2) AS ran;
SELECT * FROM inv;

-- duplicate delivery of the try (here after the confirm) and of the
-- confirm: no second effect; the branch keeps its one row, confirmed
SELECT inv_try('f-1', 'b1', 2) AS ran;
SELECT * FROM inv;
SELECT inv_confirm('f-1', 'b1', 2) AS ran;
SELECT * FROM inv;
SELECT * FROM fences;

--
-- try, then cancel
--
SELECT inv_try('f-2', 'b1', 3) AS ran;
SELECT * FROM inv;
SELECT inv_cancel('f-2', 'b1', 3) AS ran;
SELECT * FROM inv;

-- duplicate cancel, and the try delivered again after the cancel; the one
-- row is cancelled
SELECT inv_cancel('f-2', 'b1', 3) AS ran;
SELECT * FROM inv;
SELECT inv_try('f-2', 'b1', 3) AS ran;
SELECT * FROM inv;
SELECT * FROM fences WHERE gid = 'f-2';

--
-- empty rollback: the cancel arrives and the try never ran.  There is
-- nothing to release, so the cancel must not touch the stock; it leaves the
-- branch's row in state cancelled_early, which refuses the try when it
-- arrives late (hanging).
--
SELECT inv_cancel('f-3', 'b1', 5) AS ran;
SELECT * FROM inv;
SELECT * FROM fences WHERE gid = 'f-3';
-- the late try is refused: nothing stays frozen for a finished transaction
SELECT inv_try('f-3', 'b1', 5) AS ran;
SELECT * FROM inv;
-- and the cancel delivered again is still a no-op
SELECT inv_cancel('f-3', 'b1', 5) AS ran;
SELECT * FROM inv;
SELECT * FROM fences WHERE gid = 'f-3';

--
-- a confirm whose try never ran here is an error, not a run: confirming
-- would sell stock that was never frozen.  The error rolls back the
-- confirm's local transaction, fence row included, so the coordinator keeps
-- retrying it visibly.
--
SELECT inv_confirm('f-3', 'b1', 5) AS ran;		-- its cancel came first
\echo :LAST_ERROR_SQLSTATE
SELECT inv_confirm('f-never', 'b1', 5) AS ran;	-- no try at all
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inv;
SELECT * FROM fences WHERE gid IN ('f-3', 'f-never');

--
-- a try whose local transaction rolls back leaves no fence row behind, so
-- the coordinator's retry of that try runs it for real
--
BEGIN;
SELECT inv_try('f-4', 'b1', 4) AS ran;
SELECT * FROM inv;
ROLLBACK;
SELECT * FROM fences WHERE gid = 'f-4';
SELECT * FROM inv;
SELECT inv_try('f-4', 'b1', 4) AS ran;
SELECT * FROM inv;
SELECT inv_confirm('f-4', 'b1', 4) AS ran;
SELECT * FROM inv;

-- the same when the business change fails: the error rolls back the fence
-- row with it (freezing more than the stock violates the CHECK)
SELECT inv_try('f-5', 'b1', 1000) AS ran;
SELECT * FROM fences WHERE gid = 'f-5';
SELECT * FROM inv;
-- so the cancel that follows is an empty rollback, as it must be
SELECT inv_cancel('f-5', 'b1', 1000) AS ran;
SELECT * FROM inv;

-- a cancel whose local transaction rolls back leaves no cancelled_early row
-- either: a try after it runs
BEGIN;
SELECT inv_cancel('f-6', 'b1', 1) AS ran;
ROLLBACK;
SELECT * FROM fences WHERE gid = 'f-6';
SELECT inv_try('f-6', 'b1', 1) AS ran;
SELECT * FROM inv;
SELECT inv_cancel('f-6', 'b1', 1) AS ran;
SELECT * FROM inv;

--
-- branches of one gid are fenced independently (and equal branch ids of
-- different gids were independent above: every gid used b1)
--
SELECT inv_try('f-7', 'b1', 1) AS b1, inv_try('f-7', 'b2', 1) AS b2;
SELECT * FROM inv;
SELECT inv_confirm('f-7', 'b1', 1) AS b1, inv_cancel('f-7', 'b2', 1) AS b2;
SELECT * FROM inv;
SELECT inv_confirm('f-7', 'b1', 1) AS b1, inv_cancel('f-7', 'b2', 1) AS b2;
SELECT * FROM inv;
SELECT * FROM fences WHERE gid = 'f-7';

-- a try and its fence row in one transaction, checked before commit
BEGIN;
SELECT inv_try('f-8', 'b1', 2) AS ran;
SELECT inv_try('f-8', 'b1', 2) AS ran_again_same_transaction;
SELECT * FROM fences WHERE gid = 'f-8';
SELECT * FROM inv;
COMMIT;
SELECT inv_cancel('f-8', 'b1', 2) AS ran;
SELECT * FROM inv;

--
-- a branch is confirmed or cancelled, never both.  Only a broken
-- coordinator sends both, so the second of the two is an error (55000),
-- not a silent false: the stock and the fence row stay as the first left
-- them, and the error keeps the call failing, visibly.
--
-- a confirm after the cancel
SELECT inv_try('f-12', 'b1', 3) AS ran;
SELECT inv_cancel('f-12', 'b1', 3) AS ran;
SELECT * FROM inv;
SELECT inv_confirm('f-12', 'b1', 3) AS ran;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inv;
SELECT * FROM fences WHERE gid = 'f-12';
-- the cancel delivered again is still only a duplicate, the try too
SELECT inv_cancel('f-12', 'b1', 3) AS ran;
SELECT inv_try('f-12', 'b1', 3) AS ran;
SELECT * FROM inv;

-- a cancel after the confirm
SELECT inv_try('f-13', 'b1', 4) AS ran;
SELECT inv_confirm('f-13', 'b1', 4) AS ran;
SELECT * FROM inv;
SELECT inv_cancel('f-13', 'b1', 4) AS ran;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM inv;
SELECT * FROM fences WHERE gid = 'f-13';
-- the confirm delivered again is still only a duplicate, the try too
SELECT inv_confirm('f-13', 'b1', 4) AS ran;
SELECT inv_try('f-13', 'b1', 4) AS ran;
SELECT * FROM inv;
SELECT * FROM fences WHERE gid = 'f-13';

-- the same refusals straight from the fence functions, in a transaction
-- that goes on: the error leaves the row as it was
BEGIN;
SAVEPOINT s;
SELECT tcc.fence_confirm('f-12', 'b1');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT tcc.fence_cancel('f-13', 'b1');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT * FROM fences WHERE gid IN ('f-12', 'f-13');
COMMIT;

--
-- bad arguments (the wording of the errors is errors.sql's business)
--
\set VERBOSITY terse
SELECT tcc.fence_try(NULL, 'b1');
SELECT tcc.fence_confirm('f-9', NULL);
SELECT tcc.fence_cancel('', 'b1');
SELECT tcc.fence_try('f-9', E'b\n1');
SELECT tcc.fence_try(repeat('x', 129), 'b1');
\set VERBOSITY default
SELECT * FROM fences WHERE gid = 'f-9';

--
-- a plain role: no direct access to tcc.fence; the fence functions once granted
--
CREATE ROLE fence_user;
GRANT SELECT, UPDATE ON inventory TO fence_user;
GRANT SELECT ON inv TO fence_user;
SET ROLE fence_user;
SELECT * FROM tcc.fence;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO tcc.fence (gid, branch_id, state)
VALUES ('f-10', 'b1', 'cancelled_early');
\echo :LAST_ERROR_SQLSTATE
UPDATE tcc.fence SET state = 'tried' WHERE gid = 'f-1';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM tcc.fence;
\echo :LAST_ERROR_SQLSTATE
-- nor may it call the fence before the participant grants it: otherwise any
-- role of this database could plant a fence row for somebody's branch
\set VERBOSITY terse
SELECT tcc.fence_try('f-10', 'b1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.fence_confirm('f-10', 'b1');
\echo :LAST_ERROR_SQLSTATE
SELECT tcc.fence_cancel('f-10', 'b1');
\echo :LAST_ERROR_SQLSTATE
SELECT inv_try('f-10', 'b1', 2) AS ran;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
SELECT * FROM fences WHERE gid = 'f-10';
-- the one grant a participant needs, to the role the coordinator connects as
GRANT EXECUTE ON FUNCTION tcc.fence_try(text, text),
	tcc.fence_confirm(text, text), tcc.fence_cancel(text, text)
	TO fence_user;
SET ROLE fence_user;
SELECT inv_try('f-10', 'b1', 2) AS ran;
SELECT inv_try('f-10', 'b1', 2) AS ran;
SELECT inv_confirm('f-10', 'b1', 2) AS ran;
SELECT inv_confirm('f-10', 'b1', 2) AS ran;
SELECT inv_cancel('f-11', 'b1', 2) AS ran;
SELECT inv_try('f-11', 'b1', 2) AS ran;
SELECT * FROM inv;
-- tcc.fence_purge is not granted to PUBLIC
SELECT tcc.fence_purge('1 day');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM fences WHERE gid IN ('f-10', 'f-11');

--
-- tcc.fence_purge: deletes the rows older than older_than, returns how many
--
UPDATE tcc.fence SET updated_at = now() - interval '400 days'
 WHERE gid IN ('f-1', 'f-2');
UPDATE tcc.fence SET updated_at = now() - interval '200 days'
 WHERE gid = 'f-3';
-- age counts from the last decision: f-5 was tried long ago but decided
-- recently, so it is kept
UPDATE tcc.fence SET created_at = now() - interval '400 days'
 WHERE gid = 'f-5';
SELECT tcc.fence_purge('300 days');
SELECT tcc.fence_purge('300 days');
SELECT * FROM fences WHERE gid IN ('f-1', 'f-2', 'f-3');
SELECT tcc.fence_purge('100 days');
SELECT * FROM fences WHERE gid IN ('f-1', 'f-2', 'f-3');
-- the newer rows are all kept
SELECT count(*) AS kept FROM fences
 WHERE gid IN ('f-4', 'f-5', 'f-6', 'f-7', 'f-8', 'f-10', 'f-11', 'f-12',
			   'f-13');
\set VERBOSITY terse
SELECT tcc.fence_purge(NULL);
SELECT tcc.fence_purge('-1 day');
\set VERBOSITY default

-- a role it is granted to may purge
GRANT EXECUTE ON FUNCTION tcc.fence_purge(interval) TO fence_user;
UPDATE tcc.fence SET updated_at = now() - interval '400 days'
 WHERE gid = 'f-4';
SET ROLE fence_user;
SELECT tcc.fence_purge('300 days');
RESET ROLE;
SELECT * FROM fences WHERE gid = 'f-4';

-- at the end, nothing is frozen and the total is intact
SELECT * FROM inv;

DROP OWNED BY fence_user;
DROP ROLE fence_user;
DELETE FROM tcc.fence WHERE gid LIKE 'f-%';
DROP VIEW fences;
DROP FUNCTION inv_try(text, text, integer), inv_confirm(text, text, integer),
	inv_cancel(text, text, integer);
DROP VIEW inv;
DROP TABLE inventory;
