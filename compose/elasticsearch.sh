#!/usr/bin/env bash
# Local single-node Elasticsearch-API server for Sluice development and tests.
#
#   compose/elasticsearch.sh [--engine E] start   install if needed, start, wait for health yellow/green
#   compose/elasticsearch.sh stop                 SIGTERM, wait, then SIGKILL; no-op when not running
#   compose/elasticsearch.sh status               exit 0 when the server is running and answers
#   compose/elasticsearch.sh env                  print ELASTICSEARCH_URL=... and ELASTICSEARCH_ENGINE=...
#
# Engines (--engine E or ES_ENGINE=E; the flag may come before or after the command):
#   opensearch  (default) the real OpenSearch server, from Maven Central's integ-test zip
#   noida       noida-db from PyPI: a small Elasticsearch imitation for a fast dev loop; it does
#               NOT enforce index.mapping.total_fields.limit
# Environment (all optional):
#   ES_PORT               HTTP port                                   (default 9200)
#   ES_TRANSPORT_PORT     OpenSearch transport port                   (default 9300)
#   ES_ENGINE             opensearch | noida                          (default opensearch)
#   OPENSEARCH_VERSION    org.opensearch.distribution.integ-test-zip:opensearch version (default 2.19.6)
#   ES_HEAP               OpenSearch heap, -Xms and -Xmx              (default 512m)
#   ES_ALLOW_MMAP         auto | true | false; auto raises vm.max_map_count when root, else turns mmap off
#   ES_START_TIMEOUT      seconds to wait for readiness               (default 120)
#   ES_STOP_TIMEOUT       seconds between SIGTERM and SIGKILL         (default 30)
#   NOIDA_VERSION         noida-db version from PyPI                  (default 0.2.3)
#   SLUICE_CACHE          cache root (default ~/.cache/sluice; opensearch/<version>, noida/<version>)
#   SLUICE_STATE          state root (default ~/.local/state/sluice; server state in elasticsearch/)
#   OPENSEARCH_JAVA_HOME  JDK for OpenSearch (default: JAVA_HOME, else the java on PATH; 3.x needs 21+)
set -euo pipefail
# shellcheck source=compose/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ES_PORT="${ES_PORT:-9200}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300}"
ES_ENGINE="${ES_ENGINE:-opensearch}"
OPENSEARCH_VERSION="${OPENSEARCH_VERSION:-2.19.6}"
ES_HEAP="${ES_HEAP:-512m}"
ES_ALLOW_MMAP="${ES_ALLOW_MMAP:-auto}"
ES_START_TIMEOUT="${ES_START_TIMEOUT:-120}"
ES_STOP_TIMEOUT="${ES_STOP_TIMEOUT:-30}"
NOIDA_VERSION="${NOIDA_VERSION:-0.2.3}"

CACHE_ROOT="${SLUICE_CACHE:-$HOME/.cache/sluice}"
OS_CACHE_DIR="$CACHE_ROOT/opensearch/$OPENSEARCH_VERSION"
OS_HOME="$OS_CACHE_DIR/opensearch-$OPENSEARCH_VERSION"
NOIDA_CACHE_DIR="$CACHE_ROOT/noida/$NOIDA_VERSION"
NOIDA_VENV="$NOIDA_CACHE_DIR/venv"
STATE_DIR="${SLUICE_STATE:-$HOME/.local/state/sluice}/elasticsearch"
CONF_DIR="$STATE_DIR/opensearch-config"
OS_DATA_DIR="$STATE_DIR/opensearch-data"
NOIDA_DATA_DIR="$STATE_DIR/noida-data"
LOG_DIR="$STATE_DIR/logs"
TMP_DIR="$STATE_DIR/tmp"
PID_FILE="$STATE_DIR/server.pid"
ENGINE_FILE="$STATE_DIR/engine"
URL="http://127.0.0.1:$ES_PORT"


# ---------------------------------------------------------------- java

java_major() {
  "$1/bin/java" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p'
}

# A JDK home for OpenSearch: OPENSEARCH_JAVA_HOME, JAVA_HOME, the java on PATH, and, when the
# OpenSearch major needs a newer Java than those (3.x needs 21), the newest JDK under /usr/lib/jvm.
java_home() {
  local want=17 home="" cand major
  [[ "${OPENSEARCH_VERSION%%.*}" -ge 3 ]] && want=21
  if [[ -n "${OPENSEARCH_JAVA_HOME:-}" ]]; then
    printf '%s\n' "$OPENSEARCH_JAVA_HOME"; return 0
  fi
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    home="$JAVA_HOME"
  elif command -v java >/dev/null 2>&1; then
    home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  fi
  if [[ -n "$home" ]] && major="$(java_major "$home")" && [[ "${major:-0}" -ge "$want" ]]; then
    printf '%s\n' "$home"; return 0
  fi
  for cand in /usr/lib/jvm/*/; do
    cand="${cand%/}"
    [[ -x "$cand/bin/java" && ! -L "$cand" ]] || continue
    major="$(java_major "$cand")" || continue
    if [[ "${major:-0}" -ge "$want" ]]; then home="$cand"; want="$major"; fi
  done
  [[ -n "$home" && -x "$home/bin/java" ]] || return 1
  major="$(java_major "$home")"
  [[ "${major:-0}" -ge 17 ]] || return 1
  printf '%s\n' "$home"
}

# ---------------------------------------------------------------- install

ensure_opensearch() { install_once "$OS_CACHE_DIR" 900 "OpenSearch $OPENSEARCH_VERSION" install_opensearch; }

install_opensearch() {
  if [[ -z "${OPENSEARCH_JAVA_HOME:-}${JAVA_HOME:-}" ]] && ! command -v java >/dev/null 2>&1; then
    need_cmd java openjdk-17-jre-headless
  fi
  need_cmd mvn maven
  need_cmd unzip unzip
  local build="$OS_CACHE_DIR/build" start=$SECONDS
  local gav="org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION:zip"
  log "installing OpenSearch $OPENSEARCH_VERSION ($gav) from Maven Central into $OS_CACHE_DIR"
  rm -rf "$build" "$OS_HOME"
  mkdir -p "$build"
  if ! mvn -B -q dependency:copy -Dartifact="$gav" -DoutputDirectory="$build" >"$build/mvn.log" 2>&1; then
    tail -n 30 "$build/mvn.log" >&2 || true
    die "maven could not fetch $gav (log: $build/mvn.log)"
  fi
  unzip -q "$build/opensearch-$OPENSEARCH_VERSION.zip" -d "$build/x" || die "unzip failed"
  [[ -x "$build/x/opensearch-$OPENSEARCH_VERSION/bin/opensearch" ]] || die "bin/opensearch missing in the zip"
  mv "$build/x/opensearch-$OPENSEARCH_VERSION" "$OS_HOME"
  rm -rf "$build"
  printf 'opensearch %s installed %s\n' "$OPENSEARCH_VERSION" "$(date -u +%FT%TZ)" >"$OS_CACHE_DIR/.installed"
  log "installed OpenSearch $OPENSEARCH_VERSION ($(du -sh "$OS_HOME" | cut -f1)) in $((SECONDS - start)) s"
}

noida_bin() {
  "$NOIDA_VENV/bin/python" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))'
}

ensure_noida() { install_once "$NOIDA_CACHE_DIR" 600 noida-db install_noida; }

install_noida() {
  ensure_python_venv
  local start=$SECONDS
  log "installing noida-db==$NOIDA_VERSION from PyPI into $NOIDA_VENV"
  pip_venv "$NOIDA_VENV" "noida-db==$NOIDA_VERSION"
  [[ -x "$(noida_bin)" ]] || die "noida-db binary not found in the wheel"
  printf 'noida-db %s installed %s\n' "$NOIDA_VERSION" "$(date -u +%FT%TZ)" >"$NOIDA_CACHE_DIR/.installed"
  log "installed noida-db in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------- config

# Print "true" or "false" for node.store.allow_mmap.
mmap_setting() {
  local want=262144 cur
  case "$ES_ALLOW_MMAP" in
    true | false) printf '%s\n' "$ES_ALLOW_MMAP"; return 0 ;;
  esac
  cur="$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)"
  if ((cur >= want)); then echo true; return 0; fi
  if [[ "$(id -u)" == 0 ]] && sysctl -q -w "vm.max_map_count=$want" >/dev/null 2>&1; then
    log "raised vm.max_map_count from $cur to $want"
    echo true; return 0
  fi
  log "vm.max_map_count is $cur and cannot be raised: starting with node.store.allow_mmap=false"
  echo false
}

write_opensearch_config() {
  mkdir -p "$CONF_DIR" "$OS_DATA_DIR" "$LOG_DIR" "$TMP_DIR"
  # The distribution's config files (log4j2.properties, ...); opensearch.yml and jvm.options follow.
  cp -R "$OS_HOME/config/." "$CONF_DIR/"
  local security=""
  if [[ -d "$OS_HOME/plugins/opensearch-security" ]]; then
    security="plugins.security.disabled: true"
  fi
  cat >"$CONF_DIR/opensearch.yml" <<EOF
# Written by compose/elasticsearch.sh on every start; edit the script, not this file.
cluster.name: sluice
node.name: sluice-0
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $OS_DATA_DIR
path.logs: $LOG_DIR
node.store.allow_mmap: $(mmap_setting)
action.auto_create_index: true
cluster.routing.allocation.disk.threshold_enabled: false
$security
EOF
  # The distribution's own jvm.options (they differ between 2.x and 3.x), with our heap, absolute
  # log paths, fewer and smaller GC logs, and exit instead of a heap dump on OutOfMemoryError.
  sed -e "s|^-Xms.*|-Xms$ES_HEAP|" -e "s|^-Xmx.*|-Xmx$ES_HEAP|" \
    -e "s|logs/|$LOG_DIR/|g" -e 's|filecount=32,filesize=64m|filecount=2,filesize=16m|' \
    -e '/HeapDumpOnOutOfMemoryError/d' -e '/HeapDumpPath/d' \
    "$OS_HOME/config/jvm.options" >"$CONF_DIR/jvm.options"
  printf '%s\n' '-XX:+ExitOnOutOfMemoryError' >>"$CONF_DIR/jvm.options"
  if [[ "$(id -u)" == 0 ]]; then
    # OpenSearch refuses to run as root, and it asks the kernel through JNA. Dropping to another
    # user does not work with the cache and state under root's 0700 home, so as root JNA is made
    # unavailable instead (-Djna.nosys=true is already set by the launcher): the root check, mlockall
    # and the seccomp filter are then skipped with a warning. Fine for a loopback test server.
    printf '%s\n' '-Djna.noclasspath=true' >>"$CONF_DIR/jvm.options"
  fi
}

# ---------------------------------------------------------------- process

is_our_server() {
  local cmdline
  cmdline="$(proc_cmdline "$1")" || return 1
  [[ ( "$cmdline" == *org.opensearch.bootstrap.OpenSearch* && "$cmdline" == *"$CONF_DIR"* ) ||
     ( "$cmdline" == *noida-db* && "$cmdline" == *"$NOIDA_DATA_DIR"* ) ]]
}

server_pid() { pid_from_file "$PID_FILE" is_our_server; }

running_engine() { cat "$ENGINE_FILE" 2>/dev/null || echo "$ES_ENGINE"; }


log_tail() {
  local f
  for f in "$LOG_DIR/sluice.log" "$LOG_DIR/server.out"; do
    if [[ -s "$f" ]]; then show_tail 40 "$f"; fi
  done
}

healthy() {
  curl -sf --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null |
    grep -Eq '"status" *: *"(green|yellow)"'
}

# pid_alive, not is_our_server: for its first seconds the pid is bin/opensearch (bash), not yet the JVM.
wait_ready() { await_ready server "$1" pid_alive "$ES_START_TIMEOUT" 0.5 "no healthy cluster on $URL" healthy; }

launch_opensearch() {
  local jhome
  ensure_opensearch
  jhome="$(java_home)" || die "no Java 17+ found (set OPENSEARCH_JAVA_HOME)"
  write_opensearch_config
  [[ -f "$LOG_DIR/sluice.log" ]] && mv -f "$LOG_DIR/sluice.log" "$LOG_DIR/sluice.log.prev"
  log "starting OpenSearch $OPENSEARCH_VERSION on $URL (java $jhome, heap $ES_HEAP, state $STATE_DIR)"
  # bin/opensearch ends in exec java, and setsid execs in place, so $! is the JVM.
  # From OPENSEARCH_HOME, where relative paths in jvm.options (3.x: -javaagent:agent/...) point.
  (cd "$OS_HOME" &&
    OPENSEARCH_JAVA_HOME="$jhome" OPENSEARCH_PATH_CONF="$CONF_DIR" OPENSEARCH_TMPDIR="$TMP_DIR" \
    OPENSEARCH_JAVA_OPTS="" \
    exec setsid "$OS_HOME/bin/opensearch" -q \
      </dev/null >"$LOG_DIR/server.out" 2>&1 8>&- 9>&-) &
  LAUNCHED_PID=$!
}

launch_noida() {
  local bin
  ensure_noida
  bin="$(noida_bin)"
  mkdir -p "$NOIDA_DATA_DIR" "$LOG_DIR"
  log "starting noida-db $NOIDA_VERSION on $URL (state $STATE_DIR; field limits NOT enforced)"
  (exec setsid "$bin" start --only elasticsearch --host 127.0.0.1 --elasticsearch-port "$ES_PORT" \
      --data-dir "$NOIDA_DATA_DIR" </dev/null >"$LOG_DIR/server.out" 2>&1 8>&- 9>&-) &
  LAUNCHED_PID=$!
}

cmd_start() {
  case "$ES_ENGINE" in opensearch | noida) ;; *) die "unknown engine '$ES_ENGINE' (opensearch or noida)" ;; esac
  mkdir -p "$STATE_DIR"
  lock_state "$STATE_DIR" "$((ES_START_TIMEOUT + 900))"
  local pid t0=$SECONDS engine
  if pid="$(server_pid)"; then
    engine="$(running_engine)"
    [[ "$engine" == "$ES_ENGINE" ]] || die "$engine (pid $pid) is running from $STATE_DIR, not $ES_ENGINE; stop it first or pass --engine $engine"
    if [[ -f "$STATE_DIR/port" && "$(cat "$STATE_DIR/port")" != "$ES_PORT" ]]; then
      die "$engine (pid $pid) is running on port $(cat "$STATE_DIR/port"); stop it first or use another SLUICE_STATE"
    fi
    if healthy; then log "already running ($engine, pid $pid) on $URL"; return 0; fi
    log "$engine pid $pid is running but not healthy yet; waiting"
    wait_ready "$pid"
    log "ready on $URL (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"
  require_free_port "$ES_PORT" ES_PORT
  if [[ "$ES_ENGINE" == opensearch ]]; then require_free_port "$ES_TRANSPORT_PORT" ES_TRANSPORT_PORT; fi
  need_cmd curl curl
  mkdir -p "$LOG_DIR"
  LAUNCHED_PID=""
  trap 'abort_launch server pid_alive 40 0.5' EXIT
  "launch_$ES_ENGINE"
  pid="$LAUNCHED_PID"
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$ES_ENGINE" >"$ENGINE_FILE"
  printf '%s\n' "$ES_PORT" >"$STATE_DIR/port"
  sleep 0.3
  wait_ready "$pid"
  trap - EXIT
  log "ready on $URL ($ES_ENGINE, pid $pid) after $((SECONDS - t0)) s"
}

cmd_stop() { stop_service "$(running_engine)" is_our_server "$ES_STOP_TIMEOUT"; }

cmd_status() {
  local pid
  if ! pid="$(server_pid)"; then echo "elasticsearch: not running"; return 1; fi
  if ! healthy; then echo "elasticsearch: $(running_engine) pid $pid running but $URL not healthy"; return 1; fi
  echo "elasticsearch: running ($(running_engine), pid $pid) on $URL"
}

cmd_env() {
  local engine="$ES_ENGINE"
  server_pid >/dev/null && engine="$(running_engine)"
  printf 'ELASTICSEARCH_URL=%s\n' "$URL"
  printf 'ELASTICSEARCH_ENGINE=%s\n' "$engine"
}

main() {
  local cmd="" arg
  while [[ $# -gt 0 ]]; do
    arg="$1"; shift
    case "$arg" in
      --engine) [[ $# -gt 0 ]] || die "--engine needs a value"; ES_ENGINE="$1"; shift ;;
      --engine=*) ES_ENGINE="${arg#--engine=}" ;;
      -h | --help | help) print_usage 2,12; return 0 ;;
      *) [[ -z "$cmd" ]] || { print_usage 2,12 >&2; exit 2; }; cmd="$arg" ;;
    esac
  done
  # The subcommands are the cmd_* functions; the usage is lines 2-12 above.
  run_subcommand 2,12 "$cmd"
}

main "$@"
