# shellcheck shell=bash
# Sourced by dev/stack: turn (install, start, readiness, stop).
#
# Debian's coturn, a real STUN/TURN server, for the direct path's relay-only
# test. It listens on loopback alone and relays between loopback addresses
# (--allow-loopback-peers), so no outside network is involved; long-term
# credentials as a TURN provider hands them out. No TLS/DTLS listener: the
# data channel is DTLS-encrypted end to end whichever way it goes.

turn_install() {
	command -v turnserver >/dev/null && return 0
	apt_install coturn
	# Where systemd runs, Debian's package may start its own coturn on every
	# interface: the stack wants only its loopback one.
	if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
		say "stopping and disabling the coturn system service the package started"
		systemctl disable --now coturn >/dev/null 2>&1 || say "could not stop it: run sudo systemctl disable --now coturn"
	fi
}

turn_ready() { port_open "$TURN_PORT"; }

turn_up() {
	if pid_alive "$TURN_DIR/turn.pid"; then
		say "turn already running on 127.0.0.1:$TURN_PORT"
		return 0
	fi
	if port_open "$TURN_PORT"; then
		die "port $TURN_PORT is taken by another program" "set KIRC_STACK_TURN_PORT to a free port"
	fi
	turn_install
	mkdir -p "$TURN_DIR"
	say "starting turnserver on 127.0.0.1:$TURN_PORT"
	# -n: no configuration file (the package's /etc/turnserver.conf is not
	# ours). Its user database is a file of its own here, not /var/lib/turn.
	turnserver -n --daemon \
		--listening-ip 127.0.0.1 --relay-ip 127.0.0.1 --listening-port "$TURN_PORT" \
		--min-port "$TURN_RELAY_MIN_PORT" --max-port "$TURN_RELAY_MAX_PORT" \
		--lt-cred-mech --user "$TURN_USER:$TURN_PASSWORD" --realm kirc \
		--allow-loopback-peers --no-cli --no-tls --no-dtls --fingerprint \
		--userdb "$TURN_DIR/turndb" --pidfile "$TURN_DIR/turn.pid" \
		--log-file "$TURN_DIR/turn.log" --simple-log --no-stdout-log >/dev/null 2>&1 ||
		die "turnserver did not start" "log: $TURN_DIR/turn.log"
	wait_ready turn "" "$TURN_DIR/turn.log" turn_ready
	say "turn ready"
}

turn_down() {
	stop_pid turn "$TURN_DIR/turn.pid" 30
}
