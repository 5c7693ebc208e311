#!/usr/bin/env bash
# A private Kafka broker with authentication, for the security tests (scripts/kafka.sh's broker
# plus SASL listeners). Same commands as scripts/kafka.sh: start | stop | status | env.
#
#   listeners   PLAINTEXT on BOOTSTRAP (loopback only; readiness probe and inter-broker traffic)
#               SASL_PLAINTEXT on SASL_BOOTSTRAP: mechanisms PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
#               SASL_SSL on SSL_BOOTSTRAP (with KAFKA_SSL=1): the same mechanisms over TLS with a
#               keytool-generated self-signed certificate (SAN IP:127.0.0.1); its PEM is SSL_CAFILE
#   users       KAFKA_SASL_USER / KAFKA_SASL_PASSWORD (default alice / alice-secret): a PLAIN user
#               in the listener's JAAS config, and SCRAM credentials (both hashes) written into
#               the KRaft metadata at format time (kafka-storage format --add-scram)
#
# Its files live in $STREAMDRIFT_RUN_DIR/kafka-sasl (default .run/kafka-sasl), apart from the dev
# broker's. SCRAM users are fixed at format time: `reset` (stop + delete data) to change them.
source "$(dirname "$0")/kafka.sh"

K_DIR="$RUN_DIR/kafka-sasl"
PID_FILE="$K_DIR/kafka.pid"
PORT_FILE="$K_DIR/port"
LOG_FILE="$K_DIR/server.log"
SASL_USER="${KAFKA_SASL_USER:-alice}"
SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-alice-secret}"
TLS_DIR="$K_DIR/tls"
STOREPASS="streamdrift-test-store"

KAFKA_FORMAT_EXTRA=(
  --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]"
  --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]"
)

remembered_port() {  # remembered_port FILE: the port recorded in FILE, or a new free one
  if [[ -f "$1" ]] && ! port_in_use "$(cat "$1")"; then cat "$1"; else free_port | tee "$1"; fi
}

make_cert() {
  [[ -f "$TLS_DIR/broker.p12" && -f "$TLS_DIR/ca.pem" ]] && return 0
  command -v keytool >/dev/null || die "keytool (Java) is required for KAFKA_SSL=1"
  mkdir -p "$TLS_DIR"
  keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 30 \
    -dname "CN=localhost" -ext "SAN=IP:127.0.0.1,DNS:localhost" \
    -keystore "$TLS_DIR/broker.p12" -storetype PKCS12 -storepass "$STOREPASS" \
    -keypass "$STOREPASS" >> "$K_DIR/keytool.log" 2>&1 || die "keytool failed; see $K_DIR/keytool.log"
  keytool -exportcert -rfc -alias broker -keystore "$TLS_DIR/broker.p12" \
    -storepass "$STOREPASS" -file "$TLS_DIR/ca.pem" >> "$K_DIR/keytool.log" 2>&1 \
    || die "keytool -exportcert failed; see $K_DIR/keytool.log"
}

jaas_lines() {  # jaas_lines LISTENER: the per-mechanism JAAS entries of one listener
  local l="$1"
  echo "listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${SASL_USER}=\"${SASL_PASSWORD}\";"
  echo "listener.name.$l.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  echo "listener.name.$l.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
}

eval "$(declare -f write_config | sed '1s/write_config/plain_write_config/')"
write_config() {  # the dev broker's config, then the SASL listeners (later keys win)
  local port="$1" cport="$2"
  plain_write_config "$port" "$cport"
  local listeners="PLAINTEXT://127.0.0.1:$port,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT"
  local map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
  if [[ -n "${SSL_PORT:-}" ]]; then
    listeners="$listeners,SASL_SSL://127.0.0.1:$SSL_PORT"
    map="$map,SASL_SSL:SASL_SSL"
  fi
  {
    echo "listeners=$listeners,CONTROLLER://127.0.0.1:$cport"
    echo "advertised.listeners=$listeners"
    echo "listener.security.protocol.map=$map"
    echo "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    jaas_lines sasl_plaintext
    if [[ -n "${SSL_PORT:-}" ]]; then
      jaas_lines sasl_ssl
      echo "listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker.p12"
      echo "listener.name.sasl_ssl.ssl.keystore.type=PKCS12"
      echo "listener.name.sasl_ssl.ssl.keystore.password=$STOREPASS"
      echo "listener.name.sasl_ssl.ssl.key.password=$STOREPASS"
    fi
  } >> "$K_DIR/server.properties"
}

print_env() {
  echo "SASL_BOOTSTRAP=127.0.0.1:$(cat "$K_DIR/sasl_port")"
  if [[ -f "$K_DIR/ssl_port" ]]; then
    echo "SSL_BOOTSTRAP=127.0.0.1:$(cat "$K_DIR/ssl_port")"
    echo "SSL_CAFILE=$TLS_DIR/ca.pem"
  fi
  echo "SASL_USER=$SASL_USER"
}

sasl_start() {
  mkdir -p "$K_DIR"
  SASL_PORT="$(remembered_port "$K_DIR/sasl_port")"
  SSL_PORT=""
  if [[ "${KAFKA_SSL:-0}" == 1 ]]; then
    make_cert
    SSL_PORT="$(remembered_port "$K_DIR/ssl_port")"
  fi
  start  # scripts/kafka.sh's start with the config and format arguments above
  print_env
}

case "${1:-}" in
  start) sasl_start ;;
  stop) stop_pid "$PID_FILE" kafka-sasl ;;
  status) pid_alive "$PID_FILE" && python3 "$REPO_ROOT/scripts/kafka_ready.py" "$(bootstrap)" 0 ;;
  env) [[ -f "$PORT_FILE" ]] || die "no SASL broker recorded; run scripts/kafka_sasl.sh start"
       echo "BOOTSTRAP=$(bootstrap)"; print_env ;;
  reset) stop_pid "$PID_FILE" kafka-sasl; rm -rf "$K_DIR/data" ;;
  *) echo "usage: $0 start|stop|status|env|reset" >&2; exit 2 ;;
esac
