#!/usr/bin/env bash
# CI hook for the testcontainers suite (tests/containers.rs): starts dockerd (installing docker.io
# if needed), builds the service images that are missing or out of date, and prints the
# environment the suite needs as `export` lines, SLUICE_REQUIRE_DOCKER=1 included, so that a
# suite that cannot reach Docker fails instead of skipping. In .ci/run, before the tests:
#
#   docker_env="$(bash compose/docker-ci.sh)"; eval "$docker_env"
#
# (An assignment, so that `set -e` stops CI when this script fails; `eval "$(...)"` alone would
# swallow the failure.)
# Everything it does goes to stderr with timings; only the export lines go to stdout. Cold (no
# images, native caches filled): 4 to 6 minutes here; warm: 2 s. dockerd keeps running afterwards
# (`bash compose/docker.sh stop` stops it; the images stay cached in ~/.cache/sluice/docker).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
t0=$SECONDS
# The host and twitter-sim images from the dev binaries the tests build anyway (compose/docker.sh:
# release by default).
export SLUICE_BUILD_PROFILE="${SLUICE_BUILD_PROFILE:-dev}"
bash "$HERE/docker.sh" start >&2
bash "$HERE/docker.sh" build >&2
bash "$HERE/docker.sh" images >&2
printf 'docker-ci.sh: docker ready in %s s\n' "$((SECONDS - t0))" >&2
bash "$HERE/docker.sh" env | sed 's/^/export /'
echo "export SLUICE_REQUIRE_DOCKER=1"
