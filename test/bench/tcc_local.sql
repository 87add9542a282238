-- test/bench/tcc_local.sql: the bookkeeping cost.  The same purchase as
-- baseline.sql, in the same database, coordinated by the tcc of that very
-- database: both branches are local (server NULL), so the background worker
-- runs the confirms in-process and no network hop is added.  The difference
-- from the baseline is what tcc itself writes and does: the global
-- transaction and its branches, the commit, the worker's rounds.
--
--   1. begin + register both branches: one round trip (a pipeline), one
--      transaction on the coordinator
--   2. the two tries, by the client, exactly as in baseline.sql
--   3. commit: one round trip, one transaction; bench_commit (an unlogged
--      bench-only table) records the commit time for the latency figures
--
-- The confirms are then run by the worker, not by the client.
\set product random(1, :products)
\set g :run * 100000000000000000 + :client_id * 1000000000000000 + random(0, 999999999999999)
\startpipeline
SELECT tcc.begin(:g::text, timeout => '10 min');
SELECT tcc.register_branch(:g::text, NULL, 'SELECT inventory_confirm($1, $2, $3)', 'SELECT inventory_cancel($1, $2, $3)', jsonb_build_object('product', :product::int, 'qty', 2), 'inventory');
SELECT tcc.register_branch(:g::text, NULL, 'SELECT order_confirm($1, $2, $3)', 'SELECT order_cancel($1, $2, $3)', jsonb_build_object('product', :product::int, 'qty', 2), 'order');
\endpipeline
SELECT inventory_try(:g::text, 'inventory', jsonb_build_object('product', :product::int, 'qty', 2));
SELECT order_try(:g::text, 'order', jsonb_build_object('product', :product::int, 'qty', 2));
\startpipeline
INSERT INTO bench_commit (gid, at) VALUES (:g::text, clock_timestamp());
SELECT tcc.commit(:g::text);
\endpipeline
