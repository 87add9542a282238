# test/t/007_try_wait.pl: CALL tcc.try and tcc.wait, with the real worker.
#
# Two clusters, both with tcc preloaded, as in 002_phase_two.pl: the
# "coordinator" (database postgres) and the "participant" with the
# reference scenario's databases inventory and orders (doc/design.md, The reference scenario),
# loaded from examples/ and reached through the foreign servers inventory
# and orders.  Every try here runs through CALL tcc.try, from SQL only:
#
#   1. the reference purchase: two CALLs (one with a generated branch id,
#      one with a given one) leave both branches tried; commit, tcc.wait
#      returns confirmed; the stock is sold and the order completed;
#   2. a participant error (the stock CHECK): the CALL fails with the
#      participant's SQLSTATE, message, DETAIL and CONTEXT, a hint to roll
#      back and a context line naming the branch, gid and server; the branch
#      is try_failed and keeps the DETAIL and CONTEXT, commit
#      is refused, rollback cancels the other (tried) branch;
#   3. a try that returns false (its cancel arrived first, an empty
#      rollback): 55000 "returned false", the branch try_failed;
#   4. CALL tcc.try inside BEGIN, and from a DO block inside BEGIN: 25001,
#      nothing registered;
#   5. the registration is durable (committed, flushed even under
#      synchronous_commit = off) before the participant hears of the try: a
#      second session sees it while the try sleeps; the coordinator is
#      killed with SIGKILL meanwhile; after the restart the worker cancels
#      the transaction at its deadline, and the fence keeps the invariants
#      whatever the orphaned try does;
#   6. a query cancel of the CALL during a slow try: 57014 for the caller,
#      the participant's query is cancelled too, the branch stays
#      registered;
#   7. tcc.call_timeout applies to the try, remote or local: 57014, branch
#      try_failed; a local try and its confirm in the worker resolve names
#      with the owner's search_path, not the caller's session's;
#   8. tcc.wait: (a) woken at the worker's commit, not by polling (naptime
#      5 s); (b) returns trying after its timeout; (c) waits with
#      wait_event_type Extension; (d) a query cancel ends it (57014);
#      (e) returns failed at once for a transaction that failed; (f) sees
#      the worker's commit from a REPEATABLE READ transaction.
#
# After the scenarios that touch the participants, the reference
# invariants are checked: every global transaction terminal,
# stock + frozen + sold = 100, frozen = 0, sold = 2 * confirmed purchases,
# each order and fence row in its expected state.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(time);

check_examples();

# ------------------------------------------------------------------ set-up

my $participant = reference_participant();

# a try that sleeps (payload's "sleep" seconds) before it freezes the stock,
# and a confirm that takes the product's row lock, then refuses while the
# table refuse has a row
$participant->safe_psql(
	'inventory', q{
CREATE FUNCTION slow_try(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep((payload->>'sleep')::float8);
	RETURN inventory_try(gid, branch_id, payload);
END $$;
CREATE TABLE refuse (why text);
INSERT INTO refuse VALUES ('not today');
CREATE FUNCTION refusing_confirm(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM 1 FROM product WHERE id = 1 FOR UPDATE;
	IF EXISTS (SELECT FROM refuse) THEN
		RAISE EXCEPTION 'confirm refused';
	END IF;
	RETURN true;
END $$;
});

# wal_writer_delay: an asynchronous commit stays unflushed for a while, so
# that only tcc.try's own flush makes the registration survive a SIGKILL
my $coord = tcc_cluster(
	'coordinator',
	[
		FAST_WORKER,
		'tcc.call_timeout' => '10s',
		'tcc.connect_timeout' => '2s',
		'wal_writer_delay' => '10s'
	]);
reference_servers($coord, $participant);

# ----------------------------------------------------------------- helpers

my $payload = '{"product": 1, "qty": 2}';

# what the end must look like: each global transaction's status, each
# order's status, each fence row's state per participant database, and the
# quantity sold
my (%status, %order, %fence);
my $sold = 0;

# check_invariants' arguments but the quantity sold: the clusters and
# those expectations
my %ends = (
	participant => $participant,
	coord => $coord,
	status => \%status,
	order => \%order,
	fence => \%fence);

# try_call(gid, db, branch_id [, payload [, try function]]): the CALL of a
# try of the reference participant db (inventory or orders), with its
# confirm and cancel; branch_id undef passes NULL
sub try_call
{
	my ($gid, $db, $branch, $pl, $try) = @_;
	my $prefix = $db eq 'inventory' ? 'inventory' : 'order';
	$pl //= $payload;
	$try //= "${prefix}_try";
	$branch = defined $branch ? "'$branch'" : 'NULL';
	return qq{CALL tcc.try('$gid', '$db', 'SELECT $try(\$1, \$2, \$3)',
	'SELECT ${prefix}_confirm(\$1, \$2, \$3)',
	'SELECT ${prefix}_cancel(\$1, \$2, \$3)', '$pl', $branch);};
}

# rollback_and_wait(gid, label): tcc.rollback of the trying gid answers
# cancelling, and tcc.wait then returns cancelled
sub rollback_and_wait
{
	my ($gid, $label) = @_;
	is( $coord->safe_psql(
			'postgres', qq{
SELECT tcc.rollback('$gid');
SELECT tcc.wait('$gid', '30 s');}),
		"cancelling\ncancelled", $label);
}

# branch_outcome(gid): status:last_sqlstate of gid's one branch
sub branch_outcome
{
	my ($gid) = @_;
	return $coord->safe_psql(
		'postgres', qq{
SELECT status || ':' || last_sqlstate FROM tcc.branches
 WHERE gid = '$gid'});
}

# psql_fails(node, db, sql): run sql, which must fail; returns psql's
# stderr, in verbose form (with SQLSTATE, HINT, CONTEXT)
sub psql_fails
{
	my ($node, $db, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql(
		$db, $sql,
		stdout => \$out,
		stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $rc == 0 ? "unexpected success: $out" : $err;
}

# waiting_query(name): the condition "session name waits in an extension"
sub waiting_query
{
	my ($name) = @_;
	return qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE application_name = '$name' AND state = 'active'
   AND wait_event_type = 'Extension'};
}

# cancel(name): pg_cancel_backend of the coordinator session name
sub cancel
{
	my ($name) = @_;
	return $coord->safe_psql(
		'postgres', qq{
SELECT pg_cancel_backend(pid) FROM pg_stat_activity
 WHERE application_name = '$name'});
}

# the condition "a try of slow_try runs on the participant", and its
# negation
my $slow_running = q{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE datname = 'inventory' AND application_name = 'tcc'
   AND state = 'active' AND query LIKE '%slow_try%'};
my $slow_gone = q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE datname = 'inventory' AND application_name = 'tcc'
   AND state = 'active' AND query LIKE '%slow_try%'};

# ------------------------------------------ 1. the reference purchase, by SQL

is( $coord->safe_psql(
		'postgres', "SELECT tcc.begin('p1-purchase');\n"
		  . try_call('p1-purchase', 'inventory', undef) . "\n"
		  . try_call('p1-purchase', 'orders', 'ord')),
	"p1-purchase\n1\nord",
	'1: each CALL returns its branch id, generated (1) or given (ord)');
is(branches_of($coord, 'p1-purchase'), '1:tried,ord:tried', '1: both branches tried');
is(inventory_row($participant), '100|2|0', '1: the try froze 2');
is( $participant->safe_psql(
		'orders', q{SELECT status FROM orders WHERE gid = 'p1-purchase'}),
	'pending', '1: the order was created pending');
is( $coord->safe_psql(
		'postgres', q{
SELECT tcc.commit('p1-purchase');
SELECT tcc.wait('p1-purchase', '30 s');}),
	"confirming\nconfirmed",
	'1: commit, then tcc.wait returns confirmed');
is(branches_of($coord, 'p1-purchase'), '1:confirmed,ord:confirmed',
	'1: both branches confirmed');
$status{'p1-purchase'} = 'confirmed';
$order{'p1-purchase'} = 'completed';
$fence{inventory}{'p1-purchase'} = '1:confirmed';
$fence{orders}{'p1-purchase'} = 'ord:confirmed';
$sold += 2;
check_invariants('1', %ends, sold => $sold);

# ------------------------------------------------- 2. a participant's error

is( $coord->safe_psql(
		'postgres', "SELECT tcc.begin('p2-error');\n"
		  . try_call('p2-error', 'orders', 'ord')),
	"p2-error\nord", '2: the order try ran');
my $err = psql_fails($coord, 'postgres',
	try_call('p2-error', 'inventory', 'inv', '{"product": 1, "qty": 1000}'));
like(
	$err,
	qr/ERROR:  23514: new row for relation "product" violates check constraint "product_stock_check"$/m,
	'2: the CALL fails with the participant\'s SQLSTATE and message');
like(
	$err,
	qr/^HINT:  Roll the global transaction back with tcc\.rollback\.$/m,
	'2: the error hints at tcc.rollback');
like(
	$err,
	qr/^try of branch "inv" of global transaction "p2-error" on server "inventory"$/m,
	'2: the error\'s context names the branch, gid and server');
like(
	$err,
	qr/^DETAIL:  Failing row contains /m,
	'2: the participant\'s DETAIL comes with the error');
like(
	$err,
	qr/^CONTEXT:  SQL statement "UPDATE product.*\n(?:.*\n)*PL\/pgSQL function inventory_try\(text,text,jsonb\)/m,
	'2: the participant\'s CONTEXT comes first in the error\'s context');
is( $coord->safe_psql(
		'postgres', q{
SELECT (last_detail LIKE 'Failing row contains %') || ':'
	   || (last_hint IS NULL) || ':'
	   || (last_context LIKE '%PL/pgSQL function inventory_try(text,text,jsonb)%')
  FROM tcc.branches WHERE gid = 'p2-error' AND branch_id = 'inv'}),
	'true:true:true',
	'2: the branch keeps the participant\'s DETAIL and CONTEXT next to its error');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status || ':'
                  || coalesce(last_sqlstate, '-') || ':'
                  || (coalesce(last_error, '') LIKE '%product_stock_check%'),
                  ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = 'p2-error'}),
	'ord:tried:-:false,inv:try_failed:23514:true',
	'2: the inventory branch is try_failed with the participant\'s error');
is(inventory_row($participant), '100|0|2', '2: the failed try froze nothing');
like(
	psql_fails($coord, 'postgres', q{SELECT tcc.commit('p2-error')}),
	qr/ERROR:  55000: cannot commit global transaction "p2-error" because the try of branch "inv" failed/m,
	'2: tcc.commit is refused with 55000');
is($coord->safe_psql('postgres', q{SELECT tcc.status('p2-error')}),
	'trying', '2: the refused commit changed nothing');
rollback_and_wait('p2-error', '2: rollback, then tcc.wait returns cancelled');
is(branches_of($coord, 'p2-error'), 'ord:cancelled,inv:cancelled',
	'2: both branches cancelled');
$status{'p2-error'} = 'cancelled';
$order{'p2-error'} = 'cancelled';
$fence{inventory}{'p2-error'} = 'inv:cancelled_early';
$fence{orders}{'p2-error'} = 'ord:cancelled';
check_invariants('2', %ends, sold => $sold);

# ------------------------------------------------- 3. a try returning false

$coord->safe_psql('postgres', q{SELECT tcc.begin('p3-false')});
is( $participant->safe_psql(
		'inventory', qq{SELECT inventory_cancel('p3-false', 'inv', '$payload')}),
	't', '3: the cancel reached the participant before the try');
$err = psql_fails($coord, 'postgres', try_call('p3-false', 'inventory', 'inv'));
like(
	$err,
	qr/ERROR:  55000: try of branch "inv" of global transaction "p3-false" returned false$/m,
	'3: the refused try fails the CALL with 55000 "returned false"');
like($err, qr/^HINT:  Roll the global transaction back with tcc\.rollback\.$/m,
	'3: the error hints at tcc.rollback');
is( $coord->safe_psql(
		'postgres', q{
SELECT status || ':' || coalesce(last_error, '-') FROM tcc.branches
 WHERE gid = 'p3-false'}),
	'try_failed:the try returned false',
	'3: the branch is try_failed');
is(inventory_row($participant), '100|0|2', '3: the refused try froze nothing');
rollback_and_wait('p3-false', '3: rollback, then tcc.wait returns cancelled');
$status{'p3-false'} = 'cancelled';
$fence{inventory}{'p3-false'} = 'inv:cancelled_early';
check_invariants('3', %ends, sold => $sold);

# ------------------------------------- 4. refused inside a transaction block

$coord->safe_psql('postgres', q{SELECT tcc.begin('p4-block')});
like(
	psql_fails(
		$coord, 'postgres',
		"BEGIN;\n" . try_call('p4-block', 'inventory', 'inv')),
	qr/ERROR:  25001: tcc\.try cannot run inside a transaction block$/m,
	'4: CALL tcc.try inside BEGIN fails with 25001');
my $do_call = try_call('p4-block', 'inventory', 'b');
$do_call =~ s/'b'\);$/b);/;
like(
	psql_fails(
		$coord, 'postgres',
		"BEGIN;\nDO \$do\$ DECLARE b text := 'inv'; BEGIN $do_call END \$do\$;"),
	qr/ERROR:  25001: tcc\.try cannot run inside a transaction block$/m,
	'4: CALL tcc.try from a DO block inside BEGIN fails with 25001');
is( $coord->safe_psql(
		'postgres', q{
SELECT count(*) || ':' || tcc.status('p4-block') FROM tcc.branches
 WHERE gid = 'p4-block'}),
	'0:trying',
	'4: nothing was registered');
is($participant->safe_psql('inventory', 'SELECT count(*) FROM tcc.fence'),
	scalar(keys %{ $fence{inventory} }),
	'4: the participant never heard of it');
is($coord->safe_psql('postgres', q{SELECT tcc.rollback('p4-block')}),
	'cancelled', '4: rolled back');
$status{'p4-block'} = 'cancelled';

# --------------- 5. durable registration; coordinator killed during the try

my $slow_payload = '{"product": 1, "qty": 2, "sleep": 4}';
$coord->safe_psql('postgres',
	q{SELECT tcc.begin('p5-kill9', timeout => '3 s')});
my ($h5, $out5, $err5) = start_psql($coord, 'postgres', 'try_kill9',
	"SET synchronous_commit = off;\n"
	  . try_call('p5-kill9', 'inventory', 'inv', $slow_payload, 'slow_try'), 1);
ok( $coord->poll_query_until(
		'postgres', q{
SELECT status FROM tcc.branches WHERE gid = 'p5-kill9'}, 'registered'),
	'5: another session sees the branch registered while the try runs');
ok($participant->poll_query_until('inventory', $slow_running),
	'5: the slow try runs on the participant');

kill9_and_restart(
	$coord, '5',
	sub {
		$h5->finish;
		like($$err5, qr/server closed the connection|connection to server/,
			'5: the CALL lost its connection');
	});
like(
	$coord->safe_psql(
		'postgres', q{
SELECT status FROM tcc.branches WHERE gid = 'p5-kill9'}),
	qr/^(registered|cancelling|cancelled)$/,
	'5: the registration survived the crash');
is( $coord->safe_psql(
		'postgres', q{
SELECT tcc.wait('p5-kill9', '60 s');
SELECT reason FROM tcc.transactions WHERE gid = 'p5-kill9'}),
	"cancelled\ntimeout",
	'5: the worker cancelled the transaction at its deadline');
ok($participant->poll_query_until('inventory', $slow_gone),
	'5: the orphaned try has ended on the participant');
my $fence5 = $participant->safe_psql('inventory',
	q{SELECT state FROM tcc.fence WHERE gid = 'p5-kill9'});
like($fence5, qr/^(cancelled|cancelled_early)$/,
	"5: the cancel reached the participant (fence $fence5)");
note "5: the orphaned try "
  . ($fence5 eq 'cancelled' ? 'ran before the cancel' : 'was refused');
$status{'p5-kill9'} = 'cancelled';
$fence{inventory}{'p5-kill9'} = "inv:$fence5";
check_invariants('5', %ends, sold => $sold);

# ------------------------------------- 6. query cancel during a slow try

$slow_payload = '{"product": 1, "qty": 2, "sleep": 60}';
$coord->safe_psql('postgres', q{SELECT tcc.begin('p6-cancel')});
my ($h6, $out6, $err6) = start_psql($coord, 'postgres', 'try_cancel',
	try_call('p6-cancel', 'inventory', 'inv', $slow_payload, 'slow_try'), 1);
ok($participant->poll_query_until('inventory', $slow_running),
	'6: the slow try runs on the participant');
ok($coord->poll_query_until('postgres', waiting_query('try_cancel')),
	'6: the CALL waits for the participant');
my $t0 = time();
is(cancel('try_cancel'), 't', '6: the CALL is cancelled');
$h6->finish;
like($$err6, qr/ERROR:  57014: canceling statement due to user request$/m,
	'6: the caller gets 57014');
ok($participant->poll_query_until('inventory', $slow_gone),
	'6: the try is no longer running on the participant');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 20,
	'6: the participant\'s query was cancelled, long before its sleep ends');
note sprintf('6: the participant\'s query ended %.2f s after the cancel',
	$elapsed);
is(branches_of($coord, 'p6-cancel'), 'inv:registered',
	'6: the branch stays registered');
is($participant->safe_psql('inventory', 'SELECT frozen FROM product'),
	'0', '6: the cancelled try froze nothing');
rollback_and_wait('p6-cancel', '6: rollback, then tcc.wait returns cancelled');
$status{'p6-cancel'} = 'cancelled';
$fence{inventory}{'p6-cancel'} = 'inv:cancelled_early';
check_invariants('6', %ends, sold => $sold);

# ----------------------------------------- 7. tcc.call_timeout and the try

is( $coord->safe_psql(
		'postgres', q{
SELECT context FROM pg_settings WHERE name = 'tcc.call_timeout'}),
	'sighup', '7: tcc.call_timeout is set in the configuration');
ok(set_conf($coord, 'tcc.call_timeout', '1s', '1s'),
	'7: tcc.call_timeout = 1s in force');
$coord->safe_psql('postgres', q{SELECT tcc.begin('p7-call-timeout')});
$t0 = time();
$err = psql_fails($coord, 'postgres',
	try_call('p7-call-timeout', 'inventory', 'inv', $slow_payload, 'slow_try'));
$elapsed = time() - $t0;
like($err, qr/ERROR:  57014: .*tcc\.call_timeout/m,
	'7: the try times out with 57014, naming tcc.call_timeout');
cmp_ok($elapsed, '<', 10, '7: after about tcc.call_timeout');
note sprintf('7: the CALL failed after %.2f s', $elapsed);
is(branch_outcome('p7-call-timeout'), 'try_failed:57014',
	'7: the branch is try_failed with 57014');
ok($participant->poll_query_until('inventory', $slow_gone),
	'7: the timed-out try was cancelled on the participant');

# a local try (server NULL) runs under the policy of every local action
# (action.c): tcc.call_timeout applies to it as to the worker's confirms
$coord->safe_psql('postgres', q{SELECT tcc.begin('p7-local-timeout')});
$t0 = time();
$err = psql_fails($coord, 'postgres', q{
CALL tcc.try('p7-local-timeout', NULL, 'SELECT pg_sleep(5)', 'SELECT 1',
			 'SELECT 2', NULL, 'local');});
$elapsed = time() - $t0;
like($err, qr/ERROR:  57014: canceling statement due to statement timeout/m,
	'7: a local try times out with 57014');
cmp_ok($elapsed, '<', 4, '7: after about tcc.call_timeout, not the 5 s sleep');
note sprintf('7: the local CALL failed after %.2f s', $elapsed);
is(branch_outcome('p7-local-timeout'), 'try_failed:57014',
	'7: the local branch is try_failed with 57014');

# the caller's own statement_timeout, later than tcc.call_timeout, still
# ends the CALL when the try catches tcc's cancel and runs on past it, as
# it would have without tcc
$coord->safe_psql(
	'postgres', q{
CREATE FUNCTION public.p7_stubborn() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM pg_sleep(5);
	EXCEPTION WHEN query_canceled THEN
		NULL;
	END;
	PERFORM pg_sleep(2);
	RETURN true;
END $$;
SELECT tcc.begin('p7-stubborn');});
$t0 = time();
$err = psql_fails($coord, 'postgres', q{
SET statement_timeout = '2s';
CALL tcc.try('p7-stubborn', NULL, 'SELECT p7_stubborn()', 'SELECT 1',
			 'SELECT 2', NULL, 'stubborn');});
$elapsed = time() - $t0;
like($err, qr/ERROR:  57014: canceling statement due to statement timeout/m,
	"7: the caller's statement_timeout ends a try that caught tcc's cancel");
note sprintf('7: the stubborn CALL failed after %.2f s', $elapsed);
rollback_and_wait('p7-stubborn', '7: p7-stubborn rolled back');
$status{'p7-stubborn'} = 'cancelled';
ok(set_conf($coord, 'tcc.call_timeout', undef, '10s'), '7: tcc.call_timeout reset');
rollback_and_wait('p7-call-timeout',
	'7: rollback, then tcc.wait returns cancelled');
$status{'p7-call-timeout'} = 'cancelled';
$fence{inventory}{'p7-call-timeout'} = 'inv:cancelled_early';
rollback_and_wait('p7-local-timeout', '7: the local one too');
$status{'p7-local-timeout'} = 'cancelled';

# a try and the confirm of the same local branch resolve names alike: with
# the search_path a new session of the owner gets (here from ALTER ROLE ...
# IN DATABASE), not the one the caller's session set, nor the worker's
$coord->safe_psql(
	'postgres', q{
CREATE ROLE p7_app LOGIN;
CREATE SCHEMA p7sp;
GRANT USAGE ON SCHEMA p7sp TO p7_app;
CREATE FUNCTION p7sp.which() RETURNS text LANGUAGE sql AS $$SELECT 'p7sp'$$;
CREATE FUNCTION public.which() RETURNS text LANGUAGE sql
	AS $$SELECT 'public'$$;
CREATE TABLE public.p7_log (action text, found text);
GRANT INSERT ON public.p7_log TO p7_app;
ALTER ROLE p7_app IN DATABASE postgres SET search_path = p7sp, public;});
run_as($coord, 'postgres', 'p7_app', q{
SELECT tcc.begin('p7-path');
SET search_path = public;
CALL tcc.try('p7-path', NULL,
			 'INSERT INTO public.p7_log VALUES (''try'', which())',
			 'INSERT INTO public.p7_log VALUES (''confirm'', which())',
			 'SELECT 1');
SELECT tcc.commit('p7-path');});
is($coord->safe_psql('postgres', q{SELECT tcc.wait('p7-path', '30 s')}),
	'confirmed', '7: the local branch of p7_app is confirmed');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(action || ':' || found, ',' ORDER BY action DESC)
  FROM public.p7_log}),
	'try:p7sp,confirm:p7sp',
	"7: the try and the worker's confirm both found the owner's p7sp.which()");
$status{'p7-path'} = 'confirmed';

# ... and where the owner has no setting of its own, with the server's
# configuration as it is now (here ALTER SYSTEM, then a reload), also in a
# session whose own search_path came from a role setting of the caller
$coord->safe_psql(
	'postgres', q{
CREATE ROLE p7_owner LOGIN;
CREATE ROLE p7_caller LOGIN IN ROLE p7_owner;
ALTER ROLE p7_caller SET search_path = public;
CREATE SCHEMA p7conf;
GRANT USAGE ON SCHEMA p7conf TO p7_owner;
CREATE FUNCTION p7conf.which() RETURNS text LANGUAGE sql
	AS $$SELECT 'p7conf'$$;
GRANT INSERT ON public.p7_log TO p7_owner;});
$coord->safe_psql('postgres',
	'ALTER SYSTEM SET search_path = p7conf, public; SELECT pg_reload_conf()');
ok($coord->poll_query_until('postgres', 'SHOW search_path', 'p7conf, public'),
	'7: search_path = p7conf, public in the configuration, reloaded');
run_as($coord, 'postgres', 'p7_owner', q{SELECT tcc.begin('p7-conf')});
is( run_as(
		$coord, 'postgres', 'p7_caller', q{
SHOW search_path;
CALL tcc.try('p7-conf', NULL,
			 'INSERT INTO public.p7_log VALUES (''try-conf'', which())',
			 'INSERT INTO public.p7_log VALUES (''confirm-conf'', which())',
			 'SELECT 1');
SELECT tcc.commit('p7-conf');}),
	"public\n1\nconfirming",
	"7: p7_caller's session has its role's search_path, and commits p7-conf");
is($coord->safe_psql('postgres', q{SELECT tcc.wait('p7-conf', '30 s')}),
	'confirmed', '7: p7-conf is confirmed');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(action || ':' || found, ',' ORDER BY action DESC)
  FROM public.p7_log WHERE action LIKE '%-conf'}),
	'try-conf:p7conf,confirm-conf:p7conf',
	'7: the try and the confirm both used the configured search_path');
ok(set_conf($coord, 'search_path', undef, '"$user", public'),
	'7: search_path reset');
$status{'p7-conf'} = 'confirmed';

# that lookup reads pg_db_role_setting for every local action and must
# not leak: a session's 3000 local tries, with ten long settings to read
# each time, leave its memory as it was
$coord->safe_psql('postgres',
	join('',
		map { "ALTER DATABASE postgres SET p7leak.s$_ = '" . ('x' x 200) . "';" }
		  1 .. 10));
my $leak = $coord->safe_psql(
	'postgres', q{
CREATE FUNCTION pg_temp.rss_kb() RETURNS bigint LANGUAGE sql AS $$
	SELECT (regexp_match(pg_read_file('/proc/self/status'),
						 'RssAnon:\s+(\d+)'))[1]::bigint$$;
SELECT tcc.begin('p7-leak', '1 hour');
DO $$DECLARE b text; BEGIN FOR i IN 1..500 LOOP
	b := NULL;
	CALL tcc.try('p7-leak', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 1', NULL, b);
END LOOP; END$$;
SELECT pg_temp.rss_kb() AS before \gset
DO $$DECLARE b text; BEGIN FOR i IN 1..3000 LOOP
	b := NULL;
	CALL tcc.try('p7-leak', NULL, 'SELECT 1', 'SELECT 1', 'SELECT 1', NULL, b);
END LOOP; END$$;
SELECT pg_temp.rss_kb() - :before;
SELECT tcc.rollback('p7-leak');});
my $grown = (split /\n/, $leak)[1];
note "7: 3000 local tries grew the session's RssAnon by $grown kB";
cmp_ok($grown, '<', 2048, '7: the search_path lookups leak nothing');
$coord->safe_psql('postgres', 'ALTER DATABASE postgres RESET ALL');
is($coord->safe_psql('postgres', q{SELECT tcc.wait('p7-leak', '30 s')}),
	'cancelled', '7: p7-leak is cancelled');
$status{'p7-leak'} = 'cancelled';
check_invariants('7', %ends, sold => $sold);

# ------------------------------------------------------------- 8. tcc.wait

ok(set_conf($coord, 'tcc.naptime', '5s', '5s'), '8: tcc.naptime = 5s in force');

# (a) + (c): a purchase whose inventory confirm waits for a row lock
is( $coord->safe_psql(
		'postgres', "SELECT tcc.begin('p8a-wakeup');\n"
		  . try_call('p8a-wakeup', 'inventory', 'inv') . "\n"
		  . try_call('p8a-wakeup', 'orders', 'ord')),
	"p8a-wakeup\ninv\nord",
	'8a: both tries ran');
my $locker = $participant->background_psql('inventory');
$locker->query_safe(
	'BEGIN; SELECT stock FROM product WHERE id = 1 FOR UPDATE;');
is($coord->safe_psql('postgres', q{SELECT tcc.commit('p8a-wakeup')}),
	'confirming', '8a: committed');
ok( $coord->poll_query_until(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status, ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = 'p8a-wakeup'},
		'inv:confirming,ord:confirmed'),
	'8a: the inventory confirm is held up by the row lock');
my ($h8a, $out8a, $err8a) = start_psql($coord, 'postgres', 'wait_wakeup',
	q{SELECT tcc.wait('p8a-wakeup', '60 s');}, 1);
ok($coord->poll_query_until('postgres', waiting_query('wait_wakeup')),
	'8c: the waiting session shows wait_event_type Extension');
is($coord->safe_psql('postgres', q{SELECT tcc.status('p8a-wakeup')}),
	'confirming', '8a: still confirming while tcc.wait waits');
$t0 = time();
$locker->query_safe('COMMIT;');
$h8a->finish;
$elapsed = time() - $t0;
is($$out8a, "confirmed\n", '8a: tcc.wait returns confirmed');
cmp_ok($elapsed, '<', 2.5,
	'8a: within moments of the confirm, far less than tcc.naptime (5 s)');
note sprintf('8a: tcc.wait returned %.3f s after the lock was released',
	$elapsed);
$locker->quit;
$status{'p8a-wakeup'} = 'confirmed';
$order{'p8a-wakeup'} = 'completed';
$fence{inventory}{'p8a-wakeup'} = 'inv:confirmed';
$fence{orders}{'p8a-wakeup'} = 'ord:confirmed';
$sold += 2;

# (b): a transaction that stays trying
$coord->safe_psql('postgres', q{SELECT tcc.begin('p8b-trying')});
my ($w8b, $secs8b) = split /\|/,
  $coord->safe_psql(
	'postgres', q{
SELECT w, extract(epoch FROM clock_timestamp() - statement_timestamp())
  FROM (SELECT tcc.wait('p8b-trying', '1.5 s') AS w OFFSET 0) s});
is($w8b, 'trying', '8b: tcc.wait returns trying when its timeout passes');
cmp_ok($secs8b, '>=', 1.5, '8b: not before the timeout');
cmp_ok($secs8b, '<', 3.5, '8b: nor long after it');
note "8b: tcc.wait returned after $secs8b s";

# (c) + (d): a wait cancelled
my ($h8d, $out8d, $err8d) = start_psql($coord, 'postgres', 'wait_cancel',
	q{SELECT tcc.wait('p8b-trying', '60 s');}, 1);
ok($coord->poll_query_until('postgres', waiting_query('wait_cancel')),
	'8c: a waiting session shows wait_event_type Extension');
is(cancel('wait_cancel'), 't', '8d: the wait is cancelled');
$h8d->finish;
like($$err8d, qr/ERROR:  57014: canceling statement due to user request$/m,
	'8d: the cancelled wait fails with 57014');
is($$out8d, '', '8d: and returns nothing');
is($coord->safe_psql('postgres', q{SELECT tcc.rollback('p8b-trying')}),
	'cancelled', '8b: rolled back');
$status{'p8b-trying'} = 'cancelled';

ok(set_conf($coord, 'tcc.naptime', undef, '100ms'), '8: tcc.naptime = 100ms again');

# (e): a confirm that keeps refusing, tcc.max_attempts = 2
ok(set_conf($coord, 'tcc.max_attempts', '2', '2'),
	'8e: tcc.max_attempts = 2 in force');
$locker = $participant->background_psql('inventory');
$locker->query_safe(
	'BEGIN; SELECT stock FROM product WHERE id = 1 FOR UPDATE;');
is( $coord->safe_psql(
		'postgres', q{
SELECT tcc.begin('p8e-failed');
SELECT tcc.register_branch('p8e-failed', 'inventory',
	'SELECT refusing_confirm($1, $2, $3)', 'SELECT true', NULL, 'ref');
SELECT tcc.commit('p8e-failed');}),
	"p8e-failed\nref\nconfirming",
	'8e: a transaction whose confirm refuses is committed');
my ($h8e, $out8e, $err8e) = start_psql($coord, 'postgres', 'wait_failed',
	q{SELECT tcc.wait('p8e-failed', '60 s');}, 1);
ok($coord->poll_query_until('postgres', waiting_query('wait_failed')),
	'8e: tcc.wait waits');
$t0 = time();
$locker->query_safe('COMMIT;');
$locker->quit;
$h8e->finish;
$elapsed = time() - $t0;
is($$out8e, "failed\n", '8e: tcc.wait returns failed');
cmp_ok($elapsed, '<', 15, '8e: without waiting for its timeout (60 s)');
note sprintf('8e: tcc.wait returned %.3f s after the lock was released',
	$elapsed);
is( $coord->safe_psql(
		'postgres', q{
SELECT b.status || ':' || b.attempts || ':' || b.last_sqlstate || ':'
       || t.failed_phase
  FROM tcc.branches b JOIN tcc.transactions t USING (gid)
 WHERE gid = 'p8e-failed'}),
	'failed:2:P0001:confirming',
	'8e: the branch failed after 2 attempts');
ok(set_conf($coord, 'tcc.max_attempts', undef, '50'), '8e: tcc.max_attempts reset');
$participant->safe_psql('inventory', 'DELETE FROM refuse');
is( $coord->safe_psql(
		'postgres', q{
SELECT tcc.retry('p8e-failed');
SELECT tcc.wait('p8e-failed', '30 s');}),
	"confirming\nconfirmed",
	'8e: once the cause is gone, tcc.retry and tcc.wait: confirmed');
$status{'p8e-failed'} = 'confirmed';

# (f): REPEATABLE READ
is( $coord->safe_psql(
		'postgres', "SELECT tcc.begin('p8f-repeatable-read');\n"
		  . try_call('p8f-repeatable-read', 'inventory', 'inv') . "\n"
		  . try_call('p8f-repeatable-read', 'orders', 'ord')),
	"p8f-repeatable-read\ninv\nord",
	'8f: both tries ran');
$locker = $participant->background_psql('inventory');
$locker->query_safe(
	'BEGIN; SELECT stock FROM product WHERE id = 1 FOR UPDATE;');
is($coord->safe_psql('postgres', q{SELECT tcc.commit('p8f-repeatable-read')}),
	'confirming', '8f: committed');
my $rr = $coord->background_psql('postgres');
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ;');
is( $rr->query_safe(
		q{SELECT status FROM tcc.transactions
		   WHERE gid = 'p8f-repeatable-read'}),
	'confirming',
	'8f: the repeatable-read snapshot sees confirming');
$locker->query_safe('COMMIT;');
$locker->quit;
ok( $coord->poll_query_until(
		'postgres', q{SELECT tcc.status('p8f-repeatable-read')},
		'confirmed'),
	'8f: the worker confirms the transaction meanwhile');
is($rr->query_safe(q{SELECT tcc.wait('p8f-repeatable-read', '5 s')}),
	'confirmed',
	'8f: tcc.wait in the repeatable-read transaction returns confirmed');
is( $rr->query_safe(
		q{SELECT status FROM tcc.transactions
		   WHERE gid = 'p8f-repeatable-read'}),
	'confirming',
	'8f: while its snapshot still shows confirming');
$rr->query_safe('COMMIT;');
$rr->quit;
$status{'p8f-repeatable-read'} = 'confirmed';
$order{'p8f-repeatable-read'} = 'completed';
$fence{inventory}{'p8f-repeatable-read'} = 'inv:confirmed';
$fence{orders}{'p8f-repeatable-read'} = 'ord:confirmed';
$sold += 2;
check_invariants('8', %ends, sold => $sold);

$coord->stop;
$participant->stop;
done_testing();
