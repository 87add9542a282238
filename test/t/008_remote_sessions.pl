# test/t/008_remote_sessions.pl: the worker's participant connections.
#
# A coordinator cluster with tcc preloaded calls a participant cluster
# (database part, plain SQL functions, no tcc) through foreign servers.
#
#   1. Session reset: every call on the cached connection starts from a
#      clean session.  A search_path, a statement_timeout, an advisory lock,
#      a prepared statement, a temporary table, a LISTEN or a
#      standard_conforming_strings, a sequence's currval or a role that one
#      confirm leaves behind is gone for the next, on the same participant
#      backend (reset, not reconnect), also with many calls in the pipeline
#      at once.  The server's own "options" are kept, and so are the
#      participant's cached plans (a function's statement is planned once,
#      not on every call).
#   2. A participant that hangs (postmaster and backends stopped with
#      SIGSTOP while a call runs there): after tcc.call_timeout the
#      worker's loop keeps running, SIGTERM ends the worker, a query cancel
#      ends CALL tcc.try and a fast stop ends the coordinator, each before
#      the participant is resumed; and a reload is served while the worker
#      connects to the stopped participant (a shorter tcc.connect_timeout
#      ends that connect).
#   3. Several connections per (server, role): with tcc.server_connections
#      = 3, 300 transactions of two branches each are confirmed over three
#      participant backends (the confirm records pg_backend_pid()), both
#      branches of a transaction over the same one; before, one backend
#      ran every call.  Lowered to 2 by a reload, the third connection is
#      closed.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;

# how long a step may take while the participant is stopped
my $window = 8;

# ------------------------------------------------------------------ set-up

my $participant = PostgreSQL::Test::Cluster->new('participant');
$participant->init;
# pg_stat_statements counts how often the participant plans a statement
$participant->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_planning = on
});
$participant->start;
$participant->safe_psql('postgres', 'CREATE DATABASE part');
$participant->safe_psql(
	'part', q{
CREATE FUNCTION ok_func() RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE TABLE observed (label text PRIMARY KEY, seen text);
GRANT ALL ON observed TO PUBLIC;
-- leave session state behind: a prepared statement, a temp table, LISTEN
CREATE FUNCTION leave_leftovers() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE 'PREPARE leftover_stmt AS SELECT 1';
	CREATE TEMP TABLE leftover_tab (i int);
	LISTEN leftover_channel;
	PERFORM set_config('standard_conforming_strings', 'off', false);
	RETURN true;
END $$;
-- what the session looks like: each item true when left over
CREATE FUNCTION observe(label text) RETURNS boolean LANGUAGE sql AS $$
INSERT INTO public.observed VALUES (label,
	format('stmt=%s tab=%s listen=%s scs=%s work_mem=%s',
		EXISTS (SELECT FROM pg_prepared_statements
				 WHERE name = 'leftover_stmt'),
		to_regclass('pg_temp.leftover_tab') IS NOT NULL,
		EXISTS (SELECT FROM pg_listening_channels() c
				 WHERE c = 'leftover_channel'),
		current_setting('standard_conforming_strings'),
		current_setting('work_mem')))
ON CONFLICT DO NOTHING
RETURNING true
$$;
CREATE EXTENSION pg_stat_statements;
-- a sequence whose currval a confirm leaves behind
CREATE SEQUENCE leftover_seq;
GRANT ALL ON leftover_seq TO PUBLIC;
CREATE FUNCTION observe_seq(label text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	seen text;
BEGIN
	BEGIN
		seen := 'currval=' || currval('public.leftover_seq');
	EXCEPTION WHEN object_not_in_prerequisite_state THEN
		seen := 'currval unset';
	END;
	INSERT INTO public.observed VALUES (label, seen || ' user=' || current_user
		|| ' session_user=' || session_user) ON CONFLICT DO NOTHING;
	RETURN true;
END $$;
-- a confirm whose statement the participant plans once, if plans are kept
CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO counter VALUES (1, 0);
GRANT ALL ON counter TO PUBLIC;
CREATE FUNCTION counted_confirm(text, text, jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE public.counter SET n = n + 1 WHERE id = 1;
	RETURN true;
END $$;
CREATE TABLE hang (seconds float8);
INSERT INTO hang VALUES (60);
CREATE FUNCTION hang_action(text, text, jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(seconds) FROM public.hang;
	RETURN true;
END $$;
});

my $coord = tcc_cluster(
	'coordinator',
	[
		'tcc.naptime' => '100ms',
		'tcc.retry_base' => '50ms',
		'tcc.retry_max' => '300ms',
		'tcc.call_timeout' => '1s',
		'tcc.connect_timeout' => '2s',
		# one dispatcher with one connection per (server, role) to watch
		# (the default; part 3 gives it more)
		'tcc.dispatchers' => '1',
		'tcc.server_connections' => '1'
	]);

$coord->safe_psql('postgres', 'CREATE EXTENSION tcc');
create_server($coord, $participant, 'p', 'part');
create_server($coord, $participant, 'withopts', 'part',
	options => "options '-c work_mem=7MB'");
create_server($coord, $participant, 'h', 'part');

# ----------------------------------------------------------------- helpers

# sql_tx(gid, server, confirm): the SQL that begins gid, registers one
# branch with this confirm and commits
sub sql_tx
{
	my ($gid, $server, $confirm) = @_;
	$confirm =~ s/'/''/g;
	return qq{
SELECT tcc.begin('$gid');
SELECT tcc.register_branch('$gid', '$server', '$confirm', 'SELECT true',
						   NULL, 'b');
SELECT tcc.commit('$gid');};
}

# confirmed(name, gid...): assert that each gid comes to be confirmed
sub confirmed
{
	my ($name, @gids) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $list = join(',', map { "'$_'" } @gids);
	my ($ok) = poll_until($coord, 'postgres',
		"SELECT count(*) FROM tcc.transactions WHERE gid IN ($list)"
		  . " AND status = 'confirmed'",
		scalar(@gids), 10);
	ok($ok, $name)
	  or diag($coord->safe_psql('postgres',
		"SELECT gid, status, last_error FROM tcc.branches"
		  . " WHERE gid IN ($list)"));
}

# run_tx(name, gid, server, confirm): commit gid and see it confirmed
sub run_tx
{
	my ($name, $gid, $server, $confirm) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$coord->safe_psql('postgres', sql_tx($gid, $server, $confirm));
	confirmed($name, $gid);
}

# the worker's backends on the participant
my $tcc_pids = q{
SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
 WHERE datname = 'part' AND application_name = 'tcc'};

# ------------------------------------------------- 1. the session is reset

run_tx('reset: a confirm sets search_path to nosuch', 's1', 'p',
	q{SELECT set_config('search_path', 'nosuch', false)});
my $pid = $participant->safe_psql('part', $tcc_pids);
like($pid, qr/^\d+$/, 'reset: the worker has one connection to part');
run_tx('reset: the next confirm finds ok_func on the default search_path',
	's2', 'p', 'SELECT ok_func()');

run_tx('reset: a confirm takes advisory lock 4242', 's3', 'p',
	'SELECT true FROM pg_advisory_lock(4242)');
ok( ( poll_until($participant, 'part', 'SELECT pg_try_advisory_lock(4242)', 't',
			5))[0],
	'reset: the advisory lock is not held after the action');

run_tx('reset: a confirm leaves a prepared statement, a temp table, LISTEN '
	  . 'and standard_conforming_strings off',
	's4', 'p', 'SELECT leave_leftovers()');
run_tx('reset: the next confirm observes its session', 's5', 'p',
	q{SELECT observe('after leftovers')});
is( $participant->safe_psql(
		'part', q{SELECT seen FROM observed WHERE label = 'after leftovers'}),
	'stmt=f tab=f listen=f scs=on work_mem=4MB',
	'reset: no prepared statement, temp table or LISTEN is left, and '
	  . 'standard_conforming_strings is on');

run_tx('reset: a confirm leaves a sequence\'s currval and a role behind',
	's4b', 'p',
	q{SELECT nextval('leftover_seq') > 0 AND set_config('role', 'pg_monitor', false) IS NOT NULL});
run_tx('reset: the next confirm observes its session', 's4c', 'p',
	q{SELECT observe_seq('after currval')});
my $mapped = $coord->safe_psql('postgres', 'SELECT current_user');
is( $participant->safe_psql(
		'part', q{SELECT seen FROM observed WHERE label = 'after currval'}),
	"currval unset user=$mapped session_user=$mapped",
	'reset: no currval is left, and the role is the mapped user again');

# the reset keeps the participant's cached plans: the statement of a
# function called by twelve confirms is planned once, not once a call
# (DISCARD ALL planned it again on every call)
$participant->safe_psql('part', 'SELECT pg_stat_statements_reset()');
$coord->safe_psql('postgres',
	join('', map { sql_tx("c$_", 'p', 'SELECT counted_confirm($1, $2, $3)') }
		  (1 .. 12)));
confirmed('reset: twelve confirms of counted_confirm',
	map { "c$_" } (1 .. 12));
is( $participant->safe_psql(
		'part', q{SELECT string_agg(calls || ' calls, '
		  || (plans <= 2) || ' for at most 2 plans', '; ')
		  FROM pg_stat_statements WHERE query LIKE 'UPDATE public.counter%'}),
	'12 calls, true for at most 2 plans',
	'reset: the statement of counted_confirm ran 12 times and was planned '
	  . 'at most twice')
  or diag($participant->safe_psql('part',
	q{SELECT calls, plans, query FROM pg_stat_statements ORDER BY calls DESC LIMIT 15}));

# many calls at once in the pipeline, alternating dirty and clean
my $batch = '';
my @gids;
foreach my $i (1 .. 5)
{
	$batch .= sql_tx("m$i-dirty", 'p',
		q{SELECT set_config('search_path', 'nosuch', false)});
	$batch .= sql_tx("m$i-clean", 'p', 'SELECT ok_func()');
	push @gids, "m$i-dirty", "m$i-clean";
}
$coord->safe_psql('postgres', $batch);
confirmed('reset: ten calls in flight at once, each with a clean session',
	@gids);

is($participant->safe_psql('part', $tcc_pids),
	$pid, 'reset: still the same participant backend (reset, not reconnect)');

# a server with options of its own keeps them, with the pinned setting
run_tx('reset: a confirm on a server with options leaves leftovers', 'o1',
	'withopts', 'SELECT leave_leftovers()');
run_tx('reset: the next confirm there observes its session', 'o2',
	'withopts', q{SELECT observe('with options')});
is( $participant->safe_psql(
		'part', q{SELECT seen FROM observed WHERE label = 'with options'}),
	'stmt=f tab=f listen=f scs=on work_mem=7MB',
	'reset: the server\'s options are kept, and standard_conforming_strings '
	  . 'is pinned on');

# last, as a reset running under a tiny statement_timeout might fail (the
# connection would be dropped then, which is allowed)
run_tx('reset: a confirm sets statement_timeout to 20ms', 's6', 'p',
	q{SELECT set_config('statement_timeout', '20ms', false)});
run_tx('reset: the next confirm sleeps 0.2 s without a statement timeout',
	's7', 'p', 'SELECT true FROM pg_sleep(0.2)');

# ------------------------------------------------ 2. a participant hangs
#
# on server h: a connection of its own, whatever part 1 left on p's

my @stopped;

# stop_participant(): SIGSTOP the participant's postmaster and children
sub stop_participant
{
	my $pm = $participant->{_pid};
	my @children = split /\s+/, `pgrep -P $pm`;
	@stopped = ($pm, grep { /^\d+$/ } @children);
	kill 'STOP', @stopped;
	note 'stopped participant processes ' . join(' ', @stopped);
}

# resume_participant(): SIGCONT what stop_participant stopped
sub resume_participant
{
	kill 'CONT', @stopped if @stopped;
	@stopped = ();
}

END { kill 'CONT', @stopped if @stopped; }

# a hang_action that started less than 300 ms ago (so it is still well
# before its tcc.call_timeout when the participant is stopped)
my $hanging = q{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE datname = 'part' AND state = 'active' AND query LIKE '%hang_action%'
   AND clock_timestamp() - query_start < interval '300ms'
   AND pid <> pg_backend_pid()};

my $worker_sql =
  q{SELECT pid FROM tcc.worker WHERE datname = 'postgres'};

# (d) CALL tcc.try, cancelled while its try hangs on a stopped participant;
# the call timeout is raised so that only the cancel ends it
$coord->safe_psql('postgres',
	q{ALTER SYSTEM SET tcc.call_timeout = '60s'; SELECT pg_reload_conf()});
my ($try_out, $try_err) = ('', '');
my $try = IPC::Run::start(
	[
		'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $coord->connstr('postgres') . ' application_name=trier',
		'-c', q{SELECT tcc.begin('t1')},
		'-c', q{CALL tcc.try('t1', 'h', 'SELECT hang_action($1, $2, $3)',
			'SELECT true', 'SELECT true')}
	],
	'>', \$try_out, '2>', \$try_err);
ok((poll_until($participant, 'part', $hanging, 't', 30))[0],
	'try: CALL tcc.try runs its try on the participant');
stop_participant();
$coord->safe_psql('postgres',
	q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	   WHERE application_name = 'trier'});
my ($try_done, $try_secs) = wait_until(
	sub { $try->pump_nb; !$try->pumpable }, $window);
ok($try_done, 'try: the cancelled CALL returns while the participant is '
	  . 'stopped');
note sprintf('query cancel of CALL tcc.try took %.2f s', $try_secs);
resume_participant();
$try->finish;
like($try_err, qr/canceling statement due to user request/,
	'try: the CALL fails with the query cancel');
$coord->safe_psql('postgres',
	q{ALTER SYSTEM RESET tcc.call_timeout; SELECT pg_reload_conf()});

# (a, b) a confirm in flight when the participant stops
$coord->safe_psql('postgres',
	sql_tx('h1', 'h', 'SELECT hang_action($1, $2, $3)'));
ok((poll_until($participant, 'part', $hanging, 't', 30))[0],
	'hang: the confirm runs on the participant');
stop_participant();
sleep 2;    # past tcc.call_timeout

my $wakeup_sql =
  q{SELECT last_wakeup FROM tcc.worker WHERE datname = 'postgres'};
my $wakeup = $coord->safe_psql('postgres', $wakeup_sql);
my $worker_pid = $coord->safe_psql('postgres', $worker_sql);
ok( ( poll_until($coord, 'postgres',
			"SELECT last_wakeup > '$wakeup' FROM tcc.worker"
			  . " WHERE datname = 'postgres'",
			't', $window))[0],
	'hang: the worker\'s loop runs on after the call timed out');

kill 'TERM', $worker_pid;
my ($term_done, $term_secs) =
  wait_until(sub { kill(0, $worker_pid) == 0 }, $window);
ok($term_done, 'hang: SIGTERM ends the worker while the participant is '
	  . 'stopped');
note sprintf('SIGTERM of the worker took %.2f s', $term_secs);
resume_participant();

# (c) a fast stop of the coordinator, with a new worker's call hanging
ok((poll_until($participant, 'part', $hanging, 't', 30))[0],
	'stop: the restarted worker runs the confirm again');
stop_participant();
sleep 2;    # past tcc.call_timeout
my $pgctl = IPC::Run::start(
	[ 'pg_ctl', '-D', $coord->data_dir, '-m', 'fast', '-w', 'stop' ],
	'>', \my $pgctl_out, '2>', \my $pgctl_err);
my ($stop_done, $stop_secs) = wait_until(
	sub { $pgctl->pump_nb; !$pgctl->pumpable }, $window);
ok($stop_done, 'stop: a fast stop of the coordinator ends while the '
	  . 'participant is stopped');
note sprintf('fast stop of the coordinator took %.2f s', $stop_secs);
resume_participant();
$pgctl->finish;
$coord->_update_pid(0);

# after all that, the transaction completes once the confirm is quick
$participant->safe_psql('part', 'UPDATE hang SET seconds = 0');
$coord->start;
confirmed('hang: the hanging confirm is confirmed once it answers', 'h1');

# (e) a reload while the worker connects to the stopped participant: the
# connect does not hold the SIGHUP for tcc.connect_timeout, and a shorter
# tcc.connect_timeout ends it
create_server($coord, $participant, 'h2', 'part');
$coord->safe_psql('postgres',
	q{ALTER SYSTEM SET tcc.connect_timeout = '10min'; SELECT pg_reload_conf();});
sleep 1;    # the worker has reloaded between two rounds
stop_participant();
$coord->safe_psql('postgres', sql_tx('h2', 'h2', 'SELECT ok_func()'));
sleep 1;    # the worker is connecting, and waits
$coord->safe_psql('postgres',
	q{ALTER SYSTEM SET tcc.connect_timeout = '1s'; SELECT pg_reload_conf()});
my ($reload_done, $reload_secs) = wait_until(
	sub {
		$coord->safe_psql(
			'postgres', q{
SELECT coalesce(last_error, '') FROM tcc.branches WHERE gid = 'h2'})
		  =~ /tcc\.connect_timeout \(1000 ms\) expired/;
	},
	$window);
ok($reload_done, 'reload: the connect under way obeys the reloaded '
	  . 'tcc.connect_timeout while the participant is stopped');
note sprintf('the reload ended the hung connect after %.2f s', $reload_secs);
resume_participant();
$coord->safe_psql('postgres',
	q{ALTER SYSTEM RESET tcc.connect_timeout; SELECT pg_reload_conf()});
confirmed('reload: h2 is confirmed once the participant answers', 'h2');

# ------------------------------------- 3. several connections per server
# no call may time out and reconnect: that would be a fourth backend
ok(set_conf($coord, 'tcc.call_timeout', '30s', '30s'),
	'connections: tcc.call_timeout is 30 s');
ok(set_conf($coord, 'tcc.server_connections', '3', '3'),
	'connections: tcc.server_connections is 3');
$participant->safe_psql('part',
	'CREATE TABLE conn_effect (gid text, branch_id text, pid int)');
$coord->safe_psql(
	'postgres', q{
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		PERFORM tcc.begin('c-' || i);
		PERFORM tcc.register_branch('c-' || i, 'p',
			'INSERT INTO conn_effect VALUES ($1, $2, pg_backend_pid())',
			'SELECT true', NULL, b)
		   FROM unnest(ARRAY['a', 'b']) b;
		PERFORM tcc.commit('c-' || i);
	END LOOP;
END $$;
});
polled_confirmed($coord, 'postgres', 'c', '300', 60,
	'connections: the 300 are confirmed');
is( $participant->safe_psql(
		'part', q{
SELECT count(*), count(DISTINCT (gid, branch_id)), count(DISTINCT pid)
  FROM conn_effect}),
	'600|600|3',
	'connections: each branch ran once, over three participant backends');
is( $participant->safe_psql(
		'part', q{
SELECT count(*) FROM (SELECT gid FROM conn_effect
                       GROUP BY gid HAVING count(DISTINCT pid) > 1) t}),
	'0', 'connections: both branches of a transaction went over one');
is( $participant->safe_psql(
		'part', q{
SELECT count(*) FROM pg_stat_activity
 WHERE pid IN (SELECT pid FROM conn_effect)
   AND application_name = 'tcc'}),
	'3', 'connections: the worker keeps the three connections open');
ok(set_conf($coord, 'tcc.server_connections', '2', '2'),
	'connections: tcc.server_connections is lowered to 2');
polled_is(
	$participant, 'part', q{
SELECT count(*) FROM pg_stat_activity
 WHERE pid IN (SELECT pid FROM conn_effect)
   AND application_name = 'tcc'}, '2', 10,
	'connections: the connection the lower setting has no room for is closed');

$coord->stop;
$participant->stop;
done_testing();
