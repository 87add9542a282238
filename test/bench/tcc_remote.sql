-- test/bench/tcc_remote.sql: end to end.  The same purchase as
-- baseline.sql, with the client connected to the participant database as in
-- the baseline, coordinated by tcc in a separate coordinator cluster whose
-- worker confirms both branches over tcc_fdw (foreign servers inventory and
-- orders, both pointing at the participant database).
--
-- pgbench talks to one database, so the client's calls to the coordinator
-- go through dblink, on a connection the session opens once and keeps
-- (bench_coordinator()): a libpq round trip over loopback TCP, like an
-- application's.
--
--   1. begin + register both branches: one round trip, one transaction on
--      the coordinator (dblink returns the last statement's result)
--   2. the two tries, by the client, exactly as in baseline.sql
--   3. commit: one round trip, one transaction; bench_commit (an unlogged
--      bench-only table on the coordinator) records the commit time for the
--      latency figures
--
-- The confirms are then sent by the coordinator's worker, not the client.
\set product random(1, :products)
\set g :run * 100000000000000000 + :client_id * 1000000000000000 + random(0, 999999999999999)
SELECT branch FROM dblink(bench_coordinator(), format($sql$SELECT tcc.begin(%1$L, timeout => '10 min'); SELECT tcc.register_branch(%1$L, 'inventory', 'SELECT inventory_confirm($1, $2, $3)', 'SELECT inventory_cancel($1, $2, $3)', %2$L, 'inventory'); SELECT tcc.register_branch(%1$L, 'orders', 'SELECT order_confirm($1, $2, $3)', 'SELECT order_cancel($1, $2, $3)', %2$L, 'order')$sql$, :g::text, jsonb_build_object('product', :product::int, 'qty', 2))) AS r(branch text);
SELECT inventory_try(:g::text, 'inventory', jsonb_build_object('product', :product::int, 'qty', 2));
SELECT order_try(:g::text, 'order', jsonb_build_object('product', :product::int, 'qty', 2));
SELECT status FROM dblink(bench_coordinator(), format($sql$INSERT INTO bench_commit (gid, at) VALUES (%1$L, clock_timestamp()); SELECT tcc.commit(%1$L)$sql$, :g::text)) AS r(status text);
