# test/t/001_durability.pl: the coordinator's state survives crashes.
#
# Global transactions in every state the SQL API can put them in (trying,
# confirming, cancelling, confirmed, cancelled; TCC, saga and msg), their
# branches and participant fence rows are created in two databases of one
# cluster, plus a transaction whose enclosing SQL transaction never commits.
# The server is then crashed twice for real, once by "pg_ctl stop -m
# immediate" and once by SIGKILL to the postmaster, and restarted; each time
# the committed state must come back exactly as it was (rows byte for byte:
# statuses, branch statuses, registration order, timestamps, each branch's
# one fence row and its state), the uncommitted transaction must not exist,
# the fence must still refuse what it refused before (duplicates, the
# hanging try, a cancel after the confirm and a confirm after the cancel),
# and new transactions must work.
#
# tcc is not preloaded here, so no background worker runs and nothing moves
# a status but the API: the point is that the tables themselves survive.
# Phase two across crashes, with the worker, is 002_phase_two.pl's subject.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('coordinator');
$node->init;
$node->start;

my @dbs = ('postgres', 'second');
$node->safe_psql('postgres', 'CREATE DATABASE second');
$node->safe_psql($_, 'CREATE EXTENSION tcc') for @dbs;

# ------------------------------------------------------------------ set-up

# The same gids in both databases, in different states: each database has
# its own coordinator state.
$node->safe_psql('postgres', q{
SELECT tcc.begin('g-trying', timeout => '1 day');

SELECT tcc.begin('g-commit', timeout => '1 day');
SELECT tcc.register_branch('g-commit', NULL, 'SELECT 1', 'SELECT 2',
                           '{"qty": 2}', 'b1');
SELECT tcc.register_branch('g-commit', NULL, 'SELECT 3', 'SELECT 4',
                           NULL, 'b2');
SELECT tcc.register_branch('g-commit', NULL, 'SELECT 5', 'SELECT 6');
SELECT tcc.commit('g-commit');

SELECT tcc.begin('g-rollback', timeout => '1 day');
SELECT tcc.register_branch('g-rollback', NULL, 'SELECT 1', 'SELECT 2',
                           NULL, 'r1');
SELECT tcc.register_branch('g-rollback', NULL, 'SELECT 1', 'SELECT 2',
                           NULL, 'r2');
SELECT tcc.rollback('g-rollback', 'changed my mind');

SELECT tcc.begin('g-saga', timeout => '1 day', mode => 'saga');
SELECT tcc.add_step('g-saga', NULL, 'SELECT 1', 'SELECT 2', NULL, 's1');
SELECT tcc.add_step('g-saga', NULL, 'SELECT 3', 'SELECT 4', NULL, 's2');
SELECT tcc.submit('g-saga');

SELECT tcc.begin('g-saga-off', timeout => '1 day', mode => 'saga');
SELECT tcc.add_step('g-saga-off', NULL, 'SELECT 1', 'SELECT 2', NULL, 's1');
SELECT tcc.rollback('g-saga-off');

SELECT tcc.begin('g-msg-empty', mode => 'msg');
SELECT tcc.submit('g-msg-empty');
});

$node->safe_psql('second', q{
SELECT tcc.begin('g-commit', timeout => '1 day');
SELECT tcc.register_branch('g-commit', NULL, 'SELECT 7', 'SELECT 8',
                           NULL, 'other');
SELECT tcc.rollback('g-commit');

SELECT tcc.begin('g-only-here', timeout => '1 day', mode => 'msg');
SELECT tcc.add_step('g-only-here', NULL, 'SELECT 9', NULL, NULL, 'm1');
SELECT tcc.submit('g-only-here');
});

# the fence: a normal try and confirm (b1), an empty rollback followed by a
# hanging try (r2), a try then its cancel (r1); in "second" only a try
is( $node->safe_psql(
		'postgres', q{
SELECT tcc.fence_try('g-commit', 'b1'),
       tcc.fence_confirm('g-commit', 'b1'),
       tcc.fence_try('g-rollback', 'r1'),
       tcc.fence_cancel('g-rollback', 'r1'),
       tcc.fence_cancel('g-rollback', 'r2'),
       tcc.fence_try('g-rollback', 'r2')}),
	't|t|t|t|f|f',
	'fence decisions before the crashes');
is($node->safe_psql('second', q{SELECT tcc.fence_try('g-commit', 'other')}),
	't', 'fence try in the second database');

# What each database must look like after every crash.
my %expected = (
	postgres => {
		status => {
			'g-trying' => 'trying',
			'g-commit' => 'confirming',
			'g-rollback' => 'cancelling',
			'g-saga' => 'confirming',
			'g-saga-off' => 'cancelled',
			'g-msg-empty' => 'confirmed',
		},
		# gid => "branch_id:status,..." in registration (seq) order
		branches => {
			'g-commit' => qr/^b1:confirming,b2:confirming,[^:,]+:confirming$/,
			'g-rollback' => qr/^r1:cancelling,r2:cancelling$/,
			'g-saga' => qr/^s1:confirming,s2:registered$/,
			'g-saga-off' => qr/^s1:skipped$/,
		},
		# gid|branch_id|state: one row per branch
		fence => [
			'g-commit|b1|confirmed', 'g-rollback|r1|cancelled',
			'g-rollback|r2|cancelled_early'
		],
	},
	second => {
		status => {
			'g-commit' => 'cancelling',
			'g-only-here' => 'confirming',
		},
		branches => {
			'g-commit' => qr/^other:cancelling$/,
			'g-only-here' => qr/^m1:confirming$/,
		},
		fence => ['g-commit|other|tried'],
	},
);

# ----------------------------------------------------------------- helpers

# fence_rows(db): the fence rows as gid|branch_id|state, sorted bytewise
# like perl's sort
sub fence_rows
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
SELECT string_agg(r, ',' ORDER BY r COLLATE "C")
  FROM (SELECT concat_ws('|', gid, branch_id, state) AS r
          FROM tcc.fence) f});
}

# snapshot(db): every row of the coordinator's tables, as text
sub snapshot
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
SELECT 'global_transaction', t::text
  FROM tcc.global_transaction t
UNION ALL
SELECT 'branch', b::text
  FROM (SELECT * FROM tcc.branch ORDER BY gid, seq) b
UNION ALL
SELECT 'fence', f::text
  FROM (SELECT * FROM tcc.fence ORDER BY gid, branch_id) f
ORDER BY 1, 2});
}

# open_uncommitted(gid): a session that creates gid, a branch and a fence
# row inside a transaction it never commits
sub open_uncommitted
{
	my ($gid) = @_;
	my $session = $node->background_psql('postgres');
	is( $session->query_safe(
			qq{
BEGIN;
SELECT tcc.begin('$gid');
SELECT tcc.register_branch('$gid', NULL, 'SELECT 1', 'SELECT 2', NULL, 'u1');
SELECT tcc.fence_try('$gid', 'u1');
SELECT tcc.status('$gid');}),
		"$gid\nu1\nt\ntrying",
		"$gid is trying inside its own open transaction");
	is(sqlstate_of($node, 'postgres', undef,
		"SELECT tcc.status('$gid')"),
		'42704', "$gid is invisible to other sessions before the crash");
	return $session;
}

# check_state(label): the committed state is exactly the one before the
# crash, by row and by API
sub check_state
{
	my ($label, %before) = @_;

	foreach my $db (@dbs)
	{
		my $exp = $expected{$db};

		is(snapshot($db), $before{$db},
			"$label: every row in $db is as before the crash");

		foreach my $gid (sort keys %{ $exp->{status} })
		{
			is($node->safe_psql($db, "SELECT tcc.status('$gid')"),
				$exp->{status}{$gid}, "$label: $db $gid is $exp->{status}{$gid}");
		}
		foreach my $gid (sort keys %{ $exp->{branches} })
		{
			like(
				$node->safe_psql(
					$db,
					"SELECT string_agg(branch_id || ':' || status, ',' ORDER BY seq)"
					  . " FROM tcc.branches WHERE gid = '$gid'"),
				$exp->{branches}{$gid},
				"$label: $db $gid branches in order with their statuses");
		}
		is(fence_rows($db), join(',', sort @{ $exp->{fence} }),
			"$label: $db fence rows");
		is( $node->safe_psql(
				$db,
				"SELECT count(*) FROM tcc.transactions WHERE gid LIKE 'g-uncommitted%'"
			),
			'0',
			"$label: $db has no trace of the uncommitted transactions");
	}

	is(sqlstate_of($node, 'postgres', undef,
		"SELECT tcc.status('g-uncommitted-$label')"),
		'42704', "$label: the uncommitted transaction does not exist");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM tcc.fence WHERE gid = 'g-uncommitted-$label'"),
		'0',
		"$label: the uncommitted fence row does not exist");

	# the fence still refuses what it refused before (these calls change
	# nothing: each branch's row exists and is in a final state)
	is( $node->safe_psql(
			'postgres', q{
SELECT tcc.fence_try('g-commit', 'b1'),
       tcc.fence_confirm('g-commit', 'b1'),
       tcc.fence_cancel('g-rollback', 'r1'),
       tcc.fence_try('g-rollback', 'r2'),
       tcc.fence_cancel('g-rollback', 'r2')}),
		'f|f|f|f|f',
		"$label: the fence refuses duplicates and the hanging try");
	# and it still refuses to cross a decision: a cancel after the confirm,
	# a confirm after the cancel or after an empty rollback (55000)
	is(sqlstate_of($node, 'postgres', undef,
		"SELECT tcc.fence_cancel('g-commit', 'b1')"),
		'55000', "$label: the fence refuses to cancel a confirmed branch");
	is(sqlstate_of($node, 'postgres', undef,
		"SELECT tcc.fence_confirm('g-rollback', 'r1')"),
		'55000', "$label: the fence refuses to confirm a cancelled branch");
	is(sqlstate_of($node, 'postgres', undef,
		"SELECT tcc.fence_confirm('g-rollback', 'r2')"),
		'55000',
		"$label: the fence refuses to confirm a branch whose try never ran");
	is($node->safe_psql('second', q{SELECT tcc.fence_try('g-commit', 'other')}),
		'f', "$label: second database's fence refuses the duplicate try");
	is( $node->safe_psql(
			'second', q{
BEGIN;
SELECT tcc.fence_try('g-commit', 'b1');
ROLLBACK;}),
		't',
		"$label: second database's fence is independent of the first");

	# the same gid is still taken; new transactions work
	is(sqlstate_of($node, 'postgres', undef,
		"SELECT tcc.begin('g-commit')"),
		'42710', "$label: a committed gid cannot be begun again");
	is( $node->safe_psql(
			'postgres', qq{
SELECT tcc.begin('g-new-$label');
SELECT tcc.register_branch('g-new-$label', NULL, 'SELECT 1', 'SELECT 2',
                           NULL, 'n1');
SELECT tcc.commit('g-new-$label');
SELECT tcc.status('g-new-$label');
SELECT tcc.fence_try('g-new-$label', 'n1');}),
		"g-new-$label\nn1\nconfirming\nconfirming\nt",
		"$label: a new transaction begins, registers and commits");
	$node->safe_psql('postgres',
		qq{SELECT tcc.rollback(tcc.begin('g-new-$label-rb'))});
	is($node->safe_psql('postgres', "SELECT tcc.status('g-new-$label-rb')"),
		'cancelled', "$label: a new transaction without branches rolls back");
}

# crash_and_restart(label, how): crash the server with an uncommitted
# transaction open, restart it and check everything
sub crash_and_restart
{
	my ($label, $how) = @_;

	# the state to come back: whatever the previous rounds committed
	my %before = map { $_ => snapshot($_) } @dbs;

	my $session = open_uncommitted("g-uncommitted-$label");
	my $log_offset = -s $node->logfile;
	my $pid = $node->{_pid};

	$how->($pid);
	ok(server_processes_gone($node, $pid), "$label: every server process has exited");
	eval { $session->quit; };    # its server is gone

	$node->start;
	like(
		substr(slurp_file($node->logfile), $log_offset),
		qr/database system was not properly shut down; automatic recovery in progress/,
		"$label: the restart ran crash recovery");

	check_state($label, %before);

	# what check_state committed becomes part of what must survive
	$expected{postgres}{status}{"g-new-$label"} = 'confirming';
	$expected{postgres}{status}{"g-new-$label-rb"} = 'cancelled';
	$expected{postgres}{branches}{"g-new-$label"} = qr/^n1:confirming$/;
	push @{ $expected{postgres}{fence} }, "g-new-$label|n1|tried";
}

# ----------------------------------------------------------------- crashes

crash_and_restart('immediate', sub { $node->stop('immediate'); });

crash_and_restart(
	'kill9',
	sub {
		my ($pid) = @_;
		ok(kill('KILL', $pid) == 1,
			'kill9: SIGKILL sent to the postmaster');
		# the node object must not try to stop the dead postmaster
		$node->{_pid} = undef;
	});

$node->stop;
done_testing();
