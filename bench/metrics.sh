#!/usr/bin/env bash
# What the metrics endpoint costs: the same pipeline run with and without `--metrics`, while a
# scraper reads /metrics every 200 ms (Prometheus' usual interval is 15 s: this is 75 times
# harsher), in RUNS paired runs (off then on, alternating), as a Markdown table of medians.
#   chain: generate -> [bts, prune, enrich] -> file (the bundled pipeline.toml's chain)
#   kafka: Kafka source -> [prune, enrich] -> file, from a topic of N generated tweets
#
#   bash bench/metrics.sh          # N=100000 records, RUNS=5; KAFKA_BOOTSTRAP for another broker
# Starts compose/kafka.sh if no broker is given (and stops it again if it started it).
set -euo pipefail
N="${N:-100000}"
RUNS="${RUNS:-5}"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

[[ -n "${KAFKA_BOOTSTRAP:-}" ]] || service_up kafka
B="$KAFKA_BOOTSTRAP"
use_workdir

build_plugins
build_host
RUN_ID="bench-metrics-$$-$(date +%s)"
PORT=$((20000 + RANDOM % 20000))

# The chain of the bundled pipeline.toml, its source count set to N, its output in WORK.
chain_toml() {
  sed -e "s|^count = .*|count = $N|" \
    -e "s|guest-plugins/dist|$DIST|" \
    -e "s|out/bts-tweets.ndjson|$WORK/chain-out.ndjson|" \
    -e "s|out/dead-letter.ndjson|$WORK/chain-dead.ndjson|" pipeline.toml >"$WORK/chain.toml"
}

# kafka_toml GROUP: the topic -> [prune, enrich] -> file, ending after N records.
kafka_toml() {
  cat >"$WORK/kafka.toml" <<TOML
[pipeline]
chain = ["prune", "enrich"]
batch_size = 1000
queue_batches = 8
[source]
type = "kafka"
brokers = "$B"
topics = ["$RUN_ID"]
group_id = "$1"
[transforms.prune]
plugin = "$DIST/field_prune.wasm"
config = { deny = ["card", "translations", "data.card", "data.translations"], drop_nulls = true }
[transforms.enrich]
plugin = "$DIST/enrich.wasm"
[sinks.f]
type = "file"
path = "$WORK/kafka-out.ndjson"
TOML
}

# scrape_while PID: GET /metrics every 200 ms while PID runs; prints how many answered.
scrape_while() {
  local n=0
  while kill -0 "$1" 2>/dev/null; do
    curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null && n=$((n + 1))
    sleep 0.2
  done
  echo "$n"
}

# chain_rate on|off: records/s of the generate pipeline (its own summary).
chain_rate() {
  local args=(run --quiet --json-summary "$WORK/chain.toml") pid scraper
  [[ "$1" == on ]] && args+=(--metrics "127.0.0.1:$PORT")
  rm -f "$WORK"/chain-*.ndjson
  "$HOST" "${args[@]}" >"$WORK/summary.json" 2>"$WORK/chain.log" &
  pid=$!
  [[ "$1" == on ]] && { scrape_while "$pid" >"$WORK/scrapes" & scraper=$!; }
  wait "$pid" || { cat "$WORK/chain.log" >&2; exit 1; }
  # (A file, not a variable: this runs in a command substitution's subshell.)
  [[ "$1" == on ]] && { wait "$scraper"; printf '%s ' "$(cat "$WORK/scrapes")" >>"$WORK/scrape-counts"; }
  sed -E 's/.*"records_per_second":([0-9.]+).*/\1/' "$WORK/summary.json" | cut -d. -f1
}

# kafka_rate on|off GROUP: records/s of the consuming host from its first record out to the last.
kafka_rate() {
  local extra=() scraper=""
  kafka_toml "$2"
  rm -f "$WORK/kafka-out.ndjson"
  if [[ "$1" == on ]]; then
    extra=(--metrics "127.0.0.1:$PORT")
    scrape_while $$ >/dev/null & # until killed: the bench's own shell outlives the host
    scraper=$!
  fi
  consume_rate "$WORK/kafka.toml" "$WORK/kafka-out.ndjson" "${extra[@]}"
  [[ -z "$scraper" ]] || kill "$scraper"
}

chain_toml
generate_to_kafka "$RUN_ID" 3 >"$WORK/produce.toml"
"$HOST" run --quiet "$WORK/produce.toml" 2>/dev/null

declare -A R
for run in $(seq 1 "$RUNS"); do
  # Alternate which goes first, so drift on a shared machine hits both sides alike.
  order=(off on)
  ((run % 2 == 0)) && order=(on off)
  for m in "${order[@]}"; do
    c=$(chain_rate "$m")
    k=$(kafka_rate "$m" "$RUN_ID-$run-$m")
    R[chain_$m]+="$c "
    R[kafka_$m]+="$k "
  done
done

# Median of the per-run ratios on / off.
ratios() {
  local on=(${R[${1}_on]}) off=(${R[${1}_off]}) i out=""
  for i in "${!on[@]}"; do out+="$(ratio "${on[$i]}" "${off[$i]}") "; done
  median_of "$out"
}
med() { median_of "${R[$1]}"; }
echo
echo "Metrics endpoint on vs off, $N records, scraped every 200 ms when on (median $(median_of "$(cat "$WORK/scrape-counts")") scrapes of the chain's runs), medians of $RUNS paired runs ($(nproc) cores)."
echo
echo "| pipeline | off, records/s | on, records/s | on / off (median of paired ratios) |"
echo "| --- | ---: | ---: | ---: |"
echo "| generate -> [bts, prune, enrich] -> file | $(med chain_off) | $(med chain_on) | $(ratios chain) |"
echo "| Kafka -> [prune, enrich] -> file | $(med kafka_off) | $(med kafka_on) | $(ratios kafka) |"
