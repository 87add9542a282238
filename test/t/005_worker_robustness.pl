# test/t/005_worker_robustness.pl: the background worker survives what
# users and administrators may do to it, as fixed after a code review.
#
# One cluster with tcc preloaded and short timings; every global
# transaction has local actions only (server NULL), which the worker runs
# itself as the transaction's owner, so no participant is needed.  Covered:
#
#  1. the launcher, killed by pg_terminate_backend, is started again by the
#     postmaster; after that, a worker killed the same way is started again
#     too (within 10 s) and completes a transaction committed afterwards;
#  2. a user session that holds a global transaction's row lock (a repeated
#     tcc.rollback of one already cancelling and a repeated tcc.commit of
#     one already confirming, in a transaction left open) does not stall
#     the phase two of other transactions: one committed meanwhile is
#     confirmed while the lock is held, and the held ones complete once the
#     session commits;
#  3. a local action cannot leave settings behind in the worker: after a
#     confirm that runs set_config('application_name', 'pwned', false), the
#     worker's application_name (pg_stat_activity, and as the next local
#     action sees it) is what it was; one that sets
#     default_transaction_read_only does not make the worker's own writes
#     fail; the next transaction is confirmed by the same worker process;
#  4. tcc.call_timeout applies to local actions: with 1 s, a confirm that
#     sleeps 30 s is cancelled (57014, within 10 s) and retried, and is
#     confirmed once it is made fast;
#  5. CREATE EXTENSION tcc in template1 does not break CREATE DATABASE (no
#     worker stays connected to a template): CREATE DATABASE without
#     TEMPLATE succeeds within 5 s, before and after the launcher's next
#     listing of the databases; the new database inherits the extension
#     and gets a worker within 15 s without any client asking;
#  6. only a database's owner stops its worker, and only outside a
#     transaction block: DROP DATABASE, ALTER DATABASE ... RENAME or SET
#     TABLESPACE and CREATE DATABASE ... TEMPLATE by a non-owner, and those
#     commands inside a transaction block by the owner, fail as PostgreSQL
#     says and leave the worker running (same pid, and it confirms the next
#     transaction), as does ALTER DATABASE ... CONNECTION LIMIT by the
#     owner; the owner outside a block does stop it (DROP DATABASE returns
#     promptly);
#  7. ALTER DATABASE ... SET default_transaction_read_only = on does not
#     break a worker started after it: it still confirms transactions.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(usleep gettimeofday tv_interval);

# ----------------------------------------------------------------- helpers

my $node;

# local_tx(gid, confirm, cancel[, db[, prefix]]): begin gid, register one
# local branch b with these actions, and commit; returns psql's output
# ("gid\nb\nconfirming").  prefix is SQL run first in the same session.
sub local_tx
{
	my ($gid, $confirm, $cancel, $db, $prefix) = @_;
	$db //= 'coord';
	$prefix //= '';
	return $node->safe_psql(
		$db, qq{$prefix
SELECT tcc.begin('$gid');
SELECT tcc.register_branch('$gid', NULL, \$tcc\$$confirm\$tcc\$,
	\$tcc\$$cancel\$tcc\$, NULL, 'b');
SELECT tcc.commit('$gid');});
}

# confirmed_once(gid, label[, db[, prefix]]): commit a transaction whose
# confirm logs the worker's application_name, and assert that it is
# confirmed within 15 s and that its confirm ran exactly once
sub confirmed_once
{
	my ($gid, $label, $db, $prefix) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$db //= 'coord';
	is( local_tx(
			$gid,
			q{INSERT INTO log VALUES ($1, current_setting('application_name'))},
			'SELECT true', $db, $prefix),
		"$gid\nb\nconfirming",
		"$label: $gid is committed");
	polled_is($node, $db, status_sql($gid), "$gid:confirmed", 15,
		"$label: $gid is confirmed");
	is($node->safe_psql($db, "SELECT count(*) FROM log WHERE gid = '$gid'"),
		'1', "$label: $gid\'s confirm ran once");
}

# the pid of database db's worker in tcc.worker ('' when none runs)
sub worker_pid
{
	my ($db) = @_;
	$db //= 'coord';
	return $node->safe_psql('coord',
		"SELECT coalesce(string_agg(pid::text, ','), '') FROM tcc.worker"
		  . " WHERE datname = '$db'");
}

# terminate(pid): pg_terminate_backend, asserted to have signalled
sub terminate
{
	my ($pid, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
		't', $name);
}

# fails_with(role, sql, regexp, name): sql, run in postgres as role (with
# ON_ERROR_STOP), fails with an error matching regexp; returns its time
sub fails_with
{
	my ($role, $sql, $regexp, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($stdout, $stderr);
	my $t0 = [gettimeofday];
	my $rc = $node->psql(
		'postgres', $sql,
		stdout => \$stdout,
		stderr => \$stderr,
		extra_params => [ defined $role ? ('-U', $role) : () ]);
	my $elapsed = tv_interval($t0);
	ok($rc != 0 && $stderr =~ $regexp, $name)
	  or diag("rc $rc, stderr: $stderr");
	return $elapsed;
}

# log_within(regexp, offset, seconds): whether the server log matches
# regexp after offset within seconds
sub log_within
{
	my ($regexp, $offset, $seconds) = @_;
	my $start = [gettimeofday];

	for (;;)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $regexp;
		return 0 if tv_interval($start) > $seconds;
		usleep(50_000);
	}
}

# ------------------------------------------------------------------ set-up

# unlimited attempts: the actions of part 2 return false on purpose until
# they are let through, and must not fail meanwhile on a slow machine
$node = tcc_cluster('coordinator', [ FAST_WORKER, 'tcc.max_attempts' => 0 ]);

# coord belongs to alice, who may rename databases; mallory owns nothing
$node->safe_psql(
	'postgres', q{
CREATE ROLE alice LOGIN CREATEDB;
CREATE ROLE mallory LOGIN;
CREATE DATABASE coord OWNER alice;});
$node->safe_psql(
	'coord', q{
CREATE EXTENSION tcc;
CREATE TABLE log (gid text, note text);
CREATE TABLE gate (name text PRIMARY KEY, open boolean NOT NULL);
CREATE TABLE nap (seconds float8 NOT NULL);});

polled_is($node, 'coord', "SELECT count(*) FROM tcc.worker WHERE datname = 'coord'",
	'1', 15, 'set-up: coord has a worker');

# ======================================================================
# 1. The launcher comes back after pg_terminate_backend, and so do workers
# ======================================================================

my $launcher_sql = q{
SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity
 WHERE backend_type = 'tcc launcher'};
my $launcher_pid = $node->safe_psql('postgres', $launcher_sql);
like($launcher_pid, qr/^\d+$/, 'launcher: one launcher runs');
my $worker_pid = worker_pid();
like($worker_pid, qr/^\d+$/, 'launcher: coord\'s worker runs');

terminate($launcher_pid, 'launcher: it is sent SIGTERM');
my $t0 = [gettimeofday];
polled_is(
	$node, 'postgres', qq{
SELECT count(*) FILTER (WHERE pid = $launcher_pid) || ','
       || count(*) FILTER (WHERE pid <> $launcher_pid)
  FROM pg_stat_activity WHERE backend_type = 'tcc launcher'},
	'0,1', 15,
	'launcher: the old one exited and the postmaster started a new one');
note(sprintf('launcher back after %.2f s', tv_interval($t0)));
is(worker_pid(), $worker_pid,
	'launcher: coord\'s worker ran on meanwhile');

# a worker killed now must be started again by the new launcher, which
# has no handle on it
terminate($worker_pid, 'launcher: then coord\'s worker is sent SIGTERM');
$t0 = [gettimeofday];
polled_is(
	$node, 'coord', qq{
SELECT count(*) FROM tcc.worker
 WHERE datname = 'coord' AND pid <> $worker_pid},
	'1', 15,
	'launcher: the new launcher starts a new worker for coord');
my $restart_elapsed = tv_interval($t0);
cmp_ok($restart_elapsed, '<', 10,
	'launcher: the new worker runs within 10 s');
note(sprintf('worker back after %.2f s', $restart_elapsed));
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $worker_pid"),
	'0',
	'launcher: the old worker is gone');
confirmed_once('restarted', 'launcher');

# ======================================================================
# 2. A user holding a global transaction's row lock stalls nobody else
# ======================================================================

# held-rb: rolled back, its cancel returns false until let through;
# held-cm: committed, its confirm likewise
$node->safe_psql(
	'coord', q{
INSERT INTO gate VALUES ('held-rb', false), ('held-cm', false);
SELECT tcc.begin('held-rb');
SELECT tcc.register_branch('held-rb', NULL, 'SELECT true',
	$$SELECT open FROM gate WHERE name = 'held-rb'$$, NULL, 'b');
SELECT tcc.rollback('held-rb');
SELECT tcc.begin('held-cm');
SELECT tcc.register_branch('held-cm', NULL,
	$$SELECT open FROM gate WHERE name = 'held-cm'$$, 'SELECT true', NULL,
	'b');
SELECT tcc.commit('held-cm');});
polled_is(
	$node, 'coord', q{
SELECT string_agg(gid || ':' || status || ':' || (attempts >= 1) || ':'
                  || last_error, ',' ORDER BY gid)
  FROM tcc.branches WHERE gid IN ('held-cm', 'held-rb')},
	'held-cm:confirming:true:the action returned false,'
	  . 'held-rb:cancelling:true:the action returned false',
	15,
	'lock: the worker retries both held transactions\' actions');

my $s = $node->background_psql('coord');
$s->query_safe('BEGIN');
is($s->query_safe(q{SELECT tcc.rollback('held-rb')}),
	'cancelling', 'lock: a session rolls back held-rb again, and keeps its lock');
is($s->query_safe(q{SELECT tcc.commit('held-cm')}),
	'confirming', 'lock: and commits held-cm again, and keeps its lock');
# from now on, their actions would succeed if the worker ran them
$node->safe_psql('coord', 'UPDATE gate SET open = true');

confirmed_once('free', 'lock');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
 WHERE a.backend_type = 'tcc worker' AND NOT l.granted}),
	'0',
	'lock: the worker waits for no lock');
is($node->safe_psql('coord', status_sql(qw(held-cm held-rb))),
	'held-cm:confirming,held-rb:cancelling',
	'lock: the worker left the locked transactions alone');

$s->query_safe('COMMIT');
polled_is($node, 'coord', status_sql(qw(held-cm held-rb)),
	'held-cm:confirmed,held-rb:cancelled', 15,
	'lock: once the session commits, the held transactions complete');
$s->quit;

# ======================================================================
# 3. A local action leaves no setting behind in the worker
# ======================================================================

my $appname_sql = q{
SELECT application_name FROM pg_stat_activity
 WHERE backend_type = 'tcc worker' AND datname = 'coord'};
my $appname = $node->safe_psql('postgres', $appname_sql);
isnt($appname, 'pwned', 'settings: the worker\'s application_name to begin with');
$worker_pid = worker_pid();

is( local_tx(
		'pwn', q{SELECT set_config('application_name', 'pwned', false)},
		'SELECT true'),
	"pwn\nb\nconfirming",
	'settings: pwn, whose confirm sets application_name, is committed');
polled_is($node, 'coord', status_sql('pwn'), 'pwn:confirmed', 15,
	'settings: the confirm succeeds and pwn is confirmed');
is($node->safe_psql('postgres', $appname_sql),
	$appname,
	'settings: the worker\'s application_name in pg_stat_activity is unchanged');

# a setting that would break the worker's own writes, were it left behind
is( local_tx(
		'pwn-ro',
		q{SELECT set_config('default_transaction_read_only', 'on', false)},
		'SELECT true'),
	"pwn-ro\nb\nconfirming",
	'settings: pwn-ro, whose confirm makes transactions read-only, is committed');
polled_is($node, 'coord', status_sql('pwn-ro'), 'pwn-ro:confirmed', 15,
	'settings: pwn-ro is confirmed');
confirmed_once('after-pwn', 'settings');
is( $node->safe_psql('coord',
		q{SELECT note FROM log WHERE gid = 'after-pwn'}),
	$appname,
	'settings: the next local action sees the worker\'s own application_name');
is(worker_pid(), $worker_pid,
	'settings: all by the same worker process, which never had to restart');

# ======================================================================
# 4. tcc.call_timeout applies to local actions
# ======================================================================

$node->safe_psql('postgres',
	q{ALTER SYSTEM SET tcc.call_timeout = '1s'; SELECT pg_reload_conf()});
polled_is($node, 'coord', 'SHOW tcc.call_timeout', '1s', 10,
	'call timeout: tcc.call_timeout is 1s');

$node->safe_psql('coord', 'INSERT INTO nap VALUES (30)');
$t0 = [gettimeofday];
is( local_tx('slow', 'SELECT pg_sleep(seconds) FROM nap', 'SELECT true'),
	"slow\nb\nconfirming",
	'call timeout: slow, whose confirm sleeps 30 s, is committed');
polled_is(
	$node, 'coord', q{
SELECT attempts >= 1 AND status = 'confirming' AND last_sqlstate = '57014'
  FROM tcc.branches WHERE gid = 'slow'},
	't', 10,
	'call timeout: the confirm is cancelled with 57014 and will be retried');
my $cancel_elapsed = tv_interval($t0);
cmp_ok($cancel_elapsed, '<', 10,
	'call timeout: cancelled within 10 s of the commit');
note(sprintf('local action cancelled after %.2f s', $cancel_elapsed));
like(
	$node->safe_psql('coord',
		q{SELECT last_error FROM tcc.branches WHERE gid = 'slow'}),
	qr/canceling statement due to statement timeout/,
	'call timeout: the error is the statement timeout');

$node->safe_psql('coord', 'UPDATE nap SET seconds = 0');
polled_is($node, 'coord', status_sql('slow'), 'slow:confirmed', 15,
	'call timeout: once the confirm is fast, slow is confirmed');

$node->safe_psql('postgres',
	q{ALTER SYSTEM RESET tcc.call_timeout; SELECT pg_reload_conf()});
polled_is($node, 'coord', 'SHOW tcc.call_timeout', '30s', 10,
	'call timeout: tcc.call_timeout is back to its default');

# ======================================================================
# 5. The extension in template1 does not break CREATE DATABASE
# ======================================================================

my $log_offset = -s $node->logfile;
$node->safe_psql('template1', 'CREATE EXTENSION tcc');
$t0 = [gettimeofday];
my ($rc, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE DATABASE fromtemplate');
my $create_elapsed = tv_interval($t0);
is($rc, 0, 'template: CREATE DATABASE right after CREATE EXTENSION in template1 succeeds')
  or diag($stderr);
cmp_ok($create_elapsed, '<', 5, 'template: and takes less than 5 s');
note(sprintf('CREATE DATABASE took %.2f s', $create_elapsed));
ok( log_within(
		qr/tcc worker for database "template1" exits: the extension is not installed there, or the database is a template/,
		$log_offset, 15),
	'template: the worker that CREATE EXTENSION asked for left template1');
my $template_workers_sql = q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'tcc worker' AND datname = 'template1'};
is($node->safe_psql('postgres', $template_workers_sql),
	'0', 'template: no tcc worker is connected to template1');

# the launcher's next listing of the databases (every 10 s) finds the new
# database, which has the extension from its template
$t0 = [gettimeofday];
polled_is($node, 'coord',
	"SELECT count(*) FROM tcc.worker WHERE datname = 'fromtemplate'",
	'1', 15, 'template: fromtemplate gets a worker without anybody asking');
note(sprintf('fromtemplate served after %.2f s', tv_interval($t0)));
is( $node->safe_psql(
		'fromtemplate',
		q{SELECT extversion FROM pg_extension WHERE extname = 'tcc'}),
	'1.0',
	'template: fromtemplate inherited the extension');
$node->safe_psql('fromtemplate', 'CREATE TABLE log (gid text, note text)');
confirmed_once('tmpl1', 'template', 'fromtemplate');

# that listing started no worker in template1 either
is($node->safe_psql('postgres', $template_workers_sql),
	'0', 'template: still no tcc worker in template1 after a listing');
$t0 = [gettimeofday];
($rc, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE DATABASE fromtemplate2');
$create_elapsed = tv_interval($t0);
is($rc, 0, 'template: a second CREATE DATABASE succeeds') or diag($stderr);
cmp_ok($create_elapsed, '<', 5, 'template: also within 5 s');
$node->safe_psql('postgres', 'DROP DATABASE fromtemplate2');

# ======================================================================
# 6. Only the owner stops a database's worker, outside a transaction block
# ======================================================================

$worker_pid = worker_pid();
like($worker_pid, qr/^\d+$/, 'owner: coord\'s worker runs');

fails_with('mallory', 'DROP DATABASE coord',
	qr/must be owner of database coord/,
	'owner: DROP DATABASE by a non-owner fails: must be owner');
fails_with('mallory', 'ALTER DATABASE coord RENAME TO renamed',
	qr/must be owner of database coord/,
	'owner: ALTER DATABASE RENAME by a non-owner fails: must be owner');
fails_with('mallory', 'ALTER DATABASE coord SET TABLESPACE pg_default',
	qr/must be owner of database coord/,
	'owner: ALTER DATABASE SET TABLESPACE by a non-owner fails: must be owner');
fails_with('mallory', 'CREATE DATABASE copy TEMPLATE coord',
	qr/permission denied to create database/,
	'owner: CREATE DATABASE TEMPLATE by a non-owner fails: permission denied');

# the owner, inside a transaction block: RENAME may run there, and finds
# the worker still connected after waiting 5 s for it
my $rename_elapsed = fails_with(
	'alice', "BEGIN;\nALTER DATABASE coord RENAME TO renamed;",
	qr/database "coord" is being accessed by other users.*\n.*There (?:is 1 other session|are \d+ other sessions) using the database/,
	'owner: ALTER DATABASE RENAME by the owner in a transaction block fails: the worker is connected'
);
note(sprintf('RENAME in a transaction block failed after %.2f s',
		$rename_elapsed));
fails_with(
	'alice', "BEGIN;\nDROP DATABASE coord;",
	qr/DROP DATABASE cannot run inside a transaction block/,
	'owner: DROP DATABASE by the owner in a transaction block fails');
fails_with(
	'alice', "BEGIN;\nALTER DATABASE coord SET TABLESPACE pg_default;",
	qr/ALTER DATABASE SET TABLESPACE cannot run inside a transaction block/,
	'owner: ALTER DATABASE SET TABLESPACE by the owner in a transaction block fails'
);
fails_with(
	'alice', "BEGIN;\nCREATE DATABASE copy TEMPLATE coord;",
	qr/CREATE DATABASE cannot run inside a transaction block/,
	'owner: CREATE DATABASE TEMPLATE by the owner in a transaction block fails'
);

# ALTER DATABASE other than SET TABLESPACE needs no worker to leave
is( $node->safe_psql(
		'postgres', 'ALTER DATABASE coord WITH CONNECTION LIMIT 50',
		extra_params => [ '-U', 'alice' ]),
	'',
	'owner: the owner changes coord\'s connection limit');

# a worker sent SIGTERM would not confirm anything more: the same one does
confirmed_once('after-refusals', 'owner');
is(worker_pid(), $worker_pid,
	'owner: coord\'s worker is still the same process');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $worker_pid"),
	'1',
	'owner: and it is alive');

# the owner of fromtemplate (the superuser), outside a block, does stop its
# worker: DROP DATABASE returns at once
my $fromtemplate_pid = worker_pid('fromtemplate');
like($fromtemplate_pid, qr/^\d+$/, 'owner: fromtemplate\'s worker runs');
$t0 = [gettimeofday];
($rc, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE fromtemplate');
my $drop_elapsed = tv_interval($t0);
is($rc, 0, 'owner: the owner drops fromtemplate while its worker runs')
  or diag($stderr);
cmp_ok($drop_elapsed, '<', 3, 'owner: within 3 s');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $fromtemplate_pid"),
	'0',
	'owner: fromtemplate\'s worker is gone');

# ======================================================================
# 7. default_transaction_read_only on the database does not break a worker
# ======================================================================

$node->safe_psql('postgres',
	'ALTER DATABASE coord SET default_transaction_read_only = on');
is($node->safe_psql('coord', 'SHOW default_transaction_read_only'),
	'on', 'read-only: new sessions of coord are read-only');
my ($ro_rc, $ro_out, $ro_err) =
  $node->psql('coord', q{INSERT INTO log VALUES ('x', 'x')});
like($ro_err, qr/cannot execute INSERT in a read-only transaction/,
	'read-only: and cannot write');

# a worker started after the ALTER gets the database's settings
$worker_pid = worker_pid();
terminate($worker_pid, 'read-only: coord\'s worker is sent SIGTERM');
polled_is(
	$node, 'coord', qq{
SELECT count(*) FROM tcc.worker
 WHERE datname = 'coord' AND pid <> $worker_pid},
	'1', 15,
	'read-only: a new worker runs for coord');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'tcc worker' AND datname = 'coord'}),
	'1',
	'read-only: it shows in pg_stat_activity');
confirmed_once('read-only', 'read-only', 'coord',
	'SET default_transaction_read_only = off;');
my $ro_tx_sql = q{
SET default_transaction_read_only = off;
SELECT tcc.begin('read-only-rb');
SELECT tcc.register_branch('read-only-rb', NULL, 'SELECT true',
	$$INSERT INTO log VALUES ($1, 'cancelled')$$, NULL, 'b');
SELECT tcc.rollback('read-only-rb');};
is($node->safe_psql('coord', $ro_tx_sql),
	"read-only-rb\nb\ncancelling",
	'read-only: read-only-rb is rolled back');
polled_is($node, 'coord', status_sql('read-only-rb'),
	'read-only-rb:cancelled', 15,
	'read-only: and the new worker cancels it');

$node->safe_psql('postgres',
	'ALTER DATABASE coord RESET default_transaction_read_only');
is($node->safe_psql('coord', 'SHOW default_transaction_read_only'),
	'off', 'read-only: reset');
confirmed_once('after-reset', 'read-only');

$node->stop;
done_testing();
