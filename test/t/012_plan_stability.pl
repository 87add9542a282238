# test/t/012_plan_stability.pl: the worker's statements keep their good
# plan whatever the statistics say (src/worker.c, tcc_worker_pin_session).
#
# Statistics taken while no branch is due (ANALYZE after a first batch of
# transactions has finished) made the worker's cached plans scan the due
# index for every status UPDATE and sort the whole backlog for the due
# query, so that their cost grew with the backlog: a drain of remote
# transactions fell from about 2,000 to 40 per second.  Here, after such
# an ANALYZE (1,000 transactions finished, none due), 12,000 transactions
# of two remote branches each are queued at once (committed in one client
# transaction).  The backlog must drain within 30 s (with the pinned plans
# it takes a few seconds; with the plans those statistics made, 49 s
# here), and every branch's effect arrives exactly once.
#
# Statistics of empty tables are left to the benchmark (test/bench): the
# client's own transaction that queues 12,000 at once then plans its
# lookups for empty tables too, which is a cost of the API, not of phase
# two.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(time);

my $node = tcc_cluster('coordinator',
	[ TccTest::FAST_WORKER, 'max_worker_processes' => '16' ]);
$node->safe_psql('postgres', 'CREATE DATABASE part');
$node->safe_psql('part', 'CREATE TABLE effect (gid text, branch_id text)');

# queue(db, prefix, n): n transactions of two remote branches on server
# part, committed all at once by one client transaction
sub queue
{
	my ($db, $prefix, $n) = @_;
	$node->safe_psql($db, queue_sql($prefix, $n, 'part'));
}

# drained(db, prefix, n, seconds, label): the assertion that the n
# transactions of prefix are confirmed within seconds
sub drained
{
	my ($db, $prefix, $n, $seconds, $label) = @_;
	my $start = time();
	my $took = polled_is(
		$node, $db, qq{
SELECT count(*) FROM tcc.transactions
 WHERE gid LIKE '$prefix-%' AND status = 'confirmed'}, $n, $seconds,
		"$label: the backlog of $n drains within $seconds s");
	note(sprintf("%s: %d transactions in %.1f s (%.0f/s)",
			$label, $n, time() - $start, $n / (time() - $start)));
}

my $db = 'coord';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION tcc');
create_server($node, $node, 'part', 'part', db => $db);

queue($db, 'first', 1000);
drained($db, 'first', 1000, 120, 'first batch');

# statistics taken while nothing is due
$node->safe_psql($db, 'ANALYZE tcc.branch; ANALYZE tcc.global_transaction;');

queue($db, 'backlog', 12000);
drained($db, 'backlog', 12000, 30, 'after ANALYZE');

is( $node->safe_psql(
		'part', 'SELECT count(*), count(DISTINCT (gid, branch_id)) FROM effect'),
	'26000|26000',
	'every branch had its effect exactly once');

$node->stop('immediate');
done_testing();
