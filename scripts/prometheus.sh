#!/usr/bin/env bash
# A real Prometheus server (Debian's prometheus) on loopback, on its own port.
#
#   PROMETHEUS_CONFIG=prometheus.yml scripts/prometheus.sh start
#                                  install prometheus with apt-get when missing, start with that
#                                  config, wait for /-/ready; prints
#                                  PROMETHEUS_URL=http://127.0.0.1:port and STARTED=0|1
#   scripts/prometheus.sh stop     stop the server this script started (by recorded pid)
#   scripts/prometheus.sh status   exit 0 if the recorded server answers /-/ready
#   scripts/prometheus.sh env      print PROMETHEUS_URL of the running server
#
# Starting twice is harmless (the running server keeps its config). Environment:
# PROMETHEUS_CONFIG (the --config.file, required for start), PROMETHEUS_PORT (default: a free
# port, then remembered), PROMETHEUS_ARGS (extra prometheus arguments), STREAMDRIFT_RUN_DIR.
# The TSDB lives in $STREAMDRIFT_RUN_DIR/prometheus/data. Debian's package may also start a
# system-wide Prometheus on :9090; ours is separate (own port, own data) and that one is left alone.
source "$(dirname "$0")/_common.sh"

P_DIR="$RUN_DIR/prometheus"
PID_FILE="$P_DIR/prometheus.pid"
PORT_FILE="$P_DIR/port"
LOG_FILE="$P_DIR/prometheus.log"

ensure_installed() {
  if [[ -x /usr/bin/prometheus ]]; then
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "prometheus is missing; install it: sudo apt-get install -y prometheus"
  log "installing Debian's prometheus"
  (apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >&2 \
    || die "apt-get install prometheus failed"
}

url() { echo "http://127.0.0.1:$(cat "$PORT_FILE")"; }

ready() {
  [[ -f "$PORT_FILE" ]] && curl -fsS --max-time 2 -o /dev/null "$(url)/-/ready" 2>/dev/null
}

start() {
  mkdir -p "$P_DIR"
  if pid_alive "$PID_FILE" && ready; then
    log "Prometheus already running (pid $(cat "$PID_FILE"))"
    echo "PROMETHEUS_URL=$(url)"
    echo "STARTED=0"
    return 0
  fi
  [[ -n "${PROMETHEUS_CONFIG:-}" ]] || die "set PROMETHEUS_CONFIG to the prometheus.yml to run"
  [[ -f "$PROMETHEUS_CONFIG" ]] || die "PROMETHEUS_CONFIG=$PROMETHEUS_CONFIG: no such file"
  ensure_installed
  local port
  if [[ -n "${PROMETHEUS_PORT:-}" ]]; then
    port="$PROMETHEUS_PORT"
  elif [[ -f "$PORT_FILE" ]] && ! port_in_use "$(cat "$PORT_FILE")"; then
    port="$(cat "$PORT_FILE")"
  else
    port="$(free_port)"
  fi
  echo "$port" > "$PORT_FILE"
  mkdir -p "$P_DIR/data"
  # shellcheck disable=SC2086  # PROMETHEUS_ARGS is a list of arguments on purpose
  setsid nohup /usr/bin/prometheus \
    --config.file="$(realpath "$PROMETHEUS_CONFIG")" \
    --storage.tsdb.path="$P_DIR/data" \
    --web.listen-address="127.0.0.1:$port" \
    ${PROMETHEUS_ARGS:-} \
    > "$LOG_FILE" 2>&1 < /dev/null &
  echo $! > "$PID_FILE"
  for _ in $(seq 1 300); do
    if ready; then
      log "Prometheus ready on $(url) (pid $(cat "$PID_FILE")); log: $LOG_FILE"
      echo "PROMETHEUS_URL=$(url)"
      echo "STARTED=1"
      return 0
    fi
    pid_alive "$PID_FILE" || break
    sleep 0.1
  done
  tail -n 20 "$LOG_FILE" >&2 || true
  stop_pid "$PID_FILE" prometheus
  die "Prometheus did not become ready on port $port; log: $LOG_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PID_FILE" prometheus ;;
  status) pid_alive "$PID_FILE" && ready ;;
  env)
    [[ -f "$PORT_FILE" ]] || die "no Prometheus recorded; run scripts/prometheus.sh start"
    echo "PROMETHEUS_URL=$(url)"
    ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
