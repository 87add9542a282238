-- test/bench/tcc_book.sql: the bookkeeping cost, coordinator only.  The
-- coordinator's half of tcc_remote.sql, run by pgbench against the
-- coordinator cluster's database "bookkeeping" directly (no dblink, no
-- participant calls):
--
--   1. begin + register both branches: one pipeline, one transaction
--   2. commit: one transaction
--
-- The same calls, SQL texts and payloads as tcc_remote.sql.  plain.sql
-- writes the same rows with one plain statement per call.  Phase two is
-- held back while this runs (test/bench/run, part "bookkeeping": the
-- database's worker is frozen with SIGSTOP), so the worker's confirms do
-- not share the CPU with the clients; they run after the run is over.
\set product random(1, :products)
\set g :run * 100000000000000000 + :client_id * 1000000000000000 + random(0, 999999999999999)
\startpipeline
SELECT tcc.begin(:g::text, timeout => '10 min');
SELECT tcc.register_branch(:g::text, 'inventory', 'SELECT inventory_confirm($1, $2, $3)', 'SELECT inventory_cancel($1, $2, $3)', jsonb_build_object('product', :product::int, 'qty', 2), 'inventory');
SELECT tcc.register_branch(:g::text, 'orders', 'SELECT order_confirm($1, $2, $3)', 'SELECT order_cancel($1, $2, $3)', jsonb_build_object('product', :product::int, 'qty', 2), 'order');
\endpipeline
SELECT tcc.commit(:g::text);
