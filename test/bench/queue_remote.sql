-- test/bench/queue_remote.sql: queue a backlog of :n purchases for the
-- coordinator's worker, all released at once (test/bench/run, parts "drain"
-- and "purge").  Run by psql in the coordinator database, with the
-- variables p (gid prefix), n, products, part (the participant's libpq
-- conninfo, for dblink) and analyze (true or false).
--
-- Everything happens in ONE transaction of the coordinator: begin and both
-- registrations of every purchase, the tries (run on the participant through
-- dblink, and committed there, as a client's tries would be), the commits.
-- Until that transaction commits no other session, the worker included, can
-- see any of it: phase two is held back without stopping or reconfiguring
-- anything, and the COMMIT at the end releases the whole backlog at once
-- (each tcc.commit asked for the worker to be woken at that commit).  The
-- purchases are the ones of tcc_remote.sql: the same calls, SQL texts and
-- payloads (bench_queue spreads them over the products).
--
-- With analyze = true, ANALYZE of tcc.global_transaction and tcc.branch
-- runs inside the same transaction, just before the COMMIT: it samples the
-- transaction's own rows, so the statistics describe the backlog in place
-- when the worker starts (the "good statistics" case).  The last line
-- printed is "release" and clock_timestamp() just before the COMMIT.
BEGIN;
SELECT count(tcc.begin(gid, timeout => '1 hour'))
  FROM bench_queue(:'p', :n, :products);
SELECT count(tcc.register_branch(gid, 'inventory',
			'SELECT inventory_confirm($1, $2, $3)',
			'SELECT inventory_cancel($1, $2, $3)', payload, 'inventory'))
  FROM bench_queue(:'p', :n, :products);
SELECT count(tcc.register_branch(gid, 'orders',
			'SELECT order_confirm($1, $2, $3)',
			'SELECT order_cancel($1, $2, $3)', payload, 'order'))
  FROM bench_queue(:'p', :n, :products);
SELECT tries FROM dblink(:'part', format(
	'SELECT count(inventory_try(gid, ''inventory'', payload)) +
			count(order_try(gid, ''order'', payload))
	   FROM bench_queue(%L, %s, %s)', :'p', :n, :products)) AS t(tries bigint);
SELECT count(tcc.commit(gid)) FROM bench_queue(:'p', :n, :products);
\if :analyze
ANALYZE tcc.global_transaction, tcc.branch;
\endif
SELECT 'release', extract(epoch FROM clock_timestamp());
COMMIT;
