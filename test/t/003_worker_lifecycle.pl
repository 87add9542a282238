# test/t/003_worker_lifecycle.pl: where and when the background worker runs,
# and as whom.
#
# One participant cluster holds the inventory database of the reference
# scenario (examples/inventory.sql; doc/design.md, The reference
# scenario); coordinator clusters with tcc preloaded and short timings
# call it through a tcc_fdw server and user mappings.  Every purchase is the textbook one: begin and register the
# branch on the coordinator, run the try on the participant, then commit or
# roll back and let the worker confirm or cancel.  Covered:
#
#  1. a streaming standby runs no worker and changes nothing, even when the
#     participant becomes reachable while it replays work its primary could
#     not finish; once promoted, its worker starts and finishes that work;
#  2. every database with the extension is served by a worker of its own,
#     including one created (with its extension) after the server started,
#     which is served within a few seconds; a database without the
#     extension gets none;
#  3. security: a non-superuser owner whose user mapping has no password is
#     refused at registration and, if the password goes away after that,
#     in phase two (2F003, failed at once), as is one whose
#     participant does not ask for the password; after ALTER USER MAPPING,
#     tcc.retry confirms; register_branch needs a user mapping (42704) and
#     USAGE (42501); local actions run as the owner, never as a superuser;
#  4. DROP DATABASE (without FORCE) of a database whose worker runs works,
#     promptly;
#  6. a worker killed by pg_terminate_backend comes back and keeps serving;
#  5. retention: finished transactions are purged (failed and unfinished
#     ones are not; one whose row a user holds is passed over until it is
#     released), and a participant database's own worker purges its fence
#     rows;
#  7. a family that had no room for a housekeeper when its worker started
#     gets one once slots are free: with max_worker_processes = 7 and two
#     databases served, a worker started again has no share for one; once
#     the other database drops the extension, its housekeeper starts within
#     a few seconds (before, it never did, and retention and the deadlines
#     ran in the leader's loop for as long as the worker lived).
#
# After each part the participant must satisfy the invariants of the
# reference scenario (doc/design.md): stock + frozen + sold = 100, frozen = 0 once everything that
# was tried is terminal, and sold = 2 * the confirmed purchases.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(usleep gettimeofday tv_interval);

# every cluster of this test runs with tcc preloaded and FAST_WORKER's
# short naptime and backoff, so that nothing here waits for long

my $payload = '{"product": 1, "qty": 2}';

# purchases confirmed so far: sold must be twice this
my $confirmed = 0;

# ----------------------------------------------------------------- helpers

# workers_sql(): "datname,..." of the running tcc workers (the view exists
# only in a database with the extension)
sub workers_sql
{
	return "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')"
	  . " FROM tcc.worker";
}

# ------------------------------------------------------------ participant

# preloaded too: its inventory database has the extension (for the fence),
# so it gets a worker of its own, which purges the fence rows (part 5)
my $participant = reference_participant([FAST_WORKER], ['inventory']);

my $su = $participant->safe_psql('postgres', 'SELECT current_user');

# check_invariants' arguments but the quantity sold: the reference
# scenario's invariants (doc/design.md), everything tried being terminal,
# are checked on the participant only
my %ends = (participant => $participant);

# add_participant(node, db): the extension, server inv and the superuser's
# user mapping in coordinator database db
sub add_participant
{
	my ($node, $db) = @_;
	$node->safe_psql($db, 'CREATE EXTENSION IF NOT EXISTS tcc');
	create_server($node, $participant, 'inv', 'inventory',
		db => $db, user => $su);
}

# purchase_try(node, db, gid[, role]): begin gid on the coordinator as role,
# register its inventory branch, and run the try on the participant
sub purchase_try
{
	my ($node, $db, $gid, $role) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is( run_as(
			$node, $db, $role, qq{
SELECT tcc.begin('$gid');
SELECT tcc.register_branch('$gid', 'inv',
	'SELECT inventory_confirm(\$1, \$2, \$3)',
	'SELECT inventory_cancel(\$1, \$2, \$3)',
	'$payload', 'inv');}),
		"$gid\ninv",
		"$gid: begun and its inventory branch registered");
	is( $participant->safe_psql(
			'inventory', "SELECT inventory_try('$gid', 'inv', '$payload')"),
		't',
		"$gid: the try froze 2 on the participant");
}

# ======================================================================
# 1. A standby runs no worker; promoted, it finishes its primary's work
# ======================================================================

# unlimited attempts: the participant is down for a while on purpose
my $primary = tcc_cluster('primary', [ FAST_WORKER, 'tcc.max_attempts' => 0 ],
	init => [ allows_streaming => 1 ]);
$primary->safe_psql('postgres', 'CREATE DATABASE shop');
add_participant($primary, 'shop');

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

purchase_try($primary, 'shop', $_) for qw(s1 s2 s3);

# the participant goes away before phase two: no confirm or cancel can
# succeed on the primary
$participant->stop;
is( $primary->safe_psql(
		'shop', q{
SELECT tcc.commit('s1');
SELECT tcc.rollback('s2');
SELECT tcc.commit('s3');}),
	"confirming\ncancelling\nconfirming",
	'standby: s1 and s3 committed and s2 rolled back on the primary');

# the primary's worker tries and fails; the standby replays its attempts
polled_is(
	$standby, 'shop', q{
SELECT count(*) FROM tcc.branches
 WHERE gid IN ('s1', 's2', 's3') AND attempts >= 1
   AND status IN ('confirming', 'cancelling') AND last_sqlstate = '08001'},
	'3', 30,
	'standby: replays the primary worker\'s failed attempts to reach the participant'
);
is($standby->safe_psql('shop', status_sql(qw(s1 s2 s3))),
	's1:confirming,s2:cancelling,s3:confirming',
	'standby: sees the phase-two statuses');

is($primary->safe_psql('shop', workers_sql()),
	'shop', 'standby: the primary runs a worker for shop');
is($standby->safe_psql('shop', 'SELECT pg_is_in_recovery()'),
	't', 'standby: is in recovery');

# no_worker_on_standby(label): no tcc process of any kind on the standby
sub no_worker_on_standby
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($standby->safe_psql('shop', 'SELECT count(*) FROM tcc.worker'),
		'0', "standby: tcc.worker is empty $label");
	is( $standby->safe_psql(
			'shop', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type IN ('tcc worker', 'tcc launcher')}),
		'0',
		"standby: no tcc launcher or worker in pg_stat_activity $label");
}
no_worker_on_standby('while the primary runs');

# Primary gone, participant back: a worker on the standby would now
# succeed.  Nothing may change.  This is a check that something does not
# happen, so it needs a window: 1 s is ten naptimes and twice
# tcc.retry_max, well past the moment a worker would have acted.
$primary->stop('fast');
# a fast shutdown streams all the WAL, up to its shutdown checkpoint, to
# the standby: let the standby replay all of it first
my ($controldata) =
  run_command([ $primary->installed_command('pg_controldata'),
	$primary->data_dir ]);
my ($last_checkpoint) =
  $controldata =~ /^Latest checkpoint location:\s+(\S+)$/m;
ok(defined $last_checkpoint, 'standby: the primary\'s shutdown checkpoint is known');
polled_is(
	$standby, 'shop',
	"SELECT pg_last_wal_replay_lsn() > '$last_checkpoint'::pg_lsn",
	't', 30, 'standby: replayed the primary\'s WAL up to its shutdown checkpoint');
my $branches_sql = q{
SELECT string_agg(concat_ws(':', gid, branch_id, status, attempts,
                            next_attempt_at), ',' ORDER BY gid)
  FROM tcc.branches};
my $standby_before = $standby->safe_psql('shop', $branches_sql);
$participant->start;
usleep(1_000_000);
is($standby->safe_psql('shop', $branches_sql),
	$standby_before, 'standby: no branch changed while in recovery');
is( $participant->safe_psql(
		'inventory', q{
SELECT string_agg(gid || ':' || state, ',' ORDER BY gid) FROM tcc.fence
 WHERE gid IN ('s1', 's2', 's3')}),
	's1:tried,s2:tried,s3:tried',
	'standby: no confirm or cancel reached the participant');
is( $participant->safe_psql(
		'inventory', 'SELECT stock, frozen, sold FROM product WHERE id = 1'),
	'94|6|0', 'standby: the three purchases are still frozen');
no_worker_on_standby('with the participant back');

$standby->promote;
polled_is($standby, 'shop', workers_sql(), 'shop', 30,
	'promoted: a worker serves shop');
polled_is($standby, 'shop', status_sql(qw(s1 s2 s3)),
	's1:confirmed,s2:cancelled,s3:confirmed', 30,
	'promoted: its worker finished the primary\'s phase two');
is( $standby->safe_psql(
		'shop', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'tcc worker' AND datname = 'shop'}),
	'1',
	'promoted: the worker shows in pg_stat_activity');
$confirmed += 2;
check_invariants('promoted', %ends, sold => 2 * $confirmed,
	sold_as => "2 * $confirmed confirmed");
$standby->stop;

# ======================================================================
# 2. Every database with the extension is served, each by its own worker
# ======================================================================

my $coord = tcc_cluster('coordinator', [FAST_WORKER]);
$coord->safe_psql('postgres', "CREATE DATABASE $_")
  for qw(orders_a orders_b plain);
add_participant($coord, $_) for qw(orders_a orders_b);

# the launcher lists the databases at start
my $log_offset = -s $coord->logfile;
$coord->restart;
foreach my $db (qw(plain postgres))
{
	ok( $coord->wait_for_log(
			qr/tcc worker for database "$db" exits: the extension is not installed there/,
			$log_offset),
		"databases: the worker probing $db found no extension and exited");
}
polled_is($coord, 'orders_a', workers_sql(), 'orders_a,orders_b', 30,
	'databases: orders_a and orders_b have a worker each, and only they');
is( $coord->safe_psql(
		'postgres', q{
SELECT count(DISTINCT pid) FROM pg_stat_activity
 WHERE backend_type = 'tcc worker'
   AND datname IN ('orders_a', 'orders_b')}),
	'2',
	'databases: two distinct worker processes, one in each database');

purchase_try($coord, 'orders_a', 'a1');
purchase_try($coord, 'orders_b', 'b1');
$coord->safe_psql('orders_a', "SELECT tcc.commit('a1')");
$coord->safe_psql('orders_b', "SELECT tcc.commit('b1')");
polled_is($coord, 'orders_a', status_sql('a1'),
	'a1:confirmed', 15, 'databases: orders_a\'s transaction is confirmed');
polled_is($coord, 'orders_b', status_sql('b1'),
	'b1:confirmed', 15, 'databases: orders_b\'s transaction is confirmed');
$confirmed += 2;
# (the counters are published a moment after the outcome is recorded)
polled_is(
	$coord, 'orders_a', q{
SELECT string_agg(datname || ':' || calls_succeeded || ':' || calls_failed,
                  ',' ORDER BY datname)
  FROM tcc.worker},
	'orders_a:1:0,orders_b:1:0', 5,
	'databases: each worker made its own database\'s call');

# a database created after the server started, with its extension and a
# first transaction: served without waiting for the launcher's next listing
# of the databases (every 10 s)
$coord->safe_psql('postgres', 'CREATE DATABASE late');
add_participant($coord, 'late');
my $t0 = [gettimeofday];
purchase_try($coord, 'late', 'late1');
$coord->safe_psql('late', "SELECT tcc.commit('late1')");
polled_is($coord, 'late', status_sql('late1'),
	'late1:confirmed', 15,
	'late database: its first transaction is confirmed');
my $late_elapsed = tv_interval($t0);
$confirmed++;
cmp_ok($late_elapsed, '<', 5,
	'late database: served within 5 s of its first tcc.begin');
note(sprintf('late database served %.2f s after its first tcc.begin',
		$late_elapsed));
is($coord->safe_psql('orders_a', workers_sql()),
	'late,orders_a,orders_b',
	'late database: has a worker; plain and postgres still have none');
is( $coord->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'tcc worker' AND datname IN ('plain', 'postgres')}),
	'0',
	'databases: no worker process in a database without the extension');
check_invariants('databases', %ends, sold => 2 * $confirmed,
	sold_as => "2 * $confirmed confirmed");

# ======================================================================
# 3. Security: user mappings, passwords, USAGE, local actions as the owner
# ======================================================================

# On the participant, app must give its password (scram) on the local
# socket the worker uses; app2 is trusted without one.
prepend_hba($participant, "local all app scram-sha-256\n");
$participant->safe_psql(
	'inventory', q{
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'app-secret';
CREATE ROLE app2 LOGIN;
GRANT SELECT, UPDATE ON product TO app, app2;
-- the one grant a participant needs for the fence (not PUBLIC's)
GRANT EXECUTE ON FUNCTION tcc.fence_try(text, text),
	tcc.fence_confirm(text, text), tcc.fence_cancel(text, text) TO app, app2;});
$participant->reload;
$participant->connect_fails(
	$participant->connstr('inventory') . ' user=app',
	'security: the participant asks app for a password',
	expected_stderr => qr/password/);
$participant->connect_ok(
	$participant->connstr('inventory') . ' user=app password=app-secret',
	'security: app connects to the participant with its password');

$coord->safe_psql(
	'orders_a', q{
CREATE ROLE app LOGIN;
CREATE ROLE app2 LOGIN;
CREATE ROLE nomap LOGIN;
CREATE ROLE nousage LOGIN;
GRANT USAGE ON FOREIGN SERVER inv TO app, app2, nomap;
CREATE USER MAPPING FOR app SERVER inv OPTIONS (user 'app');
CREATE USER MAPPING FOR app2 SERVER inv
	OPTIONS (user 'app2', password 'not-asked-for');
CREATE USER MAPPING FOR nousage SERVER inv
	OPTIONS (user 'nousage', password 'x');
CREATE TABLE who (name text);
GRANT INSERT, SELECT ON who TO app;
CREATE TABLE secret (x int);});

# app's mapping has no password: registering a branch is refused
is( sqlstate_of(
		$coord, 'orders_a', 'app', q{
BEGIN;
SELECT tcc.begin('sec0');
SELECT tcc.register_branch('sec0', 'inv', 'SELECT 1', 'SELECT 2');
COMMIT;}),
	'2F003',
	'security: registering with a password-less mapping of a non-superuser fails with 2F003');
is($coord->safe_psql('orders_a',
		q{SELECT count(*) FROM tcc.global_transaction WHERE gid = 'sec0'}),
	'0', 'security: and leaves nothing behind');

# with a password the registration works; if the password is removed
# before phase two, the worker refuses to connect
$coord->safe_psql('orders_a',
	q{ALTER USER MAPPING FOR app SERVER inv OPTIONS (ADD password 'x')});
purchase_try($coord, 'orders_a', 'sec1', 'app');
$coord->safe_psql('orders_a',
	q{ALTER USER MAPPING FOR app SERVER inv OPTIONS (DROP password)});
is(run_as($coord, 'orders_a', 'app', "SELECT tcc.commit('sec1')"),
	'confirming', 'security: app commits sec1');
polled_is($coord, 'orders_a', status_sql('sec1'),
	'sec1:failed', 15,
	'security: sec1 fails: app\'s user mapping has no password');
my ($st, $attempts, $sqlstate, $error) = split(
	/\|/,
	$coord->safe_psql(
		'orders_a', q{
SELECT status, attempts, last_sqlstate, last_error FROM tcc.branches
 WHERE gid = 'sec1'}));
is("$st|$attempts|$sqlstate", 'failed|1|2F003',
	'security: the branch failed at the first attempt with 2F003');
like($error, qr/password is required/, 'security: the error names the password');
like(
	$coord->safe_psql(
		'orders_a', q{
SELECT failed_phase || ': ' || last_error FROM tcc.transactions
 WHERE gid = 'sec1'}),
	qr/^confirming: confirm of branch inv: password is required/,
	'security: the transaction failed in its confirm phase, with the error');
is( $participant->safe_psql(
		'inventory', 'SELECT stock + frozen + sold, frozen FROM product'),
	'100|2', 'security: sec1 is still frozen on the participant');

# the mapping gets the password; tcc.retry resumes and the worker, now
# using a password the participant asks for, confirms
$coord->safe_psql('orders_a',
	q{ALTER USER MAPPING FOR app SERVER inv OPTIONS (ADD password 'app-secret')});
is(run_as($coord, 'orders_a', 'app', "SELECT tcc.retry('sec1')"),
	'confirming', 'security: app retries sec1');
polled_is($coord, 'orders_a', status_sql('sec1'),
	'sec1:confirmed', 15,
	'security: sec1 is confirmed with the password in the mapping');
is( $participant->safe_psql(
		'inventory', q{
SELECT count(*) FROM pg_stat_activity
 WHERE application_name = 'tcc' AND usename = 'app'}),
	'1',
	'security: the worker is connected to the participant as app');
$confirmed++;
check_invariants('security', %ends, sold => 2 * $confirmed,
	sold_as => "2 * $confirmed confirmed");

# app2's mapping has a password, but the participant trusts app2 and never
# asks for it: refused too (nobody borrows the participant's trust).  No
# try is run, so the participant is untouched; sec2 stays failed.
is( run_as(
		$coord, 'orders_a', 'app2', q{
SELECT tcc.begin('sec2');
SELECT tcc.register_branch('sec2', 'inv',
	'SELECT inventory_confirm($1, $2, $3)',
	'SELECT inventory_cancel($1, $2, $3)',
	'{"product": 1, "qty": 2}', 'inv');
SELECT tcc.commit('sec2');}),
	"sec2\ninv\nconfirming",
	'security: app2 commits sec2');
polled_is(
	$coord, 'orders_a', q{
SELECT status || ':' || attempts || ':' || last_sqlstate FROM tcc.branches
 WHERE gid = 'sec2'},
	'failed:1:2F003', 15,
	'security: sec2 fails at once with 2F003: the participant did not ask for the password'
);
like(
	$coord->safe_psql(
		'orders_a', "SELECT last_error FROM tcc.branches WHERE gid = 'sec2'"),
	qr/did not ask for the password/,
	'security: sec2\'s error says the password was not asked for');
is($coord->safe_psql('orders_a', status_sql('sec2')),
	'sec2:failed', 'security: sec2 is failed');

# register_branch checks the owner's user mapping and USAGE
my $register = q{SELECT tcc.register_branch('%s', 'inv', 'SELECT 1',
	'SELECT 2', NULL, 'inv')};
run_as($coord, 'orders_a', $_, "SELECT tcc.begin('reg-$_')")
  for qw(nomap nousage);
is( sqlstate_of(
		$coord, 'orders_a', 'nomap', sprintf($register, 'reg-nomap')),
	'42704',
	'security: register_branch without a user mapping fails with 42704');
is( sqlstate_of(
		$coord, 'orders_a', 'nousage', sprintf($register, 'reg-nousage')),
	'42501',
	'security: register_branch without USAGE on the server fails with 42501');
is( $coord->safe_psql(
		'orders_a', q{
SELECT count(*) FROM tcc.branches WHERE gid IN ('reg-nomap', 'reg-nousage')}),
	'0',
	'security: the refused registrations left no branch');
is( run_as($coord, 'orders_a', 'nomap', "SELECT tcc.rollback('reg-nomap')")
	  . ','
	  . run_as(
		$coord, 'orders_a', 'nousage', "SELECT tcc.rollback('reg-nousage')"),
	'cancelled,cancelled',
	'security: both transactions roll back without branches');

# local actions run in the worker as the owner, not as its superuser
is( run_as(
		$coord, 'orders_a', 'app', q{
SELECT tcc.begin('loc1');
SELECT tcc.register_branch('loc1', NULL,
	'INSERT INTO who SELECT current_user', 'SELECT 1', NULL, 'l1');
SELECT tcc.commit('loc1');}),
	"loc1\nl1\nconfirming",
	'local: app commits a local confirm');
polled_is($coord, 'orders_a', status_sql('loc1'),
	'loc1:confirmed', 15, 'local: loc1 is confirmed');
is($coord->safe_psql('orders_a', 'SELECT string_agg(name, \',\') FROM who'),
	'app', 'local: the confirm ran as app, the owner');

is( run_as(
		$coord, 'orders_a', 'app', q{
SELECT tcc.begin('loc2');
SELECT tcc.register_branch('loc2', NULL,
	'INSERT INTO secret VALUES (1)', 'SELECT 1', NULL, 'l2');
SELECT tcc.commit('loc2');}),
	"loc2\nl2\nconfirming",
	'local: app commits a local confirm on a table it cannot write');
polled_is(
	$coord, 'orders_a', q{
SELECT status || ':' || attempts || ':' || last_sqlstate FROM tcc.branches
 WHERE gid = 'loc2'},
	'failed:1:42501', 15,
	'local: the confirm fails at once with 42501 (the owner\'s rights apply)');
like(
	$coord->safe_psql(
		'orders_a', "SELECT last_error FROM tcc.branches WHERE gid = 'loc2'"),
	qr/permission denied for table secret/,
	'local: the error is the permission denied');
is( $coord->safe_psql(
		'orders_a',
		"SELECT status || ':' || failed_phase FROM tcc.transactions WHERE gid = 'loc2'"
	),
	'failed:confirming',
	'local: loc2 is failed in its confirm phase');
is($coord->safe_psql('orders_a', 'SELECT count(*) FROM secret'),
	'0', 'local: nothing was written to secret');

# ======================================================================
# 4. DROP DATABASE while its worker runs
# ======================================================================

# the worker is not just idle: it waits for a participant call that
# takes 20 s (tcc.call_timeout is 30 s)
$coord->safe_psql('postgres', 'CREATE DATABASE dropme');
add_participant($coord, 'dropme');
is( $coord->safe_psql(
		'dropme', q{
SELECT tcc.begin('slow');
SELECT tcc.register_branch('slow', 'inv', 'SELECT pg_sleep(20)',
	'SELECT 1', NULL, 'b');
SELECT tcc.commit('slow');}),
	"slow\nb\nconfirming",
	'drop: dropme commits a transaction with a slow confirm');
polled_is($coord, 'orders_a', workers_sql(),
	'dropme,late,orders_a,orders_b', 15,
	'drop: dropme has a worker');
polled_is(
	$participant, 'inventory', q{
SELECT count(*) FROM pg_stat_activity
 WHERE application_name = 'tcc' AND state = 'active'
   AND query = 'SELECT pg_sleep(20)'},
	'1', 15,
	'drop: the participant runs dropme\'s slow confirm');
is( $coord->safe_psql(
		'orders_a', "SELECT state FROM tcc.worker WHERE datname = 'dropme'"),
	'working',
	'drop: dropme\'s worker waits for the call, working');
my $dropme_pid = $coord->safe_psql('orders_a',
	"SELECT pid FROM tcc.worker WHERE datname = 'dropme'");
$t0 = [gettimeofday];
my ($rc, $stdout, $stderr) =
  $coord->psql('postgres', 'DROP DATABASE dropme');
my $drop_elapsed = tv_interval($t0);
is($rc, 0, 'drop: DROP DATABASE succeeds while the worker runs')
  or diag($stderr);
cmp_ok($drop_elapsed, '<', 3, 'drop: DROP DATABASE returns within 3 s');
note(sprintf('DROP DATABASE took %.2f s', $drop_elapsed));
is( $coord->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $dropme_pid"),
	'0',
	'drop: the worker of the dropped database is gone');
is($coord->safe_psql('orders_a', workers_sql()),
	'late,orders_a,orders_b', 'drop: the other workers run on');
# the slow call would otherwise sleep on for nothing
$participant->safe_psql('postgres', q{
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE application_name = 'tcc' AND query = 'SELECT pg_sleep(20)'});

# ======================================================================
# 6. A worker killed by SIGTERM comes back and keeps serving
# ======================================================================

my $old_pid = $coord->safe_psql('orders_a',
	"SELECT pid FROM tcc.worker WHERE datname = 'orders_b'");
purchase_try($coord, 'orders_b', 'k1');
is($coord->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)"),
	't', 'kill: orders_b\'s worker is sent SIGTERM');
$t0 = [gettimeofday];
polled_is(
	$coord, 'orders_b', qq{
SELECT count(*) FROM pg_stat_activity WHERE pid = $old_pid},
	'0', 10, 'kill: the old worker has exited');
polled_is($coord, 'orders_b', workers_sql(),
	'late,orders_a', 5, 'kill: orders_b has no worker for now');
# committed while no worker runs there
is($coord->safe_psql('orders_b', "SELECT tcc.commit('k1')"),
	'confirming', 'kill: k1 is committed while the worker is down');
polled_is(
	$coord, 'orders_a', qq{
SELECT count(*) FROM tcc.worker
 WHERE datname = 'orders_b' AND pid <> $old_pid},
	'1', 15,
	'kill: the launcher starts a new worker for orders_b');
my $restart_elapsed = tv_interval($t0);
cmp_ok($restart_elapsed, '<', 10, 'kill: the new worker runs within 10 s');
note(sprintf('worker back after %.2f s', $restart_elapsed));
polled_is($coord, 'orders_b', status_sql('k1'),
	'k1:confirmed', 15, 'kill: the new worker confirms k1');
$confirmed++;
purchase_try($coord, 'orders_b', 'k2');
$coord->safe_psql('orders_b', "SELECT tcc.commit('k2')");
polled_is($coord, 'orders_b', status_sql('k2'),
	'k2:confirmed', 15, 'kill: and serves the next transaction');
$confirmed++;
check_invariants('kill', %ends, sold => 2 * $confirmed,
	sold_as => "2 * $confirmed confirmed");

# ======================================================================
# 5. Retention
# ======================================================================

# an unfinished transaction, which retention must keep
$coord->safe_psql('orders_b',
	"SELECT tcc.begin('still-trying', timeout => '1 hour')");

my $finished_sql = q{
SELECT count(*) FROM tcc.transactions WHERE status IN ('confirmed', 'cancelled')};
is( join(',',
		map { $coord->safe_psql($_, $finished_sql) }
		  qw(orders_a orders_b late)),
	'5,3,1',
	'retention: finished transactions are kept with the default retention');

# a user holds the row of one finished transaction (a repeated tcc.commit in
# an open transaction): retention passes it over without waiting, purges
# the others, and purges it once it is released
my $holder = $coord->background_psql('orders_a');
$holder->query_safe("BEGIN; SELECT tcc.commit('a1')");

$coord->safe_psql('postgres',
	"ALTER SYSTEM SET tcc.retention = '1s'; SELECT pg_reload_conf()");
polled_is(
	$coord, 'orders_a', q{
SELECT string_agg(gid, ',') FROM tcc.transactions
 WHERE status IN ('confirmed', 'cancelled')},
	'a1', 20,
	'retention: orders_a\'s finished transactions are purged but the one a user holds');
$holder->query_safe('COMMIT');
$holder->quit;
foreach my $db (qw(orders_a orders_b late))
{
	polled_is($coord, $db, $finished_sql, '0', 20,
		"retention: $db\'s finished transactions are purged");
}
is( $coord->safe_psql(
		'orders_a',
		'SELECT string_agg(gid || \':\' || status, \',\' ORDER BY gid) FROM tcc.transactions'
	),
	'loc2:failed,sec2:failed',
	'retention: the failed transactions stay');
is( $coord->safe_psql(
		'orders_a', 'SELECT string_agg(gid, \',\' ORDER BY gid) FROM tcc.branches'),
	'loc2,sec2',
	'retention: the purged transactions\' branches went with them');
is( $coord->safe_psql(
		'orders_b',
		'SELECT string_agg(gid || \':\' || status, \',\' ORDER BY gid) FROM tcc.transactions'
	),
	'still-trying:trying',
	'retention: an unfinished transaction stays');

# The participant's inventory database has the extension, hence its own
# worker, which purges its fence rows once tcc.fence_retention allows.
polled_is($participant, 'inventory', workers_sql(), 'inventory', 20,
	'fence retention: the participant\'s inventory database has a worker');
my $fence_rows =
  $participant->safe_psql('inventory', 'SELECT count(*) FROM tcc.fence');
is($fence_rows, '9',
	'fence retention: the participant keeps the fence rows of its nine tries with the default retention'
);
$participant->safe_psql('postgres',
	"ALTER SYSTEM SET tcc.fence_retention = '1s'; SELECT pg_reload_conf()");
polled_is($participant, 'inventory', 'SELECT count(*) FROM tcc.fence',
	'0', 20, 'fence retention: the participant\'s worker purged the fence');
check_invariants('end', %ends, sold => 2 * $confirmed,
	sold_as => "2 * $confirmed confirmed");

$coord->stop;
$participant->stop;

# ---------------------------------------- 7. a housekeeper joins late
my $slots = tcc_cluster('slots', [ FAST_WORKER, 'max_worker_processes' => '7' ]);
$slots->safe_psql('postgres', 'CREATE DATABASE d1');
$slots->safe_psql('postgres', 'CREATE DATABASE d2');
$slots->safe_psql($_, 'CREATE EXTENSION tcc') for qw(d1 d2);

# processes_sql(type): "datname,..." of tcc's processes of that type
sub processes_sql
{
	my ($type) = @_;
	return "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')"
	  . " FROM pg_stat_activity WHERE backend_type = '$type'";
}
polled_is($slots, 'postgres', processes_sql('tcc worker'), 'd1,d2', 30,
	'late housekeeper: both databases have a worker');

# d1's worker, started again while d2's runs, counts two databases served
my $log_at = -s $slots->logfile;
$slots->safe_psql('postgres', q{
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE backend_type = 'tcc worker' AND datname = 'd1'});
ok( $slots->wait_for_log(
		qr/tcc serves database \d+ without a housekeeper/, $log_at),
	'late housekeeper: d1\'s new worker has no room for a housekeeper');
polled_is($slots, 'postgres', processes_sql('tcc worker'), 'd1,d2', 30,
	'late housekeeper: d1 is served again');
is($slots->safe_psql('postgres', processes_sql('tcc housekeeper')) =~ /d1/
	? 'has' : 'none', 'none', 'late housekeeper: d1 has no housekeeper yet');

$log_at = -s $slots->logfile;
$slots->safe_psql('d2', 'DROP EXTENSION tcc');
polled_is($slots, 'postgres', processes_sql('tcc worker'), 'd1', 30,
	'late housekeeper: d2 is no longer served');
my $joined = polled_is(
	$slots, 'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'tcc housekeeper' AND datname = 'd1'}, '1', 30,
	'late housekeeper: d1 gets a housekeeper once the slots are free');
ok( $slots->log_contains(
		qr/tcc serves database \d+ with a housekeeper from now on/, $log_at),
	'late housekeeper: the log says so');

# the housekeeper does its work: an expired transaction is cancelled
$slots->safe_psql('d1', q{SELECT tcc.begin('expiring', timeout => '1 s')});
polled_is($slots, 'd1', status_sql('expiring'), 'expiring:cancelled', 30,
	'late housekeeper: a transaction past its deadline is cancelled');
$slots->stop;
done_testing();
