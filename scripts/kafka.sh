#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, combined broker+controller, single node) on loopback.
#
#   scripts/kafka.sh start     resolve the pinned Kafka jars (cached), format storage once, start,
#                              wait for a real Metadata response; prints BOOTSTRAP=host:port
#   scripts/kafka.sh stop      stop the broker this script started (by recorded pid)
#   scripts/kafka.sh restart   stop + start on the same port, keeping the data
#   scripts/kafka.sh status    exit 0 if the recorded broker answers metadata requests
#   scripts/kafka.sh env       print BOOTSTRAP=host:port of the running broker
#   scripts/kafka.sh reset     stop and delete the broker's data (next start formats anew)
#
# Starting twice is harmless. Environment: KAFKA_PORT (default: a free port, then remembered),
# KAFKA_HEAP (default 512m), STREAMDRIFT_RUN_DIR, STREAMDRIFT_CACHE_DIR.
source "$(dirname "$0")/_common.sh"

# Pinned broker version (kafka-python 3.0 speaks to it: see tests/test_stack_smoke.py).
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REPO_ROOT/scripts/kafka/pom.xml")"
CP_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION/lib"
K_DIR="$RUN_DIR/kafka"
PID_FILE="$K_DIR/kafka.pid"
PORT_FILE="$K_DIR/port"
LOG_FILE="$K_DIR/server.log"

resolve_jars() {
  if [[ -f "$CP_DIR/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is required to fetch Kafka; install it (apt-get install -y maven)"
  log "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $CP_DIR"
  rm -rf "$CP_DIR"
  mkdir -p "$CP_DIR"
  mvn -q -B -f "$REPO_ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$CP_DIR" >&2 \
    || die "could not resolve Kafka $KAFKA_VERSION with Maven"
  touch "$CP_DIR/.complete"
}

bootstrap() { echo "127.0.0.1:$(cat "$PORT_FILE")"; }

java_cmd() {
  command -v java >/dev/null || die "Java 17+ is required (apt-get install -y openjdk-17-jre-headless)"
  echo java
}

write_config() {
  local port="$1" cport="$2"
  cat > "$K_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$K_DIR/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=268435456
PROPS
  cat > "$K_DIR/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $LOG_FILE
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
}

start() {
  mkdir -p "$K_DIR"
  if pid_alive "$PID_FILE" && python3 "$REPO_ROOT/scripts/kafka_ready.py" "$(bootstrap)" 0; then
    log "Kafka $KAFKA_VERSION already running (pid $(cat "$PID_FILE"))"
    echo "BOOTSTRAP=$(bootstrap)"
    echo "STARTED=0"
    return 0
  fi
  resolve_jars
  local port cport t0
  t0=$(date +%s.%N)
  if [[ -n "${KAFKA_PORT:-}" ]]; then
    port="$KAFKA_PORT"
  elif [[ -f "$PORT_FILE" ]] && ! port_in_use "$(cat "$PORT_FILE")"; then
    port="$(cat "$PORT_FILE")"  # same port across restarts: clients and tests keep their address
  else
    port="$(free_port)"
  fi
  cport="$(free_port)"
  echo "$port" > "$PORT_FILE"
  write_config "$port" "$cport"
  local java; java="$(java_cmd)"
  local cp="$CP_DIR/*"
  local jopts=(-Xms256m "-Xmx${KAFKA_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true
               "-Dlog4j2.configurationFile=$K_DIR/log4j2.properties")
  if [[ ! -f "$K_DIR/data/meta.properties" ]]; then
    mkdir -p "$K_DIR/data"
    local cluster_id
    cluster_id="$("$java" -cp "$cp" "${jopts[@]}" kafka.tools.StorageTool random-uuid)"
    # KAFKA_FORMAT_EXTRA: extra format arguments from a script sourcing this one (kafka_sasl.sh
    # adds SCRAM credentials with --add-scram); empty here.
    "$java" -cp "$cp" "${jopts[@]}" kafka.tools.StorageTool format --standalone \
      -t "$cluster_id" -c "$K_DIR/server.properties" \
      ${KAFKA_FORMAT_EXTRA[@]+"${KAFKA_FORMAT_EXTRA[@]}"} >> "$K_DIR/format.log" 2>&1 \
      || die "formatting Kafka storage failed; see $K_DIR/format.log"
  fi
  # setsid: the broker must not die with the shell that started it (nor take its signals).
  setsid nohup "$java" -cp "$cp" "${jopts[@]}" kafka.Kafka "$K_DIR/server.properties" \
    >> "$K_DIR/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PID_FILE"
  if ! python3 "$REPO_ROOT/scripts/kafka_ready.py" "$(bootstrap)" "${KAFKA_START_TIMEOUT:-90}"; then
    tail -n 30 "$K_DIR/stdout.log" "$LOG_FILE" >&2 || true
    stop_pid "$PID_FILE" kafka
    die "Kafka did not become ready on $(bootstrap); logs in $K_DIR"
  fi
  log "Kafka $KAFKA_VERSION ready on $(bootstrap) (pid $(cat "$PID_FILE")) in $(python3 -c "import time;print(f'{time.time()-$t0:.1f}')") s; log: $LOG_FILE"
  echo "BOOTSTRAP=$(bootstrap)"
  echo "STARTED=1"
}

# Sourced (by scripts/kafka_sasl.sh): define the functions only.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PID_FILE" kafka ;;
  # The recorded port, even while the old one lingers in TIME_WAIT (start would pick another).
  restart) stop_pid "$PID_FILE" kafka; KAFKA_PORT="${KAFKA_PORT:-$(cat "$PORT_FILE" 2>/dev/null || true)}" start ;;
  status) pid_alive "$PID_FILE" && python3 "$REPO_ROOT/scripts/kafka_ready.py" "$(bootstrap)" 0 ;;
  env) [[ -f "$PORT_FILE" ]] || die "no broker recorded; run scripts/kafka.sh start"; echo "BOOTSTRAP=$(bootstrap)" ;;
  reset) stop_pid "$PID_FILE" kafka; rm -rf "$K_DIR/data" ;;
  version) echo "$KAFKA_VERSION" ;;
  *) echo "usage: $0 start|stop|restart|status|env|reset|version" >&2; exit 2 ;;
esac
