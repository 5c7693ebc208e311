"""Security of the deployment (issue 8), against real servers of this module's own:

* a Kafka broker with SASL listeners (``scripts/kafka_sasl.sh``): SASL_PLAINTEXT and SASL_SSL
  (keytool self-signed certificate), mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512;
* a Redis with ``requirepass``, an ACL user and a TLS port (``scripts/redis.sh`` with
  ``REDIS_ARGS``; openssl self-signed certificate).

Right credentials connect; wrong ones fail at once with a clear error that names the keys to fix
and never the secret. Secrets come from the environment or files and never appear in the logs,
the ``check-config`` output or ``/metrics``; the metrics server binds where configured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kafka import TopicPartition

from streamdrift.config import parse_config
from streamdrift.errors import ConnectError, StoreError
from streamdrift.kafka import make_consumer, make_producer
from streamdrift.metrics import Metrics, MetricsServer
from streamdrift.state.base import TaskId
from streamdrift.state.redis import RedisStore
from streamdrift.synthetic import synthetic_events
from tests.service_harness import ServiceProcess, free_port, http_get, produce, wait_until

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]  # private servers

USER = "sd-user"
KAFKA_PASSWORD = f"kafka-pw-{uuid.uuid4().hex[:12]}"
REDIS_USER = "sd-redis"
REDIS_PASSWORD = f"redis-pw-{uuid.uuid4().hex[:12]}"
DEFAULT_PASSWORD = f"default-pw-{uuid.uuid4().hex[:12]}"
SECRETS = (KAFKA_PASSWORD, REDIS_PASSWORD, DEFAULT_PASSWORD)
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _env_lines(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    run = tmp_path_factory.mktemp("kafka-sasl")
    env = {
        **os.environ,
        "STREAMDRIFT_RUN_DIR": str(run),
        "KAFKA_SSL": "1",
        "KAFKA_SASL_USER": USER,
        "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "KAFKA_HEAP": "384m",
    }
    script = str(REPO / "scripts" / "kafka_sasl.sh")
    proc = subprocess.run(
        [script, "start"], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/kafka_sasl.sh start failed:\n{proc.stderr[-3000:]}", pytrace=False)
    info = _env_lines(proc.stdout)
    try:
        yield info
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, check=False)


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Redis with requirepass (default user), an ACL user, and a TLS port with its own CA."""
    d = tmp_path_factory.mktemp("redis-secure")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    args = (
        f"--requirepass {DEFAULT_PASSWORD} --user {REDIS_USER} on >{REDIS_PASSWORD} ~* &* +@all "
        f"--tls-port {tls_port} --tls-cert-file {d / 'cert.pem'} --tls-key-file {d / 'key.pem'} "
        f"--tls-ca-cert-file {d / 'cert.pem'} --tls-auth-clients no"
    )
    env = {**os.environ, "STREAMDRIFT_RUN_DIR": str(d / "run"), "REDIS_ARGS": args}
    script = str(REPO / "scripts" / "redis.sh")
    # cwd: an empty directory, so that the ACL patterns (~* &*) match no file name
    out = subprocess.run(
        [script, "start"], env=env, cwd=d, check=True, capture_output=True, text=True
    ).stdout
    port = _env_lines(out)["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
    try:
        yield {
            "port": port,
            "tls_port": str(tls_port),
            "ca": str(d / "cert.pem"),
            "acl_url": f"redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
            "default_url": f"redis://:{DEFAULT_PASSWORD}@127.0.0.1:{port}/0",
            "tls_url": f"rediss://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{tls_port}/0"
            f"?ssl_ca_certs={d / 'cert.pem'}",
        }
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, check=False)


def kafka_config(
    bootstrap: str,
    protocol: str,
    mechanism: str,
    password: str,
    library: str = "kafka-python",
    **client: Any,
) -> Any:
    return parse_config(
        {
            "kafka": {
                "library": library,
                "bootstrap_servers": bootstrap,
                "input_topics": ["sec"],
                "client": {
                    "security_protocol": protocol,
                    "sasl_mechanism": mechanism,
                    "sasl_plain_username": USER,
                    "sasl_plain_password": password,
                    "bootstrap_timeout_ms": 2000,
                    **client,
                },
            }
        }
    )


def _listener(broker: dict[str, str], protocol: str) -> tuple[str, dict[str, Any]]:
    if protocol == "SASL_SSL":
        return broker["SSL_BOOTSTRAP"], {"ssl_cafile": broker["SSL_CAFILE"]}
    return broker["SASL_BOOTSTRAP"], {}


# -- Kafka ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_sasl_connects_with_the_right_credentials(
    sasl_broker: dict[str, str], protocol: str, mechanism: str
) -> None:
    bootstrap, tls = _listener(sasl_broker, protocol)
    config = kafka_config(bootstrap, protocol, mechanism, KAFKA_PASSWORD, **tls)
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    producer = make_producer(config)
    producer.send(topic, b"hello").get(timeout=30)
    producer.close()
    consumer = make_consumer(config, group_id=None)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    assert _first_messages(consumer, 20) == [b"hello"]


def _first_messages(consumer: Any, seconds: float) -> list[bytes]:
    """The values of the first non-empty poll within ``seconds``; closes the consumer."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while not got and time.monotonic() < deadline:
        got = [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
    consumer.close()
    return got


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_wrong_password_fails_at_once_with_a_clear_error(
    sasl_broker: dict[str, str], mechanism: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex[:8]}"
    config = kafka_config(sasl_broker["SASL_BOOTSTRAP"], "SASL_PLAINTEXT", mechanism, wrong)
    started = time.monotonic()
    with pytest.raises(ConnectError) as err:
        make_consumer(config)
    assert time.monotonic() - started < 20
    message = str(err.value)
    assert "authentication" in message and repr(USER) in message
    assert mechanism in message and "sasl_plain_password" in message
    assert wrong not in message
    if mechanism == "PLAIN":
        with pytest.raises(ConnectError, match=r"producer .* authentication") as err:
            make_producer(config)
        assert wrong not in str(err.value)


def test_kafka_tls_with_an_unknown_ca_fails_with_a_clear_error(
    sasl_broker: dict[str, str],
) -> None:
    config = kafka_config(sasl_broker["SSL_BOOTSTRAP"], "SASL_SSL", "PLAIN", KAFKA_PASSWORD)
    with pytest.raises(ConnectError, match=r"TLS failed.*ssl_cafile") as err:
        make_consumer(config)
    assert KAFKA_PASSWORD not in str(err.value)


def test_plaintext_client_against_a_sasl_listener_fails_clearly(
    sasl_broker: dict[str, str],
) -> None:
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": sasl_broker["SASL_BOOTSTRAP"],
                "input_topics": ["sec"],
                "client": {"bootstrap_timeout_ms": 3000},
            }
        }
    )
    with pytest.raises(
        ConnectError, match=r"cannot connect to .* over PLAINTEXT.*security_protocol"
    ):
        make_consumer(config)


# The same with kafka.library: confluent-kafka (librdkafka does SASL and TLS itself).


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_sasl_connects_with_the_right_credentials(
    sasl_broker: dict[str, str], protocol: str, mechanism: str
) -> None:
    bootstrap, tls = _listener(sasl_broker, protocol)
    config = kafka_config(bootstrap, protocol, mechanism, KAFKA_PASSWORD, "confluent-kafka", **tls)
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    producer = make_producer(config)
    delivery = producer.send(topic, b"hello")
    producer.flush(30)
    assert delivery.succeeded(), delivery.exception
    producer.close()
    consumer = make_consumer(config, group_id=f"sec-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    assert _first_messages(consumer, 30) == [b"hello"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_wrong_password_fails_with_a_clear_error(
    sasl_broker: dict[str, str], mechanism: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex[:8]}"
    config = kafka_config(
        sasl_broker["SASL_BOOTSTRAP"], "SASL_PLAINTEXT", mechanism, wrong, "confluent-kafka"
    )
    started = time.monotonic()
    with pytest.raises(ConnectError) as err:
        make_consumer(config)
    assert time.monotonic() - started < 20
    message = str(err.value)
    assert "authentication" in message and repr(USER) in message
    assert mechanism in message and "sasl_plain_password" in message
    assert wrong not in message


def test_confluent_tls_with_an_unknown_ca_fails_with_a_clear_error(
    sasl_broker: dict[str, str],
) -> None:
    config = kafka_config(
        sasl_broker["SSL_BOOTSTRAP"], "SASL_SSL", "PLAIN", KAFKA_PASSWORD, "confluent-kafka"
    )
    with pytest.raises(ConnectError, match=r"TLS failed.*ssl_cafile") as err:
        make_consumer(config)
    assert KAFKA_PASSWORD not in str(err.value)


# -- Redis ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["acl_url", "default_url", "tls_url"])
def test_redis_store_with_acl_user_password_and_tls(
    secure_redis: dict[str, str], which: str
) -> None:
    store = RedisStore(secure_redis[which], f"sec-{uuid.uuid4().hex[:6]}")
    store.verify()
    task = TaskId("t", 0)
    fence = store.acquire(task)
    store.save(task, fence, b"state", 42)
    snap = store.load(task)
    assert snap is not None and (snap.state, snap.offset) == (b"state", 42)
    store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:{port}/0", "requires a password and the URL has none"),
        ("redis://{user}:wrong-pw-1@127.0.0.1:{port}/0", "invalid username-password pair"),
        ("redis://:wrong-pw-2@127.0.0.1:{port}/0", "invalid username-password pair"),
        ("rediss://{user}:{pw}@127.0.0.1:{tls_port}/0", "TLS failed.*ssl_ca_certs"),
    ],
)
def test_redis_refusals_are_clear_errors_without_the_secret(
    secure_redis: dict[str, str], url: str, expected: str
) -> None:
    full = url.format(user=REDIS_USER, pw=REDIS_PASSWORD, **secure_redis)
    store = RedisStore(full, "sec")
    with pytest.raises(StoreError, match=expected) as err:
        store.verify()
    message = str(err.value)
    assert "redis.url" in message or "ssl_ca_certs" in message
    for secret in (REDIS_PASSWORD, "wrong-pw-1", "wrong-pw-2"):
        assert secret not in message
    store.close()


# -- metrics bind address -------------------------------------------------------------------------


def test_metrics_server_binds_only_the_configured_address() -> None:
    port = free_port()
    server = MetricsServer(Metrics(), "127.0.0.2", port, lambda: True, lambda: (True, "ready"))
    server.start()
    try:
        assert http_get(f"http://127.0.0.2:{port}/healthz")[0] == 200
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        server.stop()


# -- the service -----------------------------------------------------------------------------


def _assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"


def _service_files(
    tmp_path: Path, broker: dict[str, str], redis: dict[str, str], topic: str, metrics_port: int
) -> tuple[Path, dict[str, str]]:
    """A config file with no secret in it, and the environment that supplies them (files)."""
    doc = {
        "kafka": {
            "bootstrap_servers": broker["SSL_BOOTSTRAP"],
            "group_id": f"{topic}-g",
            "input_topics": [topic],
            "alert_topic": f"{topic}-alerts",
            "dead_letter_topic": f"{topic}-dlq",
            "poll_timeout_ms": 200,
            "client": {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": USER,
                "ssl_cafile": broker["SSL_CAFILE"],
                "bootstrap_timeout_ms": 5000,
                "session_timeout_ms": 10000,
                "heartbeat_interval_ms": 1000,
            },
        },
        "redis": {"url": "redis://placeholder:6379/0", "key_prefix": topic},
        "checkpoint": {"every_events": 500, "every_seconds": 0.5},
        "metrics": {"host": "127.0.0.2", "port": metrics_port},
        "log_level": "DEBUG",  # the most talkative level must not leak either
    }
    config = tmp_path / "secure.yaml"
    config.write_text(yaml.safe_dump(doc))
    (tmp_path / "kafka-password").write_text(KAFKA_PASSWORD + "\n")
    (tmp_path / "redis-url").write_text(redis["tls_url"] + "\n")
    env = {
        "STREAMDRIFT_KAFKA__CLIENT__SASL_PLAIN_PASSWORD_FILE": str(tmp_path / "kafka-password"),
        "STREAMDRIFT_REDIS__URL_FILE": str(tmp_path / "redis-url"),
    }
    return config, env


class _EnvService(ServiceProcess):
    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        super().__init__(config, log)
        self.extra_env = env

    def start(self) -> _EnvService:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env},
        )
        return self


@pytest.mark.slow
def test_service_over_sasl_ssl_and_redis_tls_acl_never_shows_a_secret(
    tmp_path: Path, sasl_broker: dict[str, str], secure_redis: dict[str, str]
) -> None:
    topic = f"sec-svc-{uuid.uuid4().hex[:8]}"
    port = free_port()
    config, env = _service_files(tmp_path, sasl_broker, secure_redis, topic, port)
    check = subprocess.run(
        [sys.executable, "-m", "streamdrift", "check-config", str(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    _assert_no_secret(check.stdout + check.stderr, "check-config output")
    assert "sd-redis:***@" in check.stdout  # the URL is shown, masked

    events = [orjson.dumps(e) for e in synthetic_events(2000, seed=4, drift_at=0.5)[0]]
    events += [b"{not json", b'{"model_id": "x", "features": {"amount": "lots"}}']
    produce(sasl_broker["BOOTSTRAP"], topic, events)  # the broker's loopback PLAINTEXT listener
    svc = _EnvService(config, tmp_path / "svc.log", env).start()
    store = RedisStore(secure_redis["tls_url"], topic)
    try:

        def done() -> bool:
            assert svc.alive(), svc.log_text()[-3000:]
            snap = store.load(TaskId(topic, 0))
            return snap is not None and snap.offset == len(events)

        wait_until(done, 90, "the checkpoint over SASL_SSL + rediss:// to reach the end")
        status, text = http_get(f"http://127.0.0.2:{port}/metrics")
        assert status == 200 and "streamdrift_events_decoded_total" in text
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        _assert_no_secret(text, "/metrics")
    finally:
        code = svc.stop()
        store.close()
    log = svc.log_text()
    assert code == 0, log[-3000:]
    assert "DEBUG" in log and "SASL" in log  # the log is the talkative one we meant to check
    _assert_no_secret(log, "the service log")


@pytest.mark.slow
@pytest.mark.parametrize("what", ["kafka", "redis"])
def test_service_with_a_wrong_secret_exits_with_a_clear_error(
    tmp_path: Path, sasl_broker: dict[str, str], secure_redis: dict[str, str], what: str
) -> None:
    topic = f"sec-bad-{uuid.uuid4().hex[:8]}"
    config, env = _service_files(tmp_path, sasl_broker, secure_redis, topic, free_port())
    wrong = f"wrong-{uuid.uuid4().hex[:8]}"
    if what == "kafka":
        (tmp_path / "kafka-password").write_text(wrong)
        expected = "Kafka consumer cannot connect"
    else:
        url = secure_redis["tls_url"].replace(REDIS_PASSWORD, wrong)
        (tmp_path / "redis-url").write_text(url)
        expected = "Redis at rediss://sd-redis:***@"
    svc = _EnvService(config, tmp_path / "svc.log", env).start()
    assert svc.proc is not None
    try:
        code = svc.proc.wait(timeout=60)
    finally:
        if svc.alive():
            svc.stop()
    log = svc.log_text()
    assert code != 0
    assert f"streamdrift: error: {expected}" in log, log[-2000:]
    assert "Traceback" not in log
    assert wrong not in log
    _assert_no_secret(log, "the service log")
