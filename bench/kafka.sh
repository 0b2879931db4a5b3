#!/usr/bin/env bash
# Kafka throughput, medians of 3 runs, printed as a Markdown table:
#   produce: generated tweets -> chain -> Kafka sink (release host), beside Debian's kcat
#            producing the same tweets (as an NDJSON file) to the same broker: the ceiling;
#   consume: Kafka source -> chain -> file sink, beside kcat reading the topic to /dev/null.
#            Both join a fresh consumer group, read the topic from the beginning and exit at
#            its end (kcat -G -e; the source's `stop_at_end`), timed from start to exit, and
#            both write to /dev/null (the host's file sink on /dev/null), so neither pays for
#            the page cache and writeback of a few hundred MB on a shared disk.
# Both producers use acks=all and no compression; the host also keys each message by tweet id.
# The consume paths also report their peak resident memory (bench/runstats.py wraps both).
#
#   bash bench/kafka.sh            # N=100000 records; KAFKA_BOOTSTRAP to use another broker
# Starts compose/kafka.sh if no broker is given (and stops it again if it started it).
set -euo pipefail
N="${N:-100000}"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

command -v kcat >/dev/null || { echo "bench/kafka.sh: needs kcat (apt-get install -y kcat)" >&2; exit 1; }
[[ -n "${KAFKA_BOOTSTRAP:-}" ]] || service_up kafka
B="$KAFKA_BOOTSTRAP"
use_workdir

build_plugins
build_host
RUN_ID="bench-$$-$(date +%s)"

# The NDJSON file kcat sends: the same generated tweets the host produces.
cat >"$WORK/gen.toml" <<TOML
[source]
type = "generate"
count = $N
[sinks.f]
type = "file"
path = "$WORK/tweets.ndjson"
TOML
"$HOST" run --quiet "$WORK/gen.toml" 2>/dev/null
BYTES=$(stat -c %s "$WORK/tweets.ndjson")

# produce_toml NAME CHAIN TOPIC: generate -> CHAIN -> kafka
produce_toml() {
  local chain="$2" transforms=""
  local nl=$'\n'
  [[ "$chain" == *enrich* ]] && transforms+="[transforms.enrich]${nl}plugin = \"$DIST/enrich.wasm\"${nl}"
  cat >"$WORK/$1.toml" <<TOML
[pipeline]
chain = [$chain]
batch_size = 1000
queue_batches = 8
[source]
type = "generate"
count = $N
$transforms
[sinks.k]
type = "kafka"
brokers = "$B"
topic = "$3"
acks = "all"
[sinks.k.create_topic]
partitions = 3
TOML
}

# consume_toml NAME TOPIC GROUP OUT CHAIN: kafka -> CHAIN -> file; CHAIN is none, or w1 / wN
# for prune + enrich on 1 / one per core chain workers; batches and queues as by default
consume_toml() {
  local chain='["prune", "enrich"]' workers=1
  [[ "$5" == none ]] && chain='[]'
  [[ "$5" == wN ]] && workers=$(nproc)
  cat >"$WORK/$1.toml" <<TOML
[pipeline]
chain = $chain
workers = $workers
[source]
type = "kafka"
brokers = "$B"
topics = ["$2"]
group_id = "$3"
stop_at_end = true
$([[ "$5" == none ]] || printf '%s\n' "[transforms.prune]" "plugin = \"$DIST/field_prune.wasm\"" \
  'config = { deny = ["card", "translations", "data.card", "data.translations"], drop_nulls = true }' \
  "[transforms.enrich]" "plugin = \"$DIST/enrich.wasm\"")
[sinks.f]
type = "file"
path = "$4"
TOML
}

declare -A R
for run in $(seq 1 "$RUNS"); do
  t="$RUN_ID-$run"
  # kcat producer (the ceiling), same broker, same records.
  t0=$(now)
  kcat -b "$B" -P -t "$t-kcat" -X acks=all -X linger.ms=5 -l "$WORK/tweets.ndjson"
  R[kcat_p]+="$(rate "$N" "$(elapsed "$t0" "$(now)")") "

  for chain in none enrich; do
    if [[ $chain == none ]]; then produce_toml p "" "$t-$chain"; else produce_toml p '"enrich"' "$t-$chain"; fi
    s=$("$HOST" run --quiet --json-summary "$WORK/p.toml" 2>"$WORK/produce.log") || { cat "$WORK/produce.log" >&2; exit 1; }
    R[host_p_$chain]+="$(echo "$s" | sed -E 's/.*"records_per_second":([0-9.]+).*/\1/' | cut -d. -f1) "
  done

  # kcat consumer to /dev/null (the ceiling) and the host: Kafka -> [chain] -> file.
  t0=$(now)
  python3 bench/runstats.py rss "$WORK/rss" -- \
    kcat -b "$B" -G "$t-group-kcat" -X auto.offset.reset=earliest -e -q "$t-none" >/dev/null
  R[rss_kcat]+="$(cat "$WORK/rss") "
  kc_run="$(rate "$N" "$(elapsed "$t0" "$(now)")")"
  R[kcat_c]+="$kc_run "
  for chain in none w1 wN; do
    consume_toml c "$t-none" "$t-group-$chain" /dev/null "$chain"
    t0=$(now)
    s=$(python3 bench/runstats.py rss "$WORK/rss" -- "$HOST" run --quiet --json-summary "$WORK/c.toml" \
      2>"$WORK/consume.log") || { cat "$WORK/consume.log" >&2; exit 1; }
    t1=$(now)
    R[rss_$chain]+="$(cat "$WORK/rss") "
    [[ "$s" == *"\"records_in\":$N,"* ]] || { echo "bench/kafka.sh: not $N records in: $s" >&2; exit 1; }
    hc_run="$(rate "$N" "$(elapsed "$t0" "$t1")")"
    R[host_c_$chain]+="$hc_run "
    R[pair_c_$chain]+="$(ratio "$hc_run" "$kc_run") "
    case $chain in none) hn_run=$hc_run ;; w1) h1_run=$hc_run ;; esac
  done
  R[pair_chain_none]+="$(ratio "$hc_run" "$hn_run") "
  R[pair_wN_w1]+="$(ratio "$hc_run" "$h1_run") "
done

med() { median_of "${R[$1]}"; }
kp=$(med kcat_p); kc=$(med kcat_c)
hpn=$(med host_p_none); hpe=$(med host_p_enrich); hcn=$(med host_c_none); h1=$(med host_c_w1); hN=$(med host_c_wN)
echo
echo "Kafka at $B, $N generated tweets ($((BYTES / N)) bytes each on average), 3-partition topics, median of $RUNS runs ($(nproc) cores)."
echo
echo "| path | records/s | vs kcat | peak RSS |"
echo "| --- | ---: | ---: | ---: |"
echo "| kcat -P: NDJSON file -> Kafka (ceiling) | $kp | 1.00 | |"
echo "| host: generate -> Kafka sink (no chain) | $hpn | $(ratio "$hpn" "$kp") | |"
echo "| host: generate -> [enrich] -> Kafka sink | $hpe | $(ratio "$hpe" "$kp") | |"
echo "| kcat -G -e: Kafka -> /dev/null (ceiling) | $kc | 1.00 | $(med rss_kcat) MiB |"
echo "| host: Kafka source -> file /dev/null (no chain) | $hcn | $(ratio "$hcn" "$kc") | $(med rss_none) MiB |"
echo "| host: Kafka source -> [prune, enrich] -> file /dev/null, 1 chain worker | $h1 | $(ratio "$h1" "$kc") | $(med rss_w1) MiB |"
echo "| host: Kafka source -> [prune, enrich] -> file /dev/null, $(nproc) chain workers | $hN | $(ratio "$hN" "$kc") | $(med rss_wN) MiB |"
echo
echo "Run by run (the median of these pairs): consume vs kcat, no chain $(med pair_c_none) (${R[pair_c_none]% });"
echo "[prune, enrich] on $(nproc) workers vs 1 worker $(med pair_wN_w1) (${R[pair_wN_w1]% });"
echo "[prune, enrich] on $(nproc) workers vs no chain $(med pair_chain_none) (${R[pair_chain_none]% })."
echo "Raw runs: kcat -P ${R[kcat_p]}| none ${R[host_p_none]}| enrich ${R[host_p_enrich]}| kcat -C ${R[kcat_c]}| consume ${R[host_c_none]}| 1 worker ${R[host_c_w1]}| $(nproc) workers ${R[host_c_wN]}"
# The benchmark's topics are not needed any more.
bash compose/kafka.sh topics --delete --topic "$RUN_ID-.*" >/dev/null 2>&1 || true
