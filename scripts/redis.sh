#!/usr/bin/env bash
# A real Redis server (Debian's redis-server) on loopback, on its own port.
#
#   scripts/redis.sh start     install redis-server with apt-get when missing, start, wait for PING;
#                              prints REDIS_URL=redis://127.0.0.1:port/0 and STARTED=0|1
#   scripts/redis.sh stop      stop the server this script started (by recorded pid)
#   scripts/redis.sh restart   stop + start on the same port (data kept if persistence is on)
#   scripts/redis.sh status    exit 0 if the recorded server answers PING
#   scripts/redis.sh env       print REDIS_URL of the running server
#
# Starting twice is harmless. Environment: REDIS_PORT (default: a free port, then remembered),
# REDIS_ARGS (extra redis-server arguments, e.g. "--requirepass secret"), STREAMDRIFT_RUN_DIR.
source "$(dirname "$0")/_common.sh"

R_DIR="$RUN_DIR/redis"
PID_FILE="$R_DIR/redis.pid"
PORT_FILE="$R_DIR/port"
LOG_FILE="$R_DIR/redis.log"

ensure_installed() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "redis-server is missing; install it: sudo apt-get install -y redis-server"
  log "installing Debian's redis-server"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2 \
    || die "apt-get install redis-server failed"
  # The package starts a system-wide instance on 6379 via its init script on some images; ours is
  # separate (own port, own dir), so that one is left alone.
}

url() { echo "redis://127.0.0.1:$(cat "$PORT_FILE")/0"; }

ping() {
  local out
  out="$(redis-cli -h 127.0.0.1 -p "$(cat "$PORT_FILE")" ${REDISCLI_AUTH:+--no-auth-warning} ping 2>/dev/null || true)"
  [[ "$out" == "PONG" || "$out" == NOAUTH* ]]
}

start() {
  mkdir -p "$R_DIR"
  if pid_alive "$PID_FILE" && ping; then
    log "Redis already running (pid $(cat "$PID_FILE"))"
    echo "REDIS_URL=$(url)"
    echo "STARTED=0"
    return 0
  fi
  ensure_installed
  local port
  if [[ -n "${REDIS_PORT:-}" ]]; then
    port="$REDIS_PORT"
  elif [[ -f "$PORT_FILE" ]] && ! port_in_use "$(cat "$PORT_FILE")"; then
    port="$(cat "$PORT_FILE")"
  else
    port="$(free_port)"
  fi
  echo "$port" > "$PORT_FILE"
  mkdir -p "$R_DIR/data"
  # shellcheck disable=SC2086  # REDIS_ARGS is a list of arguments on purpose
  setsid nohup redis-server --port "$port" --bind 127.0.0.1 --dir "$R_DIR/data" \
    --daemonize no --save "" --appendonly no --logfile "$LOG_FILE" ${REDIS_ARGS:-} \
    > /dev/null 2>&1 < /dev/null &
  echo $! > "$PID_FILE"
  for _ in $(seq 1 100); do
    if ping; then
      log "Redis $(redis-server --version | awk '{print $3}') ready on $(url) (pid $(cat "$PID_FILE")); log: $LOG_FILE"
      echo "REDIS_URL=$(url)"
      echo "STARTED=1"
      return 0
    fi
    pid_alive "$PID_FILE" || break
    sleep 0.1
  done
  tail -n 20 "$LOG_FILE" >&2 || true
  stop_pid "$PID_FILE" redis
  die "Redis did not answer PING on port $port; log: $LOG_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PID_FILE" redis ;;
  # The recorded port, even while the old one lingers in TIME_WAIT (start would pick another).
  restart) stop_pid "$PID_FILE" redis; REDIS_PORT="${REDIS_PORT:-$(cat "$PORT_FILE" 2>/dev/null || true)}" start ;;
  status) pid_alive "$PID_FILE" && ping ;;
  env) [[ -f "$PORT_FILE" ]] || die "no Redis recorded; run scripts/redis.sh start"; echo "REDIS_URL=$(url)" ;;
  *) echo "usage: $0 start|stop|restart|status|env" >&2; exit 2 ;;
esac
