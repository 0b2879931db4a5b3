#!/usr/bin/env bash
# Docker engine and offline service images for Sluice's testcontainers suite and docker-compose.yml.
#
#   compose/docker.sh start           install docker.io if missing (root), start dockerd, wait for it
#   compose/docker.sh build [SVC...]  build the images that are missing or out of date (default: all)
#   compose/docker.sh stop            stop the dockerd this script started (and its containers)
#   compose/docker.sh status          exit 0 when our dockerd answers
#   compose/docker.sh env             print DOCKER_HOST=... and SLUICE_IMAGE_*=... for the tests
#   compose/docker.sh images          list the images this script builds, with sizes
#
# No registry is needed. The base image is Debian bookworm from `debootstrap --variant=minbase`
# (plus openjdk-17-jre-headless and python3), imported with `docker import`; the service images
# are built FROM it with the artifacts the native scripts already download (Kafka jars,
# OpenSearch's integ-test zip, fake-gcs-server's binary, bqemulator's venv), so an air-gapped
# machine with those caches (or a Debian mirror plus Maven Central and PyPI) can build them.
# dockerd runs without iptables and without a bridge: containers use host networking.
#
# Services (SVC): base kafka opensearch fake-gcs bigquery twitter-sim host
# Images (all local names; the tests default to the upstream names and take these from `env`):
#   sluice-local/base:bookworm-jre17           ~390 MB, shared by all the others but the host
#   sluice-local/base:bookworm-slim            minbase + ca-certificates, the host's base
#   sluice-local/kafka:$KAFKA_VERSION          Apache Kafka (KRaft), configured like apache/kafka
#   sluice-local/opensearch:$OPENSEARCH_VERSION  configured like opensearchproject/opensearch
#   sluice-local/fake-gcs-server:1.54.0        entrypoint and flags as fsouza/fake-gcs-server
#   sluice-local/bqemulator:$BQEMULATOR_VERSION  bqemulator (DuckDB), REST + gRPC
#   sluice-local/twitter-sim:latest            tests/twitter-sim (release build unless
#                                              SLUICE_BUILD_PROFILE says otherwise)
#   sluice-local/host:latest                   the Sluice host (release build unless SLUICE_BUILD_PROFILE
#                                              says otherwise, PID 1, user sluice),
#                                              guest-plugins/dist in /plugins, the examples in
#                                              /etc/sluice, HEALTHCHECK on /health
# Environment (all optional):
#   SLUICE_DOCKER_DIR   dockerd's socket, data-root, exec-root and log (default ~/.cache/sluice/docker)
#   DEBIAN_MIRROR       mirror for debootstrap (default http://deb.debian.org/debian)
#   DOCKER              docker CLI (default /usr/bin/docker from docker.io, else docker on PATH)
#   DOCKERD_START_TIMEOUT  seconds (default 60)
#   CARGO_TARGET_DIR    where twitter-sim, the host and the plugins are built (default: cargo's)
#   SLUICE_BUILD_PROFILE the cargo profile of the binaries in the images, the host's and
#                       twitter-sim's (default release; CI: dev)
#   KAFKA_VERSION, OPENSEARCH_VERSION, BQEMULATOR_VERSION, FAKE_GCS_WRAPPER_VERSION, SLUICE_CACHE
#                       as for the native scripts (the artifacts are taken from their caches)
set -euo pipefail
# shellcheck source=compose/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CACHE_ROOT="${SLUICE_CACHE:-$HOME/.cache/sluice}"
DDIR="${SLUICE_DOCKER_DIR:-$CACHE_ROOT/docker}"
SOCK="$DDIR/docker.sock"
PID_FILE="$DDIR/docker.pid"
BUILD_DIR="$DDIR/build"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKERD_START_TIMEOUT="${DOCKERD_START_TIMEOUT:-60}"
export DOCKER_HOST="unix://$SOCK"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
OPENSEARCH_VERSION="${OPENSEARCH_VERSION:-2.19.6}"
BQEMULATOR_VERSION="${BQEMULATOR_VERSION:-1.4.0}"
FAKE_GCS_WRAPPER_VERSION="${FAKE_GCS_WRAPPER_VERSION:-0.1.1}"
FAKE_GCS_SERVER_VERSION=1.54.0 # the server inside wrapper 0.1.1

IMG_BASE="sluice-local/base:bookworm-jre17"
IMG_KAFKA="sluice-local/kafka:$KAFKA_VERSION"
IMG_OPENSEARCH="sluice-local/opensearch:$OPENSEARCH_VERSION"
IMG_FAKE_GCS="sluice-local/fake-gcs-server:$FAKE_GCS_SERVER_VERSION"
IMG_BIGQUERY="sluice-local/bqemulator:$BQEMULATOR_VERSION"
IMG_TWITTER_SIM="sluice-local/twitter-sim:latest"
IMG_BASE_SLIM="sluice-local/base:bookworm-slim"
IMG_HOST="sluice-local/host:latest"
ALL_SERVICES=(base kafka opensearch fake-gcs bigquery twitter-sim host)

docker_cli() {
  if [[ -n "${DOCKER:-}" ]]; then "$DOCKER" "$@"
  elif [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"
  else docker "$@"; fi
}

# need_cmd, but for the image builds, which run as root only: no attempt without root.
need_pkg() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  [[ "$(id -u)" == 0 ]] || die "'$cmd' not found; install the Debian package $pkg (as root)"
  log "installing $pkg (for $cmd)"
  apt_get_install "$pkg" || die "apt-get install $pkg failed"
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' still missing after installing $pkg"
}

# ---------------------------------------------------------------- dockerd

is_our_dockerd() {
  local cmdline
  cmdline="$(proc_cmdline "$1")" || return 1
  [[ "$cmdline" == *dockerd* && "$cmdline" == *"$SOCK"* ]]
}

dockerd_pid() { pid_from_file "$PID_FILE" is_our_dockerd; }

answers() { docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1; }

cmd_start() {
  mkdir -p "$DDIR"
  lock_state "$DDIR" 600
  local pid t0=$SECONDS
  if pid="$(dockerd_pid)" && answers; then
    log "dockerd already running (pid $pid) on $SOCK"
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "dockerd must be started as root"
  if ! dpkg -s docker.io >/dev/null 2>&1; then
    log "installing docker.io"
    apt_get_install docker.io || die "apt-get install docker.io failed"
  fi
  command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"
  # OpenSearch in a container wants the host's vm.max_map_count (as compose/elasticsearch.sh).
  if (($(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0) < 262144)); then
    sysctl -q -w vm.max_map_count=262144 >/dev/null 2>&1 || log "could not raise vm.max_map_count"
  fi
  mkdir -p "$DDIR/data" "$DDIR/exec"
  rm -f "$SOCK" "$PID_FILE"
  [[ -f "$DDIR/dockerd.log" ]] && mv -f "$DDIR/dockerd.log" "$DDIR/dockerd.log.prev"
  log "starting dockerd (overlay2, no iptables, no bridge) on $SOCK, data-root $DDIR/data"
  setsid dockerd --storage-driver=overlay2 --iptables=false --ip6tables=false --bridge=none \
    -H "unix://$SOCK" --data-root "$DDIR/data" --exec-root "$DDIR/exec" --pidfile "$PID_FILE" \
    </dev/null >"$DDIR/dockerd.log" 2>&1 9>&- &
  local launched=$!
  local deadline=$((SECONDS + DOCKERD_START_TIMEOUT))
  until answers; do
    if ! kill -0 "$launched" 2>/dev/null; then
      tail -n 30 "$DDIR/dockerd.log" >&2 || true
      die "dockerd exited during startup (log: $DDIR/dockerd.log)"
    fi
    ((SECONDS < deadline)) || { tail -n 30 "$DDIR/dockerd.log" >&2; die "dockerd not answering after ${DOCKERD_START_TIMEOUT}s"; }
    sleep 0.3
  done
  log "dockerd ready (pid $(cat "$PID_FILE")) after $((SECONDS - t0)) s"
}

cmd_stop() {
  [[ -d "$DDIR" ]] || { log "not running"; return 0; }
  lock_state "$DDIR" 600
  local pid ids
  if ! pid="$(dockerd_pid)"; then log "not running"; return 0; fi
  ids="$(docker_cli ps -q 2>/dev/null || true)"
  if [[ -n "$ids" ]]; then
    log "stopping $(wc -w <<<"$ids") container(s)"
    # shellcheck disable=SC2086
    docker_cli stop -t 10 $ids >/dev/null 2>&1 || true
  fi
  log "stopping dockerd (pid $pid)"
  stop_process "$pid" 30 is_our_dockerd
  log "stopped (images kept in $DDIR/data)"
}

cmd_status() {
  local pid
  if pid="$(dockerd_pid)" && answers; then
    echo "docker: running (pid $pid) on $SOCK"
  else
    echo "docker: not running"
    return 1
  fi
}

# ---------------------------------------------------------------- images

# The recipe hash of a build directory: every file in it except the artifacts under ctx/.
recipe_of() {
  (cd "$1" && find . -path ./ctx -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum) |
    sha256sum | cut -c1-16
}

# True when IMAGE exists with label sluice.recipe=RECIPE.
image_current() {
  local got
  got="$(docker_cli image inspect --format '{{index .Config.Labels "sluice.recipe"}}' "$1" 2>/dev/null)" || return 1
  [[ "$got" == "$2" ]]
}

# Hard-links (or copies) an artifact directory into the build context.
stage() {
  local src="$1" dst="$2"
  mkdir -p "$(dirname "$dst")"
  cp -al "$src" "$dst" 2>/dev/null || cp -a "$src" "$dst"
}

# Runs a native compose script's start and stop once, on throwaway ports and state, so that its
# artifacts are in the cache (cold machines only).
ensure_native_cache() {
  local script="$1" marker="$2"
  shift 2
  [[ -e "$marker" ]] && return 0
  local state
  state="$(mktemp -d)"
  log "fetching the artifacts with compose/$script (first run only)"
  env SLUICE_STATE="$state" "$@" bash "$HERE/$script" start >&2 || { rm -rf "$state"; die "compose/$script start failed"; }
  env SLUICE_STATE="$state" "$@" bash "$HERE/$script" stop >&2 || true
  rm -rf "$state"
  [[ -e "$marker" ]] || die "compose/$script did not leave $marker"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# docker build of $BUILD_DIR/$1 (Dockerfile + scripts, artifacts in ctx/) as IMAGE, unless current.
build_dir_image() {
  local image="$2" dir="$BUILD_DIR/$1" recipe t0=$SECONDS
  recipe="$(recipe_of "$dir")"
  if image_current "$image" "$recipe"; then
    log "$image is up to date"
    rm -rf "$dir"
    return 0
  fi
  log "building $image"
  mkdir -p "$dir/ctx"
  cp "$dir"/*.sh "$dir/ctx/" 2>/dev/null || true
  docker_cli build -q --network host --label "sluice.recipe=$recipe" -t "$image" -f "$dir/Dockerfile" "$dir/ctx" >/dev/null ||
    die "docker build of $image failed"
  rm -rf "$dir"
  docker_cli image prune -f >/dev/null 2>&1 || true # the previous build of this tag
  log "built $image in $((SECONDS - t0)) s ($(image_size "$image"))"
}

image_size() { docker_cli image inspect --format '{{.Size}}' "$1" | awk '{printf "%d MB", $1/1e6}'; }

# A fresh build directory holding the Dockerfile (from stdin).
new_build_dir() {
  rm -rf "${BUILD_DIR:?}/$1"
  mkdir -p "$BUILD_DIR/$1"
  cat >"$BUILD_DIR/$1/Dockerfile"
}

# A root filesystem from `debootstrap --variant=minbase bookworm` plus PKGS, imported as IMAGE.
build_rootfs_image() {
  local image="$1" pkgs="$2" recipe t0=$SECONDS name
  recipe="$(printf 'bookworm minbase %s v1' "$pkgs" | sha256sum | cut -c1-16)"
  if image_current "$image" "$recipe"; then log "$image is up to date"; return 0; fi
  [[ "$(id -u)" == 0 ]] || die "building $image needs root (debootstrap, chroot)"
  need_pkg debootstrap debootstrap
  name="rootfs-${image##*:}"
  local rootfs="$BUILD_DIR/$name" dlog="$BUILD_DIR/$name-debootstrap.log" alog="$BUILD_DIR/$name-apt.log"
  log "debootstrap --variant=minbase bookworm ($DEBIAN_MIRROR), then $pkgs"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$dlog" 2>&1 ||
    { tail -n 20 "$dlog" >&2; die "debootstrap failed (log: $dlog)"; }
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  mount -t proc proc "$rootfs/proc"
  # shellcheck disable=SC2064
  trap "umount '$rootfs/proc' 2>/dev/null || true" EXIT
  # shellcheck disable=SC2086
  if ! chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs \
    >"$alog" 2>&1; then
    tail -n 20 "$alog" >&2
    die "installing $pkgs in the $image rootfs failed (log: $alog)"
  fi
  chroot "$rootfs" apt-get clean
  umount "$rootfs/proc"
  trap - EXIT
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log
  tar --numeric-owner -C "$rootfs" -c . |
    docker_cli import -c 'ENV LANG=C.UTF-8' -c "LABEL sluice.recipe=$recipe" - "$image" >/dev/null ||
    die "docker import failed"
  rm -rf "$rootfs"
  log "built $image in $((SECONDS - t0)) s ($(image_size "$image"))"
}

build_base() { build_rootfs_image "$IMG_BASE" "openjdk-17-jre-headless python3"; }

# The host's base: no JRE or Python, only the CA certificates its TLS clients need.
build_base_slim() { build_rootfs_image "$IMG_BASE_SLIM" "ca-certificates"; }

build_kafka() {
  local libs="$CACHE_ROOT/kafka/$KAFKA_VERSION/libs"
  new_build_dir kafka <<EOF
FROM $IMG_BASE
COPY libs /opt/kafka/libs
COPY kafka-run.sh /opt/kafka/run
RUN chmod +x /opt/kafka/run && mkdir -p /var/lib/kafka/data
ENV KAFKA_VERSION=$KAFKA_VERSION
ENTRYPOINT ["/opt/kafka/run"]
EOF
  # Configured like the official apache/kafka image: every KAFKA_FOO_BAR variable becomes the
  # server property foo.bar (__ stands for _, ___ for -), over a single-node KRaft default.
  cat >"$BUILD_DIR/kafka/kafka-run.sh" <<'EOF'
#!/bin/bash
set -euo pipefail
conf=/opt/kafka/server.properties
declare -A p=(
  [process.roles]=broker,controller [node.id]=1
  [controller.quorum.voters]=1@localhost:9093
  [listeners]=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
  [advertised.listeners]=PLAINTEXT://localhost:9092
  [inter.broker.listener.name]=PLAINTEXT [controller.listener.names]=CONTROLLER
  [listener.security.protocol.map]=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
  [log.dirs]=/var/lib/kafka/data [num.partitions]=1
  [offsets.topic.replication.factor]=1 [transaction.state.log.replication.factor]=1
  [transaction.state.log.min.isr]=1 [share.coordinator.state.topic.replication.factor]=1
  [share.coordinator.state.topic.min.isr]=1 [group.initial.rebalance.delay.ms]=0
)
skip=" KAFKA_VERSION KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_LOG4J_OPTS KAFKA_JVM_PERFORMANCE_OPTS "
while IFS='=' read -r name value; do
  [[ "$name" == KAFKA_* && "$skip" != *" $name "* ]] || continue
  key="${name#KAFKA_}"; key="${key,,}"
  key="${key//___/-}"; key="${key//__/@}"; key="${key//_/.}"; key="${key//@/_}"
  p[$key]="$value"
done < <(env)
: >"$conf"
for k in "${!p[@]}"; do printf '%s=%s\n' "$k" "${p[$k]}" >>"$conf"; done
cat >/opt/kafka/log4j2.properties <<'L'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
L
java_cp=(-cp '/opt/kafka/libs/*' -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties)
if [[ ! -f "${p[log.dirs]%%,*}/meta.properties" ]]; then
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "${java_cp[@]}" kafka.tools.StorageTool \
    format --ignore-formatted -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$conf"
fi
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true ${KAFKA_OPTS:-} "${java_cp[@]}" kafka.Kafka "$conf"
EOF
  if ! image_current "$IMG_KAFKA" "$(recipe_of "$BUILD_DIR/kafka")"; then
    ensure_native_cache kafka.sh "$CACHE_ROOT/kafka/$KAFKA_VERSION/.installed" \
      KAFKA_VERSION="$KAFKA_VERSION" KAFKA_PORT="$(free_port)" KAFKA_CONTROLLER_PORT="$(free_port)" \
      KAFKA_SASL_SSL_PORT="$(free_port)" KAFKA_MTLS_PORT="$(free_port)"
    stage "$libs" "$BUILD_DIR/kafka/ctx/libs"
  fi
  build_dir_image kafka "$IMG_KAFKA"
}

build_opensearch() {
  local home="$CACHE_ROOT/opensearch/$OPENSEARCH_VERSION/opensearch-$OPENSEARCH_VERSION"
  # Runs as uid 1000 (OpenSearch refuses root), like the official image.
  new_build_dir opensearch <<EOF
FROM $IMG_BASE
RUN useradd -u 1000 -d /usr/share/opensearch -M opensearch
COPY --chown=1000:1000 opensearch /usr/share/opensearch
COPY --chown=1000:1000 opensearch-run.sh /usr/share/opensearch/run
RUN chmod +x /usr/share/opensearch/run \
 && install -d -o 1000 -g 1000 /usr/share/opensearch/data /usr/share/opensearch/logs
USER 1000
WORKDIR /usr/share/opensearch
ENV OPENSEARCH_JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
ENTRYPOINT ["/usr/share/opensearch/run"]
EOF
  # Configured like opensearchproject/opensearch: variables with a dot in their name become
  # -E settings; OPENSEARCH_JAVA_OPTS sets the heap. The integ-test zip has no security plugin.
  cat >"$BUILD_DIR/opensearch/opensearch-run.sh" <<'EOF'
#!/bin/bash
set -euo pipefail
cd /usr/share/opensearch
declare -A s=(
  [cluster.name]=sluice [node.name]=sluice-0 [discovery.type]=single-node [network.host]=127.0.0.1
  [cluster.routing.allocation.disk.threshold_enabled]=false [node.store.allow_mmap]=true
)
(($(cat /proc/sys/vm/max_map_count) >= 262144)) || s[node.store.allow_mmap]=false
while IFS='=' read -r name value; do
  [[ "$name" == *.* ]] && s[$name]="$value"
done < <(env)
args=()
for k in "${!s[@]}"; do args+=("-E$k=${s[$k]}"); done
sed -i -e 's|^-Xms.*|-Xms512m|' -e 's|^-Xmx.*|-Xmx512m|' -e '/HeapDumpOnOutOfMemoryError/d' \
  -e '/HeapDumpPath/d' -e 's|^\(.*Xlog:gc.*\)$|# \1|' config/jvm.options
export OPENSEARCH_JAVA_OPTS="${OPENSEARCH_JAVA_OPTS:-} -XX:+ExitOnOutOfMemoryError"
exec bin/opensearch "${args[@]}" "$@"
EOF
  if ! image_current "$IMG_OPENSEARCH" "$(recipe_of "$BUILD_DIR/opensearch")"; then
    ensure_native_cache elasticsearch.sh "$CACHE_ROOT/opensearch/$OPENSEARCH_VERSION/.installed" \
      OPENSEARCH_VERSION="$OPENSEARCH_VERSION" ES_PORT="$(free_port)" ES_TRANSPORT_PORT="$(free_port)"
    # A copy, not links: the image build changes ownership and jvm.options.
    mkdir -p "$BUILD_DIR/opensearch/ctx"
    cp -a "$home" "$BUILD_DIR/opensearch/ctx/opensearch"
  fi
  build_dir_image opensearch "$IMG_OPENSEARCH"
}

build_fake_gcs() {
  local cache="$CACHE_ROOT/fake-gcs/$FAKE_GCS_WRAPPER_VERSION"
  # Same entrypoint as fsouza/fake-gcs-server; flags (-scheme, -port, -backend, ...) are the args.
  new_build_dir fake-gcs <<EOF
FROM $IMG_BASE
COPY fake-gcs-server /bin/fake-gcs-server
RUN mkdir -p /data /storage
ENTRYPOINT ["/bin/fake-gcs-server", "-data", "/data"]
EOF
  if ! image_current "$IMG_FAKE_GCS" "$(recipe_of "$BUILD_DIR/fake-gcs")"; then
    ensure_native_cache gcs.sh "$cache/.installed" \
      FAKE_GCS_WRAPPER_VERSION="$FAKE_GCS_WRAPPER_VERSION" GCS_PORT="$(free_port)"
    mkdir -p "$BUILD_DIR/fake-gcs/ctx"
    ln "$(cat "$cache/bin.path")" "$BUILD_DIR/fake-gcs/ctx/fake-gcs-server" 2>/dev/null ||
      cp "$(cat "$cache/bin.path")" "$BUILD_DIR/fake-gcs/ctx/fake-gcs-server"
  fi
  build_dir_image fake-gcs "$IMG_FAKE_GCS"
}

build_bigquery() {
  local cache="$CACHE_ROOT/bqemulator/$BQEMULATOR_VERSION"
  # The venv's site-packages (cp311 wheels) on bookworm's python3.11, DuckDB's spatial extension
  # in HOME, as compose/bigquery.sh sets it up. gs:// URIs resolve under /gcs (mount the same
  # volume as fake-gcs-server's -filesystem-root there).
  new_build_dir bigquery <<EOF
FROM $IMG_BASE
COPY site-packages /opt/bqemulator/site-packages
COPY home /opt/bqemulator/home
ENV PYTHONPATH=/opt/bqemulator/site-packages HOME=/opt/bqemulator/home PYTHONUNBUFFERED=1 \
    BQEMU_ENABLE_FORMAT_EXTENSIONS=false BQEMU_GCS_LOCAL_ROOT=/gcs
RUN mkdir -p /gcs && python3 -c 'import bqemulator'
ENTRYPOINT ["python3", "-c", "import sys; from bqemulator.cli import main; sys.argv[0] = 'bqemulator'; sys.exit(main())"]
CMD ["start", "--rest-host", "127.0.0.1", "--rest-port", "9050", "--grpc-host", "127.0.0.1", "--grpc-port", "9060", "--project", "test-proj", "--ephemeral"]
EOF
  if ! image_current "$IMG_BIGQUERY" "$(recipe_of "$BUILD_DIR/bigquery")"; then
    ensure_native_cache bigquery.sh "$cache/.installed" \
      BQEMULATOR_VERSION="$BQEMULATOR_VERSION" BQ_PORT="$(free_port)" BQ_GRPC_PORT="$(free_port)"
    stage "$cache/venv/lib/python3.11/site-packages" "$BUILD_DIR/bigquery/ctx/site-packages"
    stage "$cache/home" "$BUILD_DIR/bigquery/ctx/home"
  fi
  build_dir_image bigquery "$IMG_BIGQUERY"
}

# Cargo's target directory for this workspace (CARGO_TARGET_DIR or the default).
cargo_target_dir() {
  (cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
}

# The cargo profile of the binaries in the images (the host, twitter-sim): release (default),
# or dev, which CI uses because its tests build those binaries anyway (release builds of the
# host and of twitter-sim's dependencies would add ~11 minutes to a cold CI run).
BUILD_PROFILE="${SLUICE_BUILD_PROFILE:-release}"
case "$BUILD_PROFILE" in
  dev | debug) PROFILE_DIR=debug ;;
  *) PROFILE_DIR="$BUILD_PROFILE" ;;
esac

# image_binary PACKAGE BIN DEST: builds BIN of PACKAGE with the build profile and puts it at
# DEST without debug info (line tables only help a debugger; the symbols stay for backtraces).
image_binary() {
  log "cargo build --profile $BUILD_PROFILE -p $1 --bin $2"
  (cd "$REPO" && cargo build --quiet --profile "$BUILD_PROFILE" -p "$1" --bin "$2" >&2) ||
    die "building $2 failed"
  mkdir -p "$(dirname "$3")"
  strip --strip-debug -o "$3" "$(cargo_target_dir)/$PROFILE_DIR/$2"
}

build_twitter_sim() {
  local src
  # The sources' hash is part of the recipe, so a changed simulator is rebuilt.
  src="$BUILD_PROFILE-$(cd "$REPO" && { git ls-files -s tests/twitter-sim 2>/dev/null; git diff HEAD -- tests/twitter-sim 2>/dev/null; } | sha256sum | cut -c1-16)"
  new_build_dir twitter-sim <<EOF
FROM $IMG_BASE
COPY twitter-sim /usr/local/bin/twitter-sim
LABEL sluice.sources=$src
ENTRYPOINT ["/usr/local/bin/twitter-sim"]
EOF
  if ! image_current "$IMG_TWITTER_SIM" "$(recipe_of "$BUILD_DIR/twitter-sim")"; then
    image_binary twitter-sim twitter-sim "$BUILD_DIR/twitter-sim/ctx/twitter-sim"
  fi
  build_dir_image twitter-sim "$IMG_TWITTER_SIM"
}

# What the host image is made of: its sources, the plugins' and the pipelines it bundles.
HOST_SOURCES=(Cargo.toml Cargo.lock host wit guest-plugins examples pipeline.toml)

# The pipelines, made to run in the image: plugin paths point to /plugins, relative file paths
# (sinks, dead letters) to /var/lib/sluice.
image_pipeline() {
  {
    printf '# In %s: plugins from /plugins, files in /var/lib/sluice (paths rewritten by compose/docker.sh).\n' "$IMG_HOST"
    sed -E -e 's|^(plugin *= *")[^"]*/([^/"]+\.wasm")|\1/plugins/\2|' \
      -e 's|^(path *= *")([^/"][^"]*/)?([^/"]+")|\1/var/lib/sluice/\3|' \
      -e 's|^(dir *= *")([^/"][^"]*/)?([^/"]+")|\1/var/lib/sluice/\3|' "$1"
  } >"$2"
}

build_host() {
  local src dir="$BUILD_DIR/host" f
  build_base_slim
  src="$BUILD_PROFILE-$(cd "$REPO" && { git ls-files -s "${HOST_SOURCES[@]}" 2>/dev/null; git diff HEAD -- "${HOST_SOURCES[@]}" 2>/dev/null; } |
    sha256sum | cut -c1-16)"
  # The host is PID 1 and drains on SIGTERM itself (docker stop), so no init. Metrics, health
  # and readiness are on by default (SLUICE_RUNTIME__METRICS__LISTEN, which `--metrics` overrides).
  new_build_dir host <<EOF
FROM $IMG_BASE_SLIM
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/sluice --no-create-home \
      --shell /usr/sbin/nologin sluice \
 && install -d -o sluice -g sluice /var/lib/sluice /var/cache/sluice
COPY host /usr/local/bin/host
COPY healthcheck.sh /usr/local/bin/sluice-healthcheck
COPY plugins /plugins
COPY sluice /etc/sluice
ENV HOME=/var/lib/sluice XDG_CACHE_HOME=/var/cache/sluice SLUICE_RUNTIME__METRICS__LISTEN=0.0.0.0:9598
USER sluice
WORKDIR /var/lib/sluice
# Every bundled pipeline loads (and the plugins' compiled code lands in the cache).
RUN for p in /etc/sluice/pipeline.toml /etc/sluice/examples/*.toml; do \
      TWITTER_BEARER_TOKEN=check host check "\$p" >/dev/null || exit 1; done
EXPOSE 9598
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/sluice-healthcheck"]
LABEL sluice.sources=$src
ENTRYPOINT ["/usr/local/bin/host"]
CMD ["run", "/etc/sluice/pipeline.toml"]
EOF
  # bash's /dev/tcp: the image has no curl or Python.
  cat >"$dir/healthcheck.sh" <<'EOF'
#!/bin/bash
# sluice-healthcheck [PATH]: exit 0 when GET PATH (default /health) on the host's metrics listener
# answers 200. The listener is PID 1's `--metrics ADDR`, else $SLUICE_RUNTIME__METRICS__LISTEN,
# else 127.0.0.1:9598; a wildcard address is asked on loopback.
set -euo pipefail
path="${1:-/health}"
addr="${SLUICE_RUNTIME__METRICS__LISTEN:-127.0.0.1:9598}"
args=()
mapfile -d '' -t args </proc/1/cmdline 2>/dev/null || true
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --metrics) addr="${args[i + 1]:-$addr}" ;;
    --metrics=*) addr="${args[i]#--metrics=}" ;;
  esac
done
host="${addr%:*}" port="${addr##*:}"
host="${host#[}" host="${host%]}"
case "$host" in 0.0.0.0 | "" | ::) host=127.0.0.1 ;; esac
exec 3<>"/dev/tcp/$host/$port"
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$addr" >&3
read -r _ status _ <&3
[[ "$status" == 200 ]]
EOF
  chmod +x "$dir/healthcheck.sh"
  if ! image_current "$IMG_HOST" "$(recipe_of "$dir")"; then
    image_binary sluice-host host "$dir/ctx/host"
    log "cargo xtask plugins"
    (cd "$REPO" && cargo xtask plugins >&2) || die "building the plugins failed"
    mkdir -p "$dir/ctx/plugins" "$dir/ctx/sluice/examples"
    cp "$REPO"/guest-plugins/dist/*.wasm "$dir/ctx/plugins/"
    image_pipeline "$REPO/pipeline.toml" "$dir/ctx/sluice/pipeline.toml"
    for f in "$REPO"/examples/*.toml; do image_pipeline "$f" "$dir/ctx/sluice/examples/${f##*/}"; done
  fi
  build_dir_image host "$IMG_HOST"
}

cmd_build() {
  answers || die "dockerd is not running on $SOCK (run: bash compose/docker.sh start)"
  local -a svcs=("$@")
  [[ ${#svcs[@]} -gt 0 ]] || svcs=("${ALL_SERVICES[@]}")
  mkdir -p "$BUILD_DIR"
  exec 8>"$DDIR/.build.lock"
  flock -w 3600 8 || die "timed out waiting for another image build"
  local s t0=$SECONDS
  build_base
  for s in "${svcs[@]}"; do
    case "$s" in
      base) ;;
      base-slim) build_base_slim ;;
      kafka) build_kafka ;;
      opensearch | elasticsearch) build_opensearch ;;
      fake-gcs | gcs) build_fake_gcs ;;
      bigquery | bqemulator) build_bigquery ;;
      twitter-sim) build_twitter_sim ;;
      host) build_host ;;
      *) die "unknown service '$s' (${ALL_SERVICES[*]})" ;;
    esac
  done
  log "images ready in $((SECONDS - t0)) s"
}

cmd_env() {
  printf 'DOCKER_HOST=%s\n' "$DOCKER_HOST"
  printf 'SLUICE_IMAGE_KAFKA=%s\n' "$IMG_KAFKA"
  printf 'SLUICE_IMAGE_ELASTICSEARCH=%s\n' "$IMG_OPENSEARCH"
  printf 'SLUICE_IMAGE_FAKE_GCS=%s\n' "$IMG_FAKE_GCS"
  printf 'SLUICE_IMAGE_BIGQUERY=%s\n' "$IMG_BIGQUERY"
  printf 'SLUICE_IMAGE_TWITTER_SIM=%s\n' "$IMG_TWITTER_SIM"
  printf 'SLUICE_IMAGE_HOST=%s\n' "$IMG_HOST"
}

cmd_images() {
  local i
  for i in "$IMG_BASE" "$IMG_KAFKA" "$IMG_OPENSEARCH" "$IMG_FAKE_GCS" "$IMG_BIGQUERY" "$IMG_TWITTER_SIM" \
    "$IMG_BASE_SLIM" "$IMG_HOST"; do
    if docker_cli image inspect "$i" >/dev/null 2>&1; then
      printf '%-45s %s\n' "$i" "$(image_size "$i")"
    else
      printf '%-45s missing\n' "$i"
    fi
  done
}

# The subcommands are the cmd_* functions; the usage is lines 2-10 above.
run_subcommand 2,10 "$@"
