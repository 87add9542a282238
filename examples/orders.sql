-- examples/orders.sql: the order participant of the reference scenario
-- (doc/design.md, The reference scenario).  The try creates the order as pending; confirm completes
-- it; cancel cancels it.  Same fence pattern as examples/inventory.sql.

CREATE EXTENSION IF NOT EXISTS tcc;

CREATE TABLE orders (
	gid		text PRIMARY KEY,
	product	integer NOT NULL,
	qty		integer NOT NULL,
	status	text NOT NULL CHECK (status IN ('pending', 'completed',
											'cancelled'))
);

CREATE FUNCTION order_try(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF NOT tcc.fence_try(gid, branch_id) THEN
		RETURN false;
	END IF;
	INSERT INTO orders (gid, product, qty, status)
	VALUES (gid, (payload->>'product')::int, (payload->>'qty')::int,
			'pending');
	RETURN true;
END $$;

CREATE FUNCTION order_confirm(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_confirm(gid, branch_id) THEN
		UPDATE orders SET status = 'completed' WHERE orders.gid = order_confirm.gid;
	END IF;
	RETURN true;
END $$;

CREATE FUNCTION order_cancel(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_cancel(gid, branch_id) THEN
		UPDATE orders SET status = 'cancelled' WHERE orders.gid = order_cancel.gid;
	END IF;
	RETURN true;
END $$;

-- Saga steps (README, "TCC, saga or reliable message?"): the order is
-- placed completed at once, and withdrawn (cancelled) as compensation.
CREATE FUNCTION order_place(gid text, step_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_try(gid, step_id) THEN
		INSERT INTO orders (gid, product, qty, status)
		VALUES (gid, (payload->>'product')::int, (payload->>'qty')::int,
				'completed');
	END IF;
	RETURN true;				-- done, now or before
END $$;

CREATE FUNCTION order_withdraw(gid text, step_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF tcc.fence_cancel(gid, step_id) THEN
		UPDATE orders SET status = 'cancelled'
		 WHERE orders.gid = order_withdraw.gid;
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
