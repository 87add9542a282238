-- examples/inventory.sql: the inventory participant of the reference scenario
-- (SPEC section 9), written the way a participant uses the tcc fence.
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
