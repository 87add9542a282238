# shellcheck shell=bash
# scripts/lib.sh: shell functions shared by scripts/demo and scripts/test.
#
# Source it from bash:  . "$(dirname "$0")/lib.sh"
#
# Everything here works both as root (clusters then run as the "postgres" OS
# user, because initdb and postgres refuse to run as root) and as an ordinary
# user with sudo (clusters run as that user; sudo is used only to install
# packages and the extension).  Only Debian 12 packages are used.
#
#   tcc_ensure_packages              install PostgreSQL 15 & co. if missing
#   tcc_pg_user                      the OS user that runs clusters
#   tcc_as_pg CMD...                 run CMD as that user, $TCC_PGBIN first in PATH
#   tcc_build_install SRC_DIR        make && make install, quiet, no warnings
#   tcc_workdir NAME                 a fresh temp dir owned by the pg user
#   tcc_start_cluster DIR PORT [CONF_LINE...]
#                                    initdb DIR/data (unless already there),
#                                    start with tcc preloaded, log in DIR/log
#   tcc_stop_cluster DIR             stop it (no error if not running)
#   tcc_psql DIR PORT DB [ARGS...]   psql to that cluster as the pg user

export TCC_PGBIN=/usr/lib/postgresql/15/bin
export PG_CONFIG=$TCC_PGBIN/pg_config

# the packages tcc needs to build, run and test
TCC_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-client-15
	libipc-run-perl make gcc)

# tcc__die MSG: print an error to stderr and fail
tcc__die() {
	echo "tcc: $*" >&2
	return 1
}

# tcc__root CMD...: run CMD as root: directly when we are root, else by sudo
tcc__root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		tcc__die "need root for: $* (run as root, or install sudo)"
	fi
}

# tcc__installed PKG: true when the Debian package PKG is installed
tcc__installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'
}

# tcc_ensure_packages: install whatever of TCC_PACKAGES is missing.  Runs
# apt-get update (once) only when something is missing.  No Debian default
# cluster is created for a fresh install: the scripts never use one.
tcc_ensure_packages() {
	local p missing=() log rc=0 nomain=/etc/postgresql-common/createcluster.d/00-tcc-no-main-cluster.conf
	for p in "${TCC_PACKAGES[@]}"; do
		tcc__installed "$p" || missing+=("$p")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		command -v apt-get >/dev/null 2>&1 ||
			{ tcc__die "apt-get not found: install ${missing[*]} by hand"; return 1; }
		echo "tcc: installing ${missing[*]} (apt-get, a few minutes)" >&2
		log=$(mktemp "${TMPDIR:-/tmp}/tcc-apt.XXXXXX")
		# postgresql-common would create and start a cluster "15/main" on
		# port 5432 that nothing here uses; ask it not to, for this install
		if ! tcc__installed postgresql-common; then
			tcc__root mkdir -p "$(dirname "$nomain")" &&
				echo 'create_main_cluster = false' |
				tcc__root tee "$nomain" >/dev/null || rc=$?
		fi
		if [ "$rc" -eq 0 ]; then
			{
				tcc__root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
					tcc__root env DEBIAN_FRONTEND=noninteractive \
						apt-get install -y -q --no-install-recommends \
						-o Dpkg::Use-Pty=0 "${missing[@]}"
			} </dev/null >"$log" 2>&1 || rc=$?
		fi
		[ -f "$nomain" ] && tcc__root rm -f "$nomain"
		if [ "$rc" -ne 0 ]; then
			tail -n 50 "$log" >&2
			rm -f "$log"
			tcc__die "package installation failed: ${missing[*]}"
			return 1
		fi
		rm -f "$log"
	fi
	if [ ! -x "$PG_CONFIG" ] || [ ! -x "$TCC_PGBIN/initdb" ]; then
		tcc__die "PostgreSQL 15 not found in $TCC_PGBIN"
		return 1
	fi
	# the pg user must exist (postgresql-common creates "postgres")
	id -u "$(tcc_pg_user)" >/dev/null 2>&1 ||
		{ tcc__die "OS user $(tcc_pg_user) does not exist"; return 1; }
}

# tcc_pg_user: the unprivileged OS user that runs clusters
tcc_pg_user() {
	if [ "$(id -u)" -eq 0 ]; then
		echo postgres
	else
		id -un
	fi
}

# tcc_as_pg CMD...: run CMD as the pg user with $TCC_PGBIN first in PATH.
# As root, a current directory the pg user cannot enter is replaced by /
# (absolute paths in CMD work either way).
tcc_as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		# shellcheck disable=SC2016
		runuser -u postgres -- /bin/sh -c \
			'cd "$1" 2>/dev/null || cd /; shift; exec "$@"' sh "$PWD" \
			env PATH="$TCC_PGBIN:$PATH" "$@"
	else
		env PATH="$TCC_PGBIN:$PATH" "$@"
	fi
}

# tcc_build_install SRC_DIR: build the extension in SRC_DIR and install it.
# Quiet when it works; prints the build log and fails on an error or on any
# compiler warning (the build must be warning-free).
tcc_build_install() {
	local src=${1:?usage: tcc_build_install SRC_DIR} log rc=0
	log=$(mktemp "${TMPDIR:-/tmp}/tcc-build.XXXXXX")
	make -C "$src" PG_CONFIG="$PG_CONFIG" >"$log" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ] && grep -qi 'warning:' "$log"; then
		echo "tcc: the build emitted warnings:" >&2
		rc=1
	fi
	if [ "$rc" -eq 0 ]; then
		tcc__root make -C "$src" PG_CONFIG="$PG_CONFIG" install >>"$log" 2>&1 || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		cat "$log" >&2
		rm -f "$log"
		tcc__die "build or install in $src failed"
		return 1
	fi
	rm -f "$log"
}

# tcc_workdir NAME: create a fresh directory under ${TMPDIR:-/tmp}, owned by
# the pg user, and print its path
tcc_workdir() {
	local name=${1:?usage: tcc_workdir NAME} base=${TMPDIR:-/tmp} dir
	# as root, the pg user must be able to reach the directory
	if [ "$(id -u)" -eq 0 ] &&
		! runuser -u postgres -- test -x "$base" 2>/dev/null; then
		base=/tmp
	fi
	dir=$(mktemp -d "$base/$name.XXXXXX") || return 1
	chmod 755 "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		chown "$(tcc_pg_user):" "$dir" || return 1
	fi
	echo "$dir"
}

# tcc_start_cluster DIR PORT [CONF_LINE...]: create a cluster in DIR/data
# (skipped when DIR/data already holds one: then it is just started again,
# with the settings it was created with), listening on 127.0.0.1:PORT and on
# a socket in DIR, with tcc preloaded and each CONF_LINE appended to
# postgresql.conf; start it (unless it is running), logging to DIR/log.
# Fails, with the log's tail, if it does not start.
tcc_start_cluster() {
	local dir=${1:?usage: tcc_start_cluster DIR PORT [CONF_LINE...]}
	local port=${2:?usage: tcc_start_cluster DIR PORT [CONF_LINE...]}
	local line out
	shift 2
	dir=$(cd "$dir" && pwd) || return 1
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		if ! out=$(tcc_as_pg initdb -D "$dir/data" -A trust --no-sync \
			-E UTF8 --locale=C.UTF-8 -U "$(tcc_pg_user)" 2>&1); then
			echo "$out" >&2
			tcc__die "initdb in $dir/data failed"
			return 1
		fi
		{
			echo
			echo "# added by tcc_start_cluster"
			echo "shared_preload_libraries = 'tcc'"
			echo "port = $port"
			echo "listen_addresses = '127.0.0.1'"
			echo "unix_socket_directories = '$dir'"
			for line in "$@"; do
				echo "$line"
			done
		} | tcc_as_pg tee -a "$dir/data/postgresql.conf" >/dev/null || return 1
	fi
	# already running: nothing to do
	tcc_as_pg pg_ctl -D "$dir/data" status >/dev/null 2>&1 && return 0
	if ! tcc_as_pg pg_ctl -D "$dir/data" -l "$dir/log" -w -t 60 start \
		>/dev/null 2>&1; then
		echo "---- tail of $dir/log" >&2
		tail -n 30 "$dir/log" >&2 2>/dev/null
		tcc__die "the cluster in $dir/data (port $port) did not start"
		return 1
	fi
}

# tcc_stop_cluster DIR: stop the cluster in DIR/data if it is running
tcc_stop_cluster() {
	local dir=${1:?usage: tcc_stop_cluster DIR}
	[ -f "$dir/data/postmaster.pid" ] || return 0
	tcc_as_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# tcc_psql DIR PORT DB [ARGS...]: psql (stopping at the first error) to the
# cluster of DIR as the pg user
tcc_psql() {
	local dir=${1:?usage: tcc_psql DIR PORT DB [ARGS...]}
	local port=${2:?usage: tcc_psql DIR PORT DB [ARGS...]}
	local db=${3:?usage: tcc_psql DIR PORT DB [ARGS...]}
	shift 3
	tcc_as_pg psql -X -v ON_ERROR_STOP=1 -h "$dir" -p "$port" \
		-U "$(tcc_pg_user)" -d "$db" "$@"
}
