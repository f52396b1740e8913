# shellcheck shell=bash
# Sourced by dev/stack: postgres (install, start, readiness, stop).

pg_bindir() {
	local dir
	dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$dir" ] && echo "$dir"
}

# Runs a PostgreSQL server program as the owner of the data directory: the
# server refuses to run as root.
as_pg_owner() {
	if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_install() {
	[ -n "$(pg_bindir)" ] || apt_install postgresql
	[ -n "$(pg_bindir)" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql" "run: sudo apt-get install postgresql"
}

pg_ready() { as_pg_owner "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_sql() {
	PGPASSWORD=$PG_PASSWORD "$(pg_bindir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAq "$@"
}

# Commits are durable (each one flushed to disk, as on any managed
# PostgreSQL) unless KIRC_STACK_PG_DURABLE=0, which the test command sets:
# the tests check what kircd does, not the disk. `fsync` can change without a
# restart, so every `up` applies the mode asked for, to a running server too.
pg_apply_durability() {
	local fsync=on
	[ "${KIRC_STACK_PG_DURABLE:-1}" = 0 ] && fsync=off
	pg_sql -c "ALTER SYSTEM SET fsync = $fsync" -c "SELECT pg_reload_conf()" >/dev/null ||
		die "cannot set fsync on postgres" "log: $PG_DIR/postgres.log"
	say "postgres commits: $(pg_durability)"
}

# "durable" or "not flushed (fsync=off)", as the server has it now.
pg_durability() {
	if [ "$(pg_sql -c 'SHOW fsync')" = on ]; then echo durable; else echo "not flushed (fsync=off)"; fi
}

pg_up() {
	pg_install
	local bin
	bin=$(pg_bindir)
	if [ -f "$PG_DIR/data/postmaster.pid" ] && as_pg_owner "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
		say "postgres already running on 127.0.0.1:$PG_PORT"
		pg_apply_durability
		return 0
	fi
	mkdir -p "$PG_DIR"
	if is_root; then chown postgres: "$PG_DIR"; fi
	if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
		say "creating a PostgreSQL cluster in $PG_DIR/data"
		local pwfile=$PG_DIR/pwfile
		printf '%s\n' "$PG_PASSWORD" >"$pwfile"
		if is_root; then chown postgres: "$pwfile"; fi
		as_pg_owner "$bin/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile="$pwfile" \
			--auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
			{ cat "$PG_DIR/initdb.log" >&2; die "initdb failed" "log: $PG_DIR/initdb.log"; }
		rm -f "$pwfile"
	fi
	say "starting postgres on 127.0.0.1:$PG_PORT"
	# The Unix socket goes into the stack folder, not /var/run/postgresql, so
	# that this cluster never collides with a system one. After a crash the
	# server syncs its data directory before recovery: file by file (the
	# default) that took 81 s over the databases a test run leaves, one
	# syncfs per file system takes a moment.
	as_pg_owner "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t "$START_TIMEOUT" \
		-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR -c max_connections=200 -c recovery_init_sync_method=syncfs" start >/dev/null ||
		{ tail -n 30 "$PG_DIR/postgres.log" >&2; die "postgres did not start" "log: $PG_DIR/postgres.log"; }
	wait_ready postgres "" "$PG_DIR/postgres.log" pg_ready
	pg_apply_durability
	say "postgres ready (user $PG_USER, password $PG_PASSWORD; each actor uses a database of its own)"
}

pg_down() {
	local bin
	bin=$(pg_bindir) || true
	if [ -n "$bin" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
		say "stopping postgres"
		as_pg_owner "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null || die "postgres did not stop" "log: $PG_DIR/postgres.log"
	else
		say "postgres not running"
	fi
}

# Drops the databases test runs left (the test kit names them kirc_test_*).
pg_prune_tests() {
	pg_ready || die "postgres is not running" "run: dev/stack up postgres"
	local bin names name
	bin=$(pg_bindir)
	names=$(PGPASSWORD=$PG_PASSWORD "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
		"SELECT datname FROM pg_database WHERE datname LIKE 'kirc\\_test\\_%'") || die "cannot query postgres"
	[ -n "$names" ] || return 0
	say "dropping $(wc -l <<<"$names") databases left by test runs"
	while read -r name; do
		PGPASSWORD=$PG_PASSWORD "$bin/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" --force "$name" ||
			die "dropdb $name failed"
	done <<<"$names"
}

pg_createdb() {
	local name=$1 bin
	[[ $name =~ ^[a-z_][a-z0-9_]*$ ]] || die "database names here are lower-case letters, digits and _"
	pg_ready || die "postgres is not running" "run: dev/stack up postgres"
	bin=$(pg_bindir)
	local exists
	exists=$(PGPASSWORD=$PG_PASSWORD "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = '$name'") || die "cannot query postgres" "log: $PG_DIR/postgres.log"
	if [ "$exists" = 1 ]; then
		say "database $name exists"
	else
		PGPASSWORD=$PG_PASSWORD "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$name" || die "createdb $name failed"
		say "created database $name"
	fi
}
