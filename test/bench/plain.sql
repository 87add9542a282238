-- test/bench/plain.sql: what tcc_book.sql's four calls write, written with
-- four plain statements into bench_global_transaction and bench_branch,
-- copies of tcc.global_transaction and tcc.branch (columns, constraints,
-- indexes, foreign key, fillfactor as in tcc--1.0.sql; test/bench/run
-- creates them in the database "bookkeeping"):
--
--   1. the global row and both branch rows: three INSERTs, one pipeline,
--      one transaction (tcc.begin + 2 tcc.register_branch)
--   2. both branches and the global row to confirming: one UPDATE (with
--      the branches' UPDATE in a WITH clause), one transaction
--      (tcc.commit)
--
-- Same transactions, same statement count, same rows, no tcc code.
\set product random(1, :products)
\set g :run * 100000000000000000 + :client_id * 1000000000000000 + random(0, 999999999999999)
\startpipeline
INSERT INTO bench_global_transaction (gid, mode, status, owner, created_at, updated_at, deadline) VALUES (:g::text, 'tcc', 'trying', current_user::regrole, now(), now(), now() + interval '10 min');
INSERT INTO bench_branch (gid, branch_id, seq, server, confirm_sql, cancel_sql, payload, created_at, updated_at) VALUES (:g::text, 'inventory', 1, 'inventory', 'SELECT inventory_confirm($1, $2, $3)', 'SELECT inventory_cancel($1, $2, $3)', jsonb_build_object('product', :product::int, 'qty', 2), now(), now());
INSERT INTO bench_branch (gid, branch_id, seq, server, confirm_sql, cancel_sql, payload, created_at, updated_at) VALUES (:g::text, 'order', 2, 'orders', 'SELECT order_confirm($1, $2, $3)', 'SELECT order_cancel($1, $2, $3)', jsonb_build_object('product', :product::int, 'qty', 2), now(), now());
\endpipeline
WITH b AS (UPDATE bench_branch SET status = 'confirming', next_attempt_at = now(), updated_at = now() WHERE gid = :g::text) UPDATE bench_global_transaction SET status = 'confirming', branch_count = 2, updated_at = now() WHERE gid = :g::text;
