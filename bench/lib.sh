# shellcheck shell=bash
# Shared by the benchmarks in bench/ (sourced, not run, after `set -euo pipefail` and N=...):
# the repository as working directory, the settings every benchmark takes, the local services,
# the release host and the arithmetic of the result tables.

# Every benchmark runs from the repository root, whatever the caller's directory.
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUNS="${RUNS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
# The benchmarks' Python clients (confluent-kafka, opensearch-py) live in one venv.
VENV="${SLUICE_CACHE:-$HOME/.cache/sluice}/bench-venv"

# ---------------------------------------------------------------- services

# The compose services service_up started, in order (stop_started stops them again).
STARTED=()

# service_up NAME: starts compose/NAME.sh unless its status says it runs (recorded in STARTED),
# then takes its env into this shell.
service_up() {
  if ! bash "compose/$1.sh" status >/dev/null; then
    bash "compose/$1.sh" start
    STARTED+=("$1")
  fi
  eval "$(bash "compose/$1.sh" env)"
}

# use_workdir: WORK, a temporary directory removed on exit, together with what service_up started.
use_workdir() {
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"; stop_started' EXIT
}

# stop_started: stops what service_up started, newest first (for the EXIT trap).
stop_started() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do bash "compose/${STARTED[i]}.sh" stop; done
}

# ---------------------------------------------------------------- the host

# build_plugins: the WASM plugins the chains use, in DIST.
build_plugins() {
  cargo xtask plugins >/dev/null 2>&1
  DIST="$ROOT/guest-plugins/dist"
}

# build_host: the release host, as HOST.
build_host() {
  cargo build --release --quiet -p sluice-host
  HOST="$CARGO_TARGET_DIR/release/host"
}

# generate_to_kafka TOPIC PARTITIONS [SINK_LINE...]: the config of a host that writes N generated
# tweets to TOPIC on $B (created with PARTITIONS partitions); SINK_LINEs go into the Kafka sink.
generate_to_kafka() {
  local topic="$1" partitions="$2"
  shift 2
  cat <<TOML
[pipeline]
batch_size = 1000
[source]
type = "generate"
count = $N
[sinks.k]
type = "kafka"
brokers = "$B"
topic = "$topic"
TOML
  if [[ $# -gt 0 ]]; then printf '%s\n' "$@"; fi
  printf '[sinks.k.create_topic]\npartitions = %s\n' "$partitions"
}

# ---------------------------------------------------------------- arithmetic

now() { date +%s.%N; }
# lines FILE: its line count, 0 while it does not exist yet.
lines() { if [[ -f "$1" ]]; then wc -l <"$1"; else echo 0; fi; }
# rate N SECONDS: N per second, rounded.
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
# elapsed T0 T1: seconds from T0 to T1 (both from now).
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# median: the median of the numbers on stdin, one a line.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# median_of "X Y Z ": the median of space-separated numbers (the runs collected in a string).
median_of() { tr ' ' '\n' <<<"$1" | grep . | median; }

# consume_rate TOML OUT [HOST ARGS...]: records/s of `host run TOML` (writing OUT) from its first
# record written until N are; then it is stopped with SIGINT.
consume_rate() {
  local toml="$1" out="$2" pid t0="" n0=0 t1 n
  shift 2
  "$HOST" run --quiet "$toml" "$@" >/dev/null 2>"$WORK/consume.log" &
  pid=$!
  while :; do
    n=$(lines "$out")
    if [[ -z "$t0" && "$n" -gt 0 ]]; then t0=$(now); n0=$n; fi
    if ((n >= N)); then t1=$(now); break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/consume.log" >&2; exit 1; }
    sleep 0.02
  done
  kill -INT "$pid"; wait "$pid" || true
  rate $((N - n0)) "$(elapsed "$t0" "$t1")"
}
