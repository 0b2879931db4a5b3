#!/usr/bin/env bash
# Kafka -> chain -> Elasticsearch documents/s, medians of 3 runs, printed as a Markdown table:
#   ceiling: the same documents (generated tweets after [prune, enrich], as NDJSON) POSTed as
#            prebuilt `_bulk` bodies by bench/es_ceiling.py (500 docs, 2 in flight);
#   sluice:  release host, Kafka source -> [prune, enrich] -> Elasticsearch sink (500 docs per
#            bulk, 2 in flight, pipeline batch 2000), as examples/kafka-to-es.toml;
#   python:  bench/es_consumer.py, confluent-kafka + opensearch-py helpers.bulk (json.loads,
#            drop the top-level deny fields, add @timestamp: no WASM chain).
# sluice and python read the same pre-filled 3-partition topic, each with its own group, and are
# timed from process start until `_count` (after `_refresh`) reaches N; the ceiling from its
# first request until the last bulk is acknowledged. All indices share one template
# (1 shard, 0 replicas, field limit 2000), all traffic is on loopback.
#
#   bash bench/es.sh               # N=50000 tweets, RUNS=3; KAFKA_BOOTSTRAP, ELASTICSEARCH_URL
# Starts compose/kafka.sh and compose/elasticsearch.sh when they are not running (and stops
# only what it started). The Python venv lives in ${SLUICE_CACHE:-~/.cache/sluice}/bench-venv.
set -euo pipefail
N="${N:-50000}"
TIMEOUT="${TIMEOUT:-600}" # seconds one path may take before the run is abandoned
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || { echo "bench/es.sh: needs curl" >&2; exit 1; }
WORK="$(mktemp -d)"
RUN_ID="esbench-$$-$(date +%s)"
ES="" B=""
bg=""
T_START="" T_FIRST=""
cleanup() {
  if [[ -n "$bg" ]]; then kill "$bg" 2>/dev/null || true; wait "$bg" 2>/dev/null || true; fi
  if [[ -n "$ES" ]]; then
    for i in "${INDICES[@]}"; do curl -s -o /dev/null -XDELETE "$ES/$i" || true; done
    curl -s -o /dev/null -XDELETE "$ES/_index_template/$RUN_ID" || true
  fi
  if [[ -n "$B" ]]; then
    bash compose/kafka.sh topics --delete --topic "$RUN_ID" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  stop_started
}
INDICES=()
trap cleanup EXIT

[[ -n "${KAFKA_BOOTSTRAP:-}" ]] || service_up kafka
[[ -n "${ELASTICSEARCH_URL:-}" ]] || service_up elasticsearch
B="$KAFKA_BOOTSTRAP"
ES="${ELASTICSEARCH_URL%/}"

# The Python consumer's venv (opensearch-py: elasticsearch-py >= 7.14 refuses OpenSearch).
if ! "$VENV/bin/python" -c 'import confluent_kafka, opensearchpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q confluent-kafka opensearch-py
fi

build_plugins
build_host
TOPIC="$RUN_ID"

CHAIN_TOML="[transforms.prune]
plugin = \"$DIST/field_prune.wasm\"
timeout = \"200ms\"
memory = \"64MiB\"
config = { deny = [\"card\", \"translations\", \"data.card\", \"data.translations\", \"extended_entities\", \"*.extended_entities\", \"user.entities\", \"*.user.entities\", \"includes.media\", \"includes.places\"], drop_nulls = true, drop_empty = true, max_depth = 8, max_fields = 900 }
[transforms.enrich]
plugin = \"$DIST/enrich.wasm\"
timeout = \"200ms\"
memory = \"32MiB\"
config = { keywords = [\"bts\", \"방탄소년단\"] }"

# The topic: N generated tweets, keyed by tweet id, 3 partitions.
generate_to_kafka "$TOPIC" 3 'acks = "1"' >"$WORK/fill.toml"
"$HOST" run --quiet "$WORK/fill.toml" 2>"$WORK/fill.log" || { cat "$WORK/fill.log" >&2; exit 1; }

# The ceiling's documents: the same tweets through the same chain, as NDJSON.
cat >"$WORK/docs.toml" <<TOML
[pipeline]
chain = ["prune", "enrich"]
batch_size = 1000
[source]
type = "generate"
count = $N
$CHAIN_TOML
[sinks.f]
type = "file"
path = "$WORK/docs.ndjson"
TOML
"$HOST" run --quiet "$WORK/docs.toml" 2>"$WORK/docs.log" || { cat "$WORK/docs.log" >&2; exit 1; }
[[ $(wc -l <"$WORK/docs.ndjson") -eq $N ]] || { echo "bench/es.sh: chain did not keep all $N tweets" >&2; exit 1; }
DOC_BYTES=$(($(stat -c %s "$WORK/docs.ndjson") / N))

# The template every benchmark index gets (the host creates or updates it at start, too).
curl -sf -o /dev/null -XPUT "$ES/_index_template/$RUN_ID" -H 'content-type: application/json' -d "{
  \"index_patterns\": [\"$RUN_ID-*\"], \"priority\": 200,
  \"template\": {\"settings\": {\"number_of_shards\": 1, \"number_of_replicas\": 0,
    \"index.mapping.total_fields.limit\": 2000}}}"

# sluice_toml RUN: Kafka (own group) -> [prune, enrich] -> Elasticsearch index $RUN_ID-sluice-RUN
sluice_toml() {
  cat >"$WORK/sluice.toml" <<TOML
[pipeline]
chain = ["prune", "enrich"]
batch_size = 2000
batch_timeout = "200ms"
[source]
type = "kafka"
brokers = "$B"
topics = ["$TOPIC"]
group_id = "$RUN_ID-sluice-$1"
start = "earliest"
$CHAIN_TOML
[sinks.es]
type = "elasticsearch"
url = "$ES"
index = "$RUN_ID-sluice-$1"
id_field = "id_str,data.id"
bulk_max_docs = 500
bulk_max_bytes = "5MiB"
concurrency = 2
[sinks.es.template]
name = "$RUN_ID"
patterns = ["$RUN_ID-*"]
priority = 200
replicas = 0
total_fields_limit = 2000
[dead_letter]
type = "file"
path = "$WORK/dead-letter-$1.ndjson"
TOML
}

count() {
  curl -s -o /dev/null -XPOST "$ES/$1/_refresh"
  curl -s "$ES/$1/_count" | sed -nE 's/.*"count":([0-9]+).*/\1/p' | grep . || echo 0
}

# timed INDEX LOG CMD...: starts CMD, polls INDEX's count until N; sets T_START and T_FIRST
# to the docs/s from start and from the first visible document, and T_RSS to CMD's peak
# resident memory in MiB (VmHWM, read before it is stopped; empty if it had exited). Stops CMD
# if still running.
timed() {
  local index="$1" log="$2" t0 tf="" nf=0 t1 n
  shift 2
  INDICES+=("$index")
  t0=$(now)
  "$@" >/dev/null 2>"$log" &
  bg=$!
  while :; do
    n=$(count "$index")
    if [[ -z "$tf" && "$n" -gt 0 ]]; then tf=$(now); nf=$n; fi
    if ((n >= N)); then t1=$(now); break; fi
    if ! kill -0 "$bg" 2>/dev/null; then
      # It exited (the Python consumer does after N): its last bulk may have landed since.
      wait "$bg" || true
      bg=""
      n=$(count "$index")
      if ((n >= N)); then t1=$(now); break; fi
    fi
    if [[ -z "$bg" ]] || (($(elapsed "$t0" "$(now)" | cut -d. -f1) > TIMEOUT)); then
      echo "bench/es.sh: $index reached $n of $N documents" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  T_RSS=""
  if [[ -n "$bg" ]]; then
    T_RSS=$(awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$bg/status" 2>/dev/null || true)
    kill -INT "$bg" 2>/dev/null || true
    wait "$bg" 2>/dev/null || true
    bg=""
  fi
  T_START=$(rate "$N" "$(elapsed "$t0" "$t1")")
  T_FIRST=$(rate $((N - nf)) "$(elapsed "$tf" "$t1")")
}

declare -A R
for run in $(seq 1 "$RUNS"); do
  # (2) Sluice.
  sluice_toml "$run"
  timed "$RUN_ID-sluice-$run" "$WORK/sluice.log" "$HOST" run --quiet "$WORK/sluice.toml"
  R[sluice]+="$T_START "; R[sluice_f]+="$T_FIRST "; R[sluice_rss]+="$T_RSS "
  if [[ -s "$WORK/dead-letter-$run.ndjson" ]]; then echo "bench/es.sh: sluice dead-lettered records" >&2; exit 1; fi

  # (3) The Python consumer.
  timed "$RUN_ID-python-$run" "$WORK/python.log" "$VENV/bin/python" "$ROOT/bench/es_consumer.py" \
    --bootstrap "$B" --topic "$TOPIC" --group "$RUN_ID-python-$run" --url "$ES" \
    --index "$RUN_ID-python-$run" --count "$N"
  R[python]+="$T_START "; R[python_f]+="$T_FIRST "

  # (1) The ceiling: prebuilt _bulk bodies of the chain's output.
  INDICES+=("$RUN_ID-ceiling-$run")
  s=$(python3 bench/es_ceiling.py --url "$ES" --input "$WORK/docs.ndjson" --index "$RUN_ID-ceiling-$run" \
    --bulk 500 --concurrency 2)
  [[ "$s" == *"\"indexed\": $N,"* && "$s" == *'"errors": 0'* ]] || { echo "bench/es.sh: ceiling: $s" >&2; exit 1; }
  R[ceiling]+="$(sed -E 's/.*"docs_per_s": ([0-9]+).*/\1/' <<<"$s") "
  R[ceiling_v]+="$(sed -E 's/.*"visible_docs_per_s": ([0-9]+).*/\1/' <<<"$s") "
done

med() { median_of "${R[$1]}"; }
c=$(med ceiling); cv=$(med ceiling_v); s=$(med sluice); sf=$(med sluice_f); p=$(med python); pf=$(med python_f)
echo
echo "OpenSearch/Elasticsearch at $ES, Kafka at $B; $N generated tweets in a 3-partition topic,"
echo "$DOC_BYTES bytes per indexed document on average; median of $RUNS runs ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))."
echo
echo "| path | docs/s | docs/s from first doc | vs ceiling |"
echo "| --- | ---: | ---: | ---: |"
echo "| ceiling: prebuilt NDJSON -> direct \`_bulk\` (es_ceiling.py, 500 x 2) | $c | $cv (incl. refresh) | 1.00 |"
echo "| sluice: Kafka -> [prune, enrich] -> ES sink (500 x 2) | $s | $sf | $(ratio "$s" "$c") |"
echo "| python: confluent-kafka + opensearch-py helpers.bulk (parse + @timestamp, no chain) | $p | $pf | $(ratio "$p" "$c") |"
echo
echo "sluice / ceiling: $(ratio "$s" "$c"); sluice / python: $(ratio "$s" "$p")."
echo "sluice's peak resident memory (VmHWM) at full speed: $(med sluice_rss) MiB (runs: ${R[sluice_rss]% })."
echo "sluice and python are timed from process start until \`_count\` (polled every 0.1 s after"
echo "\`_refresh\`) reaches $N; the ceiling from its first request until the last bulk is acknowledged."
echo
echo "Raw runs: ceiling ${R[ceiling]}| sluice ${R[sluice]}| python ${R[python]}"
