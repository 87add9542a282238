# test/t/011_connect_isolation.pl: connecting to a participant never holds
# the worker.
#
# A coordinator cluster calls two participants: "good", a cluster with a
# database part, and a listener on 127.0.0.1 that accepts TCP connections
# and never answers (as a host whose postmaster is stopped does), reached
# through the servers hang and mute.  The coordinator has one dispatcher,
# so that every transaction is its (with more, the hash of a gid could put
# the transactions on good in another dispatcher than the one connecting).
# With tcc.connect_timeout at 5 s:
#
#   1. while the worker connects to hang for two branches of h1,
#      transactions on good committed right after are confirmed at once
#      (within 2 s; they waited for the connect before), and h1's branches
#      are still being connected (no attempt recorded);
#   2. the connect times out after tcc.connect_timeout: both branches of h1,
#      which waited on the same connect, record the timeout (08001,
#      attempts 1) and stay confirming, to be retried;
#   3. the server changed while a connect is under way (ALTER SERVER hang
#      to point at good): the retry after it uses the new options, and h1 is
#      confirmed;
#   4. SIGTERM ends the worker at once while it connects to mute;
#   5. CALL tcc.try on mute, in a backend, fails after tcc.connect_timeout
#      with the same error.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(time);

# tcc.connect_timeout, in seconds
my $connect_timeout = 5;

# ------------------------------------------------------------------ set-up

# the listener: accepts every connection, holds it and never says a word;
# prints its port, then a line per connection accepted
my $listener_script = q{
use IO::Socket::INET;
$| = 1;
my $listen = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
	Listen => 64, ReuseAddr => 1) or die "could not listen: $!";
print "port ", $listen->sockport, "\n";
my @held;
while (my $conn = $listen->accept)
{
	push @held, $conn;
	print "accepted\n";
}
};
my ($listener_out, $listener_err) = ('', '');
my $listener = IPC::Run::start([ $^X, '-e', $listener_script ],
	'>', \$listener_out, '2>', \$listener_err);
$listener->pump until $listener_out =~ /^port (\d+)$/m;
my $listener_port = $1;

# accepted(): how many connections the listener has accepted so far
sub accepted
{
	$listener->pump_nb;
	my @lines = $listener_out =~ /^accepted$/mg;
	return scalar @lines;
}

my $good = PostgreSQL::Test::Cluster->new('good');
$good->init;
$good->start;
$good->safe_psql('postgres', 'CREATE DATABASE part');
$good->safe_psql('part', 'CREATE TABLE confirmed (gid text, branch text)');

my $coord = tcc_cluster(
	'coordinator',
	[
		'tcc.dispatchers' => '1',
		'tcc.naptime' => '100ms',
		'tcc.retry_base' => '3s',
		'tcc.retry_max' => '3s',
		'tcc.connect_timeout' => "${connect_timeout}s"
	]);
$coord->safe_psql('postgres', 'CREATE EXTENSION tcc');
create_server($coord, $good, 'good', 'part');

my $user = $coord->safe_psql('postgres', 'SELECT current_user');
foreach my $name ('hang', 'mute')
{
	$coord->safe_psql(
		'postgres', qq{
CREATE SERVER $name FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '127.0.0.1', port '$listener_port', dbname 'part');
CREATE USER MAPPING FOR CURRENT_USER SERVER $name OPTIONS (user '$user');
});
}

# ----------------------------------------------------------------- helpers

my $confirm = q{INSERT INTO confirmed VALUES ($1, $2)};

# sql_tx(gid, server, branches...): the SQL that begins gid, registers a
# branch on server for each branch id, confirming into table confirmed,
# and commits
sub sql_tx
{
	my ($gid, $server, @branches) = @_;
	my $sql = "SELECT tcc.begin('$gid');\n";
	(my $quoted = $confirm) =~ s/'/''/g;
	$sql .= "SELECT tcc.register_branch('$gid', '$server', '$quoted',"
	  . " 'SELECT true', NULL, '$_');\n"
	  foreach @branches;
	return $sql . "SELECT tcc.commit('$gid');\n";
}

# branch_rows(gid): "branch:status:attempts:sqlstate" of gid's branches
sub branch_rows
{
	my ($gid) = @_;
	return $coord->safe_psql(
		'postgres', qq{
SELECT string_agg(format('%s:%s:%s:%s', branch_id, status, attempts,
						 coalesce(last_sqlstate, '-')), ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = '$gid'});
}

# worker_pid(): the pid of the coordinator database's worker, once running
sub worker_pid
{
	poll_until($coord, 'postgres',
		q{SELECT count(*) FROM tcc.worker WHERE datname = 'postgres'},
		'1', 30);
	return $coord->safe_psql('postgres',
		q{SELECT pid FROM tcc.worker WHERE datname = 'postgres'});
}

# premise: the worker and good answer
$coord->safe_psql('postgres', sql_tx('g0', 'good', 'b'));
polled_is($coord, 'postgres', status_sql('g0'), 'g0:confirmed', 30,
	'premise: a transaction on good is confirmed');

# ---------------------------------- 1. the others go on while connecting

my $accepted_before = accepted();
$coord->safe_psql('postgres', sql_tx('h1', 'hang', 'b1', 'b2'));
my ($connecting, $connect_wait) =
  wait_until(sub { accepted() > $accepted_before }, 30);
my $connect_started = time() - $connect_wait;
ok($connecting, '1: the worker connects to the listener for h1');

my $start = time();
$coord->safe_psql('postgres',
	join('', map { sql_tx("g$_", 'good', 'b') } (1 .. 3)));
my ($good_ok, $good_secs) = poll_until($coord, 'postgres',
	status_sql('g1', 'g2', 'g3'),
	'g1:confirmed,g2:confirmed,g3:confirmed', 30);
$good_secs = time() - $start;
my $h1_then = branch_rows('h1');
ok($good_ok && $good_secs < 2,
	'1: the transactions on good are confirmed within 2 s while the worker '
	  . 'connects to hang');
note sprintf('the transactions on good took %.2f s', $good_secs);
is($h1_then, 'b1:confirming:0:-,b2:confirming:0:-',
	'1: meanwhile h1\'s branches are still being connected');
is($good->safe_psql('part', 'SELECT count(*) FROM confirmed'),
	'4', '1: good ran the four confirms');

# --------------------------------------------- 2. the connect times out

my ($timed_out) = poll_until($coord, 'postgres',
	q{SELECT count(*) FROM tcc.branches WHERE gid = 'h1' AND attempts > 0},
	'2', 30);
my $timeout_secs = time() - $connect_started;
ok($timed_out, '2: both branches of h1 record a failed attempt');
note sprintf('the connect failed after %.2f s', $timeout_secs);
ok($timeout_secs > $connect_timeout - 1,
	'2: not before tcc.connect_timeout');
is(branch_rows('h1'), 'b1:confirming:1:08001,b2:confirming:1:08001',
	'2: each is to be retried, with SQLSTATE 08001');
is( $coord->safe_psql(
		'postgres', q{
SELECT count(*) FROM tcc.branches
 WHERE gid = 'h1'
   AND last_error = 'could not connect to server "hang": could not connect: '
                    'tcc.connect_timeout (5000 ms) expired'}),
	'2', '2: their error says that tcc.connect_timeout expired');
is(accepted() - $accepted_before,
	1, '2: the two branches waited on the same connect');

# ------------------------- 3. a changed server while a connect is under way

my ($retrying) = wait_until(sub { accepted() > $accepted_before + 1 }, 30);
ok($retrying, '3: the worker connects to hang again for the retries');
my $good_host = $good->host;
my $good_port = $good->port;
$coord->safe_psql('postgres',
	"ALTER SERVER hang OPTIONS (SET host '$good_host', SET port '$good_port')"
);
polled_is($coord, 'postgres', status_sql('h1'), 'h1:confirmed', 60,
	'3: with the server changed, h1 is confirmed');
is( $good->safe_psql(
		'part', q{
SELECT string_agg(branch, ',' ORDER BY branch) FROM confirmed
 WHERE gid = 'h1'}),
	'b1,b2', '3: on good');

# --------------------------------------- 4. SIGTERM while connecting

my $pid = worker_pid();
$accepted_before = accepted();
$coord->safe_psql('postgres', sql_tx('m1', 'mute', 'b'));
($connecting) = wait_until(sub { accepted() > $accepted_before }, 30);
ok($connecting, '4: the worker connects to mute');
kill 'TERM', $pid;
my ($term_done, $term_secs) = wait_until(sub { kill(0, $pid) == 0 }, 3);
ok($term_done, '4: SIGTERM ends the worker while it connects');
note sprintf('SIGTERM of the worker took %.2f s', $term_secs);

# ------------------------------------------- 5. CALL tcc.try in a backend

$coord->safe_psql('postgres', q{SELECT tcc.begin('t1')});
$start = time();
my ($sqlstate, $stderr) = error_of(
	$coord, 'postgres', undef, q{
CALL tcc.try('t1', 'mute', 'SELECT true', 'SELECT true', 'SELECT true',
			 NULL, 'b')});
my $try_secs = time() - $start;
is($sqlstate, '08001', '5: CALL tcc.try on mute fails with 08001');
like(
	$stderr,
	qr/"mute": could not connect: tcc\.connect_timeout \(5000 ms\) expired/,
	'5: its error says that tcc.connect_timeout expired');
ok($try_secs > $connect_timeout - 1, '5: after tcc.connect_timeout');
note sprintf('the CALL failed after %.2f s', $try_secs);

$listener->kill_kill;
$coord->stop;
$good->stop;
done_testing();
