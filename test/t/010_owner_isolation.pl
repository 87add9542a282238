# test/t/010_owner_isolation.pl: one owner's actions cannot hold back
# another's phase two, and two dispatchers never send a branch twice
# (src/dispatch.c, src/local_pool.c, src/runner.c, src/family.c).
#
# One cluster with tcc preloaded, tcc.call_timeout = 3s, tcc.max_attempts
# = 3, and two dispatchers per database (the default).  alice and bob are
# owners that are not superusers; their local actions write into test.log.
# Covered:
#
#  1. an action that catches tcc.call_timeout's cancel and sleeps on
#     (the issue's BEGIN PERFORM pg_sleep(60); EXCEPTION WHEN
#     query_canceled THEN PERFORM pg_sleep(12); END) does not delay bob's
#     phase two: bob's branch, committed while alice's runs, is confirmed
#     within 2 s (it took 14.5 s when the worker ran both); alice's is
#     ended at the hard limit (its process is ended: 57014, "ran longer
#     than tcc.call_timeout"), nothing it wrote commits, it is retried, and
#     after tcc.max_attempts its transaction is failed (before, it ended
#     confirmed);
#  2. a plain slow action (pg_sleep(20)) of alice's does not delay bob's
#     either (within 2 s, where it took call_timeout);
#  3. 3,000 queued local branches of alice's (each sleeping 10 ms: 30 s of
#     work) do not hold back bob's single branch committed after them:
#     confirmed within 2 s, while most of alice's are still confirming;
#  4. the poison branch: a superuser's local action that terminates its
#     own backend is retried with backoff (attempts grow, "the process
#     running the action exited", 57P01), ends failed after
#     tcc.max_attempts, and an unrelated transaction is confirmed
#     meanwhile (before, it killed the worker on every start, its attempts
#     stayed 0, and everything else stayed confirming);
#  5. two dispatchers under load never send the same branch twice: 400
#     transactions of two remote branches each, committed by four
#     sessions at once, give exactly one effect per branch on the
#     participant (which has no fence here, so a second send would show),
#     from connections of both dispatchers.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = tcc_cluster(
	'coordinator',
	[
		TccTest::FAST_WORKER,
		'tcc.call_timeout' => '3s',
		'tcc.max_attempts' => '3',
		'max_worker_processes' => '24',
		'max_connections' => '60'
	]);

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tcc;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE SCHEMA test;
GRANT USAGE ON SCHEMA test TO PUBLIC;
CREATE TABLE test.log (gid text, branch_id text, who text);
GRANT INSERT, SELECT ON test.log TO PUBLIC;

-- the issue's action that catches tcc.call_timeout's cancel
CREATE FUNCTION test.catch_timeout(gid text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO test.log VALUES (gid, 'b', 'catcher');
	BEGIN
		PERFORM pg_sleep(60);
	EXCEPTION WHEN query_canceled THEN
		PERFORM pg_sleep(12);
	END;
END $$;
GRANT EXECUTE ON FUNCTION test.catch_timeout(text) TO PUBLIC;
});

# quick_tx(role, gid): role begins gid with one local branch b that logs
# itself, and commits
sub quick_tx
{
	my ($role, $gid) = @_;
	run_as($node, 'postgres', $role, qq{
SELECT tcc.begin('$gid');
SELECT tcc.register_branch('$gid', NULL,
	\$\$INSERT INTO test.log VALUES (\$1, \$2, 'quick')\$\$, 'SELECT 1');
SELECT tcc.commit('$gid');
});
}

# slow_tx(role, gid, confirm): role begins gid with one local branch b
# whose confirm is confirm, and commits
sub slow_tx
{
	my ($role, $gid, $confirm) = @_;
	run_as($node, 'postgres', $role, qq{
SELECT tcc.begin('$gid');
SELECT tcc.register_branch('$gid', NULL, \$\$$confirm\$\$, 'SELECT 1');
SELECT tcc.commit('$gid');
});
}

# retried_with(gid, sqlstate, error, seconds, name): the assertion that
# gid's branch comes to have a failed attempt with sqlstate and an error
# containing error
sub retried_with
{
	my ($gid, $sqlstate, $error, $seconds, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	polled_is(
		$node, 'postgres', qq{
SELECT attempts >= 1 AND last_sqlstate = '$sqlstate'
       AND last_error LIKE '%$error%'
  FROM tcc.branches WHERE gid = '$gid'}, 't', $seconds, $name);
}

# status_of(gid)
sub status_of
{
	my ($gid) = @_;
	return $node->safe_psql('postgres', "SELECT tcc.status('$gid')");
}

# running(gid): whether gid's action runs now, as pg_stat_activity says
sub running
{
	my ($pattern) = @_;
	return $node->poll_query_until(
		'postgres', qq{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE query LIKE '$pattern' AND pid <> pg_backend_pid()});
}

# ---------------------------------------- 1. an action that catches the cancel

slow_tx('alice', 'catch', 'SELECT test.catch_timeout($1)');
ok(running('%catch_timeout%'), '1: alice\'s catching action runs');
quick_tx('bob', 'bob-1');
my $took = polled_is($node, 'postgres', "SELECT tcc.status('bob-1')",
	'confirmed', 2, '1: bob\'s branch is confirmed within 2 s');
note("bob's branch took ${took}s behind the catching action");

retried_with('catch', '57014', 'ran longer than tcc.call_timeout', 15,
	'1: the catching action is ended at the hard limit and retried');
is(status_of('catch'), 'confirming',
	'1: ended, the branch is not recorded as confirmed');
polled_is($node, 'postgres', "SELECT tcc.status('catch')", 'failed', 40,
	'1: after tcc.max_attempts the transaction is failed');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM test.log WHERE gid = 'catch'"),
	'0',
	'1: nothing the ended action wrote committed');

# --------------------------------------------------- 2. a plain slow action

slow_tx('alice', 'sleepy', 'SELECT pg_sleep(20)');
ok(running('SELECT pg_sleep(20)'), '2: alice\'s slow action runs');
quick_tx('bob', 'bob-2');
polled_is($node, 'postgres', "SELECT tcc.status('bob-2')", 'confirmed', 2,
	'2: bob\'s branch is confirmed within 2 s');

# ----------------------------------------- 3. many queued branches of one owner

run_as($node, 'postgres', 'alice', q{
DO $$
BEGIN
	FOR i IN 1..3000 LOOP
		PERFORM tcc.begin('many-' || i);
		PERFORM tcc.register_branch('many-' || i, NULL,
			'SELECT pg_sleep(0.01)', 'SELECT 1');
		PERFORM tcc.commit('many-' || i);
	END LOOP;
END $$;
});
quick_tx('bob', 'bob-3');
polled_is($node, 'postgres', "SELECT tcc.status('bob-3')", 'confirmed', 2,
	'3: bob\'s branch is confirmed within 2 s behind 3,000 of alice\'s');
cmp_ok(
	$node->safe_psql(
		'postgres', q{
SELECT count(*) FROM tcc.transactions
 WHERE gid LIKE 'many-%' AND status = 'confirming'}),
	'>', 1000,
	'3: most of alice\'s were still waiting then');

# ------------------------------------------------------ 4. the poison branch

$node->safe_psql(
	'postgres', q{
SELECT tcc.begin('poison');
SELECT tcc.register_branch('poison', NULL,
	'SELECT pg_terminate_backend(pg_backend_pid())', 'SELECT 1');
SELECT tcc.commit('poison');
});
retried_with('poison', '57P01', 'process running the action exited', 15,
	'4: the poison branch is retried, its attempts counted');
quick_tx('bob', 'bob-4');
polled_is($node, 'postgres', "SELECT tcc.status('bob-4')", 'confirmed', 5,
	'4: an unrelated transaction is confirmed meanwhile');
polled_is($node, 'postgres', "SELECT tcc.status('poison')", 'failed', 30,
	'4: after tcc.max_attempts the poison branch\'s transaction is failed');
is( $node->safe_psql(
		'postgres', "SELECT attempts FROM tcc.branches WHERE gid = 'poison'"),
	'3',
	'4: it had tcc.max_attempts attempts');

# ------------------------------------- 5. two dispatchers, no branch sent twice

is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type IN ('tcc worker', 'tcc dispatcher')
   AND datname = 'postgres'}),
	'2',
	'5: two dispatchers serve the database');

$node->safe_psql(
	'postgres', q{
CREATE DATABASE effects;
});
$node->safe_psql(
	'effects', q{
CREATE TABLE effect (gid text, branch_id text, pid int);
});
create_server($node, $node, 'effects', 'effects');

my @load;
foreach my $s (1 .. 4)
{
	my ($h) = start_psql(
		$node, 'postgres', "load$s", qq{
DO \$\$
BEGIN
	FOR i IN 1..100 LOOP
		PERFORM tcc.begin('load-$s-' || i);
		PERFORM tcc.register_branch('load-$s-' || i, 'effects',
			'INSERT INTO effect VALUES (\$1, \$2, pg_backend_pid())',
			'SELECT 1', NULL, 'a');
		PERFORM tcc.register_branch('load-$s-' || i, 'effects',
			'INSERT INTO effect VALUES (\$1, \$2, pg_backend_pid())',
			'SELECT 1', NULL, 'b');
		PERFORM tcc.commit('load-$s-' || i);
		COMMIT;
	END LOOP;
END \$\$;
});
	push @load, $h;
}
$_->finish foreach @load;
polled_confirmed($node, 'postgres', 'load', '400', 60,
	'5: the 400 transactions are confirmed');
is( $node->safe_psql(
		'effects',
		'SELECT count(*), count(DISTINCT (gid, branch_id)) FROM effect'),
	'800|800',
	'5: exactly one effect per branch: none was sent twice');
cmp_ok($node->safe_psql('effects', 'SELECT count(DISTINCT pid) FROM effect'),
	'>=', 2, '5: both dispatchers sent calls');

$node->stop('immediate');
done_testing();
