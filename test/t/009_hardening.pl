# test/t/009_hardening.pl: no borrowed credentials, decisions durable at any
# synchronous_commit, and local actions that leave nothing in the worker.
#
# A "participant" cluster (plain PostgreSQL) listens on 127.0.0.1 and asks
# every TCP connection for a scram password; its bootstrap superuser has
# one.  The "coordinator" (tcc preloaded, synchronous_commit = off, a WAL
# writer that sleeps 10 s, autovacuum and timed checkpoints out of the way)
# is started with PGPASSFILE naming a file that holds that superuser's
# password, so libpq inside the coordinator's processes would find it by
# itself.  doc/design.md, Running an action, Durability and Security.  Covered:
#
#  1. credentials (doc/design.md, Security): for the non-superuser tenant_b, a user mapping
#     with an empty password is refused by register_branch and by CALL
#     tcc.try (2F003, nothing registered, the superuser-only table never
#     read), and, when the password becomes empty after registration, by
#     the worker (the branch failed with 2F003, the superuser-only table
#     victim never written); a non-superuser may not set sslcert / sslkey
#     on a user mapping (42501), a superuser may; a superuser's
#     password-less mapping keeps working (it may use the password file);
#  3. local actions leave no session state in the worker (doc/design.md, Running an action): an
#     advisory lock taken by a local confirm is free once the transaction is
#     confirmed (PREPARE, LISTEN and temporary tables are refused to a local
#     action already: it runs in a security-restricted operation); action
#     text that is two statements, or a COPY to the client, written into
#     tcc.branch behind registration's back, fails its branch at once
#     (22023) and runs nothing;
#  4. durability (doc/design.md, Durability): every acknowledged decision (begin, register,
#     commit, commit in a block that then sets synchronous_commit = off
#     locally, rollback, retry), a participant's fence row, and the
#     worker's own timeout cancel,
#     once acted on, survive a crash of the coordinator (one backend killed
#     with SIGKILL; the postmaster reinitializes and loses WAL not yet
#     flushed).  Before each decision the WAL writer is stopped (SIGSTOP,
#     continued only once its SIGQUIT is pending), so that no asynchronous
#     commit is saved by its chance timing: only a flush by the deciding
#     process itself saves it.  The coordinator database of this part is
#     marked as a template before the crashes, so that after each one no
#     worker serves it and the state read back is exactly what recovery
#     found (a trying transaction is not cancelled again).  Last, a
#     primary with synchronous_standby_names = '*' and synchronous_commit =
#     off does not acknowledge tcc.begin while its standby is down, and does
#     once the standby is back;
#  5. client certificate (doc/design.md, Security): against a participant that wants app's
#     password and a client certificate (hostssl, clientcert=verify-ca), a
#     coordinator started with PGSSLCERT / PGSSLKEY naming one does not
#     lend it to the non-superuser tenant_c, who knows only the password
#     (its branch is not confirmed, the participant table stays empty),
#     while a superuser's branch is confirmed with it (skipped without the
#     openssl command line or SSL support).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(usleep);

my $tmp = PostgreSQL::Test::Utils::tempdir;

# ------------------------------------------------------------ participant

my $participant = PostgreSQL::Test::Cluster->new('participant');
$participant->init;
$participant->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'\n");
$participant->start;
my $psu = $participant->safe_psql('postgres', 'SELECT current_user');
my $pport = $participant->port;

# the harness connects over the unix socket (trust); every TCP connection,
# which is what tcc's server inv makes, must give a scram password
prepend_hba($participant, "host all all 127.0.0.1/32 scram-sha-256\n");
$participant->safe_psql(
	'postgres', qq{
SET password_encryption = 'scram-sha-256';
ALTER ROLE "$psu" PASSWORD 'su-secret';
CREATE TABLE participant_only (secret int);
INSERT INTO participant_only VALUES (42);
REVOKE ALL ON participant_only FROM PUBLIC;
CREATE TABLE victim (x int);
REVOKE ALL ON victim FROM PUBLIC;
CREATE TABLE su_log (x int);
CREATE TABLE cancel_seen (gid text);});
$participant->reload;

# the password file the coordinator's processes inherit
my $passfile = "$tmp/pgpass";
open(my $fh, '>', $passfile) or die "could not write $passfile: $!";
print $fh "127.0.0.1:$pport:*:$psu:su-secret\n";
close($fh);
chmod(0600, $passfile) or die "could not chmod $passfile: $!";

my $tcp = "host=127.0.0.1 port=$pport dbname=postgres user=$psu";
{
	local $ENV{PGPASSFILE} = "$tmp/no-such-file";
	$participant->connect_fails($tcp,
		'premise: the participant asks a TCP connection for a password',
		expected_stderr => qr/password/);
}
{
	local $ENV{PGPASSFILE} = $passfile;
	$participant->connect_ok($tcp,
		'premise: with the password file, libpq connects as the superuser by itself');
}

# ------------------------------------------------------------ coordinator

my $coord = tcc_cluster(
	'coordinator',
	[
		FAST_WORKER,
		'synchronous_commit' => 'off',
		'wal_writer_delay' => '10s',
		'autovacuum' => 'off',
		'checkpoint_timeout' => '1h',
		'restart_after_crash' => 'on'
	],
	env => { PGPASSFILE => $passfile });

my $csu = $coord->safe_psql('postgres', 'SELECT current_user');
$coord->safe_psql(
	'postgres', qq{
SET synchronous_commit = on;
CREATE EXTENSION tcc;
CREATE SERVER inv FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '127.0.0.1', port '$pport', dbname 'postgres');
CREATE SERVER inv2 FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '127.0.0.1', port '$pport', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER inv OPTIONS (user '$psu');
CREATE ROLE tenant_b LOGIN;
GRANT USAGE ON FOREIGN SERVER inv, inv2 TO tenant_b;});

# as_tenant_or_superuser(sql, what): run sql as tenant_b, else (if a
# validator refuses it to a non-superuser) as the superuser; notes which and
# returns whether either did it
sub as_tenant_or_superuser
{
	my ($sql, $what) = @_;
	my ($sqlstate, $err) = error_of($coord, 'postgres', 'tenant_b', $sql);
	if ($sqlstate eq 'none')
	{
		note "$what: done by tenant_b";
		return 1;
	}
	note "$what: refused to tenant_b ($sqlstate), done by the superuser";
	($sqlstate, $err) = error_of($coord, 'postgres', undef, $sql);
	return 1 if $sqlstate eq 'none';
	note "$what: refused to the superuser too: $err";
	return 0;
}

# ======================================================================
# 1. No credential borrowing
# ======================================================================

# (should an empty password be refused outright, the mapping gets none)
as_tenant_or_superuser(
	qq{CREATE USER MAPPING FOR tenant_b SERVER inv
	OPTIONS (user '$psu', password '')},
	'the mapping with an empty password')
  or run_as($coord, 'postgres', undef,
	qq{CREATE USER MAPPING FOR tenant_b SERVER inv OPTIONS (user '$psu')});

run_as($coord, 'postgres', 'tenant_b', q{SELECT tcc.begin('m-1', '1 h')});
is( sqlstate_of(
		$coord, 'postgres', 'tenant_b', q{
SELECT tcc.register_branch('m-1', 'inv',
	'INSERT INTO victim VALUES (1)', 'SELECT 1')}),
	'2F003',
	'credentials: register_branch with an empty password is refused (2F003)');
is( $coord->safe_psql(
		'postgres', q{SELECT count(*) FROM tcc.branches WHERE gid = 'm-1'}),
	'0', 'credentials: and registers no branch');

run_as($coord, 'postgres', 'tenant_b', q{SELECT tcc.begin('m-2', '1 h')});
my ($m2_state, $m2_err) = error_of(
	$coord, 'postgres', 'tenant_b', q{
CALL tcc.try('m-2', 'inv', 'SELECT (SELECT secret FROM participant_only)::int',
	'SELECT 1', 'SELECT 1')});
is($m2_state, '2F003',
	'credentials: CALL tcc.try with an empty password is refused (2F003)');
unlike($m2_err, qr/\b42\b/,
	'credentials: the error does not show the superuser-only secret');
is( $coord->safe_psql(
		'postgres', q{SELECT count(*) FROM tcc.branches WHERE gid = 'm-2'}),
	'0', 'credentials: and CALL tcc.try registers no branch');

# registered with a (wrong, but non-empty) password, then emptied before
# the commit: the worker must not fall back to the password file
run_as($coord, 'postgres', 'tenant_b',
	q{ALTER USER MAPPING FOR tenant_b SERVER inv
	OPTIONS (SET password 'not-the-password')});
is( run_as(
		$coord, 'postgres', 'tenant_b', q{
SELECT tcc.begin('m-3', '1 h');
SELECT tcc.register_branch('m-3', 'inv',
	'INSERT INTO victim VALUES (3)', 'SELECT 1', NULL, 'b');}),
	"m-3\nb",
	'credentials: with a non-empty password, m-3 registers its branch');
as_tenant_or_superuser(
	q{ALTER USER MAPPING FOR tenant_b SERVER inv OPTIONS (SET password '')},
	'emptying the password')
  or run_as($coord, 'postgres', undef,
	q{ALTER USER MAPPING FOR tenant_b SERVER inv OPTIONS (DROP password)});
is(run_as($coord, 'postgres', 'tenant_b', q{SELECT tcc.commit('m-3')}),
	'confirming', 'credentials: tenant_b commits m-3');
ok( $coord->poll_query_until(
		'postgres', q{
SELECT status IN ('confirmed', 'failed') FROM tcc.transactions
 WHERE gid = 'm-3'}),
	'credentials: m-3 ends its phase two');
is( $coord->safe_psql(
		'postgres', q{
SELECT t.status || '|' || b.status || '|' || coalesce(b.last_sqlstate, '')
  FROM tcc.transactions t JOIN tcc.branches b USING (gid)
 WHERE gid = 'm-3'}),
	'failed|failed|2F003',
	'credentials: the worker refuses the empty password: m-3 failed with 2F003');
is($participant->safe_psql('postgres', 'SELECT count(*) FROM victim'),
	'0', 'credentials: victim on the participant was never written');

# positive control: a superuser is trusted with the server's credentials
is( $coord->safe_psql(
		'postgres', q{
SELECT tcc.begin('m-su', '1 h');
SELECT tcc.register_branch('m-su', 'inv',
	'INSERT INTO su_log VALUES (1)', 'SELECT 1', NULL, 'b');
SELECT tcc.commit('m-su');
SELECT tcc.wait('m-su', '60 s');}),
	"m-su\nb\nconfirming\nconfirmed",
	'credentials: a superuser\'s password-less mapping still confirms');
is($participant->safe_psql('postgres', 'SELECT count(*) FROM su_log'),
	'1', 'credentials: and its confirm ran on the participant');

# sslcert and sslkey name files the server reads with its own rights
is( sqlstate_of(
		$coord, 'postgres', 'tenant_b', q{
CREATE USER MAPPING FOR tenant_b SERVER inv2
	OPTIONS (user 'x', password 'y', sslcert '/some/file')}),
	'42501',
	'credentials: a non-superuser may not set sslcert on a user mapping (42501)');
is( sqlstate_of(
		$coord, 'postgres', 'tenant_b', q{
ALTER USER MAPPING FOR tenant_b SERVER inv
	OPTIONS (ADD sslkey '/some/file')}),
	'42501',
	'credentials: a non-superuser may not set sslkey on a user mapping (42501)');
$coord->safe_psql('postgres',
	'DROP USER MAPPING IF EXISTS FOR tenant_b SERVER inv2');
is( sqlstate_of(
		$coord, 'postgres', undef, q{
CREATE USER MAPPING FOR tenant_b SERVER inv2
	OPTIONS (user 'x', password 'y', sslcert '/some/file')}),
	'none', 'credentials: a superuser may set sslcert on a user mapping');

# ======================================================================
# 3. Local actions leave no session state in the worker
# ======================================================================

is( $coord->safe_psql(
		'postgres', q{
SELECT tcc.begin('l-1', '1 h');
SELECT tcc.register_branch('l-1', NULL,
	'SELECT pg_advisory_lock(777)', 'SELECT 1', NULL, 'b');
SELECT tcc.commit('l-1');
SELECT tcc.wait('l-1', '60 s');}),
	"l-1\nb\nconfirming\nconfirmed",
	'local: a confirm that takes an advisory lock is confirmed');
is($coord->safe_psql('postgres', 'SELECT pg_try_advisory_lock(777)'),
	't', 'local: the advisory lock is free once the action is done');

# (a local action cannot PREPARE, LISTEN or create a temporary table: it
# runs in a security-restricted operation, which refuses them with 42501,
# so the advisory lock is the session state left to check here)

# action text is checked again before a local action runs: text that is two
# statements, or a COPY to the client, put in the table behind
# registration's back (as rows of an older tcc could be), fails the branch
# at once with 22023 and runs nothing; SPI would have run both statements
$coord->safe_psql(
	'postgres', q{
CREATE TABLE l_t (x int);
SELECT tcc.begin('l-2', '1 h');
SELECT tcc.register_branch('l-2', NULL, 'SELECT 1', 'SELECT 1', NULL, 'two');
SELECT tcc.register_branch('l-2', NULL, 'SELECT 1', 'SELECT 1', NULL, 'copy');
UPDATE tcc.branch
   SET confirm_sql = CASE branch_id
		WHEN 'two' THEN 'INSERT INTO l_t VALUES (1); INSERT INTO l_t VALUES (2)'
		ELSE 'COPY (SELECT 1) TO STDOUT' END
 WHERE gid = 'l-2';
SELECT tcc.commit('l-2');});
is($coord->safe_psql('postgres', q{SELECT tcc.wait('l-2', '60 s')}),
	'failed', 'local: l-2 fails');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status || ':' || last_sqlstate || ':'
				  || attempts, ' ' ORDER BY branch_id)
  FROM tcc.branches WHERE gid = 'l-2'}),
	'copy:failed:22023:1 two:failed:22023:1',
	'local: both branches failed at the first attempt with 22023');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM l_t'),
	'0', 'local: neither statement of the two-statement action ran');

# a TCC confirm that keeps returning false fails its transaction, which
# names it as the confirm it is (the mode words the error)
$coord->safe_psql('postgres',
	q{ALTER SYSTEM SET tcc.max_attempts = 2; SELECT pg_reload_conf()});
$coord->safe_psql(
	'postgres', q{
SELECT tcc.begin('l-3', '1 h');
SELECT tcc.register_branch('l-3', NULL, 'SELECT false', 'SELECT 1', NULL, 'b');
SELECT tcc.commit('l-3');});
is($coord->safe_psql('postgres', q{SELECT tcc.wait('l-3', '60 s')}),
	'failed', 'local: l-3, whose confirm returns false, fails');
is( $coord->safe_psql(
		'postgres', q{SELECT last_error FROM tcc.transactions WHERE gid = 'l-3'}),
	'confirm of branch b: the action returned false',
	'local: its error names the confirm of branch b');
$coord->safe_psql('postgres',
	q{ALTER SYSTEM RESET tcc.max_attempts; SELECT pg_reload_conf()});

# ======================================================================
# 4. Acknowledged decisions survive a crash at synchronous_commit = off
# ======================================================================

# the participant database of this part, reached over the unix socket
# (trust); d6_confirm does not exist yet, so d-6 fails at once (42883)
my $phost = $participant->host;
$coord->safe_psql('postgres', 'CREATE DATABASE dur');
$coord->safe_psql(
	'dur', qq{
SET synchronous_commit = on;
CREATE EXTENSION tcc;
CREATE SERVER durp FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '$phost', port '$pport', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER durp OPTIONS (user '$psu');});
ok( $coord->poll_query_until(
		'dur', q{SELECT count(*) = 1 FROM tcc.worker WHERE datname = 'dur'}),
	'durability: a worker serves database dur');

# d_setup(gid, timeout, confirm, cancel): begin gid and register branch b,
# flushed (the session's synchronous_commit = on), so that only what comes
# next is at stake
sub d_setup
{
	my ($gid, $timeout, $confirm, $cancel) = @_;
	$coord->safe_psql(
		'dur', qq{
SET synchronous_commit = on;
SELECT tcc.begin('$gid', '$timeout');
SELECT tcc.register_branch('$gid', 'durp', '$confirm', '$cancel', NULL, 'b');});
}

# d_state(gid): "status:branches" of gid after the crash ("" if it is gone)
sub d_state
{
	my ($gid) = @_;
	return $coord->safe_psql(
		'dur', qq{
SELECT t.status || ':' || count(b.*)
  FROM tcc.transactions t LEFT JOIN tcc.branches b USING (gid)
 WHERE gid = '$gid' GROUP BY t.status});
}

# prepare_crash(): start a coordinator backend that sleeps, the one to be
# killed, and stop (SIGSTOP) the WAL writer, so that from now on only what
# a backend flushes itself reaches the WAL files: an asynchronous commit
# that the WAL writer happens to flush meanwhile would hide a missing flush.
# Returns the sleeping backend's pid.
my ($victim_h, $walwriter);
END { kill('CONT', $walwriter) if $walwriter; }
sub prepare_crash
{
	($victim_h) = start_psql($coord, 'postgres', 'crash_victim',
		'SELECT pg_sleep(600);');
	my $pid = '';
	foreach (1 .. 600)
	{
		$pid = $coord->safe_psql(
			'postgres', q{
SELECT pid FROM pg_stat_activity WHERE application_name = 'crash_victim'});
		last if $pid ne '';
		usleep(50_000);
	}
	die "the crash victim's backend did not show up" if $pid eq '';
	$walwriter = $coord->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'});
	kill('STOP', $walwriter) or die "could not stop the WAL writer: $!";
	return $pid;
}

# sigquit_pending(pid): whether process pid has a SIGQUIT pending (or is
# gone)
sub sigquit_pending
{
	my ($pid) = @_;
	open(my $st, '<', "/proc/$pid/status") or return 1;
	my ($pending) = join('', <$st>) =~ /^ShdPnd:\s*([0-9a-f]+)/m;
	close($st);
	return defined $pending && (hex(substr($pending, -8)) & (1 << 2));
}

# crash(pid): SIGKILL that backend: the postmaster sends SIGQUIT to the
# others; once the stopped WAL writer has it pending it is continued, and
# quits without writing anything.  True once the postmaster has
# reinitialized (losing WAL that no backend flushed) and accepts
# connections again.
sub crash
{
	my ($pid) = @_;
	my $offset = -s $coord->logfile;
	kill('KILL', $pid) or die "could not kill $pid: $!";
	foreach (1 .. 600)
	{
		last if sigquit_pending($walwriter);
		usleep(10_000);
	}
	kill('CONT', $walwriter);
	eval { $victim_h->finish; };
	$coord->wait_for_log(qr/all server processes terminated; reinitializing/,
		$offset);
	$coord->wait_for_log(qr/database system is ready to accept connections/,
		$offset);
	return $coord->poll_query_until('postgres', 'SELECT true');
}

# the 42883 failure, and its cause fixed, before the crashes start
d_setup('d-6', '1 h', 'SELECT d6_confirm()', 'SELECT 1');
is($coord->safe_psql('dur', q{SELECT tcc.commit('d-6')}),
	'confirming', 'durability: d-6 committed');
ok( $coord->poll_query_until(
		'dur', q{SELECT status FROM tcc.transactions WHERE gid = 'd-6'},
		'failed'),
	'durability: d-6 failed: its confirm function does not exist');
$participant->safe_psql('postgres',
	'CREATE FUNCTION d6_confirm() RETURNS boolean LANGUAGE sql AS $$SELECT true$$');

# from now on no worker starts for dur (templates are not served); the one
# running keeps serving it until the first crash
$coord->safe_psql('postgres',
	'SET synchronous_commit = on; ALTER DATABASE dur IS_TEMPLATE true');

# --- the worker's own decision: a timeout cancel it acted on
d_setup('d-5', '1 s', 'SELECT 1', 'INSERT INTO cancel_seen VALUES ($1)');
my $pid = prepare_crash();
ok( $participant->poll_query_until(
		'postgres', q{SELECT count(*) > 0 FROM cancel_seen WHERE gid = 'd-5'}),
	'durability: the running worker (dur now a template) cancelled d-5 at its deadline, on the participant');
ok(crash($pid), 'durability: crash after the timeout cancel');
is( $coord->safe_psql(
		'dur', q{SELECT count(*) FROM tcc.worker WHERE datname = 'dur'}),
	'0', 'durability: premise: after the crash no worker serves dur');
like(d_state('d-5'), qr/^(cancelling|cancelled):1$/,
	'durability: the timeout cancel the worker acted on survived the crash');

# --- begin and register, each acknowledged in autocommit
$pid = prepare_crash();
$coord->safe_psql('dur', q{SELECT tcc.begin('d-1', '1 h')});
$coord->safe_psql('dur',
	q{SELECT tcc.register_branch('d-1', 'durp', 'SELECT 1', 'SELECT 1')});
ok(crash($pid), 'durability: crash after begin and register');
is(d_state('d-1'), 'trying:1',
	'durability: the acknowledged begin and register survived the crash');

# --- commit
d_setup('d-2', '1 h', 'SELECT 1', 'SELECT 1');
$pid = prepare_crash();
is($coord->safe_psql('dur', q{SELECT tcc.commit('d-2')}),
	'confirming', 'durability: d-2 committed');
ok(crash($pid), 'durability: crash after commit');
like(d_state('d-2'), qr/^(confirming|confirmed):1$/,
	'durability: the acknowledged commit survived the crash');

# --- commit in a block whose transaction then turns synchronous_commit off
d_setup('d-3', '1 h', 'SELECT 1', 'SELECT 1');
$pid = prepare_crash();
$coord->safe_psql(
	'dur', q{
BEGIN;
SELECT tcc.commit('d-3');
SET LOCAL synchronous_commit = off;
COMMIT;});
ok(crash($pid), 'durability: crash after a commit in a block with SET LOCAL');
like(d_state('d-3'), qr/^(confirming|confirmed):1$/,
	'durability: the commit survived SET LOCAL synchronous_commit = off');

# --- rollback
d_setup('d-4', '1 h', 'SELECT 1', 'SELECT 1');
$pid = prepare_crash();
is($coord->safe_psql('dur', q{SELECT tcc.rollback('d-4')}),
	'cancelling', 'durability: d-4 rolled back');
ok(crash($pid), 'durability: crash after rollback');
like(d_state('d-4'), qr/^(cancelling|cancelled):1$/,
	'durability: the acknowledged rollback survived the crash');

# --- retry of the failed d-6
$pid = prepare_crash();
is($coord->safe_psql('dur', q{SELECT tcc.retry('d-6')}),
	'confirming', 'durability: d-6 retried');
ok(crash($pid), 'durability: crash after retry');
like(d_state('d-6'), qr/^(confirming|confirmed):1$/,
	'durability: the acknowledged retry survived the crash');

# --- a participant's fence row: the coordinator records a call as done
# once the participant's transaction commits, so that commit must not be
# lost either (here the coordinator's own database serves as the
# participant: the fence is the same in every database)
$pid = prepare_crash();
is($coord->safe_psql('dur', q{SELECT tcc.fence_try('dz-1', 'b')}),
	't', 'durability: the fence lets the try of dz-1 run');
ok(crash($pid), 'durability: crash after a fenced try');
is($coord->safe_psql('dur', q{SELECT state FROM tcc.fence WHERE gid = 'dz-1'}),
	'tried', 'durability: the fence row of the try survived the crash');

# ----------------------------------------------- synchronous standby

my $primary = tcc_cluster(
	'primary',
	[ 'tcc.naptime' => '100ms', 'synchronous_commit' => 'off' ],
	init => [ allows_streaming => 1 ]);
$primary->safe_psql('postgres', 'CREATE EXTENSION tcc');
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
$primary->safe_psql('postgres',
	q{ALTER SYSTEM SET synchronous_standby_names = '*'; SELECT pg_reload_conf()});
ok( $primary->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = 'sync'}),
	'sync standby: the standby is synchronous');

$standby->stop;
my ($sh, $sout) = start_psql($primary, 'postgres', 'begin_s1',
	q{SELECT tcc.begin('s-1');});
sleep(3);
$sh->pump_nb;
ok($sh->pumpable && $$sout eq '',
	'sync standby: tcc.begin is not acknowledged while the standby is down');
note 'sync standby: the waiting session: '
  . $primary->safe_psql(
	'postgres', q{
SELECT coalesce(string_agg(state || '/' || coalesce(wait_event, ''), ','), 'none')
  FROM pg_stat_activity WHERE application_name = 'begin_s1'});
$standby->start;
eval { $sh->finish; };
is($$sout, "s-1\n",
	'sync standby: tcc.begin is acknowledged once the standby is back');
is($primary->safe_psql('postgres', q{SELECT tcc.status('s-1')}),
	'trying', 'sync standby: s-1 is trying');

# ======================================================================
# 5. No borrowed client certificate
# ======================================================================

# A participant that wants a password and a client certificate signed by its
# CA (hostssl ... scram-sha-256 clientcert=verify-ca), and a coordinator
# started with PGSSLCERT / PGSSLKEY naming such a certificate: libpq inside
# its processes would send that certificate by itself.  tenant_c knows the
# password of the participant's role app, not its certificate: its branch
# must not be confirmed with the server's.  A superuser may use it.
SKIP:
{
	my $openssl = `which openssl 2>/dev/null`;
	chomp $openssl;
	skip 'cert: no openssl command line to make the certificates with', 1
	  unless $openssl ne '' && -x $openssl;
	skip 'cert: PostgreSQL was built without SSL support', 1
	  unless $coord->config_data('--configure') =~ /--with-(openssl|ssl=openssl)/;

	my $cdir = "$tmp/cert";
	mkdir($cdir) or die "could not create $cdir: $!";

	# a minimal configuration, so that the system's openssl.cnf does not
	# decide what the certificates are
	my $cnf = "$cdir/openssl.cnf";
	open(my $cfh, '>', $cnf) or die "could not write $cnf: $!";
	print $cfh q{[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
};
	close($cfh);

	# openssl(args...): run the openssl command line, die with its output
	# if it fails
	my $run_openssl = sub {
		my ($out, $err) = ('', '');
		IPC::Run::run([ $openssl, @_ ], '<', \undef, '>', \$out, '2>', \$err)
		  or die "openssl @_ failed: $out$err";
	};

	# the CA
	$run_openssl->(
		'req', '-config', $cnf, '-new', '-x509', '-extensions', 'v3_ca',
		'-newkey', 'rsa:2048', '-nodes', '-days', '3650',
		'-subj', '/CN=tcc test CA',
		'-keyout', "$cdir/ca.key", '-out', "$cdir/ca.crt");

	# cert_for(name, cn, serial): a key and a certificate signed by the CA
	my $cert_for = sub {
		my ($name, $cn, $serial) = @_;
		$run_openssl->(
			'req', '-config', $cnf, '-new', '-newkey', 'rsa:2048', '-nodes',
			'-subj', "/CN=$cn",
			'-keyout', "$cdir/$name.key", '-out', "$cdir/$name.csr");
		$run_openssl->(
			'x509', '-req', '-in', "$cdir/$name.csr",
			'-CA', "$cdir/ca.crt", '-CAkey', "$cdir/ca.key",
			'-set_serial', $serial, '-days', '3650',
			'-extfile', $cnf, '-extensions', 'v3_leaf',
			'-out', "$cdir/$name.crt");
	};
	$cert_for->('server', '127.0.0.1', 1);
	$cert_for->('client', 'app', 2);

	# the server and libpq both refuse a key others may read
	foreach my $key ('ca', 'server', 'client')
	{
		chmod(0600, "$cdir/$key.key")
		  or die "could not chmod $cdir/$key.key: $!";
	}

	# --- the participant
	my $cpart = PostgreSQL::Test::Cluster->new('cert_participant');
	$cpart->init;
	$cpart->append_conf(
		'postgresql.conf', qq{
listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = '$cdir/server.crt'
ssl_key_file = '$cdir/server.key'
ssl_ca_file = '$cdir/ca.crt'
});

	# app over TCP: SSL, its password and a certificate signed by the CA;
	# no other TCP connection as app (so that no non-SSL retry of libpq
	# finds the harness's trust line); the harness's own lines after these
	prepend_hba($cpart,
		"hostssl all app 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n"
		  . "host all app 127.0.0.1/32 reject\n");
	$cpart->start;
	my $cport = $cpart->port;
	$cpart->safe_psql(
		'postgres', q{
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'app-pw';
CREATE TABLE cert_t (x int);
GRANT INSERT, SELECT ON cert_t TO app;});

	# premises: the password alone is not enough, the certificate matters
	my $app = "host=127.0.0.1 port=$cport dbname=postgres user=app "
	  . "sslmode=require";
	$cpart->connect_fails(
		"$app password=app-pw sslcert=/nonexistent sslkey=/nonexistent",
		'cert: premise: the participant refuses app\'s password without a certificate',
		expected_stderr => qr/certificate/);
	$cpart->connect_fails(
		"$app password=wrong-pw sslcert='$cdir/client.crt' sslkey='$cdir/client.key'",
		'cert: premise: the participant refuses the certificate with a wrong password',
		expected_stderr => qr/password authentication failed/);
	$cpart->connect_ok(
		"$app password=app-pw sslcert='$cdir/client.crt' sslkey='$cdir/client.key'",
		'cert: premise: the participant accepts app\'s password with the certificate');

	# --- the coordinator, whose processes find the certificate by themselves
	my $ccoord = tcc_cluster(
		'cert_coordinator',
		[
			'tcc.naptime' => '100ms',
			'tcc.retry_base' => '50ms',
			'tcc.retry_max' => '200ms',
			'tcc.max_attempts' => 2
		],
		env => {
			PGSSLCERT => "$cdir/client.crt",
			PGSSLKEY => "$cdir/client.key"
		});

	$ccoord->safe_psql(
		'postgres', qq{
CREATE EXTENSION tcc;
CREATE SERVER certsrv FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '127.0.0.1', port '$cport', dbname 'postgres',
			 sslmode 'require');
CREATE ROLE tenant_c LOGIN;
GRANT USAGE ON FOREIGN SERVER certsrv TO tenant_c;
CREATE USER MAPPING FOR tenant_c SERVER certsrv
	OPTIONS (user 'app', password 'app-pw');
CREATE USER MAPPING FOR CURRENT_USER SERVER certsrv
	OPTIONS (user 'app', password 'app-pw');});

	# tenant_c, with app's right password and no certificate of its own
	is( run_as(
			$ccoord, 'postgres', 'tenant_c', q{
SELECT tcc.begin('c-1', '1 h');
SELECT tcc.register_branch('c-1', 'certsrv',
	'INSERT INTO cert_t VALUES (1)', 'SELECT 1', NULL, 'b');
SELECT tcc.commit('c-1');}),
		"c-1\nb\nconfirming",
		'cert: tenant_c registers its branch on certsrv and commits c-1');
	ok( $ccoord->poll_query_until(
			'postgres', q{
SELECT t.status <> 'confirming' OR b.last_error IS NOT NULL
  FROM tcc.transactions t JOIN tcc.branches b USING (gid)
 WHERE gid = 'c-1'}),
		'cert: the worker acted on c-1 (an error, or phase two over)');
	my ($c1_status, $c1_error) = split(
		/\|/,
		$ccoord->safe_psql(
			'postgres', q{
SELECT b.status || '|' || coalesce(b.last_error, '')
  FROM tcc.branches b WHERE gid = 'c-1'}),
		2);
	note "cert: c-1's branch: $c1_status: $c1_error";
	isnt($c1_status, 'confirmed',
		'cert: tenant_c\'s branch is not confirmed with the server\'s certificate');
	like($c1_error, qr/certificate|could not connect/,
		'cert: its error is the participant refusing the connection');
	is($cpart->safe_psql('postgres', 'SELECT count(*) FROM cert_t'),
		'0', 'cert: the participant table stays empty');
	is( run_as(
			$ccoord, 'postgres', 'tenant_c', q{SELECT tcc.wait('c-1', '60 s')}),
		'failed', 'cert: c-1 fails once its attempts are spent');

	# positive control: a superuser may use the server's certificate
	is( $ccoord->safe_psql(
			'postgres', q{
SELECT tcc.begin('c-su', '1 h');
SELECT tcc.register_branch('c-su', 'certsrv',
	'INSERT INTO cert_t VALUES (2)', 'SELECT 1', NULL, 'b');
SELECT tcc.commit('c-su');
SELECT tcc.wait('c-su', '60 s');}),
		"c-su\nb\nconfirming\nconfirmed",
		'cert: a superuser\'s branch on certsrv is confirmed with the server\'s certificate');
	is( $cpart->safe_psql(
			'postgres', 'SELECT string_agg(x::text, \',\') FROM cert_t'),
		'2', 'cert: and only the superuser\'s confirm wrote to the participant');
}

done_testing();
