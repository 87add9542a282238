-- examples/inventory.sql: the inventory participant of the reference scenario
-- (doc/design.md, The reference scenario), written the way a participant uses the tcc fence.
--
-- Each action takes the three values every tcc action gets: $1 gid, $2 branch
-- id, $3 payload ({"product": 1, "qty": 2}).  The fence call and the business
-- change are one local transaction, so either both happen or neither does.
-- At every moment stock + frozen + sold is the product's total.

CREATE EXTENSION IF NOT EXISTS tcc;

CREATE TABLE product (
	id		integer PRIMARY KEY,
	name	text NOT NULL,
	stock	integer NOT NULL CHECK (stock >= 0),
	frozen	integer NOT NULL DEFAULT 0 CHECK (frozen >= 0),
	sold	integer NOT NULL DEFAULT 0 CHECK (sold >= 0)
);

INSERT INTO product (id, name, stock) VALUES (1, 'widget', 100);

-- try: freeze the quantity (stock -= qty, frozen += qty)
CREATE FUNCTION inventory_try(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF NOT tcc.fence_try(gid, branch_id) THEN
		-- a duplicate try, or a try arriving after its cancel: do nothing
		RETURN false;
	END IF;
	UPDATE product
	   SET stock = stock - (payload->>'qty')::int,
		   frozen = frozen + (payload->>'qty')::int
	 WHERE id = (payload->>'product')::int;
	RETURN true;
END $$;

-- confirm: the frozen quantity is sold (frozen -= qty, sold += qty)
CREATE FUNCTION inventory_confirm(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_confirm(gid, branch_id) THEN
		UPDATE product
		   SET frozen = frozen - (payload->>'qty')::int,
			   sold = sold + (payload->>'qty')::int
		 WHERE id = (payload->>'product')::int;
	END IF;
	RETURN true;				-- done, now or before
END $$;

-- cancel: the frozen quantity goes back to stock (frozen -= qty, stock += qty)
CREATE FUNCTION inventory_cancel(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_cancel(gid, branch_id) THEN
		UPDATE product
		   SET frozen = frozen - (payload->>'qty')::int,
			   stock = stock + (payload->>'qty')::int
		 WHERE id = (payload->>'product')::int;
	END IF;
	RETURN true;				-- done, now or before, or nothing to undo
END $$;

-- Saga steps and reliable messages (README, "TCC, saga or reliable
-- message?") have no try: a forward step takes the stock at once.  It is
-- fenced like a try, its compensation like a cancel.

-- forward step: qty is sold at once (stock -= qty, sold += qty).  With too
-- little stock the CHECK constraint fails the statement (SQLSTATE 23514),
-- which rolls back the fence row too: a saga then compensates the steps
-- before this one, a message is retried until stock is back.
CREATE FUNCTION inventory_sell(gid text, step_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_try(gid, step_id) THEN
		UPDATE product
		   SET stock = stock - (payload->>'qty')::int,
			   sold = sold + (payload->>'qty')::int
		 WHERE id = (payload->>'product')::int;
	END IF;
	-- done, now or before (a repeat after a lost answer), or compensated
	-- already (then the coordinator no longer waits for this answer)
	RETURN true;
END $$;

-- compensation: the sale is undone (sold -= qty, stock += qty)
CREATE FUNCTION inventory_unsell(gid text, step_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_cancel(gid, step_id) THEN
		UPDATE product
		   SET sold = sold - (payload->>'qty')::int,
			   stock = stock + (payload->>'qty')::int
		 WHERE id = (payload->>'product')::int;
	END IF;
	RETURN true;				-- done, now or before, or nothing to undo
END $$;

-- The fence functions are not executable by PUBLIC: any role that could call
-- them could plant a fence row for somebody else's branch.  This is the one
-- grant a participant needs: to the role its actions run as, the user of the
-- coordinator's user mapping for this participant (psql -v
-- participant_role=inventory_app; by default the role loading this file).
\if :{?participant_role}
\else
\set participant_role :USER
\endif
GRANT EXECUTE ON FUNCTION tcc.fence_try(text, text),
	tcc.fence_confirm(text, text), tcc.fence_cancel(text, text)
	TO :"participant_role";
