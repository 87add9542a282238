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
# The same holds for the statements of tcc's SQL functions (src/tcc_spi.c):
# after an ANALYZE of the empty tables, a client transaction that
# registers 3,000 transactions kept the plan of its first registrations,
# which scanned tcc.branch for each new branch, every scan longer than the
# last (2,000 took 5.9 s, against 0.3 s).  pg_stat_statements counts the
# buffers each registration's INSERT reads: a handful through the index,
# about 220 on average with the scans.  (Those statistics are of tables
# that have pages but no live row: a few transactions, purged, then
# ANALYZE.)  In the drain that follows, the dispatcher's statements, those
# that take a round's outcomes at once (src/outcome.c) among them, must read
# index entries by lookups: pg_stat_user_indexes counts about 13 per branch
# for tcc.branch and 8 for tcc.global_transaction.  (An UPDATE joined to
# arrays of a round's rows, since dropped, read 150 and 80 per branch after
# those statistics, and the drain took 21 s instead of 1.)  (The drain
# rate after such statistics is the benchmark's, test/bench.)
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
		TccTest::FAST_WORKER,
		'max_worker_processes' => '16',
		'shared_preload_libraries' => 'tcc,pg_stat_statements',
		'pg_stat_statements.track' => 'all'
	]);
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
	polled_confirmed($node, $db, $prefix, $n, $seconds,
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

# the API after an ANALYZE of its empty tables, in a database of its own
$node->safe_psql('postgres', 'CREATE DATABASE api');
$node->safe_psql('api', 'CREATE EXTENSION tcc');
$node->safe_psql('api', 'CREATE EXTENSION pg_stat_statements');
create_server($node, $node, 'part', 'part', db => 'api');
# a few first, purged, then ANALYZE: statistics of tables with pages but
# no live row, under which every plan is made again
queue('api', 'warm', 10);
drained('api', 'warm', 10, 60, 'the first few');
$node->safe_psql('api', q{SELECT tcc.purge('0 s')});
$node->safe_psql('api', 'ANALYZE tcc.branch, tcc.global_transaction');
$node->safe_psql('api', 'SELECT pg_stat_statements_reset()');
my $index_reads = q{
SELECT string_agg(relname || ':' || sum, ',' ORDER BY relname)
  FROM (SELECT relname, sum(idx_tup_read)
          FROM pg_stat_user_indexes WHERE schemaname = 'tcc'
         GROUP BY relname) i};
sleep(2);    # each process publishes its counts within a second when idle
my %before = map { split /:/ } split /,/, $node->safe_psql('api', $index_reads);
queue('api', 'api', 3000);
my ($calls, $per_call) = split /\|/, $node->safe_psql(
	'api', q{
SELECT sum(s.calls), round(sum(s.shared_blks_hit + s.shared_blks_read)
						   / sum(s.calls))
  FROM pg_stat_statements s
  JOIN pg_database d ON d.oid = s.dbid AND d.datname = 'api'
 WHERE s.query LIKE 'INSERT INTO tcc.branch%'});
is($calls, 6000, 'the INSERT of each registered branch is counted');
cmp_ok($per_call, '<', 30,
	'after an ANALYZE of empty tables, a registration reads the index, '
	  . 'not the whole of tcc.branch');
note("buffers per registration: $per_call");

# The dispatcher plans its own statements again under the same statistics,
# and keeps those plans: a plan that statistics of a table of no rows make
# cheapest reads the table whole, which, as tcc.branch grows, reads every
# branch for every round.  Lookups read a few index entries per branch
# (the statistics views count them).
drained('api', 'api', 3000, 60, 'after ANALYZE of the empty tables');
sleep(2);
my %after = map { split /:/ } split /,/, $node->safe_psql('api', $index_reads);
foreach my $table ('branch', 'global_transaction')
{
	my $per_branch = ($after{$table} - $before{$table}) / 6000;
	cmp_ok($per_branch, '<', 40,
		"tcc.$table: after an ANALYZE of empty tables, its indexes are read "
		  . 'by lookups, not whole for every round');
	note(sprintf("tcc.$table: %.1f index entries read per branch", $per_branch));
}

$node->stop('immediate');
done_testing();
