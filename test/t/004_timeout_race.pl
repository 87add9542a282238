# test/t/004_timeout_race.pl: a commit racing the worker's timeout cancel
# has exactly one winner (doc/design.md, Concurrency), with the real worker.
#
# 1. The commit wins: a session commits before the deadline but keeps its
#    SQL transaction open past it.  The worker's timeout scan must skip the
#    locked row rather than wait or cancel it; once the session commits,
#    the transaction is confirmed and never cancelled.
# 2. The timeout wins: the deadline passes with nobody committing; the
#    worker cancels the transaction (reason timeout), and a late commit is
#    refused with SQLSTATE 55000 and changes nothing.
# 3. A rollback that is still uncommitted when the deadline passes: the
#    worker skips the row, and the transaction ends cancelled by the
#    rollback, with the rollback's reason, not "timeout".
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;

my $node = tcc_cluster('coordinator', [ 'tcc.naptime' => '50ms' ]);
$node->safe_psql('postgres', q{
CREATE EXTENSION tcc;
CREATE TABLE done (gid text, what text);
});

# wait until the worker of postgres runs
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM tcc.worker WHERE datname = 'postgres'}),
	'the worker of the database runs');

# status and reason of gid
sub state_of
{
	my ($gid) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT status || '/' || coalesce(reason, '-')
		     FROM tcc.global_transaction WHERE gid = '$gid'});
}

# sleep until gid's deadline is well past (several naptimes)
sub wait_past_deadline
{
	my ($gid) = @_;
	$node->poll_query_until('postgres',
		qq{SELECT deadline < now() - interval '500 ms'
		     FROM tcc.global_transaction WHERE gid = '$gid'})
	  or die "deadline of $gid never passed";
}

# ------------------------------------------------------- 1. commit wins
$node->safe_psql('postgres', q{
SELECT tcc.begin('race-commit', timeout => '1 second');
SELECT tcc.register_branch('race-commit', NULL,
	'INSERT INTO done VALUES ($1, ''confirm'')',
	'INSERT INTO done VALUES ($1, ''cancel'')', NULL, 'b1');
});
my $s = $node->background_psql('postgres');
$s->query_safe('BEGIN');
is($s->query_safe(q{SELECT tcc.commit('race-commit')}), 'confirming',
	'commit before the deadline, its transaction still open');
wait_past_deadline('race-commit');
is(state_of('race-commit'), 'trying/-',
	'past the deadline, the worker has not cancelled the locked row');
$s->query_safe('COMMIT');
ok( $node->poll_query_until('postgres',
		q{SELECT status = 'confirmed' FROM tcc.global_transaction
		   WHERE gid = 'race-commit'}),
	'the commit won: confirmed');
is($node->safe_psql('postgres',
		q{SELECT string_agg(what, ',') FROM done WHERE gid = 'race-commit'}),
	'confirm', 'the confirm ran once and the cancel never');

# ------------------------------------------------------ 2. timeout wins
$node->safe_psql('postgres', q{
SELECT tcc.begin('race-timeout', timeout => '200 ms');
SELECT tcc.register_branch('race-timeout', NULL,
	'INSERT INTO done VALUES ($1, ''confirm'')',
	'INSERT INTO done VALUES ($1, ''cancel'')', NULL, 'b1');
});
ok( $node->poll_query_until('postgres',
		q{SELECT status = 'cancelled' AND reason = 'timeout'
		    FROM tcc.global_transaction WHERE gid = 'race-timeout'}),
	'the worker cancelled the expired transaction with reason timeout');
my ($rc, $out, $err) = $node->psql('postgres',
	q{\set VERBOSITY verbose
	  SELECT tcc.commit('race-timeout')});
isnt($rc, 0, 'a late commit fails');
like($err, qr/ERROR:  55000: cannot commit global transaction "race-timeout" because it is cancelled/,
	'with SQLSTATE 55000 naming the status it found');
is(state_of('race-timeout'), 'cancelled/timeout', 'and changes nothing');
is($node->safe_psql('postgres',
		q{SELECT string_agg(what, ',') FROM done WHERE gid = 'race-timeout'}),
	'cancel', 'the cancel ran once and the confirm never');

# --------------------------------------- 3. rollback open past deadline
$node->safe_psql('postgres', q{
SELECT tcc.begin('race-rollback', timeout => '1 second');
SELECT tcc.register_branch('race-rollback', NULL,
	'INSERT INTO done VALUES ($1, ''confirm'')',
	'INSERT INTO done VALUES ($1, ''cancel'')', NULL, 'b1');
});
$s->query_safe('BEGIN');
is($s->query_safe(q{SELECT tcc.rollback('race-rollback', 'user said no')}),
	'cancelling', 'rollback before the deadline, its transaction open');
wait_past_deadline('race-rollback');
is(state_of('race-rollback'), 'trying/-',
	'past the deadline, the worker left the locked row alone');
$s->query_safe('COMMIT');
ok( $node->poll_query_until('postgres',
		q{SELECT status = 'cancelled' FROM tcc.global_transaction
		   WHERE gid = 'race-rollback'}),
	'the rollback won: cancelled');
is(state_of('race-rollback'), 'cancelled/user said no',
	'with the rollback\'s reason, not timeout');
is($node->safe_psql('postgres',
		q{SELECT string_agg(what, ',') FROM done WHERE gid = 'race-rollback'}),
	'cancel', 'the cancel ran once');
$s->quit;

$node->stop;
done_testing();
