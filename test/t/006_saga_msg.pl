# test/t/006_saga_msg.pl: the worker runs saga and msg transactions.
#
# Two clusters, both with tcc preloaded: "coordinator", whose database
# postgres holds the global transactions (and, for the msg scenarios, plays
# the application's own database, with an orders table), and "participant",
# whose database svc is reached through the foreign server svc.  Every step
# on svc is fenced: its action (step_action) runs tcc.fence_try and does
# nothing but return true when the fence says no; its compensation
# (step_undo) runs tcc.fence_cancel.  Each writes what it did to a log table
# with a serial column, so the participant's effects and their order can be
# checked; sequences (not rolled back) count how often each was called.
#
#   1. a three-step saga whose step 2 fails for good (check constraint,
#      23514): step 1 compensated exactly once, step 3 never run, step 2
#      aborted with its error, the transaction cancelled with reason
#      "step 2 failed: ..."; and the same with a step 2 that returns false;
#   2. a step failing twice with a serialization failure (40001), then
#      succeeding: confirmed, 3 attempts, every step once and in order;
#   3. a saga whose step 3 fails for good while step 2's compensation fails
#      twice before succeeding: compensations newest first, each effect once;
#   4. a step that keeps failing with 40001 until tcc.max_attempts (3): the
#      step itself is compensated first (an empty rollback on the
#      participant), then step 1; cancelled;
#   5. a step calling a function that does not exist (42883): the
#      transaction becomes failed (failed_phase confirming); once the
#      function exists, tcc.retry brings it to confirmed;
#   6. msg: begin + add_step + submit inside the application's transaction;
#      a rollback leaves nothing behind and nothing is delivered, a commit is
#      delivered exactly once; a compensation is refused (22023);
#   7. msg across receiver downtime: the step is retried with connection
#      errors (class 08) while the participant is down; when it is back the
#      delivery commits on the participant while a session holds the global
#      transaction's row, so the worker cannot record it; the coordinator is
#      killed with SIGKILL, and after the restart the worker delivers again:
#      the action ran twice, its effect once, the msg is confirmed;
#   8. tcc.wait returns as soon as the saga ends, with tcc.naptime = 5s
#      (woken through its condition variable, not by polling).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use TccTest;
use Test::More;
use Time::HiRes qw(time usleep);

# ------------------------------------------------------------------ set-up

my $participant = tcc_cluster('participant', [ 'tcc.naptime' => '100ms' ]);

$participant->safe_psql('postgres', 'CREATE DATABASE svc');
$participant->safe_psql(
	'svc', q{
CREATE EXTENSION tcc;

-- what the steps did, in order
CREATE TABLE log (
	n		serial PRIMARY KEY,
	gid		text NOT NULL,
	step	text NOT NULL,
	what	text NOT NULL,	-- do, undo, or noop (an empty compensation)
	amount	integer NOT NULL DEFAULT 1
		CONSTRAINT log_amount_check CHECK (amount > 0)
);

-- a deliberately held-up action waits until the gate is open
CREATE TABLE gate (open boolean NOT NULL);
INSERT INTO gate VALUES (true);

-- the forward action of a step; the payload says how it behaves:
--	counter		a sequence counting the calls (survives rollbacks)
--	gate		wait until the gate is open
--	sleep		seconds to sleep first
--	say_no		return false without doing anything
--	amount		the amount logged (not positive: 23514)
--	raise		raise this message (P0001) after doing the work
--	transient	raise 40001 after doing the work, for the first N calls
CREATE FUNCTION step_action(gid text, step text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	calls	bigint;
BEGIN
	IF payload ? 'counter' THEN
		calls := nextval((payload->>'counter')::regclass);
	END IF;
	IF (payload->>'gate')::boolean THEN
		WHILE NOT (SELECT open FROM gate) LOOP
			PERFORM pg_sleep(0.02);
		END LOOP;
	END IF;
	IF payload ? 'sleep' THEN
		PERFORM pg_sleep((payload->>'sleep')::float8);
	END IF;
	IF (payload->>'say_no')::boolean THEN
		RETURN false;
	END IF;
	IF NOT tcc.fence_try(gid, step) THEN
		RETURN true;			-- done before: nothing more to do
	END IF;
	INSERT INTO log (gid, step, what, amount)
	VALUES (gid, step, 'do', coalesce((payload->>'amount')::int, 1));
	IF payload ? 'raise' THEN
		RAISE EXCEPTION '%', payload->>'raise';
	END IF;
	IF calls <= (payload->>'transient')::int THEN
		RAISE EXCEPTION 'could not serialize access (call %)', calls
			USING ERRCODE = 'serialization_failure';
	END IF;
	RETURN true;
END $$;

-- the compensation of a step; the payload says how it behaves:
--	undo_counter	a sequence counting the calls
--	undo_fails		raise (P0001) after doing the work, for the first N calls
CREATE FUNCTION step_undo(gid text, step text, payload jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	calls	bigint;
BEGIN
	IF payload ? 'undo_counter' THEN
		calls := nextval((payload->>'undo_counter')::regclass);
	END IF;
	IF tcc.fence_cancel(gid, step) THEN
		INSERT INTO log (gid, step, what) VALUES (gid, step, 'undo');
	ELSE
		INSERT INTO log (gid, step, what) VALUES (gid, step, 'noop');
	END IF;
	IF calls <= (payload->>'undo_fails')::int THEN
		RAISE EXCEPTION 'compensation not possible yet (call %)', calls;
	END IF;
	RETURN true;
END $$;
});

my $coord = tcc_cluster(
	'coordinator',
	[
		FAST_WORKER,
		'tcc.call_timeout' => '10s',
		'tcc.connect_timeout' => '2s'
	]);
$coord->safe_psql('postgres', 'CREATE EXTENSION tcc');
create_server($coord, $participant, 'svc', 'svc');
# the application's own table, for the msg scenarios
$coord->safe_psql('postgres',
	'CREATE TABLE orders (id integer PRIMARY KEY, gid text NOT NULL)');

# ----------------------------------------------------------------- helpers

my $ACTION = 'SELECT step_action($1, $2, $3)';
my $UNDO = 'SELECT step_undo($1, $2, $3)';

sub quote
{
	my ($s) = @_;
	return 'NULL' unless defined $s;
	$s =~ s/'/''/g;
	return "'$s'";
}

# steps_sql(gid, mode, steps): begin, add_step for each, submit.  A step is
# { id, payload (a hash, encoded by hand: flat, simple values),
#   action (default step_action), undo (default step_undo; undef: none) }
sub steps_sql
{
	my ($gid, $mode, @steps) = @_;
	my $sql = "SELECT tcc.begin('$gid', mode => '$mode');\n";
	foreach my $s (@steps)
	{
		my $action = $s->{action} // $ACTION;
		my $undo = exists $s->{undo} ? $s->{undo} : $UNDO;
		my $payload = $s->{payload} // {};
		my $json = '{'
		  . join(', ',
			map { "\"$_\": " . ($payload->{$_} =~ /^(-?\d+(\.\d+)?|true|false)$/
				  ? $payload->{$_} : "\"$payload->{$_}\"") }
			  sort keys %$payload)
		  . '}';
		$sql .=
		    "SELECT tcc.add_step('$gid', 'svc', "
		  . quote($action) . ', '
		  . quote($undo) . ', '
		  . quote($json)
		  . "::jsonb, '$s->{id}');\n";
	}
	return $sql . "SELECT tcc.submit('$gid');\n";
}

# saga(gid, steps): a saga, begun, assembled and submitted in one transaction
sub saga
{
	my ($gid, @steps) = @_;
	is( $coord->safe_psql('postgres',
			"BEGIN;\n" . steps_sql($gid, 'saga', @steps) . 'COMMIT;'),
		join("\n", $gid, (map { $_->{id} } @steps), 'confirming'),
		"$gid: submitted with " . scalar(@steps) . ' steps');
}

# counter(name): a sequence on the participant counting calls
sub counter
{
	my ($name) = @_;
	$participant->safe_psql('svc', "CREATE SEQUENCE $name");
	return $name;
}

# calls(name): how many times the counter was taken
sub calls
{
	my ($name) = @_;
	return $participant->safe_psql('svc',
		"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM $name");
}

# the participant's log of gid: "step:what,..." in the order it happened
sub log_of
{
	my ($gid) = @_;
	return $participant->safe_psql(
		'svc', qq{
SELECT string_agg(step || ':' || what, ',' ORDER BY n)
  FROM log WHERE gid = '$gid'});
}

# the participant's fence rows of gid: "step:state,..."
sub fences_of
{
	my ($gid) = @_;
	return $participant->safe_psql(
		'svc', qq{
SELECT string_agg(branch_id || ':' || state, ',' ORDER BY branch_id)
  FROM tcc.fence WHERE gid = '$gid'});
}

# wait_for(gid, status): tcc.wait returns status
sub wait_for
{
	my ($gid, $status) = @_;
	is($coord->safe_psql('postgres', "SELECT tcc.wait('$gid', '60 s')"),
		$status, "$gid: tcc.wait returns $status");
}

my $check_error = 'new row for relation "log" violates check constraint '
  . '"log_amount_check"';

# --------------------------------- 1. a step fails for good: compensation

counter('c1_undo1');
counter('c1_act3');
saga(
	'saga-1',
	{ id => '1', payload => { undo_counter => 'c1_undo1' } },
	{ id => '2', payload => { amount => -1 } },
	{ id => '3', payload => { counter => 'c1_act3' } });
wait_for('saga-1', 'cancelled');

is(log_of('saga-1'), '1:do,1:undo',
	'1: step 1 ran and was compensated, step 2 left nothing, step 3 never ran'
);
is(calls('c1_undo1'), '1', '1: step 1\'s compensation was called once');
is(calls('c1_act3'), '0', '1: step 3\'s action was never called');
is(fences_of('saga-1'), '1:cancelled',
	'1: fence: step 1 cancelled, no row for steps 2 and 3');
is(branches_of($coord, 'saga-1'), '1:cancelled,2:aborted,3:skipped',
	'1: steps: 1 cancelled, 2 aborted, 3 skipped');
is( $coord->safe_psql(
		'postgres', q{
SELECT attempts || '|' || last_sqlstate || '|' || last_error
  FROM tcc.branches WHERE gid = 'saga-1' AND branch_id = '2'}),
	"1|23514|$check_error",
	'1: the aborted step keeps its error and SQLSTATE');
is( $coord->safe_psql(
		'postgres', q{
SELECT count(*) FROM tcc.branches
 WHERE gid = 'saga-1' AND branch_id IN ('1', '3') AND last_error IS NOT NULL}),
	'0',
	'1: steps 1 and 3 have no error');
is( $coord->safe_psql(
		'postgres', q{
SELECT status, reason, branches, branches_pending, branches_confirmed,
       branches_cancelled, branches_failed, failed_phase IS NULL,
       last_error, finished_at IS NOT NULL
  FROM tcc.transactions WHERE gid = 'saga-1'}),
	"cancelled|step 2 failed: $check_error|3|0|0|2|1|t|$check_error|t",
	'1: cancelled, reason names step 2 and its error; '
	  . 'tcc.transactions counts one failed step and shows the error');

# the same with a step that says no
saga(
	'saga-1f',
	{ id => '1' },
	{ id => '2', payload => { say_no => 'true' } },
	{ id => '3' });
wait_for('saga-1f', 'cancelled');
is(log_of('saga-1f'), '1:do,1:undo',
	'1f: step 1 ran and was compensated, nothing else happened');
is(fences_of('saga-1f'), '1:cancelled', '1f: fence: step 1 cancelled');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status || ':'
                  || coalesce(last_sqlstate, 'null') || ':'
                  || coalesce(last_error, 'null'), ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = 'saga-1f'}),
	'1:cancelled:null:null,2:aborted:null:the action returned false,'
	  . '3:skipped:null:null',
	'1f: step 2 aborted without a SQLSTATE, 3 skipped');
is( $coord->safe_psql(
		'postgres', q{
SELECT status, reason, branches_failed FROM tcc.transactions
 WHERE gid = 'saga-1f'}),
	'cancelled|step 2 failed: the action returned false|1',
	'1f: cancelled, reason names step 2');

# ---------------------------------- 2. transient errors, then the step works

counter('c2_act2');
saga(
	'saga-2',
	{ id => '1' },
	{ id => '2', payload => { counter => 'c2_act2', transient => 2 } },
	{ id => '3' });
wait_for('saga-2', 'confirmed');
is(log_of('saga-2'), '1:do,2:do,3:do',
	'2: every step ran once, in order');
is(calls('c2_act2'), '3', '2: step 2 was called 3 times');
is(fences_of('saga-2'), '1:tried,2:tried,3:tried',
	'2: fence: every step tried once');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status || ':' || attempts, ','
                  ORDER BY seq)
  FROM tcc.branches WHERE gid = 'saga-2'}),
	'1:confirmed:1,2:confirmed:3,3:confirmed:1',
	'2: every step confirmed; step 2 after 3 attempts');
is( $coord->safe_psql(
		'postgres', q{
SELECT status, reason IS NULL, branches_confirmed, branches_failed
  FROM tcc.transactions WHERE gid = 'saga-2'}),
	'confirmed|t|3|0',
	'2: the saga is confirmed');

# ------------------------------ 3. a compensation that fails for a while

counter('c3_undo1');
counter('c3_undo2');
saga(
	'saga-3',
	{ id => '1', payload => { undo_counter => 'c3_undo1' } },
	{
		id => '2',
		payload => { undo_counter => 'c3_undo2', undo_fails => 2 }
	},
	{ id => '3', payload => { raise => 'out of stock' } });
wait_for('saga-3', 'cancelled');
is(log_of('saga-3'), '1:do,2:do,2:undo,1:undo',
	'3: steps 1 and 2 ran, then were compensated newest first, '
	  . 'each compensation\'s effect once');
is(calls('c3_undo2') . '|' . calls('c3_undo1'),
	'3|1', '3: step 2\'s compensation was called 3 times, step 1\'s once');
is(fences_of('saga-3'), '1:cancelled,2:cancelled',
	'3: fence: steps 1 and 2 cancelled, no row for step 3');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status || ':' || attempts || ':'
                  || coalesce(last_sqlstate, 'null'), ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = 'saga-3'}),
	'1:cancelled:1:null,2:cancelled:3:P0001,3:aborted:1:P0001',
	'3: step 2\'s compensation needed 3 attempts; step 3 aborted with P0001');
is( $coord->safe_psql(
		'postgres', q{
SELECT status, reason, failed_phase IS NULL FROM tcc.transactions
 WHERE gid = 'saga-3'}),
	'cancelled|step 3 failed: out of stock|t',
	'3: cancelled, reason names step 3');

# ------------------------- 4. transient errors until tcc.max_attempts

ok(set_conf($coord, 'tcc.max_attempts', '3', '3'),
	'tcc.max_attempts = 3 is in force');

counter('c4_act2');
counter('c4_undo2');
saga(
	'saga-4',
	{ id => '1' },
	{
		id => '2',
		payload => {
			counter => 'c4_act2',
			transient => 1000,
			undo_counter => 'c4_undo2'
		}
	},
	{ id => '3' });
wait_for('saga-4', 'cancelled');
is(log_of('saga-4'), '1:do,2:noop,1:undo',
	'4: step 2 compensated first (an empty rollback), then step 1');
is(calls('c4_act2') . '|' . calls('c4_undo2'),
	'3|1', '4: step 2 was called 3 times, its compensation once');
is(fences_of('saga-4'), '1:cancelled,2:cancelled_early',
	'4: fence: step 1 cancelled, step 2 cancelled before it ever ran');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status || ':' || attempts, ','
                  ORDER BY seq)
  FROM tcc.branches WHERE gid = 'saga-4'}),
	'1:cancelled:1,2:cancelled:1,3:skipped:0',
	'4: steps 1 and 2 compensated (step 2\'s attempts restarted), 3 skipped');
like(
	$coord->safe_psql(
		'postgres', q{
SELECT status || '|' || reason FROM tcc.transactions WHERE gid = 'saga-4'}),
	qr/^cancelled\|step 2 failed: could not serialize access \(call 3\)$/,
	'4: cancelled, reason names step 2 and its last error');

ok(set_conf($coord, 'tcc.max_attempts', undef, '50'),
	'tcc.max_attempts = 50 is in force');

# ---------------------------- 5. a permanent error, then tcc.retry

saga(
	'saga-5',
	{ id => '1' },
	{ id => '2', action => 'SELECT late_action($1, $2, $3)' },
	{ id => '3' });
wait_for('saga-5', 'failed');
is( $coord->safe_psql(
		'postgres', q{
SELECT status, failed_phase, reason IS NULL, branches_confirmed,
       branches_pending, branches_failed
  FROM tcc.transactions WHERE gid = 'saga-5'}),
	'failed|confirming|t|1|1|1',
	'5: failed in confirming: step 1 confirmed, 2 failed, 3 pending');
like(
	$coord->safe_psql(
		'postgres',
		q{SELECT last_error FROM tcc.transactions WHERE gid = 'saga-5'}),
	qr/^step 2: function late_action\(.*\) does not exist$/,
	'5: the transaction error names the step and the cause');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status || ':' || attempts || ':'
                  || coalesce(last_sqlstate, 'null'), ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = 'saga-5'}),
	'1:confirmed:1:null,2:failed:1:42883,3:registered:0:null',
	'5: step 2 failed at its first attempt with 42883, step 3 not started');
is(log_of('saga-5'), '1:do', '5: only step 1 ran, nothing compensated');

$participant->safe_psql(
	'svc', q{
CREATE FUNCTION late_action(gid text, step text, payload jsonb)
RETURNS boolean LANGUAGE sql AS $$ SELECT step_action(gid, step, payload) $$;
});
is($coord->safe_psql('postgres', q{SELECT tcc.retry('saga-5')}),
	'confirming', '5: tcc.retry resumes confirming');
wait_for('saga-5', 'confirmed');
is(log_of('saga-5'), '1:do,2:do,3:do',
	'5: after the retry steps 2 and 3 ran, in order, step 1 not again');
is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(branch_id || ':' || status, ',' ORDER BY seq),
       bool_and(next_attempt_at IS NULL)
  FROM tcc.branches WHERE gid = 'saga-5'}),
	'1:confirmed,2:confirmed,3:confirmed|t',
	'5: every step confirmed');

# ------------------------------ 6. msg in the application's transaction

counter('c6_rb');
counter('c6_ok');

my $msg_step = { id => 'deliver', undo => undef };

is( $coord->safe_psql(
		'postgres',
		"BEGIN;\nINSERT INTO orders VALUES (1, 'msg-6-rolled-back');\n"
		  . steps_sql('msg-6-rolled-back', 'msg',
			{ %$msg_step, payload => { counter => 'c6_rb' } })
		  . 'ROLLBACK;'),
	"msg-6-rolled-back\ndeliver\nconfirming",
	'6: a msg submitted in a transaction that then rolls back');
is( $coord->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM tcc.transactions
         WHERE gid = 'msg-6-rolled-back')
     + (SELECT count(*) FROM tcc.branches WHERE gid = 'msg-6-rolled-back')
     + (SELECT count(*) FROM orders WHERE id = 1)}),
	'0',
	'6: after the rollback neither the msg nor the business row exists');

is( $coord->safe_psql(
		'postgres',
		"BEGIN;\nINSERT INTO orders VALUES (2, 'msg-6-committed');\n"
		  . steps_sql('msg-6-committed', 'msg',
			{ %$msg_step, payload => { counter => 'c6_ok' } })
		  . 'COMMIT;'),
	"msg-6-committed\ndeliver\nconfirming",
	'6: a msg submitted in a transaction that then commits');
wait_for('msg-6-committed', 'confirmed');
is(log_of('msg-6-committed') . '|' . calls('c6_ok'),
	'deliver:do|1', '6: the committed msg was delivered exactly once');
is(fences_of('msg-6-committed'), 'deliver:tried',
	'6: fence: the committed msg\'s step tried');
is( log_of('msg-6-rolled-back') . '|'
	  . calls('c6_rb') . '|'
	  . fences_of('msg-6-rolled-back'),
	'|0|',
	'6: the rolled back msg was never delivered');
is( $coord->safe_psql(
		'postgres',
		q{SELECT gid FROM orders JOIN tcc.transactions USING (gid)
		   WHERE status = 'confirmed'}),
	'msg-6-committed',
	'6: the business row and its confirmed msg');

my ($ret, $stdout, $stderr) = $coord->psql(
	'postgres', q{
\set VERBOSITY verbose
BEGIN;
SELECT tcc.begin('msg-6-compensated', mode => 'msg');
SELECT tcc.add_step('msg-6-compensated', 'svc', 'SELECT true', 'SELECT true');
COMMIT;
});
like($stderr, qr/ERROR:  22023: /, '6: a msg step with a compensation is refused');
is( $coord->safe_psql(
		'postgres',
		q{SELECT count(*) FROM tcc.transactions WHERE gid = 'msg-6-compensated'}
	),
	'0',
	'6: the refused msg left nothing behind');

# ------------ 7. msg across receiver downtime, delivered twice, effect once

counter('c7');
$participant->safe_psql('svc', 'UPDATE gate SET open = false');
$participant->stop;

is( $coord->safe_psql(
		'postgres',
		"BEGIN;\nINSERT INTO orders VALUES (3, 'msg-7');\n"
		  . steps_sql('msg-7', 'msg',
			{ %$msg_step, payload => { counter => 'c7', gate => 'true' } })
		  . 'COMMIT;'),
	"msg-7\ndeliver\nconfirming",
	'7: a msg committed while the participant is down');
ok( $coord->poll_query_until(
		'postgres', q{
SELECT status = 'confirming' AND attempts > 0 AND last_sqlstate LIKE '08%'
       AND last_error IS NOT NULL
  FROM tcc.branches WHERE gid = 'msg-7'}),
	'7: the step is retried, with a connection error recorded');
is( $coord->safe_psql(
		'postgres', q{
SELECT status, branches_pending, branches_failed FROM tcc.transactions
 WHERE gid = 'msg-7'}),
	'confirming|1|0',
	'7: the msg is still confirming');

# the participant is back; the delivery waits at the gate
$participant->start;
ok( $participant->poll_query_until(
		'svc',
		q{SELECT is_called AND last_value = 1 FROM c7}),
	'7: the delivery reaches the participant once it is back');

# hold the global transaction's row so that the worker cannot record the
# delivery, then let the delivery commit on the participant
my $holder = $coord->background_psql('postgres');
$holder->query_safe(
	q{BEGIN; SELECT status FROM tcc.global_transaction
	           WHERE gid = 'msg-7' FOR UPDATE;});
$participant->safe_psql('svc', 'UPDATE gate SET open = true');
ok( $participant->poll_query_until(
		'svc', q{SELECT count(*) = 1 FROM log WHERE gid = 'msg-7'}),
	'7: the delivery committed on the participant');
# the worker has the answer by now; let it try to record it
ok( $participant->poll_query_until(
		'svc', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE datname = 'svc' AND backend_type = 'client backend'
   AND application_name = 'tcc' AND state = 'active'}),
	'7: the participant has answered');
usleep(300_000);
is( $coord->safe_psql(
		'postgres',
		q{SELECT status FROM tcc.branches WHERE gid = 'msg-7'}),
	'confirming',
	'7: the worker could not record the delivery while the row is held');

kill9_and_restart($coord, '7', sub { eval { $holder->quit; }; });

wait_for('msg-7', 'confirmed');
is(calls('c7'), '2', '7: after the restart the worker delivered again');
is(log_of('msg-7'), 'deliver:do', '7: the effect happened exactly once');
is(fences_of('msg-7'), 'deliver:tried', '7: fence: the step tried once');
is( $coord->safe_psql(
		'postgres', q{
SELECT b.status, t.branches_confirmed, o.id
  FROM tcc.branches b JOIN tcc.transactions t USING (gid)
  JOIN orders o USING (gid) WHERE gid = 'msg-7'}),
	'confirmed|1|3',
	'7: the msg is confirmed, the business row is there');

# ------------------------------ 8. tcc.wait is woken, does not poll

ok(set_conf($coord, 'tcc.naptime', '5s', '5s'),
	'tcc.naptime = 5s is in force');

saga(
	'saga-8',
	{ id => '1', payload => { sleep => 1 } },
	{ id => '2' });
my $t0 = time();
my $waited = $coord->safe_psql(
	'postgres', q{
SELECT tcc.status('saga-8');
SELECT tcc.wait('saga-8', '60 s');});
my $elapsed = time() - $t0;
is($waited, "confirming\nconfirmed",
	'8: tcc.wait, called while the saga runs, returns confirmed');
cmp_ok($elapsed, '<', 3,
	'8: tcc.wait returns well before tcc.naptime (5s) could poll');
note sprintf('tcc.wait took %.2f s', $elapsed);
is(log_of('saga-8'), '1:do,2:do', '8: both steps ran');

ok(set_conf($coord, 'tcc.naptime', undef, '100ms'),
	'tcc.naptime = 100ms is in force');

# ------------------------------------------------------------- all done

is( $coord->safe_psql(
		'postgres', q{
SELECT string_agg(gid || ':' || status, ',' ORDER BY gid COLLATE "C")
  FROM tcc.transactions}),
	'msg-6-committed:confirmed,msg-7:confirmed,saga-1:cancelled,'
	  . 'saga-1f:cancelled,saga-2:confirmed,saga-3:cancelled,'
	  . 'saga-4:cancelled,saga-5:confirmed,saga-8:confirmed',
	'every global transaction ended as expected');
is( $coord->safe_psql(
		'postgres', q{
SELECT count(*) FROM tcc.branches
 WHERE next_attempt_at IS NOT NULL
    OR status NOT IN ('confirmed', 'cancelled', 'aborted', 'skipped')}),
	'0',
	'no step is left to run');

$coord->stop;
$participant->stop;
done_testing();
