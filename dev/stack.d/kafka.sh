# shellcheck shell=bash
# Sourced by dev/stack: kafka (install, start, readiness, stop).

kafka_install() {
	[ -f "$KAFKA_LIB/.complete" ] && return 0
	command -v java >/dev/null || apt_install openjdk-17-jre-headless
	command -v mvn >/dev/null || apt_install maven
	say "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIB"
	local work=$CACHE_DIR/kafka-$KAFKA_VERSION
	mkdir -p "$work"
	# The broker artifact carries no logging backend (the release tarball adds
	# one), so log4j and its slf4j 1.x binding are listed next to it; the admin
	# tools (AclCommand) live in kafka-tools since Kafka 4.
	cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kirc.dev</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
	rm -rf "$KAFKA_LIB"
	if ! mvn -q -B -f "$work/pom.xml" \
		org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB" >"$work/mvn.log" 2>&1; then
		tail -n 20 "$work/mvn.log" >&2
		die "could not resolve Kafka from Maven Central" "log: $work/mvn.log"
	fi
	touch "$KAFKA_LIB/.complete"
}

KAFKA_JAVA=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
	-Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -cp "$KAFKA_LIB/*")
kafka_java() { "${KAFKA_JAVA[@]}" "$@"; }

# The local CA and the broker's certificate (for 127.0.0.1 and localhost), made
# once. ca.pem is what a client's kafka.ca_file points at.
KAFKA_TLS_STORE_PASSWORD=kirc-local-store
kafka_tls() {
	[ -f "$KAFKA_TLS_DIR/broker.p12" ] && return 0
	command -v openssl >/dev/null || apt_install openssl
	say "making the local CA and the broker certificate in $KAFKA_TLS_DIR"
	mkdir -p "$KAFKA_TLS_DIR"
	(
		cd "$KAFKA_TLS_DIR"
		umask 077
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=K-IRC local stack CA" \
			-keyout ca.key -out ca.pem
		openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
		openssl x509 -req -days 3650 -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-extfile broker.ext -out broker.pem
		openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key -certfile ca.pem \
			-passout "pass:$KAFKA_TLS_STORE_PASSWORD" -out broker.p12.tmp
		chmod 0644 ca.pem
		mv broker.p12.tmp broker.p12
	) >"$KAFKA_DIR/logs/tls.log" 2>&1 || { cat "$KAFKA_DIR/logs/tls.log" >&2; die "making the local TLS certificates failed" "log: $KAFKA_DIR/logs/tls.log"; }
}

# Creates (or resets) the SCRAM-SHA-256 user of the SASL_SSL listener (Aiven's
# mechanism). KRaft keeps SCRAM credentials in the metadata log, so this needs
# a running broker.
kafka_scram_user() {
	kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
		--entity-type users --entity-name "$KAFKA_SASL_USER" \
		--add-config "SCRAM-SHA-256=[password=$KAFKA_SASL_PASSWORD]" \
		>"$KAFKA_DIR/logs/scram.log" 2>&1 ||
		{ cat "$KAFKA_DIR/logs/scram.log" >&2; die "creating the SCRAM user $KAFKA_SASL_USER failed" "log: $KAFKA_DIR/logs/scram.log"; }
}

kafka_configure() {
	mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
	kafka_tls
	cat >"$KAFKA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
# DISTANT is plaintext like PLAINTEXT, but tells clients to reconnect to a
# port where only the distance benchmark's delaying relay listens (it forwards
# to the listener's own port), so that every connection a client opens after
# the bootstrap crosses the distance too. Unused otherwise.
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,DISTANT://127.0.0.1:$KAFKA_DISTANT_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,DISTANT://127.0.0.1:$KAFKA_DISTANT_RELAY_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,DISTANT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# The default 128 MiB dedupe buffer is allocated on the heap at start-up.
log.cleaner.dedupe.buffer.size=33554432
# kircd creates its topics itself, as it must on a real cluster.
auto.create.topics.enable=false
# Retention is checked every second (every 5 minutes by default), so that a
# test can give a topic seconds of retention and see records expire.
log.retention.check.interval.ms=1000
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$KAFKA_TLS_STORE_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$KAFKA_TLS_STORE_PASSWORD
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:$KAFKA_SASL_USER
allow.everyone.if.no.acl.found=false
EOF
	cat >"$KAFKA_DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $KAFKA_DIR/logs/server.log
appender.file.filePattern = $KAFKA_DIR/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
EOF
	if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
		local cluster_id
		cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
		kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" \
			-c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/logs/format.log" 2>&1 ||
			{ cat "$KAFKA_DIR/logs/format.log" >&2; die "formatting the Kafka log dir failed" "log: $KAFKA_DIR/logs/format.log"; }
	fi
}

kafka_ready() { port_open "$KAFKA_PORT"; }

# Deletes the topics test runs left (the test kit names them t.<actor>.*,
# the benchmarks' raw baselines bench.raw.*). Tests never delete their own,
# and a broker holding thousands of partitions takes minutes to restart,
# longer than a fault test waits.
kafka_prune_tests() {
	kafka_ready || die "kafka is not running" "run: dev/stack up kafka"
	local tool=(kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT")
	local count
	count=$("${tool[@]}" --list --topic '(t|bench)\..*' | grep -cE '^(t|bench)\.') || true
	[ "$count" -gt 0 ] || return 0
	say "deleting $count topics left by test runs"
	"${tool[@]}" --delete --topic '(t|bench)\..*' >/dev/null || die "could not delete the test topics"
}

kafka_up() {
	if pid_alive "$KAFKA_DIR/kafka.pid"; then
		say "kafka already running on 127.0.0.1:$KAFKA_PORT"
		return 0
	fi
	if port_open "$KAFKA_PORT"; then
		die "port $KAFKA_PORT is taken by another program" "set KIRC_STACK_KAFKA_PORT to a free port"
	fi
	kafka_install
	kafka_configure
	say "starting kafka on 127.0.0.1:$KAFKA_PORT"
	# setsid detaches the broker from this shell's session, so that it outlives
	# the terminal or CI step that started it.
	setsid "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" \
		>"$KAFKA_DIR/logs/stdout.log" 2>&1 </dev/null &
	echo $! >"$KAFKA_DIR/kafka.pid"
	# The client port opens only once the broker is unfenced.
	wait_ready kafka "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/logs/server.log" kafka_ready
	kafka_scram_user
	say "kafka ready (SASL_SSL on 127.0.0.1:$KAFKA_SASL_PORT: user $KAFKA_SASL_USER, CA $KAFKA_TLS_DIR/ca.pem)"
}

kafka_down() {
	stop_pid kafka "$KAFKA_DIR/kafka.pid" 120
}
