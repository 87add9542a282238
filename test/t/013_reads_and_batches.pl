# test/t/013_reads_and_batches.pl: how a dispatcher reads the due rows and
# how a runner batches local actions (src/dispatch.c, src/local.c).
#
#   1. Each due row is read once.  5,000 transactions of two local
#      branches, committed at once by one client transaction, drain with
#      the due query returning about one row per branch (pg_stat_statements
#      counts them), where reads that started from the beginning after
#      every short read returned each in-flight row again and again.
#   2. A batch does not wait on a lock for its other actions.  One runner,
#      three transactions of one local branch each, found together and so
#      run in one batch: the second's action needs a row a session holds.
#      The first is confirmed while the row is still held (before, the
#      whole batch waited with the second, and the first was confirmed only
#      once the row was released); once released, all three are confirmed
#      with one attempt each, and each effect happened once.
#   3. A commit during a restart of the family is found at once.  A client
#      transaction commits a local transaction (tcc.commit) while no
#      worker runs (the leader was terminated, and is started again 5 s
#      later), and commits its own transaction only once the new family
#      has made its first read.  The branch is confirmed within 3 s of that
#      commit (before, what it noted was dropped, and it waited for the read
#      from the beginning ten naptimes later).
#   4. An action that changes its own transaction is recorded against what
#      it left.  A TCC transaction fails on its first branch (a permanent
#      error, 42501, that the action raises only the first time); its
#      second branch's confirm, run after that, calls tcc.retry on it and
#      returns false, its last attempt (tcc.max_attempts = 1).  The retry
#      made the transaction confirming again, and so the failed second
#      branch must fail it again: it ends failed, to be retried.  (Recorded
#      against the row as read before the action, failed, it stayed
#      confirming for good, with nothing that would ever run.)
#   5. A round's outcomes are recorded together (src/outcome.c).  2,000
#      transactions of two remote branches are queued at once, with 20
#      others among them whose second branch fails for good (42P01), and
#      one whose row a session holds (a repeated tcc.commit in an open
#      transaction) from before its slow confirm (5 s) comes back until the
#      rest have drained.  The transactions are locked, and looked at for
#      branches left, by statements that each take a round's outcomes:
#      pg_stat_statements counts fewer than half as many executions of
#      each as outcomes (before, one each).  The failures end their
#      transactions failed, the held one is confirmed once released, and
#      every effect happened once.
#   6. A batch of local actions locks each transaction once, looks for
#      branches left once, and plans each action text once (src/local.c,
#      src/action_plan.c).  2,000 transactions of two local branches:
#      pg_stat_statements counts at most 0.6 lock statements per outcome
#      (before, one per outcome: the second branch of a transaction locked
#      the row its batch already held), fewer than a quarter as many looks
#      for branches left as outcomes (before, one per outcome), and fewer
#      than a tenth as many plans of the action's statement as runs of it
#      (before, every run parsed and planned it).  Every effect happened
#      once.
#   7. A kept plan follows what changed.  One action text, run by one
#      runner for a role that is not a superuser: once the role's
#      search_path names another schema, it writes there; once the table
#      there is dropped and made again, with another column and without the
#      role's privilege, it fails with 42501 (the privilege is checked on
#      every run, not when planned); after a GRANT, tcc.retry confirms it,
#      into the new table.  And an INSERT into a table whose row security
#      policy the role bypasses (BYPASSRLS) succeeds; once the role no
#      longer bypasses it, the same text fails with 42501, not run on by a
#      plan kept from when it did.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(time);

my $node = tcc_cluster(
	'coordinator',
	[
		'shared_preload_libraries' => 'tcc,pg_stat_statements',
		'pg_stat_statements.track' => 'all',
		'pg_stat_statements.track_planning' => 'on',
		# reads from the beginning once per ten naptimes only
		'tcc.naptime' => '1s',
		'tcc.retry_base' => '50ms',
		'tcc.call_timeout' => '30s',
		'tcc.dispatchers' => '1',
		'tcc.local_processes' => '1',
		'max_worker_processes' => '16'
	]);
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tcc;
CREATE EXTENSION pg_stat_statements;
CREATE TABLE effect (gid text, branch_id text);
CREATE TABLE held (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO held SELECT g, 0 FROM generate_series(1, 3) g;
});

# ------------------------------------------- 1. each due row is read once

my $n = 5000;
$node->safe_psql('postgres', 'SELECT pg_stat_statements_reset()');
$node->safe_psql('postgres', queue_sql('r', $n, undef));
polled_confirmed($node, 'postgres', 'r', $n, 120,
	"reads: the $n transactions are confirmed");
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(DISTINCT (gid, branch_id)) FROM effect
 WHERE gid LIKE 'r-%'}),
	2 * $n . '|' . 2 * $n,
	'reads: every branch had its effect exactly once');
my $rows = $node->safe_psql(
	'postgres', q{
SELECT coalesce(sum(rows), 0) FROM pg_stat_statements
 WHERE query LIKE '%FROM tcc.branch b%CROSS JOIN LATERAL%'});
note("reads: the due query returned $rows rows for " . 2 * $n . " branches");
cmp_ok($rows, '<=', 3 * $n,
	'reads: the due query returned at most 1.5 rows per branch');

# ------------------------------- 2. a batch does not wait on a lock for all

my ($h, $out, $err) = start_psql($node, 'postgres', 'holder', q{
BEGIN;
SELECT 1 FROM held WHERE id = 2 FOR UPDATE;
SELECT pg_sleep(10);
COMMIT;
});
ok( ( poll_until(
			$node, 'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE application_name = 'holder' AND query LIKE '%pg_sleep%'}, '1', 10))[0],
	'batch: a session holds row 2 of held');

my $t0 = time();
$node->safe_psql(
	'postgres', q{
DO $$
BEGIN
	FOR i IN 1..3 LOOP
		PERFORM tcc.begin('y' || i);
		PERFORM tcc.register_branch('y' || i, NULL,
			format('UPDATE held SET n = n + 1 WHERE id = %s', i),
			'SELECT 1', NULL, 'b');
		PERFORM tcc.commit('y' || i);
	END LOOP;
END $$;
});
ok( ( poll_until(
			$node, 'postgres',
			q{SELECT status FROM tcc.transactions WHERE gid = 'y1'},
			'confirmed', 5))[0],
	'batch: y1 is confirmed while row 2 is held');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder'}),
	'1', 'batch: ... and the session still holds it');
note(sprintf('batch: y1 confirmed %.1f s after the commit', time() - $t0));

$h->finish;
polled_is(
	$node, 'postgres', q{
SELECT string_agg(gid || ' ' || status, ', ' ORDER BY gid)
  FROM tcc.transactions WHERE gid IN ('y1', 'y2', 'y3')},
	'y1 confirmed, y2 confirmed, y3 confirmed', 20,
	'batch: all three are confirmed once the row is released');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(gid || ':' || attempts, ' ' ORDER BY gid)
  FROM tcc.branches WHERE gid IN ('y1', 'y2', 'y3')}),
	'y1:1 y2:1 y3:1',
	'batch: one attempt each (the action that would have waited was not '
	  . 'counted)');
is($node->safe_psql('postgres', 'SELECT string_agg(n::text, \' \' ORDER BY id) FROM held'),
	'1 1 1', 'batch: each effect happened once');

# --------------------------- 3. a commit during a restart of the family

my $leader = q{SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'tcc worker' AND datname = 'postgres'};
my $old_pid = $node->safe_psql('postgres', $leader);
like($old_pid, qr/^\d+$/, 'restart: the leader runs');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
ok( ( poll_until($node, 'postgres', "SELECT count(*) FROM ($leader) l", '0',
			10))[0],
	'restart: the leader is gone');
my ($hl, $outl, $errl) = start_psql($node, 'postgres', 'late', q{
BEGIN;
SELECT tcc.begin('late');
SELECT tcc.register_branch('late', NULL,
	'INSERT INTO effect VALUES ($1, $2)', 'SELECT 1', NULL, 'b');
SELECT tcc.commit('late');
SELECT pg_sleep(9);
COMMIT;
});
$hl->finish;
my $committed = time();
is($$errl, '', 'restart: the client committed');
my $new_pid = $node->safe_psql('postgres', $leader);
ok($new_pid =~ /^\d+$/ && $new_pid ne $old_pid,
	'restart: a new leader ran before the client committed');
ok( ( poll_until(
			$node, 'postgres',
			q{SELECT status FROM tcc.transactions WHERE gid = 'late'},
			'confirmed', 3))[0],
	'restart: the transaction committed meanwhile is confirmed within 3 s');
note(sprintf('restart: confirmed %.1f s after the commit', time() - $committed));

# ------------------- 4. an action that changes its own transaction
ok(set_conf($node, 'tcc.max_attempts', '1', '1'),
	'own change: tcc.max_attempts is 1');
$node->safe_psql(
	'postgres', q{
CREATE SEQUENCE first_runs;
CREATE FUNCTION fail_first_time() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('first_runs') = 1 THEN
		RAISE EXCEPTION 'not this time' USING ERRCODE = '42501';
	END IF;
END $$;
BEGIN;
SELECT tcc.begin('own');
SELECT tcc.register_branch('own', NULL, 'SELECT fail_first_time()',
	'SELECT 1', NULL, 'a');
SELECT tcc.register_branch('own', NULL, 'SELECT tcc.retry($1) IS NULL',
	'SELECT 1', NULL, 'b');
SELECT tcc.commit('own');
COMMIT;
});
ok( ( poll_until(
			$node, 'postgres',
			q{SELECT status FROM tcc.transactions WHERE gid = 'own'},
			'failed', 30))[0],
	'own change: the transaction the second branch failed after its retry '
	  . 'ends failed, not confirming with nothing to run');
is( $node->safe_psql(
		'postgres', q{SELECT last_value, is_called FROM first_runs}),
	'1|t', 'own change: the first branch ran once, before the second');
is(branches_of($node, 'own'), 'a:confirming,b:failed',
	'own change: the first branch is to run again (the retry), the second '
	  . 'failed');

# ------------------------------- 5. a round's outcomes recorded together
ok(set_conf($node, 'tcc.max_attempts', undef, '50'),
	'together: tcc.max_attempts is back to 50');
$node->safe_psql('postgres', 'CREATE DATABASE part');
$node->safe_psql('part', 'CREATE TABLE effect (gid text, branch_id text)');
create_server($node, $node, 'part', 'part');
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT tcc.begin('held');
SELECT tcc.register_branch('held', 'part',
	'INSERT INTO effect SELECT $1, $2 FROM pg_sleep(5)', 'SELECT 1', NULL,
	'a');
SELECT tcc.commit('held');
COMMIT;
});
my ($holder) = start_psql(
	$node, 'postgres', 'holder', q{
BEGIN;
SELECT tcc.commit('held');
SELECT pg_sleep(3600);
});
ok( ( wait_until(
			sub {
				$node->safe_psql(
					'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE application_name = 'holder' AND query LIKE '%pg_sleep%'}) eq '1';
			},
			30))[0],
	'together: a session holds the row of transaction held');
is($node->safe_psql('postgres', status_sql('held')),
	'held:confirming', 'together: the held transaction\'s confirm still runs');
$node->safe_psql('postgres', 'SELECT pg_stat_statements_reset()');
$node->safe_psql(
	'postgres', queue_sql('t', 2000, 'part') . q{
DO $$
BEGIN
	FOR i IN 1..20 LOOP
		PERFORM tcc.begin('tf-' || i);
		PERFORM tcc.register_branch('tf-' || i, 'part',
			'INSERT INTO effect VALUES ($1, $2)', 'SELECT 1', NULL, 'a');
		PERFORM tcc.register_branch('tf-' || i, 'part',
			'INSERT INTO no_such_table VALUES ($1)', 'SELECT 1', NULL, 'b');
		PERFORM tcc.commit('tf-' || i);
	END LOOP;
END $$;
});
polled_is(
	$node, 'postgres', q{
SELECT count(*) FILTER (WHERE gid LIKE 't-%' AND status = 'confirmed')
       || '|' || count(*) FILTER (WHERE gid LIKE 'tf-%' AND status = 'failed')
  FROM tcc.transactions}, '2000|20', 120,
	'together: the 2,000 are confirmed and the 20 failed');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE branch_id = 'a' AND status = 'confirmed'
                          AND attempts = 1)
       || '|' || count(*) FILTER (WHERE branch_id = 'b' AND status = 'failed'
                                    AND last_sqlstate = '42P01')
  FROM tcc.branches WHERE gid LIKE 'tf-%'}),
	'20|20',
	'together: in the failed ones the first branch is confirmed, the second '
	  . 'failed with its error');
is($node->safe_psql('postgres', status_sql('held')),
	'held:confirming', 'together: the held transaction waits for its row');
$node->safe_psql(
	'postgres', q{
SELECT pg_cancel_backend(pid) FROM pg_stat_activity
 WHERE application_name = 'holder'});
$holder->finish;
polled_is($node, 'postgres', status_sql('held'), 'held:confirmed', 30,
	'together: the held transaction is confirmed once its row is released');
is( $node->safe_psql(
		'part', q{
SELECT count(*), count(DISTINCT (gid, branch_id)) FROM effect}),
	'4021|4021', 'together: every remote branch had its effect exactly once');
my ($outcomes, $locks, $looks) = split /\|/, $node->safe_psql(
	'postgres', q{
SELECT sum(rows) FILTER (WHERE query LIKE 'UPDATE tcc.branch%attempts +%'),
       sum(calls) FILTER (WHERE query LIKE '%FROM tcc.global_transaction%'
                                 || 'WHERE gid %FOR UPDATE SKIP LOCKED'),
       sum(calls) FILTER (WHERE query LIKE 'SELECT%FROM tcc.branch%'
                                 || 'status NOT IN (%')
  FROM pg_stat_statements});
note("together: $outcomes outcomes, $locks lock statements, "
	  . "$looks looks for branches left");
cmp_ok($outcomes, '>=', 4041, 'together: every outcome was written');
cmp_ok($locks, '<', $outcomes / 2,
	'together: each lock statement locked a round\'s transactions, not one');
cmp_ok($looks, '<', $outcomes / 2,
	'together: each look for branches left took a round\'s transactions');

# ------------------ 6. a batch of local actions: one lock, one look, a plan
$node->safe_psql('postgres', 'SELECT pg_stat_statements_reset()');
$node->safe_psql('postgres', queue_sql('k', 2000, undef));
polled_confirmed($node, 'postgres', 'k', 2000, 120,
	'local batch: the 2,000 local transactions are confirmed');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(DISTINCT (gid, branch_id)) FROM effect
 WHERE gid LIKE 'k-%'}),
	'4000|4000', 'local batch: every branch had its effect exactly once');
($outcomes, $locks, $looks, my $runs, my $plans) = split /\|/,
  $node->safe_psql(
	'postgres', q{
SELECT sum(rows) FILTER (WHERE query LIKE 'UPDATE tcc.branch%attempts +%'),
       sum(calls) FILTER (WHERE query LIKE '%FROM tcc.global_transaction%'
                                 || 'WHERE gid %FOR UPDATE SKIP LOCKED'),
       sum(calls) FILTER (WHERE query LIKE 'SELECT%FROM tcc.branch%'
                                 || 'status NOT IN (%'),
       sum(calls) FILTER (WHERE query = 'INSERT INTO effect VALUES ($1, $2)'),
       sum(plans) FILTER (WHERE query = 'INSERT INTO effect VALUES ($1, $2)')
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'postgres')});
note("local batch: $outcomes outcomes, $locks lock statements, "
	  . "$looks looks for branches left, $runs runs of the action, "
	  . "$plans plans of it");
cmp_ok($outcomes, '>=', 4000, 'local batch: every outcome was written');
cmp_ok($locks, '<=', 0.6 * $outcomes,
	'local batch: a transaction\'s row is locked once for its batch');
cmp_ok($looks, '<', $outcomes / 4,
	'local batch: each look for branches left took a batch\'s transactions');
cmp_ok($runs, '>=', 4000, 'local batch: the action ran for every branch');
cmp_ok($plans, '<', $runs / 10,
	'local batch: the action\'s statement was planned once, not per run');

# ----------------------------------- 7. a kept plan follows what changed
$node->safe_psql(
	'postgres', q{
CREATE ROLE kp LOGIN;
CREATE SCHEMA s1;
CREATE SCHEMA s2;
CREATE TABLE s1.kept (gid text, branch_id text);
CREATE TABLE s2.kept (gid text, branch_id text);
GRANT USAGE ON SCHEMA s1, s2 TO kp;
GRANT INSERT, SELECT ON s1.kept, s2.kept TO kp;
ALTER ROLE kp IN DATABASE postgres SET search_path = s1;
});

# kept(gid[, table]): a transaction of kp whose one local branch, a,
# inserts into table (default "kept", as search_path finds it)
sub kept
{
	my ($gid, $table) = @_;
	$table //= 'kept';
	$node->safe_psql(
		'postgres', qq{
SET ROLE kp;
BEGIN;
SELECT tcc.begin('$gid');
SELECT tcc.register_branch('$gid', NULL,
	'INSERT INTO $table VALUES (\$1, \$2)', 'SELECT 1', NULL, 'a');
SELECT tcc.commit('$gid');
COMMIT;
});
}

# outcome_sql(gid): "status:last_sqlstate" of gid and its one branch
sub outcome_sql
{
	my ($gid) = @_;
	return "SELECT t.status || ':' || b.last_sqlstate"
	  . " FROM tcc.transactions t JOIN tcc.branches b USING (gid)"
	  . " WHERE gid = '$gid'";
}

for my $i (1 .. 8)
{
	kept("kp-$i");
	poll_until($node, 'postgres', status_sql("kp-$i"), "kp-$i:confirmed", 30);
}
is( $node->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM s1.kept) || '|'
       || (SELECT count(*) FROM s2.kept)}),
	'8|0', 'kept plan: 8 runs under search_path s1 wrote into s1.kept');
$node->safe_psql('postgres',
	'ALTER ROLE kp IN DATABASE postgres SET search_path = s2');
kept('kp-9');
polled_is($node, 'postgres', status_sql('kp-9'), 'kp-9:confirmed', 30,
	'kept plan: the run after the role\'s search_path changed is confirmed');
is( $node->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM s1.kept) || '|'
       || (SELECT string_agg(gid, ',') FROM s2.kept)}),
	'8|kp-9', 'kept plan: it wrote into s2.kept, as search_path now says');
$node->safe_psql(
	'postgres', q{
DROP TABLE s2.kept;
CREATE TABLE s2.kept (gid text, branch_id text, n int DEFAULT 7);
});
kept('kp-10');
polled_is($node, 'postgres', outcome_sql('kp-10'), 'failed:42501', 30,
	'kept plan: without the privilege on the new table the action fails '
	  . 'for good (42501)');
$node->safe_psql('postgres', 'GRANT INSERT ON s2.kept TO kp');
$node->safe_psql('postgres', "SELECT tcc.retry('kp-10')");
polled_is($node, 'postgres', status_sql('kp-10'), 'kp-10:confirmed', 30,
	'kept plan: after the GRANT the retry is confirmed');
is($node->safe_psql('postgres', q{SELECT gid, n FROM s2.kept}),
	'kp-10|7', 'kept plan: it wrote into the new table, with its default');
$node->safe_psql(
	'postgres', q{
CREATE TABLE s1.guarded (gid text, branch_id text);
ALTER TABLE s1.guarded ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_z ON s1.guarded FOR INSERT WITH CHECK (branch_id = 'z');
GRANT INSERT ON s1.guarded TO kp;
ALTER ROLE kp BYPASSRLS;
});

# s1.guarded's policy lets only a role that bypasses it insert branch a
for my $i (1 .. 3)
{
	kept("rls-$i", 's1.guarded');
	poll_until($node, 'postgres', status_sql("rls-$i"), "rls-$i:confirmed",
		30);
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM s1.guarded}),
	'3', 'kept plan: a role that bypasses row security inserts what the '
	  . 'policy refuses');
$node->safe_psql('postgres', 'ALTER ROLE kp NOBYPASSRLS');
kept('rls-4', 's1.guarded');
polled_is($node, 'postgres', outcome_sql('rls-4'), 'failed:42501', 30,
	'kept plan: once it no longer bypasses row security, the policy refuses '
	  . 'the same action (42501)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM s1.guarded}),
	'3', 'kept plan: nothing was inserted past the policy');

$node->stop('immediate');
done_testing();
