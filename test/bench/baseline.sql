-- test/bench/baseline.sql: one purchase of the reference scenario with no
-- coordination at all: the participant SQL of examples/inventory.sql and
-- examples/orders.sql, fence included, run by the client against the
-- participant database.  Four statements, four local transactions: the two
-- tries, then the two confirms.
--
-- Variables (pgbench -D): run (10-89, one per pgbench run) and products.
-- The gid is a number unique per run and client: 2 digits of run, 2 of
-- client_id, 15 random ones (test/bench/run counts a run by its prefix).
\set product random(1, :products)
\set g :run * 100000000000000000 + :client_id * 1000000000000000 + random(0, 999999999999999)
SELECT inventory_try(:g::text, 'inventory', jsonb_build_object('product', :product::int, 'qty', 2));
SELECT order_try(:g::text, 'order', jsonb_build_object('product', :product::int, 'qty', 2));
SELECT inventory_confirm(:g::text, 'inventory', jsonb_build_object('product', :product::int, 'qty', 2));
SELECT order_confirm(:g::text, 'order', jsonb_build_object('product', :product::int, 'qty', 2));
