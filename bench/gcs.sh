#!/usr/bin/env bash
# Kafka -> GCS (-> BigQuery) throughput, medians of RUNS runs, printed as a Markdown table.
# Each run starts a host on a fresh consumer group and times it until every offset is committed,
# which for the GCS sink means the objects holding the records are uploaded (and loaded):
#   file:     Kafka -> file sink (the baseline: the same host and source, a sink that only appends)
#   gcs:      Kafka -> GCS objects (gzip NDJSON, rotated at 8 MB or 2 s)
#   gcs+bq:   Kafka -> GCS objects, each loaded into BigQuery; load latency from the host's log
# The same one-plugin chain in all three (field-prune dropping the v2 entity `end` offsets, which
# bqemulator cannot take as column names), so the differences are the sinks'. Against
# fake-gcs-server and bqemulator on this machine.
#
#   bash bench/gcs.sh        # N=100000; starts compose/{kafka,gcs,bigquery}.sh when not running
#   BQ=0 bash bench/gcs.sh   # without the BigQuery path (bqemulator's loads take minutes)
#   GCS_EXTRA='gzip_level = 1' BQ=0 bash bench/gcs.sh    # extra settings of the GCS sink
set -euo pipefail
N="${N:-100000}"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

# Started when not running, and left running.
for s in kafka gcs bigquery; do service_up "$s"; done
[[ -x "$VENV/bin/python" ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q confluent-kafka; }
B="$KAFKA_BOOTSTRAP"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

build_host
RUN_ID="gcsbench$$"
TOPIC="$RUN_ID"

{
  generate_to_kafka "$TOPIC" 2
  cat <<TOML
[dead_letter]
type = "file"
path = "$WORK/produce.dead"
TOML
} >"$WORK/produce.toml"
"$HOST" run --quiet "$WORK/produce.toml" >/dev/null 2>&1

build_plugins

# consumer_toml NAME GROUP SINK_TOML
consumer_toml() {
  cat >"$WORK/$1.toml" <<TOML
[pipeline]
chain = ["prune"]
batch_size = 1000
batch_timeout = "100ms"
[transforms.prune]
plugin = "$DIST/field_prune.wasm"
config = { deny = ["*.*.*.end", "*.*.*.*.end", "*.*.*.*.*.end"] }
[source]
type = "kafka"
brokers = "$B"
topics = ["$TOPIC"]
group_id = "$2"
start = "earliest"
$3
[dead_letter]
type = "file"
path = "$WORK/$1.dead"
TOML
}

gcs_sink() {
  cat <<TOML
[sinks.lake]
type = "gcs"
endpoint = "$GCS_ENDPOINT"
bucket = "$RUN_ID"
prefix = "$1/"
create_bucket = true
bigquery_names = ${BQ_NAMES:-true}
max_object_bytes = "8MB"
max_object_age = "2s"
${GCS_EXTRA:-}
TOML
}

# time_run NAME: seconds until the group committed N offsets (host log in WORK/NAME.log)
time_run() {
  local group="$RUN_ID-$1"
  RUST_LOG=warn,sluice=info "$HOST" run --quiet "$WORK/$1.toml" >/dev/null 2>"$WORK/$1.log" &
  local pid=$!
  local t
  t=$("$VENV/bin/python" bench/wait_committed.py "$B" "$group" "$TOPIC" "$N" 600)
  kill -INT "$pid"; wait "$pid" || true
  echo "$t"
}

declare -A T
LOAD_PER_100K=()
for run in $(seq 1 "$RUNS"); do
  consumer_toml "file$run" "$RUN_ID-file$run" "[sinks.f]
type = \"file\"
path = \"$WORK/out$run.ndjson\""
  T[file]+="$(time_run "file$run") "
  consumer_toml "gcs$run" "$RUN_ID-gcs$run" "$(gcs_sink "gcs$run")"
  T[gcs]+="$(time_run "gcs$run") "
  [[ "${BQ:-1}" == 0 ]] && continue
  consumer_toml "bq$run" "$RUN_ID-bq$run" "$(gcs_sink "bq$run")
[sinks.lake.bigquery]
endpoint = \"$BIGQUERY_V2_URL\"
project = \"$BIGQUERY_PROJECT\"
dataset = \"bench\"
table = \"t$RUN_ID$run\""
  T[bq]+="$(time_run "bq$run") "
  # "loaded ... rows=R ... elapsed=E" per job -> seconds per 100k rows
  LOAD_PER_100K+=("$(grep -o 'rows=[0-9]* deduplicated=[a-z]* elapsed=[0-9.]*m\?s' "$WORK/bq$run.log" |
    awk -F'[= ]' '{ r += $2; e = $6; if ($6 ~ /ms$/) { sub(/ms$/, "", e); e /= 1000 } else sub(/s$/, "", e); s += e }
                  END { if (r) printf "%.2f", s / r * 100000; else print "nan" }')")
done

tf=$(median_of "${T[file]}"); tg=$(median_of "${T[gcs]}")
echo
echo "N=$N records, medians of $RUNS runs; time until every offset is committed"
echo
echo "| path | seconds | records/s | vs file sink |"
echo "| --- | --- | --- | --- |"
echo "| Kafka -> file (baseline) | $tf | $(rate "$N" "$tf") | 1.00x |"
echo "| Kafka -> GCS objects | $tg | $(rate "$N" "$tg") | $(awk -v a="$tf" -v b="$tg" 'BEGIN { printf "%.2fx", a / b }') |"
[[ "${BQ:-1}" == 0 ]] && exit 0
tb=$(median_of "${T[bq]}")
lat=$(printf '%s\n' "${LOAD_PER_100K[@]}" | median)
echo "| Kafka -> GCS -> BigQuery load | $tb | $(rate "$N" "$tb") | $(awk -v a="$tf" -v b="$tb" 'BEGIN { printf "%.2fx", a / b }') |"
echo
echo "BigQuery load job latency: ${lat}s per 100k rows (median over runs of job seconds / rows)"
