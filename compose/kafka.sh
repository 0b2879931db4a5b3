#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft mode) for Sluice development and tests.
#
#   compose/kafka.sh start     install if needed, start, wait until a topic can be created
#   compose/kafka.sh stop      SIGTERM, wait, then SIGKILL; no-op when not running
#   compose/kafka.sh status    exit 0 when the broker is running and accepts connections
#   compose/kafka.sh env       print KAFKA_BOOTSTRAP=127.0.0.1:PORT and the secured listeners
#   compose/kafka.sh topics …  run Kafka's topic tool against the broker (e.g. --list)
#
# Besides the plaintext listener the broker has two secured ones, for the security tests:
# SASL_SSL (SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN; user "sluice", a random password) and SSL
# with required client certificates (mutual TLS). Their certificates come from compose/pki.sh
# and name "localhost" only; `env` prints where the CA, client certificate and password are.
# Jars come from Maven Central (no other download), cached outside the repository.
# Environment (all optional):
#   KAFKA_PORT             client listener port            (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port           (default 9093)
#   KAFKA_SASL_SSL_PORT    SASL_SSL listener port          (default 9094)
#   KAFKA_MTLS_PORT        SSL listener requiring a client certificate (default 9095)
#   KAFKA_VERSION          org.apache.kafka:kafka_2.13 version (default 4.4.0)
#   KAFKA_HEAP_OPTS        broker heap                     (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds to wait for readiness   (default 90)
#   KAFKA_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL (default 30)
#   KAFKA_EXTRA_PROPERTIES lines appended to server.properties (later keys win), e.g.
#                          "log.retention.check.interval.ms=1000" for a retention test
#   SLUICE_CACHE           cache root   (default ~/.cache/sluice; jars in kafka/<version>/libs)
#   SLUICE_STATE           state root   (default ~/.local/state/sluice; broker state in kafka/)
#   JAVA                   java binary  (default $JAVA_HOME/bin/java, else java on PATH)
set -euo pipefail
# shellcheck source=compose/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
# log4j2 SLF4J binding; keep it on the log4j version the chosen Kafka depends on.
case "$KAFKA_VERSION" in
  4.4.*) DEFAULT_LOG4J_VERSION=2.25.5 ;;
  *) DEFAULT_LOG4J_VERSION=2.24.3 ;;
esac
KAFKA_LOG4J_VERSION="${KAFKA_LOG4J_VERSION:-$DEFAULT_LOG4J_VERSION}"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-9094}"
KAFKA_MTLS_PORT="${KAFKA_MTLS_PORT:-9095}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

CACHE_DIR="${SLUICE_CACHE:-$HOME/.cache/sluice}/kafka/$KAFKA_VERSION"
LIBS_DIR="$CACHE_DIR/libs"
INSTALLED_MARKER="$CACHE_DIR/.installed"
STATE_DIR="${SLUICE_STATE:-$HOME/.local/state/sluice}/kafka"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/kafka.pid"
SERVER_PROPS="$STATE_DIR/server.properties"
CLIENT_PROPS="$STATE_DIR/client.properties"
CLUSTER_ID_FILE="$STATE_DIR/cluster.id"
HEALTH_TOPIC="__sluice_healthcheck"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
PKI_DIR="$STATE_DIR/pki"
SCRAM_USER=sluice
SCRAM_PASSWORD_FILE="$STATE_DIR/scram.password"
LISTENERS="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT"


java_bin() {
  if [[ -n "${JAVA:-}" ]]; then
    printf '%s\n' "$JAVA"
  elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    printf '%s\n' java
  fi
}

# ---------------------------------------------------------------- install

ensure_installed() { install_once "$CACHE_DIR" 600 "Kafka $KAFKA_VERSION" install_kafka; }

install_kafka() {
  [[ -n "${JAVA:-}${JAVA_HOME:-}" ]] || need_cmd java openjdk-17-jre-headless
  need_cmd mvn maven
  log "installing Apache Kafka $KAFKA_VERSION from Maven Central into $CACHE_DIR"
  local build="$CACHE_DIR/build" start=$SECONDS
  rm -rf "$build" "$LIBS_DIR"
  mkdir -p "$build"
  # Throwaway pom: the broker (kafka_2.13, which brings the storage tool and the
  # log4j2 backend), kafka-tools for TopicCommand (minus Connect's REST runtime,
  # which no CLI tool here needs), and an SLF4J 1.x -> log4j2 binding.
  cat >"$build/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sluice</groupId>
  <artifactId>sluice-kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  if ! (cd "$build" && mvn -B -q dependency:copy-dependencies \
          -DincludeScope=runtime -DoutputDirectory="$build/libs" >"$build/mvn.log" 2>&1); then
    tail -n 40 "$build/mvn.log" >&2 || true
    die "maven could not fetch Kafka $KAFKA_VERSION (log: $build/mvn.log)"
  fi
  [[ -f "$build/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after maven run"
  mv "$build/libs" "$LIBS_DIR"
  rm -rf "$build"
  printf 'kafka_2.13 %s installed %s\n' "$KAFKA_VERSION" "$(date -u +%FT%TZ)" >"$INSTALLED_MARKER"
  log "installed $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1)) in $((SECONDS - start)) s"
}

# Run a Kafka main class from the cached jars (short-lived tool JVM).
run_tool() {
  local main="$1"; shift
  "$(java_bin)" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STATE_DIR/tools-log4j2.properties" \
    -cp "$LIBS_DIR/*" "$main" "$@"
}

# ---------------------------------------------------------------- config

# Kafka's cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && ${#id} -eq 22 ]] && break
  done
  printf '%s\n' "$id"
}

write_config() {
  mkdir -p "$STATE_DIR" "$DATA_DIR" "$LOG_DIR"
  [[ -s "$CLUSTER_ID_FILE" ]] || new_cluster_id >"$CLUSTER_ID_FILE"
  bash "$(dirname "${BASH_SOURCE[0]}")/pki.sh" ensure "$PKI_DIR"
  if [[ ! -s "$SCRAM_PASSWORD_FILE" ]]; then
    (umask 077; printf 'pw-%s\n' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$SCRAM_PASSWORD_FILE")
  fi
  (umask 077; : >"$SERVER_PROPS")
  cat >"$SERVER_PROPS" <<EOF
# Written by compose/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$LISTENERS
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://localhost:$KAFKA_SASL_SSL_PORT,MTLS://localhost:$KAFKA_MTLS_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL
log.dirs=$DATA_DIR

# Secured listeners (tests of the clients' TLS and SASL): certificates for "localhost" only.
ssl.keystore.type=PEM
ssl.keystore.location=$PKI_DIR/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$PKI_DIR/ca.pem
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SCRAM_USER="$(cat "$SCRAM_PASSWORD_FILE")";

# Test-broker settings: one replica everywhere, topics appear on first use.
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small machine: fewer threads, short retention.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
${KAFKA_EXTRA_PROPERTIES:-}
EOF
  cat >"$STATE_DIR/log4j2.properties" <<'EOF'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  cat >"$STATE_DIR/tools-log4j2.properties" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
  cat >"$CLIENT_PROPS" <<'EOF'
request.timeout.ms=10000
default.api.timeout.ms=20000
EOF
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  log "formatting KRaft storage (cluster id $(cat "$CLUSTER_ID_FILE"))"
  run_tool kafka.tools.StorageTool format --ignore-formatted \
    -t "$(cat "$CLUSTER_ID_FILE")" -c "$SERVER_PROPS" >"$LOG_DIR/format.log" 2>&1 \
    || { cat "$LOG_DIR/format.log" >&2; die "storage format failed"; }
}

# ---------------------------------------------------------------- process

# Is PID a live broker JVM started by this script for this state dir?
is_our_broker() {
  local cmdline
  cmdline="$(proc_cmdline "$1")" || return 1
  [[ "$cmdline" == *kafka.Kafka* && "$cmdline" == *"$SERVER_PROPS"* ]]
}

# Print the broker's pid if it is running, else return 1.
broker_pid() { pid_from_file "$PID_FILE" is_our_broker; }

log_tail() {
  show_tail 40 "$LOG_DIR/server.log"
  if [[ -s "$LOG_DIR/kafka.out" ]]; then show_tail 20 "$LOG_DIR/kafka.out"; fi
}

listening() { port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$LOG_DIR/server.log" 2>/dev/null; }

# Wait until the broker accepts connections and a topic can be created via the admin API
# (both within KAFKA_START_TIMEOUT).
wait_ready() {
  local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT)) remaining
  await_ready broker "$pid" is_our_broker "$KAFKA_START_TIMEOUT" 0.5 "broker not listening on $BOOTSTRAP" listening
  while :; do
    remaining=$((deadline - SECONDS))
    ((remaining > 0)) || { log_tail; die "broker on $BOOTSTRAP did not accept a topic create within ${KAFKA_START_TIMEOUT}s"; }
    if timeout "$remaining" bash "${BASH_SOURCE[0]}" __healthcheck >/dev/null 2>"$LOG_DIR/healthcheck.err" 9>&-; then
      return 0
    fi
    is_our_broker "$pid" || { log_tail; die "broker (pid $pid) exited during startup"; }
    sleep 1
  done
}

# The SCRAM credentials of the test user (idempotent; they live in the cluster metadata).
add_scram_user() {
  local pw mechanism
  pw="$(cat "$SCRAM_PASSWORD_FILE")"
  # One mechanism per request: the broker refuses two changes to one user in a request.
  for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do
    run_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$BOOTSTRAP" \
      --command-config "$CLIENT_PROPS" --alter --entity-type users --entity-name "$SCRAM_USER" \
      --add-config "$mechanism=[password=$pw]" >/dev/null \
      || die "could not create the $mechanism credentials of $SCRAM_USER"
  done
}

# Internal: the readiness probe, run by wait_ready in a child bash under `timeout`.
cmd___healthcheck() {
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$CLIENT_PROPS" --create --if-not-exists \
    --topic "$HEALTH_TOPIC" --partitions 1 --replication-factor 1 >/dev/null &&
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$CLIENT_PROPS" --list | grep -x "$HEALTH_TOPIC" >/dev/null
}

cmd_start() {
  mkdir -p "$STATE_DIR"
  lock_state "$STATE_DIR" "$((KAFKA_START_TIMEOUT + 600))"

  local pid t0=$SECONDS
  if pid="$(broker_pid)"; then
    if ! grep -qxF "listeners=$LISTENERS" "$SERVER_PROPS"; then
      die "a broker (pid $pid) from $STATE_DIR is running with other ports ($(grep '^listeners=' "$SERVER_PROPS")); stop it first or use another SLUICE_STATE"
    fi
    if port_open "$KAFKA_PORT"; then
      log "already running (pid $pid) on $BOOTSTRAP"
      return 0
    fi
    log "broker pid $pid is running but $BOOTSTRAP is not reachable yet; waiting"
    wait_ready "$pid"
    add_scram_user
    log "ready on $BOOTSTRAP (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"
  require_free_port "$KAFKA_PORT" KAFKA_PORT
  require_free_port "$KAFKA_CONTROLLER_PORT" KAFKA_CONTROLLER_PORT
  require_free_port "$KAFKA_SASL_SSL_PORT" KAFKA_SASL_SSL_PORT
  require_free_port "$KAFKA_MTLS_PORT" KAFKA_MTLS_PORT

  ensure_installed
  [[ -n "${JAVA:-}${JAVA_HOME:-}" ]] || need_cmd java openjdk-17-jre-headless
  write_config
  format_storage

  [[ -f "$LOG_DIR/server.log" ]] && mv -f "$LOG_DIR/server.log" "$LOG_DIR/server.log.prev"
  log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, state $STATE_DIR)"
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
  setsid "$(java_bin)" $KAFKA_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOG_DIR" \
    -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_PROPS" \
    </dev/null >"$LOG_DIR/kafka.out" 2>&1 8>&- 9>&- &
  pid=$!
  # The lock fds (8, 9) are closed for the JVM, or it would hold the lock for its lifetime.
  # setsid runs java in place (the script's children are not group leaders),
  # so $! is the JVM itself; give exec a moment (0.2 s) before the first check.
  # A broker that never became ready is not left behind.
  await_launch "$pid" 0.2 broker is_our_broker 20 0.5
  add_scram_user
  log "ready on $BOOTSTRAP (pid $pid) after $((SECONDS - t0)) s"
}

cmd_stop() { stop_service broker is_our_broker "$KAFKA_STOP_TIMEOUT"; }

cmd_status() { service_status kafka broker_pid "$BOOTSTRAP not reachable" "$BOOTSTRAP" port_open "$KAFKA_PORT"; }

# The secured listeners' files: KAFKA_SECURE_DIR/pki/{ca,client,other-ca}.pem, client.key,
# scram.password (user "sluice"). The password itself is never printed.
cmd_env() {
  echo "KAFKA_BOOTSTRAP=$BOOTSTRAP"
  echo "KAFKA_SASL_SSL=localhost:$KAFKA_SASL_SSL_PORT"
  echo "KAFKA_MTLS=localhost:$KAFKA_MTLS_PORT"
  echo "KAFKA_SECURE_DIR=$STATE_DIR"
}

cmd_topics() {
  ensure_installed
  [[ -f "$CLIENT_PROPS" ]] || write_config
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$CLIENT_PROPS" "$@"
}

# The subcommands are the cmd_* functions; the usage is lines 2-8 above.
run_subcommand 2,8 "$@"
