# test/t/TccTest.pm: what the TAP suites of tcc share.
#
# Every test/t/*.pl file uses this module (as PostgreSQL's src/test/ssl/t
# suites use SSL::Server) instead of a copy of its own:
#
#   - cluster builders: a cluster with tcc preloaded and given settings, the
#     participant of the reference scenario (doc/design.md, The reference
#     scenario) with its databases loaded from examples/, and tcc_fdw
#     servers with their user mappings;
#   - shared checks: the invariants of the reference scenario, and that
#     every process of a killed server is gone (with the kill and restart
#     around it);
#   - psql helpers: as another role, the SQLSTATE or error of a statement
#     that fails, and a psql of its own in the background;
#   - polling: until a query returns what is expected, or a condition holds.
#
# The suites load it with "use FindBin; use lib $FindBin::RealBin;", so
# that it is found whatever the current directory (make installcheck runs
# prove from the top of the source tree).
package TccTest;

use strict;
use warnings;

use Cwd qw(realpath);
use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  FAST_WORKER
  tcc_cluster
  examples_dir
  check_examples
  reference_participant
  prepend_hba
  create_server
  reference_servers
  set_conf
  check_invariants
  inventory_row
  branches_of
  status_sql
  queue_sql
  join_sorted
  server_processes_gone
  kill9_and_restart
  run_as
  error_of
  sqlstate_of
  start_psql
  poll_until
  polled_is
  polled_confirmed
  wait_until
);

# ------------------------------------------------------- cluster builders

# FAST_WORKER: the settings (name => value) of a worker that does not make
# a test wait: a short naptime and a short retry backoff
use constant FAST_WORKER => (
	'tcc.naptime' => '100ms',
	'tcc.retry_base' => '50ms',
	'tcc.retry_max' => '500ms');

# tcc_cluster(name, [settings], %opt): a new cluster with tcc in
# shared_preload_libraries and the settings (name => value pairs, written
# to postgresql.conf in this order), started.  opt: init => [options of
# init] (such as allows_streaming => 1), env => { variable => value } in
# the environment of the postmaster only.
sub tcc_cluster
{
	my ($name, $settings, %opt) = @_;
	my @pairs = @{ $settings // [] };
	my $conf = "shared_preload_libraries = 'tcc'\n";
	while (my ($setting, $value) = splice(@pairs, 0, 2))
	{
		$conf .= "$setting = '$value'\n";
	}

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(@{ $opt{init} // [] });
	$node->append_conf('postgresql.conf', $conf);
	{
		my %env = %{ $opt{env} // {} };
		local @ENV{ keys %env } = values %env;
		$node->start;
	}
	return $node;
}

# examples_dir(): the examples/ directory of the source tree, which holds
# the reference scenario's participant databases
sub examples_dir
{
	my $dir = dirname(__FILE__) . '/../../examples';
	return -f "$dir/inventory.sql" ? $dir : 'examples';
}

# check_examples(): the assertion that the reference participants are found
sub check_examples
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $dir = examples_dir();
	ok(-f "$dir/inventory.sql" && -f "$dir/orders.sql",
		'the reference participants are found in examples/');
}

# reference_participant([settings[, dbs]]): the cluster "participant", with
# tcc preloaded (settings: by default a naptime of 100ms only) and the
# participant databases dbs (by default inventory and orders), each created
# and loaded from its examples/ file
sub reference_participant
{
	my ($settings, $dbs) = @_;
	my $node = tcc_cluster('participant',
		$settings // [ 'tcc.naptime' => '100ms' ]);
	foreach my $db (@{ $dbs // [ 'inventory', 'orders' ] })
	{
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		$node->safe_psql($db, slurp_file(examples_dir() . "/$db.sql"));
	}
	return $node;
}

# prepend_hba(node, lines): put lines (text, each ending in a newline)
# before the existing ones of node's pg_hba.conf, which take effect at its
# next reload or start
sub prepend_hba
{
	my ($node, $lines) = @_;
	my $hba = $node->data_dir . '/pg_hba.conf';
	my $text = slurp_file($hba);
	open(my $fh, '>', $hba) or die "could not write $hba: $!";
	print $fh $lines . $text;
	close($fh);
}

# create_server(coord, participant, name, dbname, %opt): in coordinator
# database opt{db} (default postgres), the tcc_fdw server name for database
# dbname of participant, and CURRENT_USER's user mapping for it as opt{user}
# (default: the coordinator's current user).  opt{options}: more server
# options, SQL text ("options '-c work_mem=7MB'").
sub create_server
{
	my ($coord, $participant, $name, $dbname, %opt) = @_;
	my $db = $opt{db} // 'postgres';
	my $user = $opt{user} // $coord->safe_psql($db, 'SELECT current_user');
	my $host = $participant->host;
	my $port = $participant->port;
	my $more = defined $opt{options} ? ",\n\t\t\t $opt{options}" : '';
	$coord->safe_psql(
		$db, qq{
CREATE SERVER $name FOREIGN DATA WRAPPER tcc_fdw
	OPTIONS (host '$host', port '$port', dbname '$dbname'$more);
CREATE USER MAPPING FOR CURRENT_USER SERVER $name OPTIONS (user '$user');
});
}

# reference_servers(coord, participant): the extension in the coordinator's
# database postgres, and the servers inventory and orders for the reference
# participant's databases of those names
sub reference_servers
{
	my ($coord, $participant) = @_;
	$coord->safe_psql('postgres', 'CREATE EXTENSION tcc');
	create_server($coord, $participant, $_, $_) for ('inventory', 'orders');
}

# set_conf(node, name, value, shown): ALTER SYSTEM SET name (value undef:
# RESET) and reload; true once new sessions of database postgres SHOW shown
sub set_conf
{
	my ($node, $name, $value, $shown) = @_;
	my $set = defined $value ? "SET $name = '$value'" : "RESET $name";
	$node->safe_psql('postgres', "ALTER SYSTEM $set; SELECT pg_reload_conf();");
	return $node->poll_query_until('postgres', "SHOW $name", $shown);
}

# --------------------------------------------------------- shared checks

# inventory_row(participant): "stock + frozen + sold|frozen|sold" of the
# reference scenario's product
sub inventory_row
{
	my ($participant) = @_;
	return $participant->safe_psql('inventory',
		'SELECT stock + frozen + sold, frozen, sold FROM product WHERE id = 1');
}

# branches_of(coord, gid): "branch_id:status,..." of gid in registration
# order, in the coordinator's database postgres
sub branches_of
{
	my ($coord, $gid) = @_;
	return $coord->safe_psql(
		'postgres', qq{
SELECT string_agg(branch_id || ':' || status, ',' ORDER BY seq)
  FROM tcc.branches WHERE gid = '$gid'});
}

# status_sql(gids...): a query for "gid:status,..." in gid order
sub status_sql
{
	my (@gids) = @_;
	my $list = join(',', map { "'$_'" } @gids);
	return "SELECT string_agg(gid || ':' || status, ',' ORDER BY gid)"
	  . " FROM tcc.transactions WHERE gid IN ($list)";
}

# queue_sql(prefix, n, server): SQL that commits, in one client
# transaction, n global transactions prefix-1 .. prefix-n of two branches,
# a and b, on server (undef: local), whose confirm records its gid and
# branch id in table effect
sub queue_sql
{
	my ($prefix, $n, $server) = @_;
	my $srv = defined $server ? "'$server'" : 'NULL';
	return qq{
DO \$\$
BEGIN
	FOR i IN 1..$n LOOP
		PERFORM tcc.begin('$prefix-' || i);
		PERFORM tcc.register_branch('$prefix-' || i, $srv,
			'INSERT INTO effect VALUES (\$1, \$2)', 'SELECT 1', NULL, 'a');
		PERFORM tcc.register_branch('$prefix-' || i, $srv,
			'INSERT INTO effect VALUES (\$1, \$2)', 'SELECT 1', NULL, 'b');
		PERFORM tcc.commit('$prefix-' || i);
	END LOOP;
END \$\$;
};
}

# join_sorted(hash[, map]): "key:value,..." sorted by key, as ORDER BY
# COLLATE "C" sorts; map (default: none) turns each value into what is shown
sub join_sorted
{
	my ($h, $f) = @_;
	$f //= sub { $_[0] };
	return join(',', map { "$_:" . $f->($h->{$_}) } sort keys %$h);
}

# check_invariants(label, %opt): the invariants of the reference scenario
# (doc/design.md): on the participant stock + frozen + sold = 100, frozen
# = 0 and the expected quantity sold; with a coordinator, after waiting for
# the end of phase two, every status on both sides too.  opt:
#   participant => the cluster with the inventory (and orders) databases
#   sold => the quantity sold; sold_as => how the assertion names it
#     (default: the quantity)
#   coord => the coordinator (database postgres), and the expected ends,
#     either as
#       purchases => { gid => 'confirmed' or 'cancelled' }: each a purchase
#         with branches inv and ord (2 sold if confirmed, its order
#         completed or cancelled, its fence rows in the same state), and
#         others => { gid => status } for the other transactions; every
#         transaction must become confirmed or cancelled (002_phase_two),
#     or as
#       status => { gid => status } of every global transaction, order =>
#         { gid => status } of every order and fence => { db => { gid =>
#         'branch_id:state' } }; a transaction may also end failed, and only
#         the branches of confirmed and cancelled ones are checked
#         (007_try_wait)
sub check_invariants
{
	my ($label, %opt) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($participant, $coord, $purchases) =
	  @opt{qw(participant coord purchases)};

	if ($coord)
	{
		my ($ends, $what) =
		  $purchases
		  ? (q{'confirmed', 'cancelled'}, 'is terminal')
		  : (q{'confirmed', 'cancelled', 'failed'}, 'has ended');
		ok( $coord->poll_query_until(
				'postgres', qq{
SELECT count(*) = 0 FROM tcc.transactions
 WHERE status NOT IN ($ends)}),
			"$label: every global transaction $what");
	}

	my ($sold, $sold_as) = @opt{qw(sold sold_as)};
	if ($purchases)
	{
		my $confirmed = grep { $_ eq 'confirmed' } values %$purchases;
		($sold, $sold_as) = (2 * $confirmed, "2 * $confirmed");
	}
	$sold_as //= $sold;
	is(inventory_row($participant), "100|0|$sold",
		"$label: stock + frozen + sold = 100, frozen = 0, sold = $sold_as");
	return unless $coord;

	my %status =
	  $purchases ? (%$purchases, %{ $opt{others} // {} }) : %{ $opt{status} };
	is( $coord->safe_psql(
			'postgres', q{
SELECT string_agg(gid || ':' || status, ',' ORDER BY gid COLLATE "C")
  FROM tcc.transactions}),
		join_sorted(\%status),
		"$label: every global transaction has its expected status");

	if ($purchases)
	{
		is( $coord->safe_psql(
				'postgres', q{
SELECT count(*) FROM tcc.branches b JOIN tcc.transactions t USING (gid)
 WHERE b.status <> t.status OR b.next_attempt_at IS NOT NULL}),
			'0',
			"$label: every branch is terminal, as its transaction");
	}
	else
	{
		is( $coord->safe_psql(
				'postgres', q{
SELECT count(*) FROM tcc.branches b JOIN tcc.transactions t USING (gid)
 WHERE t.status IN ('confirmed', 'cancelled')
   AND (b.status <> t.status OR b.next_attempt_at IS NOT NULL)}),
			'0',
			"$label: the branches of ended transactions ended as they did");
	}

	my $orders = q{
SELECT string_agg(gid || ':' || status, ',' ORDER BY gid COLLATE "C")
  FROM orders};
	if ($purchases)
	{
		is( $participant->safe_psql('orders', $orders),
			join_sorted(
				$purchases,
				sub { $_[0] eq 'confirmed' ? 'completed' : 'cancelled' }),
			"$label: each order is completed or cancelled as its purchase");
	}
	else
	{
		is( $participant->safe_psql('orders', $orders),
			join_sorted($opt{order}),
			"$label: each order is in its expected status");
	}

	foreach my $db ('inventory', 'orders')
	{
		if ($purchases)
		{
			my $branch = $db eq 'inventory' ? 'inv' : 'ord';
			is( $participant->safe_psql(
					$db, qq{
SELECT string_agg(gid || ':' || state, ',' ORDER BY gid COLLATE "C")
  FROM tcc.fence WHERE branch_id = '$branch'}),
				join_sorted($purchases),
				"$label: $db fence rows are in the final states");
		}
		else
		{
			is( $participant->safe_psql(
					$db, q{
SELECT string_agg(gid || ':' || branch_id || ':' || state, ','
                  ORDER BY gid COLLATE "C")
  FROM tcc.fence}),
				join_sorted($opt{fence}{$db} // {}),
				"$label: $db fence rows are in their expected states");
		}
	}
}

# server_processes_gone(node, pid): true once the postmaster pid has exited
# and been reaped (a new postmaster refuses to start while the pid in
# postmaster.pid exists, even as a zombie) and no process runs in the data
# directory any more (the children of a killed postmaster exit when they
# notice; a new postmaster refuses the old shared memory while one of them
# is attached); false after 3 minutes
sub server_processes_gone
{
	my ($node, $pid) = @_;
	my $datadir = realpath($node->data_dir);
	foreach (1 .. 1800)
	{
		my @left = grep {
			my $cwd = readlink("$_/cwd");
			defined $cwd && $cwd eq $datadir
		} glob('/proc/[0-9]*');
		return 1 unless @left || kill(0, $pid);
		usleep(100_000);
	}
	return 0;
}

# kill9_and_restart(coord, label[, between]): kill the coordinator's
# postmaster with SIGKILL, assert that every process of it has exited, run
# between (say, to collect a session whose server is gone), restart it and
# assert that the restart ran crash recovery
sub kill9_and_restart
{
	my ($coord, $label, $between) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $log_offset = -s $coord->logfile;
	my $pid = $coord->{_pid};
	$coord->kill9;
	ok(server_processes_gone($coord, $pid),
		"$label: every coordinator process has exited");
	$between->() if $between;
	$coord->start;
	ok($coord->log_contains(qr/database system was not properly shut down/,
			$log_offset),
		"$label: the coordinator restarted with crash recovery");
}

# ------------------------------------------------------------ psql helpers

# run_as(node, db, role, sql): safe_psql as role (undef: the superuser)
sub run_as
{
	my ($node, $db, $role, $sql) = @_;
	return $node->safe_psql($db, $sql,
		extra_params => [ defined $role ? ('-U', $role) : () ]);
}

# error_of(node, db, role, sql): (SQLSTATE or 'none', stderr without the
# LOCATION lines) of running sql as role (undef: the superuser), in verbose
# form
sub error_of
{
	my ($node, $db, $role, $sql) = @_;
	my ($stdout, $stderr);
	my $rc = $node->psql(
		$db, $sql,
		stdout => \$stdout,
		stderr => \$stderr,
		extra_params => [
			'-v', 'VERBOSITY=verbose', defined $role ? ('-U', $role) : ()
		]);
	$stderr =~ s/^LOCATION:.*$//mg;
	return ('none', $stderr) if $rc == 0;
	return ($stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : "no SQLSTATE in: $stderr",
		$stderr);
}

# sqlstate_of(node, db, role, sql): the SQLSTATE the statement, run as role
# (undef: the superuser), fails with, or 'none'
sub sqlstate_of
{
	my ($sqlstate) = error_of(@_);
	return $sqlstate;
}

my $psql_dir;

# start_psql(node, db, name, sql[, verbose]): run sql in a psql of its own,
# in the background, under application_name name, stopping at the first
# error (in verbose form, with SQLSTATE, HINT and CONTEXT, if verbose);
# returns the harness and references to its stdout and stderr
sub start_psql
{
	my ($node, $db, $name, $sql, $verbose) = @_;
	my ($out, $err) = ('', '');
	$psql_dir //= PostgreSQL::Test::Utils::tempdir;
	my $file = "$psql_dir/$name.sql";

	# from a file: IPC::Run would feed a string only while pumped
	open(my $fh, '>', $file) or die "could not write $file: $!";
	print $fh $sql;
	close($fh);
	my $h = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq',
			'-v', 'ON_ERROR_STOP=1',
			$verbose ? ('-v', 'VERBOSITY=verbose') : (),
			'-d', $node->connstr($db) . " application_name=$name"
		],
		'<', $file,
		'>', \$out,
		'2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($h, \$out, \$err);
}

# ---------------------------------------------------------------- polling

# poll_until(node, db, sql, expected, seconds): run sql until it returns
# expected; (true, elapsed seconds), or (false, elapsed) after the timeout.
# Errors (a server still starting, or being promoted) count as "not yet".
sub poll_until
{
	my ($node, $db, $sql, $expected, $seconds) = @_;
	my $start = time();
	my $last = '';

	for (;;)
	{
		my ($stdout, $stderr);
		$node->psql($db, $sql, stdout => \$stdout, stderr => \$stderr);
		$last = defined $stdout ? $stdout : '';
		return (1, time() - $start) if $last eq $expected;
		last if time() - $start > $seconds;
		usleep(50_000);
	}
	diag("timed out after ${seconds}s waiting for \"$expected\" from: $sql\n"
		  . "last result: \"$last\"");
	return (0, time() - $start);
}

# polled_is(node, db, sql, expected, seconds, name): the assertion that sql
# comes to return expected within seconds; returns the time it took
sub polled_is
{
	my ($node, $db, $sql, $expected, $seconds, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ok, $elapsed) = poll_until($node, $db, $sql, $expected, $seconds);
	ok($ok, $name);
	return $elapsed;
}

# polled_confirmed(node, db, prefix, n, seconds, name): the assertion that
# the n transactions whose gids start with "prefix-" come to be confirmed
# within seconds; returns the time it took
sub polled_confirmed
{
	my ($node, $db, $prefix, $n, $seconds, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return polled_is(
		$node, $db, qq{
SELECT count(*) FROM tcc.transactions
 WHERE gid LIKE '$prefix-%' AND status = 'confirmed'}, $n, $seconds, $name);
}

# wait_until(cond, seconds): call the sub cond until it returns true;
# (true, elapsed seconds), or (false, elapsed) after seconds
sub wait_until
{
	my ($cond, $seconds) = @_;
	my $start = time();
	until ($cond->())
	{
		return (0, time() - $start) if time() - $start > $seconds;
		usleep(50_000);
	}
	return (1, time() - $start);
}

1;
