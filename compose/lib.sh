# shellcheck shell=bash
# Shared by the service scripts in compose/ (sourced, not run): the skeleton every service has in
# common, so that each script keeps only what is specific to its service.
#
# Conventions the helpers rely on (each script sets or defines them):
#   STATE_DIR  the service's state directory (holds .lock, its pid file, logs)
#   PID_FILE   the pid of the process the script launched
#   log_tail   a function that prints the end of the service's logs to stderr
#   cmd_NAME   one function per subcommand NAME (see run_subcommand)

# ---------------------------------------------------------------- messages

# Messages go to stderr, prefixed with the script's name.
log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# show_tail LINES FILE: the end of a log FILE on stderr under a header (log_tail, after a failed start).
show_tail() {
  log "---- last lines of $2 ----"
  tail -n "$1" "$2" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------- packages

# apt_get_install PKG...: Debian packages, quietly, apt's output on stderr (the caller checks root).
apt_get_install() {
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# need_cmd CMD PKG: dies unless CMD is on PATH; as root with apt-get, installs Debian's PKG first.
need_cmd() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing $pkg (for $cmd)"
    apt_get_install "$pkg"
  fi
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found; install $pkg"
}

# ensure_python_venv: python3 with the venv module, for the services installed from PyPI.
ensure_python_venv() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "installing python3 and python3-venv"
      apt_get_install python3 python3-venv
    fi
    python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3 with the venv module is needed (python3-venv)"
  fi
}

# pip_venv VENV REQUIREMENT...: a fresh venv at VENV with the pinned REQUIREMENTs from PyPI.
pip_venv() {
  local venv="$1"
  shift
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed"
  "$venv/bin/pip" install -q --disable-pip-version-check "$@" >&2 || die "pip install $1 failed"
}

# install_once DIR WAIT WHAT INSTALL: runs INSTALL (which writes DIR/.installed when it is done)
# unless DIR/.installed exists, holding DIR/.install.lock on fd 8 (up to WAIT seconds to get it),
# so that concurrent starts install a cached artifact once.
install_once() {
  local dir="$1" wait="$2" what="$3" install="$4"
  [[ -f "$dir/.installed" ]] && return 0
  mkdir -p "$dir"
  exec 8>"$dir/.install.lock"
  flock -w "$wait" 8 || die "timed out waiting for another install of $what"
  if [[ -f "$dir/.installed" ]]; then exec 8>&-; return 0; fi
  "$install"
  exec 8>&-
}

# ---------------------------------------------------------------- processes

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# require_free_port PORT VAR: dies when PORT is taken (VAR is the variable that moves it).
require_free_port() {
  if port_open "$1"; then die "port $1 is in use by another process (set $2)"; fi
}

# True while PID exists (for a process that is not yet what IS_OURS recognises, e.g. a launcher).
pid_alive() { kill -0 "$1" 2>/dev/null; }

# proc_cmdline PID: PID's command line, NULs as spaces; fails unless PID is a live process. The
# is_our_* checks match on it, so that a recycled PID is never taken for the service.
proc_cmdline() {
  [[ "$1" =~ ^[0-9]+$ && -r "/proc/$1/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
}

# pid_from_file FILE IS_OURS: prints the pid FILE holds when `IS_OURS PID` says it is ours, else
# fails (no file, a stale pid, a pid recycled by another program).
pid_from_file() {
  local pid
  [[ -f "$1" ]] || return 1
  pid="$(cat "$1" 2>/dev/null || true)"
  "$2" "$pid" || return 1
  printf '%s\n' "$pid"
}

# lock_state DIR WAIT: holds DIR/.lock on fd 9 (up to WAIT seconds to get it), so that one start
# or stop at a time works on a state dir. Launched servers get 9>&- so as not to keep it.
lock_state() {
  exec 9>"$1/.lock"
  flock -w "$2" 9 || die "timed out waiting for another ${0##*/} on $1"
}

# await_ready WHAT PID ALIVE TIMEOUT STEP UNREADY READY...: runs READY every STEP seconds until it
# succeeds. Dies, after log_tail, when `ALIVE PID` fails ("WHAT (pid PID) exited during startup")
# or TIMEOUT seconds have passed ("UNREADY after TIMEOUTs").
await_ready() {
  local what="$1" pid="$2" alive="$3" timeout="$4" step="$5" unready="$6" deadline
  shift 6
  deadline=$((SECONDS + timeout))
  while :; do
    "$alive" "$pid" || { log_tail; die "$what (pid $pid) exited during startup"; }
    "$@" && return 0
    ((SECONDS < deadline)) || { log_tail; die "$unready after ${timeout}s"; }
    sleep "$step"
  done
}

# await_launch PID SETTLE ABORT...: the end of a start that has just launched PID: records it in
# PID_FILE, gives it SETTLE seconds to exec, then wait_ready PID, with `abort_launch ABORT...` as
# the EXIT trap meanwhile.
await_launch() {
  local pid="$1" settle="$2"
  shift 2
  printf '%s\n' "$pid" >"$PID_FILE"
  LAUNCHED_PID="$pid"
  # shellcheck disable=SC2064  # the arguments are fixed now
  trap "abort_launch $(printf '%q ' "$@")" EXIT
  sleep "$settle"
  wait_ready "$pid"
  trap - EXIT
}

# require_settings FILE WANT WHAT: a start that finds its server running goes on only when FILE
# (written at launch) holds WANT, the settings asked for now; else it dies with
# "WHAT <what FILE holds>; stop it first or use another SLUICE_STATE".
require_settings() {
  local got
  got="$(cat "$1" 2>/dev/null || true)"
  [[ "$got" == "$2" ]] || die "$3 $got; stop it first or use another SLUICE_STATE"
}

# resume_running PID WHERE CHECK...: the end of a start that finds its server (PID) running
# already: done at once when CHECK holds, else once wait_ready PID returns.
resume_running() {
  local pid="$1" where="$2"
  shift 2
  if "$@"; then log "already running (pid $pid) on $where"; return 0; fi
  wait_ready "$pid"
  log "ready on $where (pid $pid)"
}

# abort_launch WHAT IS_OURS TRIES STEP: the EXIT trap of a start while it waits for readiness, so
# that a server that never became ready is not left behind: SIGTERM, up to TRIES checks STEP
# seconds apart, then SIGKILL (TRIES 0: SIGKILL at once), and PID_FILE goes. Reads LAUNCHED_PID.
abort_launch() {
  local what="$1" is_ours="$2" tries="$3" step="$4" pid="${LAUNCHED_PID:-}" i
  "$is_ours" "$pid" || return 0
  log "stopping the $what that failed to become ready (pid $pid)"
  if ((tries > 0)); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < tries; i++)); do "$is_ours" "$pid" || break; sleep "$step"; done
  fi
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

# stop_process PID TIMEOUT IS_OURS: SIGTERM, wait up to TIMEOUT seconds while `IS_OURS PID`
# holds, then SIGKILL and wait for it to go. IS_OURS guards against a recycled PID.
stop_process() {
  local pid="$1" timeout="$2" is_ours="$3" deadline
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while "$is_ours" "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if "$is_ours" "$pid"; then
    log "still running after ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while "$is_ours" "$pid"; do sleep 0.2; done
  fi
}

# stop_service WHAT IS_OURS TIMEOUT: the `stop` subcommand of a service run from STATE_DIR with
# PID_FILE: under the state lock, stop_process on the pid if it is still ours; a no-op otherwise.
stop_service() {
  local what="$1" is_ours="$2" timeout="$3" pid
  [[ -d "$STATE_DIR" ]] || { log "not running"; return 0; }
  lock_state "$STATE_DIR" "$((timeout + 120))"
  if ! pid="$(pid_from_file "$PID_FILE" "$is_ours")"; then rm -f "$PID_FILE"; log "not running"; return 0; fi
  log "stopping $what (pid $pid)"
  stop_process "$pid" "$timeout" "$is_ours"
  rm -f "$PID_FILE"
  log "stopped"
}

# service_status NAME PID_FN UNREADY WHERE CHECK...: the `status` subcommand. Prints
# "NAME: not running" (status 1) unless PID_FN prints a pid; "NAME: pid PID running but UNREADY"
# (status 1) unless CHECK holds; else "NAME: running (pid PID) on WHERE".
service_status() {
  local name="$1" pid_fn="$2" unready="$3" where="$4" pid
  shift 4
  if ! pid="$("$pid_fn")"; then echo "$name: not running"; return 1; fi
  if ! "$@"; then echo "$name: pid $pid running but $unready"; return 1; fi
  echo "$name: running (pid $pid) on $where"
}

# ---------------------------------------------------------------- subcommands

# print_usage LINES: the script's header comment at LINES (a sed range such as 2,8), unindented.
print_usage() { sed -n "${1}p" "$0" | sed 's/^# \{0,1\}//'; }

# run_subcommand LINES [CMD [ARG...]]: the dispatch every script ends with: runs cmd_CMD ARG...;
# help prints the usage (print_usage LINES); anything else prints it to stderr and exits 2.
run_subcommand() {
  local lines="$1" cmd="${2:-}"
  shift
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    -h | --help | help) print_usage "$lines" ;;
    *)
      if [[ "$cmd" =~ ^[a-z_]+$ ]] && declare -F "cmd_$cmd" >/dev/null; then
        "cmd_$cmd" "$@"
      else
        print_usage "$lines" >&2
        exit 2
      fi
      ;;
  esac
}
