#!/usr/bin/env bash
# Start-up: the time from `host run` to the first record in the sink, and the host's peak
# resident memory then, in RUNS paired runs (chain, then no chain), as a Markdown table:
#   chain:    the bundled pipeline.toml (generate -> [bts, prune, enrich] -> file), endless;
#   no chain: generate -> file, the same tweets: what start-up costs without plugins.
# Every timed start is a second start: the plugins come from the compiled-artifact cache,
# warmed by one untimed run first.
#
#   bash bench/startup.sh          # RUNS=7
set -euo pipefail
RUNS="${RUNS:-7}"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
use_workdir
build_plugins
build_host

sed -e 's|^count = .*|count = 0|' -e "s|guest-plugins/dist|$DIST|" \
  -e "s|out/bts-tweets.ndjson|$WORK/out.ndjson|" \
  -e "s|out/dead-letter.ndjson|$WORK/dead.ndjson|" pipeline.toml >"$WORK/chain.toml"
cat >"$WORK/none.toml" <<TOML
[pipeline]
batch_size = 500
[source]
type = "generate"
count = 0
[source.tweets]
seed = 42
[sinks.out]
type = "file"
path = "$WORK/out.ndjson"
TOML

# first TOML: "MS MIB" of one start.
first() {
  python3 bench/runstats.py first-record "$WORK/out.ndjson" -- "$HOST" run --quiet "$1" |
    sed -E 's/.*"first_record_ms": ([0-9.]+), "rss_mib": ([0-9.]+).*/\1 \2/'
}

first "$WORK/chain.toml" >/dev/null # compiles the plugins into the cache
declare -A R
for _ in $(seq 1 "$RUNS"); do
  read -r ms mib < <(first "$WORK/chain.toml")
  R[chain_ms]+="$ms "; R[chain_mib]+="$mib "
  read -r ms mib < <(first "$WORK/none.toml")
  R[none_ms]+="$ms "; R[none_mib]+="$mib "
done
med() { median_of "${R[$1]}"; }
echo
echo "Start-up, medians of $RUNS runs ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)); plugins from the compiled-artifact cache."
echo
echo "| pipeline | first record out | peak RSS then |"
echo "| --- | ---: | ---: |"
echo "| generate -> [bts, prune, enrich] -> file (pipeline.toml) | $(med chain_ms) ms | $(med chain_mib) MiB |"
echo "| generate -> file (no chain) | $(med none_ms) ms | $(med none_mib) MiB |"
echo
echo "Raw runs (ms): chain ${R[chain_ms]}| no chain ${R[none_ms]}"
