#!/usr/bin/env bash
# Kafka -> chain -> Elasticsearch documents/s, medians of 3 runs, printed as a Markdown table:
#   ceiling: the same documents (generated tweets after [prune, enrich], as NDJSON) POSTed as
#            prebuilt `_bulk` bodies by bench/es_ceiling.py (500 docs, 2 in flight);
#   sluice:  release host, Kafka source -> [prune, enrich] -> Elasticsearch sink (500 docs per
#            bulk, 2 in flight, pipeline batch 200, each batch written as it comes), as
#            examples/kafka-to-es.toml;
#   python:  bench/es_consumer.py, confluent-kafka + opensearch-py helpers.bulk (json.loads,
#            drop the top-level deny fields, add @timestamp: no WASM chain).
# sluice (with stop_at_end) and python read the same pre-filled 3-partition topic, each with its
# own group, and are timed from process start until they exit with all N acknowledged (then the
# index must count N); the ceiling from its first request until the last bulk is acknowledged.
# The index is never refreshed by force while one runs: that made the engine write a segment
# every poll. Sluice's peak RSS is read too (bench/runstats.py). All indices share one template
# (1 shard, 0 replicas, field limit 2000), all traffic is on loopback.
#
#   bash bench/es.sh               # N=50000 tweets, RUNS=3, BATCH=200, LINGER=0s; KAFKA_BOOTSTRAP,
#                                  # ELASTICSEARCH_URL
# Starts compose/kafka.sh and compose/elasticsearch.sh when they are not running (and stops
# only what it started). The Python venv lives in ${SLUICE_CACHE:-~/.cache/sluice}/bench-venv.
set -euo pipefail
N="${N:-50000}"
BATCH="${BATCH:-200}" # Sluice's pipeline.batch_size
LINGER="${LINGER:-0s}" # the sink's linger (0s: a batch's requests as it comes)
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
  declare -F unpin >/dev/null && unpin
  stop_started
}
INDICES=()
trap cleanup EXIT

[[ -n "${KAFKA_BOOTSTRAP:-}" ]] || service_up kafka
[[ -n "${ELASTICSEARCH_URL:-}" ]] || service_up elasticsearch
B="$KAFKA_BOOTSTRAP"
ES="${ELASTICSEARCH_URL%/}"

# PIN=1 (the default on 2 cores or more): the engine alone on the last core, the broker, this
# script and everything it starts on the others, so the ceiling and Sluice meet the same
# engine and do not take its CPU. Undone at exit. Only the local engine (compose/) is pinned.
LAST_CORE=$(($(nproc) - 1))
PINNED=()
pin() { # pin PID CORES
  taskset -a -cp "$2" "$1" >/dev/null && PINNED+=("$1")
}
unpin() {
  local pid
  for pid in "${PINNED[@]}"; do taskset -a -cp "0-$LAST_CORE" "$pid" >/dev/null 2>&1 || true; done
}
PINNING="nothing pinned"
if [[ "${PIN:-1}" == 1 && $LAST_CORE -ge 1 ]] && command -v taskset >/dev/null; then
  es_pid=$(bash compose/elasticsearch.sh status | sed -nE 's/.*pid ([0-9]+).*/\1/p')
  kafka_pid=$(bash compose/kafka.sh status | sed -nE 's/.*pid ([0-9]+).*/\1/p')
  if [[ -n "$es_pid" ]] && pin "$es_pid" "$LAST_CORE"; then
    [[ -n "$kafka_pid" ]] && pin "$kafka_pid" "0-$((LAST_CORE - 1))"
    taskset -cp "0-$((LAST_CORE - 1))" $$ >/dev/null
    PINNING="the engine pinned to core $LAST_CORE, everything else to cores 0-$((LAST_CORE - 1))"
  fi
fi

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
batch_size = $BATCH
batch_timeout = "200ms"
[source]
type = "kafka"
brokers = "$B"
topics = ["$TOPIC"]
group_id = "$RUN_ID-sluice-$1"
start = "earliest"
stop_at_end = true
$CHAIN_TOML
[sinks.es]
type = "elasticsearch"
url = "$ES"
index = "$RUN_ID-sluice-$1"
id_field = "id_str,data.id"
bulk_max_docs = 500
bulk_max_bytes = "5MiB"
concurrency = 2
linger = "$LINGER"
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

# count INDEX: its documents as searches see them (for the docs/s from the first one). No
# `_refresh`: forcing one every poll made the engine write a segment every 0.1 s while Sluice
# and Python indexed, which the ceiling never paid for.
count() {
  curl -s "$ES/$1/_count" | sed -nE 's/.*"count":([0-9]+).*/\1/p' | grep . || echo 0
}

# timed INDEX LOG CMD...: starts CMD, polls INDEX's count until N; sets T_START and T_FIRST
# to the docs/s from start to its exit and from the first visible document. CMD must exit
# once all N are acknowledged.
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
    if ! kill -0 "$bg" 2>/dev/null; then
      # It exited once every bulk was acknowledged (Sluice at the topic's end, the Python
      # consumer after N): that is its time. Then the index must show all N.
      t1=$(now)
      wait "$bg" || true
      bg=""
      curl -s -o /dev/null -XPOST "$ES/$index/_refresh"
      n=$(count "$index")
      if ((n >= N)); then break; fi
    fi
    if [[ -z "$bg" ]] || (($(elapsed "$t0" "$(now)" | cut -d. -f1) > TIMEOUT)); then
      echo "bench/es.sh: $index reached $n of $N documents" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  [[ -n "$tf" ]] || { tf=$t1; nf=0; }
  T_START=$(rate "$N" "$(elapsed "$t0" "$t1")")
  T_FIRST=$(rate $((N - nf)) "$(elapsed "$tf" "$t1")")
}

declare -A R
for run in $(seq 1 "$RUNS"); do
  # (2) Sluice.
  sluice_toml "$run"
  timed "$RUN_ID-sluice-$run" "$WORK/sluice.log" \
    python3 bench/runstats.py rss "$WORK/rss" -- "$HOST" run --quiet "$WORK/sluice.toml"
  R[sluice]+="$T_START "; R[sluice_f]+="$T_FIRST "; R[sluice_rss]+="$(cat "$WORK/rss") "
  sluice_run=$T_START
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
  ceiling_run=$(sed -E 's/.*"docs_per_s": ([0-9]+).*/\1/' <<<"$s")
  R[ceiling]+="$ceiling_run "
  R[pair]+="$(ratio "$sluice_run" "$ceiling_run") "
  R[ceiling_v]+="$(sed -E 's/.*"visible_docs_per_s": ([0-9]+).*/\1/' <<<"$s") "
done

med() { median_of "${R[$1]}"; }
c=$(med ceiling); cv=$(med ceiling_v); s=$(med sluice); sf=$(med sluice_f); p=$(med python); pf=$(med python_f)
echo
echo "OpenSearch/Elasticsearch at $ES, Kafka at $B; $N generated tweets in a 3-partition topic,"
echo "$DOC_BYTES bytes per indexed document on average; median of $RUNS runs ($((LAST_CORE + 1)) cores, load $(cut -d' ' -f1-3 /proc/loadavg));"
echo "$PINNING."
echo
echo "| path | docs/s | docs/s from first doc | vs ceiling |"
echo "| --- | ---: | ---: | ---: |"
echo "| ceiling: prebuilt NDJSON -> direct \`_bulk\` (es_ceiling.py, 500 x 2) | $c | $cv (incl. refresh) | 1.00 |"
echo "| sluice: Kafka -> [prune, enrich] -> ES sink (500 x 2, pipeline batch $BATCH, linger $LINGER) | $s | $sf | $(ratio "$s" "$c") |"
echo "| python: confluent-kafka + opensearch-py helpers.bulk (parse + @timestamp, no chain) | $p | $pf | $(ratio "$p" "$c") |"
echo
echo "sluice / ceiling: $(ratio "$s" "$c") (medians), $(med pair) run by run (${R[pair]% }); sluice / python: $(ratio "$s" "$p")."
echo "sluice's peak resident memory (VmHWM) at full speed: $(med sluice_rss) MiB (runs: ${R[sluice_rss]% })."
echo "sluice and python are timed from process start until they exit with all $N acknowledged;"
echo "the ceiling from its first request until the last bulk is acknowledged."
echo
echo "Raw runs: ceiling ${R[ceiling]}| sluice ${R[sluice]}| python ${R[python]}"
