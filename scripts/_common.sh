# Shared helpers for the dev-stack scripts. Sourced, not executed.
# shellcheck shell=bash
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Runtime files (pids, logs, data, chosen ports) live here; one stack per checkout.
RUN_DIR="${STREAMDRIFT_RUN_DIR:-$REPO_ROOT/.run}"
# Downloads live outside the checkout so that a fresh clone (CI) reuses them.
CACHE_DIR="${STREAMDRIFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamdrift}"
mkdir -p "$RUN_DIR" "$CACHE_DIR"

log() { printf '%s %s\n' "[$(basename "$0")]" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# free_port: ask the kernel for an unused loopback port.
free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

port_in_use() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
finally:
    s.close()
sys.exit(1)
PY
}

# pid_alive FILE: true when FILE names a running process.
pid_alive() {
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_pid FILE NAME: TERM the recorded process, wait, KILL if it lingers; remove FILE.
stop_pid() {
  local file="$1" name="$2" pid
  if ! pid_alive "$file"; then
    rm -f "$file"
    log "$name is not running (nothing started by this script)"
    return 0
  fi
  pid="$(cat "$file")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not stop within 20 s; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  log "$name stopped (pid $pid)"
}
