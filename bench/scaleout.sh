#!/usr/bin/env bash
# Scale-out: 1, 2 and 3 release hosts in one consumer group on one pre-filled 6-partition topic,
# Kafka -> [prune, enrich] -> SINK, medians of RUNS runs, printed as a Markdown table.
# Every run starts K hosts at once on a fresh group and is timed from their start until the
# group has committed all N offsets (bench/wait_committed.py): so it includes start-up and the
# rebalances of the joins. Each host runs the default chain workers (one per core).
# SINKS lists the sinks to measure:
#   file   each host writes to /dev/null: what the hosts alone do
#   es     the Elasticsearch sink as examples/kafka-to-es.toml has it, all hosts into one daily
#          index (tweet id as _id)
#
#   bash bench/scaleout.sh         # N=60000, RUNS=3, SINKS="file es"; KAFKA_BOOTSTRAP, ELASTICSEARCH_URL
# Starts compose/kafka.sh (and compose/elasticsearch.sh for es) when not running.
set -euo pipefail
N="${N:-60000}"
SINKS="${SINKS:-file es}"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

[[ -n "${KAFKA_BOOTSTRAP:-}" ]] || service_up kafka
if [[ " $SINKS " == *" es "* && -z "${ELASTICSEARCH_URL:-}" ]]; then service_up elasticsearch; fi
B="$KAFKA_BOOTSTRAP"
ES="${ELASTICSEARCH_URL:-}"
ES="${ES%/}"
use_workdir
RUN_ID="scaleout-$$-$(date +%s)"
PIDS=()
stop_hosts() {
  local pid
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_hosts; [[ -n "$ES" ]] && curl -s -o /dev/null -XDELETE "$ES/$RUN_ID-*"; bash compose/kafka.sh topics --delete --topic "$RUN_ID" >/dev/null 2>&1 || true; rm -rf "$WORK"; stop_started' EXIT

if ! "$VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q confluent-kafka
fi
build_plugins
build_host

generate_to_kafka "$RUN_ID" 6 'acks = "1"' >"$WORK/fill.toml"
"$HOST" run --quiet "$WORK/fill.toml" 2>"$WORK/fill.log" || { cat "$WORK/fill.log" >&2; exit 1; }

# host_toml GROUP SINK: Kafka -> [prune, enrich] -> SINK, as examples/kafka-to-es.toml
host_toml() {
  cat <<TOML
[pipeline]
chain = ["prune", "enrich"]
batch_size = 1000
[source]
type = "kafka"
brokers = "$B"
topics = ["$RUN_ID"]
group_id = "$1"
start = "earliest"
commit_interval = "500ms"
[source.properties]
"session.timeout.ms" = "6000"
[transforms.prune]
plugin = "$DIST/field_prune.wasm"
config = { deny = ["card", "translations", "data.card", "data.translations", "extended_entities", "*.extended_entities", "user.entities", "*.user.entities"], drop_nulls = true, drop_empty = true, max_depth = 8, max_fields = 900 }
[transforms.enrich]
plugin = "$DIST/enrich.wasm"
config = { keywords = ["bts"] }
TOML
  case $2 in
    file) printf '[sinks.out]\ntype = "file"\npath = "/dev/null"\n' ;;
    es) cat <<TOML
[sinks.es]
type = "elasticsearch"
url = "$ES"
index = "$RUN_ID-%{+YYYYMMdd}"
bulk_max_docs = 500
concurrency = 2
[sinks.es.template]
name = "$RUN_ID"
patterns = ["$RUN_ID-*"]
replicas = 0
total_fields_limit = 2000
unmapped = "store"
TOML
      ;;
  esac
}

declare -A R
declare -a this
for sink in $SINKS; do
  for run in $(seq 1 "$RUNS"); do
    for k in 1 2 3; do
      group="$RUN_ID-$sink-$run-$k"
      host_toml "$group" "$sink" >"$WORK/h.toml"
      t0=$(now)
      for i in $(seq 1 "$k"); do
        "$HOST" run --quiet "$WORK/h.toml" >/dev/null 2>"$WORK/h$i.log" &
        PIDS+=($!)
      done
      "$VENV/bin/python" bench/wait_committed.py "$B" "$group" "$RUN_ID" "$N" 600 >/dev/null \
        || { cat "$WORK/h1.log" >&2; exit 1; }
      t1=$(now)
      stop_hosts
      this[$k]="$(rate "$N" "$(elapsed "$t0" "$t1")")"
      R[${sink}_$k]+="${this[$k]} "
    done
    # Ratios within one run, so a slower or faster moment of the machine cancels out.
    R[${sink}_r2]+="$(ratio "${this[2]}" "${this[1]}") "
    R[${sink}_r3]+="$(ratio "${this[3]}" "${this[1]}") "
  done
done

echo
echo "$N generated tweets in one 6-partition topic, K hosts in one group, Kafka -> [prune, enrich] -> sink,"
echo "timed from the hosts' start to all N committed; median of $RUNS runs on $(nproc) cores (load $(cut -d' ' -f1-3 /proc/loadavg))."
echo
echo "| sink | 1 host | 2 hosts | 3 hosts | 2 vs 1 | 3 vs 1 |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for sink in $SINKS; do
  echo "| $sink | $(median_of "${R[${sink}_1]}") | $(median_of "${R[${sink}_2]}") | $(median_of "${R[${sink}_3]}") | $(median_of "${R[${sink}_r2]}") | $(median_of "${R[${sink}_r3]}") |"
done
echo
for sink in $SINKS; do
  echo "Raw runs ($sink, records/s): 1 host ${R[${sink}_1]}| 2 hosts ${R[${sink}_2]}| 3 hosts ${R[${sink}_3]}"
done
