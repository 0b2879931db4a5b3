#!/usr/bin/env bash
# A TLS-terminating reverse proxy (nginx) in front of the local OpenSearch, for Sluice's tests.
#
#   compose/tls-proxy.sh start    install nginx if needed, start, wait until HTTPS answers 401
#   compose/tls-proxy.sh stop     SIGTERM, wait, then SIGKILL; no-op when not running
#   compose/tls-proxy.sh status   exit 0 when nginx is running and both listeners answer
#   compose/tls-proxy.sh env      print ES_TLS_URL=..., ES_MTLS_URL=... and ES_TLS_DIR=...
#
# Two HTTPS listeners on 127.0.0.1, both with a certificate for "localhost" only (compose/pki.sh)
# and both proxying everything to ES_UPSTREAM (which compose/elasticsearch.sh starts):
#   TLS_PROXY_PORT       requires Basic (user basic.user, password basic.password) or an
#                        Elastic API key ("ApiKey " base64(id:secret), api-key.id, api-key.secret);
#                        anything else gets an Elasticsearch-like 401 JSON error
#   TLS_PROXY_MTLS_PORT  requires a client certificate signed by pki/ca.pem, no Authorization
# Those files live in ES_TLS_DIR (as `env` prints it), mode 600, random, created once; the
# secrets are never printed. The Authorization header is not passed upstream.
# nginx comes from Debian's nginx and nginx-common packages (bookworm's nginx-light is only a
# transitional package), unpacked with dpkg -x into the cache, not installed: no daemon on :80,
# no apt-get install, and no apt at all once cached.
# Environment (all optional):
#   TLS_PROXY_PORT           HTTPS port, Basic or ApiKey auth        (default 9243)
#   TLS_PROXY_MTLS_PORT      HTTPS port, client certificate required (default 9244)
#   ES_UPSTREAM              http://HOST:PORT to proxy to  (default: ELASTICSEARCH_URL from
#                            compose/elasticsearch.sh env, else http://127.0.0.1:9200)
#   TLS_PROXY_START_TIMEOUT  seconds to wait for readiness           (default 20)
#   TLS_PROXY_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL     (default 10)
#   SLUICE_CACHE             cache root (default ~/.cache/sluice; nginx in nginx/root)
#   SLUICE_STATE             state root (default ~/.local/state/sluice; proxy state in tls-proxy/)
set -euo pipefail
# shellcheck source=compose/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TLS_PROXY_PORT="${TLS_PROXY_PORT:-9243}"
TLS_PROXY_MTLS_PORT="${TLS_PROXY_MTLS_PORT:-9244}"
TLS_PROXY_START_TIMEOUT="${TLS_PROXY_START_TIMEOUT:-20}"
TLS_PROXY_STOP_TIMEOUT="${TLS_PROXY_STOP_TIMEOUT:-10}"

CACHE_DIR="${SLUICE_CACHE:-$HOME/.cache/sluice}/nginx"
NGINX_ROOT="$CACHE_DIR/root"
NGINX_BIN="$NGINX_ROOT/usr/sbin/nginx"
STATE_DIR="${SLUICE_STATE:-$HOME/.local/state/sluice}/tls-proxy"
PKI_DIR="$STATE_DIR/pki"
LOG_DIR="$STATE_DIR/logs"
TEMP_DIR="$STATE_DIR/temp"
CONF="$STATE_DIR/nginx.conf"
PID_FILE="$STATE_DIR/server.pid"
SETTINGS_FILE="$STATE_DIR/settings"
TLS_URL="https://localhost:$TLS_PROXY_PORT"
MTLS_URL="https://localhost:$TLS_PROXY_MTLS_PORT"
BASIC_USER=sluice

# ---------------------------------------------------------------- install

ensure_installed() { install_once "$CACHE_DIR" 300 nginx install_nginx; }

# apt_download DIR: the nginx and nginx-common .debs into DIR (as root, apt's _apt sandbox user
# could not write there, so apt downloads as root).
apt_download() {
  local sandbox=()
  [[ "$(id -u)" == 0 ]] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$1" && apt-get "${sandbox[@]}" download -qq nginx nginx-common >&2)
}

install_nginx() {
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    die "apt-get and dpkg are needed to fetch Debian's nginx"
  fi
  local start=$SECONDS dl deb debs="" missing
  log "fetching Debian's nginx and nginx-common into $CACHE_DIR (unpacked, not installed)"
  rm -rf "$CACHE_DIR"/download.*
  dl="$(mktemp -d "$CACHE_DIR/download.XXXXXX")"
  if ! apt_download "$dl"; then
    log "apt-get download failed; updating the package lists and retrying"
    apt-get update -qq >&2 || true
    apt_download "$dl" || die "apt-get download nginx nginx-common failed"
  fi
  rm -rf "$NGINX_ROOT"
  mkdir -p "$NGINX_ROOT"
  for deb in "$dl"/*.deb; do
    dpkg -x "$deb" "$NGINX_ROOT" || die "dpkg -x $deb failed"
    debs+="${deb##*/} "
  done
  [[ -x "$NGINX_BIN" ]] || die "no usr/sbin/nginx in the nginx package"
  if ! "$NGINX_BIN" -V >"$CACHE_DIR/nginx-V.txt" 2>&1; then
    missing="$(ldd "$NGINX_BIN" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')"
    [[ -z "$missing" ]] || die "nginx needs shared libraries that are missing: $missing(Debian: libpcre2-8-0, libssl3, zlib1g, libcrypt1)"
    cat "$CACHE_DIR/nginx-V.txt" >&2
    die "$NGINX_BIN -V failed"
  fi
  printf '%sinstalled %s\n' "$debs" "$(date -u +%FT%TZ)" >"$CACHE_DIR/.installed"
  rm -rf "$dl"
  log "installed $(head -n 1 "$CACHE_DIR/nginx-V.txt") in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------- config

# The OpenSearch URL to proxy to: ES_UPSTREAM, else what elasticsearch.sh would serve on.
upstream_url() {
  local url="${ES_UPSTREAM:-}"
  if [[ -z "$url" ]]; then
    url="$(bash "$(dirname "${BASH_SOURCE[0]}")/elasticsearch.sh" env 2>/dev/null |
      sed -n 's/^ELASTICSEARCH_URL=//p')" || true
  fi
  printf '%s\n' "${url:-http://127.0.0.1:9200}"
}

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# new_secret NAME VALUE: STATE_DIR/NAME (mode 600) holds VALUE unless it has a value already.
new_secret() {
  local f="$STATE_DIR/$1"
  if [[ ! -s "$f" ]]; then
    (umask 077; printf '%s\n' "$2" >"$f.tmp")
    mv -f "$f.tmp" "$f"
  fi
  chmod 600 "$f"
}

ensure_secrets() {
  new_secret basic.user "$BASIC_USER"
  new_secret basic.password "pw-$(hex 12)"
  new_secret api-key.id "$(hex 10)"
  new_secret api-key.secret "$(hex 16)"
}

# auth_header SCHEME A B: "SCHEME base64(A:B)", A and B being the contents of two secret files.
auth_header() {
  printf '%s %s' "$1" "$(printf '%s:%s' "$(cat "$STATE_DIR/$2")" "$(cat "$STATE_DIR/$3")" | base64 -w0)"
}

# map_key VALUE: VALUE as a case-sensitive, anchored regex key of an nginx map (plain string keys
# match ignoring case, and base64 is not case-insensitive).
map_key() { printf '"~^%s$"' "$(printf '%s' "$1" | sed 's/[][\\.^$*+?(){}|/]/\\&/g')"; }

# The proxying both listeners share (the Authorization header stays here).
proxy_block() {
  cat <<'EOF'
            proxy_pass http://opensearch;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
EOF
}

write_config() {
  local upstream="$1" hostport user_line="" temp_lines="" m
  case "$upstream" in
    http://*) hostport="${upstream#http://}"; hostport="${hostport%/}" ;;
    *) die "ES_UPSTREAM must be http://HOST:PORT, not $upstream" ;;
  esac
  [[ "$hostport" != */* && -n "$hostport" ]] || die "ES_UPSTREAM must be http://HOST:PORT without a path, not $upstream"
  [[ "$hostport" == *:* ]] || hostport="$hostport:80"
  mkdir -p "$LOG_DIR" "$TEMP_DIR"
  bash "$(dirname "${BASH_SOURCE[0]}")/pki.sh" ensure "$PKI_DIR"
  ensure_secrets
  # As root the workers would run as nobody, who cannot reach temp paths under root's 0700 home
  # (unused while the proxy buffers nothing to disk, but nginx may spill there).
  [[ "$(id -u)" == 0 ]] && user_line="user root;"
  # Every temp path inside the state dir, for each module this nginx has.
  for m in client_body proxy fastcgi uwsgi scgi; do
    grep -q -- "--without-http_${m}_module" "$CACHE_DIR/nginx-V.txt" ||
      temp_lines+="    ${m}_temp_path $TEMP_DIR/$m;"$'\n'
  done
  (umask 077; : >"$CONF.tmp")
  cat >"$CONF.tmp" <<EOF
# Written by compose/tls-proxy.sh on every start; edit the script, not this file. Holds the
# expected Authorization headers: keep it private.
$user_line
worker_processes 1;
pid $STATE_DIR/nginx.pid;
error_log $LOG_DIR/error.log warn;

events {
    worker_connections 256;
}

http {
    access_log $LOG_DIR/access.log;
${temp_lines}
    server_tokens off;
    default_type application/json;
    client_max_body_size 100m;
    client_body_buffer_size 1m;
    keepalive_timeout 75s;

    ssl_certificate $PKI_DIR/server.pem;
    ssl_certificate_key $PKI_DIR/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;

    upstream opensearch {
        server $hostport;
        keepalive 8;
    }

    map \$http_authorization \$sluice_auth_ok {
        default 0;
        $(map_key "$(auth_header Basic basic.user basic.password)") 1;
        $(map_key "$(auth_header ApiKey api-key.id api-key.secret)") 1;
    }

    # Basic or ApiKey.
    server {
        listen 127.0.0.1:$TLS_PROXY_PORT ssl;
        server_name localhost;
        location / {
            if (\$sluice_auth_ok = 0) {
                add_header WWW-Authenticate 'Basic realm="security"' always;
                return 401 '{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate"}],"type":"security_exception","reason":"unable to authenticate"},"status":401}';
            }
$(proxy_block)
        }
    }

    # A client certificate signed by the test CA.
    server {
        listen 127.0.0.1:$TLS_PROXY_MTLS_PORT ssl;
        server_name localhost;
        ssl_verify_client on;
        ssl_verify_depth 1;
        ssl_client_certificate $PKI_DIR/ca.pem;
        location / {
$(proxy_block)
        }
    }
}
EOF
  mv -f "$CONF.tmp" "$CONF"
  "$NGINX_BIN" -t -q -p "$STATE_DIR/" -c "$CONF" -e "$LOG_DIR/error.log" 2>"$LOG_DIR/config-test.err" ||
    { cat "$LOG_DIR/config-test.err" >&2; die "nginx rejected $CONF"; }
}

# ---------------------------------------------------------------- process

is_our_server() {
  local cmdline
  cmdline="$(proc_cmdline "$1")" || return 1
  [[ "$cmdline" == *nginx* && "$cmdline" == *"-c $CONF "* ]]
}

server_pid() { pid_from_file "$PID_FILE" is_our_server; }

log_tail() {
  show_tail 30 "$LOG_DIR/error.log"
  if [[ -s "$LOG_DIR/nginx.out" ]]; then show_tail 20 "$LOG_DIR/nginx.out"; fi
}

# Both listeners up: the first answers an unauthenticated request with 401.
healthy() {
  [[ "$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "$TLS_URL/" 2>/dev/null)" == 401 ]] &&
    port_open "$TLS_PROXY_MTLS_PORT"
}

wait_ready() { await_ready nginx "$1" is_our_server "$TLS_PROXY_START_TIMEOUT" 0.1 "no 401 from $TLS_URL/" healthy; }

cmd_start() {
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  lock_state "$STATE_DIR" "$((TLS_PROXY_START_TIMEOUT + 300))"
  local pid t0=$SECONDS upstream settings
  upstream="$(upstream_url)"
  settings="ports $TLS_PROXY_PORT $TLS_PROXY_MTLS_PORT upstream $upstream"
  if pid="$(server_pid)"; then
    require_settings "$SETTINGS_FILE" "$settings" "nginx (pid $pid) is running with"
    resume_running "$pid" "$TLS_URL and $MTLS_URL" healthy
    return 0
  fi
  rm -f "$PID_FILE"
  require_free_port "$TLS_PROXY_PORT" TLS_PROXY_PORT
  require_free_port "$TLS_PROXY_MTLS_PORT" TLS_PROXY_MTLS_PORT
  need_cmd curl curl
  ensure_installed
  [[ -f "$LOG_DIR/error.log" ]] && mv -f "$LOG_DIR/error.log" "$LOG_DIR/error.log.prev"
  write_config "$upstream"
  curl -s --max-time 2 -o /dev/null "$upstream/" ||
    log "note: nothing answers on $upstream yet (compose/elasticsearch.sh start)"
  log "starting nginx on $TLS_URL (Basic/ApiKey) and $MTLS_URL (client certificate) -> $upstream"
  # setsid execs nginx in place, so $! is the nginx master (daemon off: it stays in the foreground).
  (exec setsid "$NGINX_BIN" -p "$STATE_DIR/" -c "$CONF" -e "$LOG_DIR/error.log" -g 'daemon off;' \
      </dev/null >"$LOG_DIR/nginx.out" 2>&1 8>&- 9>&-) &
  pid=$!
  printf '%s\n' "$settings" >"$SETTINGS_FILE"
  await_launch "$pid" 0.1 nginx is_our_server 20 0.2
  log "ready on $TLS_URL and $MTLS_URL (pid $pid) after $((SECONDS - t0)) s"
}

cmd_stop() { stop_service nginx is_our_server "$TLS_PROXY_STOP_TIMEOUT"; }

cmd_status() { service_status tls-proxy server_pid "$TLS_URL not answering 401" "$TLS_URL and $MTLS_URL" healthy; }

# Paths only: ES_TLS_DIR holds pki/ (ca.pem, client.pem, client.key, other-ca.pem), basic.user,
# basic.password, api-key.id and api-key.secret (one value each, newline-terminated).
cmd_env() {
  printf 'ES_TLS_URL=%s\n' "$TLS_URL"
  printf 'ES_MTLS_URL=%s\n' "$MTLS_URL"
  printf 'ES_TLS_DIR=%s\n' "$STATE_DIR"
}

# The subcommands are the cmd_* functions; the usage is lines 2-7 above.
run_subcommand 2,7 "$@"
