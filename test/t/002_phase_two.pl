# test/t/002_phase_two.pl: the background worker drives phase two.
#
# Two clusters, both with tcc preloaded: "coordinator", whose database
# postgres holds the global transactions, and "participant", holding the
# two participant databases of the reference scenario (doc/design.md, The reference scenario),
# inventory and orders, loaded from examples/.  The coordinator reaches them
# through the foreign servers inventory and orders (tcc_fdw).  A purchase of
# 2 widgets registers one branch on each, runs both tries directly on the
# participants, as a client does, then commits or rolls back; everything
# after that is the worker's job:
#
#   1. a confirmed and a cancelled purchase;
#   2. an abandoned purchase, cancelled by the worker at its deadline
#      (reason "timeout");
#   3. the participant cluster down during phase two: the branches are
#      retried (connection errors recorded) and complete once it is back;
#   4. the coordinator killed with SIGKILL while a confirm is in flight (held
#      up by a row lock on the participant): after the restart the worker
#      finishes the purchase without any client action, and the fence keeps
#      the repeated confirm from selling twice;
#   5. a confirm that hangs: a fast shutdown of the coordinator does not
#      wait for it, and after the restart tcc.call_timeout cancels each
#      attempt (57014) until the participant answers;
#   6. a confirm that keeps failing: with tcc.max_attempts = 3 the
#      transaction becomes failed (failed_phase confirming), and after the
#      cause is fixed tcc.retry brings it to confirmed;
#   7. tcc.worker describes the coordinator database's worker.
#
# After each scenario the test waits until every global transaction is
# terminal and checks the invariants: stock + frozen + sold = 100 (also at
# moments in between), frozen = 0, sold = 2 * confirmed purchases, each
# order completed or cancelled as its purchase, every branch terminal with
# its participant's fence row in the matching state.
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
my $coord = tcc_cluster(
	'coordinator',
	[
		FAST_WORKER,
		'tcc.call_timeout' => '3s',
		'tcc.connect_timeout' => '2s'
	]);
reference_servers($coord, $participant);

# ----------------------------------------------------------------- helpers

my $payload = '{"product": 1, "qty": 2}';

# expected final status of every global transaction: purchases (which also
# have an order and fence rows on the participants) and the others
my %purchase;
my %other;

# check_invariants' arguments: the clusters and those expectations
my %ends = (
	participant => $participant,
	coord => $coord,
	purchases => \%purchase,
	others => \%other);

# prepare_purchase(gid [, timeout]): begin, register both branches (before
# the tries, so that a try that ran is always cancelled), run both tries
sub prepare_purchase
{
	my ($gid, $timeout) = @_;
	my $t = defined $timeout ? ", timeout => '$timeout'" : '';

	is( $coord->safe_psql(
			'postgres', qq{
SELECT tcc.begin('$gid'$t);
SELECT tcc.register_branch('$gid', 'inventory',
	'SELECT inventory_confirm(\$1, \$2, \$3)',
	'SELECT inventory_cancel(\$1, \$2, \$3)', '$payload', 'inv');
SELECT tcc.register_branch('$gid', 'orders',
	'SELECT order_confirm(\$1, \$2, \$3)',
	'SELECT order_cancel(\$1, \$2, \$3)', '$payload', 'ord');}),
		"$gid\ninv\nord",
		"$gid: begun, both branches registered");
	is( $participant->safe_psql(
			'inventory', "SELECT inventory_try('$gid', 'inv', '$payload')"),
		't', "$gid: inventory try froze 2");
	is( $participant->safe_psql(
			'orders', "SELECT order_try('$gid', 'ord', '$payload')"),
		't', "$gid: order try created the pending order");
}

# decide(gid, outcome): commit (outcome confirmed) or roll back (cancelled)
sub decide
{
	my ($gid, $outcome) = @_;
	my ($call, $status) =
	  $outcome eq 'confirmed'
	  ? ('commit', 'confirming')
	  : ('rollback', 'cancelling');

	is($coord->safe_psql('postgres', "SELECT tcc.$call('$gid')"),
		$status, "$gid: $call returns $status");
	$purchase{$gid} = $outcome;
}

# purchase(gid, outcome): a whole purchase, as a client runs it
sub purchase
{
	my ($gid, $outcome) = @_;
	prepare_purchase($gid);
	decide($gid, $outcome);
}

# check_total(label): stock + frozen + sold = 100, whatever is going on
sub check_total
{
	my ($label) = @_;
	my ($total) = split /\|/, inventory_row($participant);
	is($total, '100', "$label: stock + frozen + sold = 100");
}

# ------------------------------------------ 1. confirmed, cancelled purchase

prepare_purchase('p1-confirmed');
prepare_purchase('p2-cancelled');
is(inventory_row($participant), '100|4|0', 'after two tries: 4 frozen, total 100');
decide('p1-confirmed', 'confirmed');
decide('p2-cancelled', 'cancelled');
check_total('1, decided');
ok( $coord->poll_query_until(
		'postgres', q{SELECT tcc.status('p1-confirmed')}, 'confirmed'),
	'1: the commit reaches confirmed without further client action');
check_invariants('1', %ends);

# --------------------------------------------- 2. abandoned purchase: timeout

prepare_purchase('p3-abandoned', '1 second');
check_total('2, tried');
$purchase{'p3-abandoned'} = 'cancelled';
ok( $coord->poll_query_until(
		'postgres', q{
SELECT status || '|' || reason FROM tcc.transactions
 WHERE gid = 'p3-abandoned'}, 'cancelled|timeout'),
	'2: the worker cancels the abandoned purchase with reason timeout');
check_invariants('2', %ends);

# ----------------------------------- 3. participant down during phase two

prepare_purchase('p4-participant-down');
check_total('3, tried');
$participant->stop;
decide('p4-participant-down', 'confirmed');
ok( $coord->poll_query_until(
		'postgres', q{
SELECT count(*) = 2
   AND bool_and(status = 'confirming' AND attempts > 0
                AND last_error IS NOT NULL AND last_sqlstate LIKE '08%')
  FROM tcc.branches WHERE gid = 'p4-participant-down'}),
	'3: both branches are retried with a connection error recorded');
# the first attempt may find the cached connection closed; the next ones
# cannot connect
ok( $coord->poll_query_until(
		'postgres', q{
SELECT string_agg(last_sqlstate || ':' || (last_error LIKE
                  'could not connect to server "' || server || '"%'),
                  ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = 'p4-participant-down'},
		'08001:true,08001:true'),
	'3: the retries try to reconnect, the errors name the servers');
is( $coord->safe_psql(
		'postgres', q{
SELECT status, retry_backlog >= 2 FROM tcc.transactions, tcc.stats
 WHERE gid = 'p4-participant-down'}),
	'confirming|t',
	'3: still confirming, the branches counted in the retry backlog');
$participant->start;
check_invariants('3', %ends);
is( $coord->safe_psql(
		'postgres', q{
SELECT bool_and(attempts > 1) FROM tcc.branches
 WHERE gid = 'p4-participant-down'}),
	't',
	'3: the branches needed more than one attempt');

# ------------------------- 4. coordinator killed with -9 during phase two

prepare_purchase('p5-coordinator-kill9');

# a participant session holds the product row: the confirm waits for it
my $locker = $participant->background_psql('inventory');
$locker->query_safe(
	'BEGIN; SELECT stock FROM product WHERE id = 1 FOR UPDATE;');

decide('p5-coordinator-kill9', 'confirmed');
ok( $coord->poll_query_until(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status, ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = 'p5-coordinator-kill9'},
		'inv:confirming,ord:confirmed'),
	'4: the order is confirmed, the inventory confirm is pending');
ok( $participant->poll_query_until(
		'inventory', q{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE datname = 'inventory' AND application_name = 'tcc'
   AND wait_event_type = 'Lock' AND query LIKE '%inventory_confirm%'}),
	'4: the inventory confirm is in flight, waiting for the row lock');
check_total('4, confirm in flight');

kill9_and_restart($coord, '4');

# the orphaned confirm still waits; the restarted worker sends it again
ok( $participant->poll_query_until(
		'inventory', q{
SELECT count(*) >= 2 FROM pg_stat_activity
 WHERE datname = 'inventory' AND application_name = 'tcc'
   AND wait_event_type = 'Lock' AND query LIKE '%inventory_confirm%'}),
	'4: after the restart the worker sends the confirm again by itself');
is($coord->safe_psql('postgres', q{SELECT tcc.status('p5-coordinator-kill9')}),
	'confirming', '4: confirming while the participant is held up');
check_total('4, after the restart');

$locker->query_safe('COMMIT;');
$locker->quit;
check_invariants('4', %ends);

# ------------------------- 5. a hanging confirm and a fast shutdown

# its own server, so its connection holds up nobody else's calls; the
# sleep is a row, so that the participant can answer again afterwards
$participant->safe_psql(
	'inventory', q{
CREATE TABLE hang (seconds float8 NOT NULL);
INSERT INTO hang VALUES (60);
CREATE FUNCTION hang_confirm(gid text, branch_id text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(seconds) FROM hang;
	RETURN true;
END $$;
});
create_server($coord, $participant, 'slow', 'inventory');

is( $coord->safe_psql(
		'postgres', q{
SELECT tcc.begin('h6-hanging-confirm');
SELECT tcc.register_branch('h6-hanging-confirm', 'slow',
	'SELECT hang_confirm($1, $2, $3)', 'SELECT true', NULL, 'hang');
SELECT tcc.commit('h6-hanging-confirm');}),
	"h6-hanging-confirm\nhang\nconfirming",
	'5: a transaction whose confirm hangs is committed');
$other{'h6-hanging-confirm'} = 'confirmed';

my $hang_query = q{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE datname = 'inventory' AND application_name = 'tcc'
   AND state = 'active' AND query LIKE '%hang_confirm%'};
ok($participant->poll_query_until('inventory', $hang_query),
	'5: the hanging confirm runs on the participant');

my $t0 = time();
$coord->stop('fast');
my $stop_seconds = time() - $t0;
cmp_ok($stop_seconds, '<', 20,
	'5: a fast shutdown does not wait for the hanging call');
note sprintf('fast shutdown took %.2f s', $stop_seconds);

my $log_offset = -s $participant->logfile;
$coord->start;
ok( $coord->poll_query_until(
		'postgres', q{
SELECT status = 'confirming' AND attempts >= 2 AND last_sqlstate = '57014'
  FROM tcc.branches WHERE gid = 'h6-hanging-confirm'}),
	'5: each attempt times out with 57014 and is retried');
like(
	$coord->safe_psql(
		'postgres',
		q{SELECT last_error FROM tcc.branches WHERE gid = 'h6-hanging-confirm'}
	),
	qr/tcc\.call_timeout/,
	'5: the branch error names tcc.call_timeout');
ok( $participant->log_contains(
		qr/canceling statement due to user request/, $log_offset),
	'5: the timed-out call was cancelled on the participant');
is($coord->safe_psql('postgres', q{SELECT tcc.status('h6-hanging-confirm')}),
	'confirming', '5: the transaction is still confirming');

# the participant answers again: the next attempt confirms
$participant->safe_psql('inventory', 'UPDATE hang SET seconds = 0');
check_invariants('5', %ends);

# ------------------------- 6. a confirm that fails until failed, then retry

$coord->safe_psql('postgres',
	'ALTER SYSTEM SET tcc.max_attempts = 3; SELECT pg_reload_conf();');
ok($coord->poll_query_until('postgres', 'SHOW tcc.max_attempts', '3'),
	'6: tcc.max_attempts = 3 is in force');

# a check constraint refuses the completion of any new order
$participant->safe_psql('orders',
	q{ALTER TABLE orders ADD CONSTRAINT no_completion
		CHECK (status <> 'completed') NOT VALID});

purchase('p7-failing-confirm', 'confirmed');
ok( $coord->poll_query_until(
		'postgres', q{SELECT tcc.status('p7-failing-confirm')}, 'failed'),
	'6: the transaction becomes failed');
is( $coord->safe_psql(
		'postgres', q{
SELECT failed_phase, branches_confirmed, branches_failed FROM tcc.transactions
 WHERE gid = 'p7-failing-confirm'}),
	'confirming|1|1',
	'6: failed in confirming, inventory confirmed, the order branch failed');
like(
	$coord->safe_psql(
		'postgres', q{
SELECT last_error FROM tcc.transactions WHERE gid = 'p7-failing-confirm'}),
	qr/^confirm of branch ord: .*no_completion/,
	'6: the transaction error names the branch and the cause');
my ($status, $attempts, $sqlstate, $error) = split /\|/,
  $coord->safe_psql(
	'postgres', q{
SELECT status, attempts, last_sqlstate, last_error FROM tcc.branches
 WHERE gid = 'p7-failing-confirm' AND branch_id = 'ord'});
is("$status|$attempts|$sqlstate", 'failed|3|23514',
	'6: the order branch failed after 3 attempts with 23514');
like($error, qr/no_completion/, '6: the branch error is the participant\'s');
is( $participant->safe_psql(
		'orders', q{SELECT status FROM orders WHERE gid = 'p7-failing-confirm'}),
	'pending',
	'6: the order is still pending');
is(inventory_row($participant),
	'100|0|' . (2 * grep { $_ eq 'confirmed' } values %purchase),
	'6: while failed: total 100, nothing frozen, the inventory sold');

# fix the cause, then retry
$participant->safe_psql('orders',
	'ALTER TABLE orders DROP CONSTRAINT no_completion');
is($coord->safe_psql('postgres', q{SELECT tcc.retry('p7-failing-confirm')}),
	'confirming', '6: tcc.retry resumes confirming');
check_invariants('6', %ends);
is( $coord->safe_psql(
		'postgres', q{
SELECT t.failed_phase IS NULL, b.status, b.attempts
  FROM tcc.transactions t JOIN tcc.branches b USING (gid)
 WHERE gid = 'p7-failing-confirm' AND b.branch_id = 'ord'}),
	't|confirmed|1',
	'6: no failed phase left; the retry reset the attempts, one more sufficed');

$coord->safe_psql('postgres',
	'ALTER SYSTEM RESET tcc.max_attempts; SELECT pg_reload_conf();');

# a last purchase after all that
purchase('p8-confirmed', 'confirmed');
check_invariants('6, one more purchase', %ends);

# ------------------------------------------------------------ 7. tcc.worker

is( $coord->safe_psql(
		'postgres', q{
SELECT count(*),
       bool_and(pid IN (SELECT pid FROM pg_stat_activity
                         WHERE backend_type = 'tcc worker'
                           AND datname = 'postgres')),
       bool_and(state IN ('idle', 'working')),
       bool_and(calls_succeeded > 0),
       bool_and(calls_failed > 0),
       bool_and(open_connections >= 1)
  FROM tcc.worker WHERE datname = 'postgres'}),
	'1|t|t|t|t|t',
	'7: tcc.worker shows the coordinator database\'s worker at work');

$coord->stop;
$participant->stop;
done_testing();
