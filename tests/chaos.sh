#!/usr/bin/env bash
# The chaos soak (tests/containers/chaos.rs) for as long as you like:
#
#   bash tests/chaos.sh [SECS] [SEED]    # default: 1800 s of tweets, a fresh seed
#
# Starts dockerd and builds the local images when needed (compose/docker-ci.sh), runs the test,
# prints its `chaos:` lines as they come (the seed first, each fault, then the summary: faults,
# tweets checked, duplicates in Kafka and their bound) and keeps the whole output in a log.
# A failure keeps the hosts' logs too (the test names the directory). Exits as the test did.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
export SLUICE_CHAOS_SECS="${1:-1800}"
if [[ -n "${2:-}" ]]; then export SLUICE_CHAOS_SEED="$2"; fi
docker_env="$(bash compose/docker-ci.sh)"
eval "$docker_env"
log="${TMPDIR:-/tmp}/sluice-chaos-$(date +%Y%m%d-%H%M%S).log"
echo "chaos.sh: ${SLUICE_CHAOS_SECS} s of tweets; full output in $log" >&2
set +e
cargo test -p sluice-tests --test containers seed_pipeline_survives_chaos -- --nocapture \
  2>&1 | tee "$log" | grep --line-buffered -E '^chaos|panicked|kept in'
status=${PIPESTATUS[0]}
set -e
echo "chaos.sh: exit $status (log: $log)" >&2
exit "$status"
