-- test/bench/queue_local.sql: queue a backlog of :n purchases for the
-- participant database's own worker (local branches, as in tcc_local.sql),
-- all released at once (test/bench/run, part "drain").  Run by psql in the
-- participant database, with the variables p (gid prefix), n, products and
-- analyze (true or false).
--
-- As queue_remote.sql: ONE transaction holds begin and both registrations
-- of every purchase, the tries (here in the same database, as a local
-- client's would be) and the commits, so nothing of it is visible to the
-- worker until the COMMIT at the end releases it all at once; with analyze
-- = true, ANALYZE of tcc.global_transaction and tcc.branch inside it, just
-- before the COMMIT, samples the backlog in place.  The last line printed is
-- "release" and clock_timestamp() just before the COMMIT.
BEGIN;
SELECT count(tcc.begin(gid, timeout => '1 hour'))
  FROM bench_queue(:'p', :n, :products);
SELECT count(tcc.register_branch(gid, NULL,
			'SELECT inventory_confirm($1, $2, $3)',
			'SELECT inventory_cancel($1, $2, $3)', payload, 'inventory'))
  FROM bench_queue(:'p', :n, :products);
SELECT count(tcc.register_branch(gid, NULL,
			'SELECT order_confirm($1, $2, $3)',
			'SELECT order_cancel($1, $2, $3)', payload, 'order'))
  FROM bench_queue(:'p', :n, :products);
SELECT count(inventory_try(gid, 'inventory', payload)) +
	   count(order_try(gid, 'order', payload))
  FROM bench_queue(:'p', :n, :products);
SELECT count(tcc.commit(gid)) FROM bench_queue(:'p', :n, :products);
\if :analyze
ANALYZE tcc.global_transaction, tcc.branch;
\endif
SELECT 'release', extract(epoch FROM clock_timestamp());
COMMIT;
