"""Faults against the real servers (issue 8): each test is named after its fault.

Servers that a test stops or restarts are private instances (scripts/redis.sh, scripts/kafka.sh
with their own STREAMDRIFT_RUN_DIR); the shared dev servers are never touched. The expected result
of every stream is computed by an uninterrupted in-process run of the same pipeline
(:func:`streamdrift.app.replay` with the same config and topic: same detector states, same alert
ids), and the per-event checksum kept in each bank (``n_events``, ``offset_sum``, ``offset_xor``)
shows that no event was lost or counted twice.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from streamdrift.app import replay
from streamdrift.bank import BankCounters
from streamdrift.state.memory import MemoryStore
from streamdrift.synthetic import synthetic_events
from tests.service_harness import (
    ServiceProcess,
    alerts_of,
    checkpointed_offsets,
    consume_all,
    detector_states,
    end_offsets,
    free_port,
    http_get,
    load_banks,
    load_config,
    produce,
    wait_checkpointed,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
N_EVENTS = 8000
HALF = N_EVENTS // 2
ALERT_SCHEMA = jsonschema.Draft202012Validator(
    json.loads((REPO / "streamdrift" / "schemas" / "alert.schema.json").read_text())
)


# -- helpers -------------------------------------------------------------------------------------


def _stream(n: int = N_EVENTS, seed: int = 21) -> list[bytes]:
    events, _ = synthetic_events(n, seed=seed, drift_at=0.5, outlier_rate=0.002)
    return [orjson.dumps(e) for e in events]


@dataclass
class Reference:
    states: dict[str, Any]
    alert_ids: set[str]
    alert_offsets: list[int]
    counters: BankCounters


def _reference(config_path: Path, topic: str, values: list[bytes]) -> Reference:
    """The uninterrupted run: the same pipeline over the same records, in process."""
    config = load_config(config_path)
    out: list[bytes] = []
    _, bank = replay(config, values, out.append, lambda _: None, topic=topic, store=MemoryStore())
    alerts = [orjson.loads(a) for a in out]
    assert alerts, "the reference stream must raise alerts"
    return Reference(
        detector_states(bank),
        {a["alert_id"] for a in alerts},
        sorted(a["source"]["offset"] for a in alerts),
        bank.counters,
    )


def _checksum(first: int, end: int) -> tuple[int, int, int]:
    """(n_events, offset_sum, offset_xor) of offsets first..end-1."""
    offsets = range(first, end)
    return len(offsets), sum(offsets), functools.reduce(operator.xor, offsets, 0)


def _counters(c: BankCounters) -> tuple[int, int, int]:
    return c.n_events, c.offset_sum, c.offset_xor


def _produce_paced(bootstrap: str, topic: str, values: list[bytes], seconds: float) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    chunks = 40
    step = -(-len(values) // chunks)
    for i in range(0, len(values), step):
        for value in values[i : i + step]:
            producer.send(topic, key=b"fraud-v3", value=value)
        time.sleep(seconds / chunks)
    producer.flush(timeout=120)
    producer.close()


def _metric(text: str, prefix: str) -> float:
    lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert lines, f"no metric {prefix} in /metrics"
    return float(lines[0].rsplit(" ", 1)[1])


class PrivateServer:
    """scripts/redis.sh or scripts/kafka.sh on a run dir of the test's own."""

    def __init__(self, script: str, run_dir: Path, **env: str) -> None:
        self.script = str(REPO / "scripts" / script)
        self.env = {**os.environ, "STREAMDRIFT_RUN_DIR": str(run_dir), **env}
        self.address = ""

    def __call__(self, command: str) -> PrivateServer:
        out = subprocess.run(
            [self.script, command], env=self.env, check=True, capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if line.startswith(("REDIS_URL=", "BOOTSTRAP=")):
                self.address = line.split("=", 1)[1]
        return self


@pytest.fixture
def private_redis(tmp_path: Path):
    """``make(persistent)``: a private Redis; persistent = append-only file, fsync always."""
    servers: list[PrivateServer] = []

    def make(persistent: bool) -> PrivateServer:
        args = "--appendonly yes --appendfsync always" if persistent else ""
        server = PrivateServer(
            "redis.sh",
            tmp_path / f"redis{len(servers)}",
            REDIS_ARGS=args,
            REDIS_PORT=str(free_port()),  # the same port after stop + start
        )
        servers.append(server)
        return server("start")

    yield make
    for server in servers:
        subprocess.run([server.script, "stop"], env=server.env, check=False, capture_output=True)


def _config(
    tmp_path: Path,
    bootstrap: str,
    topic: str,
    redis_url: str,
    prefix: str,
    library: str = "kafka-python",
    **kw: Any,
):
    # The broker's minimum session timeout: a killed instance's partitions move on sooner.
    client = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
    kw["extra"] = {"kafka": {"client": client, "library": library}, **kw.get("extra", {})}
    return write_config(
        tmp_path / f"{prefix}.yaml",
        bootstrap=bootstrap,
        topic=topic,
        redis_url=redis_url,
        prefix=prefix,
        group=f"{topic}-{prefix}",
        **kw,
    )


def _alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return alerts_of(consume_all(bootstrap, f"{topic}-alerts", idle_s=2.0))


def _resets(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resets = [a for a in alerts if a["type"] == "state_reset"]
    for a in resets:
        ALERT_SCHEMA.validate(a)
    return resets


def _assert_equals_reference(
    config_path: Path, topic: str, bootstrap: str, ref: Reference, n: int = N_EVENTS
) -> list[dict[str, Any]]:
    (bank,) = load_banks(load_config(config_path), topic, 1)
    assert _counters(bank.counters) == _checksum(0, n), "an event lost or counted twice"
    assert detector_states(bank) == ref.states
    alerts = _alerts(bootstrap, topic)
    for a in alerts:
        ALERT_SCHEMA.validate(a)
    detections = [a for a in alerts if a["type"] != "state_reset"]
    assert {a["alert_id"] for a in detections} == ref.alert_ids
    return alerts


# -- Redis ---------------------------------------------------------------------------------------


def test_redis_stopped_for_30_s_then_restarted_with_its_data(
    tmp_path: Path, kafka_bootstrap: str, topic_factory, private_redis
) -> None:
    redis = private_redis(persistent=True)
    topic = topic_factory(partitions=1)
    port = free_port()
    path = _config(
        tmp_path, kafka_bootstrap, topic, redis.address, "f1", every_events=1000,
        every_seconds=0.5, extra={"metrics": {"port": port}},
    )  # fmt: skip
    values = _stream()
    ref = _reference(path, topic, values)
    produce(kafka_bootstrap, topic, values[:HALF], key=b"fraud-v3")
    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    ready = f"http://127.0.0.1:{port}/readyz"
    try:
        wait_checkpointed(redis.address, "f1", topic, [HALF], svc)
        wait_until(lambda: http_get(ready)[0] == 200, 30, "ready")
        redis("stop")  # a real stop: connections refused
        stopped = time.monotonic()
        produce(kafka_bootstrap, topic, values[HALF:], key=b"fraud-v3")
        wait_until(lambda: http_get(ready)[0] == 503, 30, "not ready while Redis is down")
        assert "redis" in http_get(ready)[1].lower()
        time.sleep(max(0.0, 30.0 - (time.monotonic() - stopped)))
        assert svc.alive() and http_get(ready)[0] == 503
        redis("start")  # same port, data from the append-only file
        wait_checkpointed(redis.address, "f1", topic, [N_EVENTS], svc)
        wait_until(lambda: http_get(ready)[0] == 200, 30, "ready again")
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1]
    finally:
        svc.stop()
    assert "Traceback" not in svc.log_text()
    alerts = _assert_equals_reference(path, topic, kafka_bootstrap, ref)
    assert not _resets(alerts), "Redis kept its data: nothing to reset"
    assert _metric(metrics, 'streamdrift_checkpoints_total{result="failed"}') >= 1
    assert _metric(metrics, 'streamdrift_redis_errors_total{op="save"}') >= 1


def test_redis_restarted_empty_mid_stream_restores_the_running_state(
    tmp_path: Path, kafka_bootstrap: str, topic_factory, private_redis
) -> None:
    redis = private_redis(persistent=False)
    topic = topic_factory(partitions=1)
    port = free_port()
    path = _config(
        tmp_path, kafka_bootstrap, topic, redis.address, "f2", every_events=1000,
        every_seconds=0.5, extra={"metrics": {"port": port}},
    )  # fmt: skip
    values = _stream()
    ref = _reference(path, topic, values)
    produce(kafka_bootstrap, topic, values[:HALF], key=b"fraud-v3")
    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    try:
        wait_checkpointed(redis.address, "f2", topic, [HALF], svc)
        redis("restart")  # no persistence: it comes back empty, fence counters and all
        assert checkpointed_offsets(redis.address, "f2", topic, 1) == [-1]
        produce(kafka_bootstrap, topic, values[HALF:], key=b"fraud-v3")
        wait_checkpointed(redis.address, "f2", topic, [N_EVENTS], svc)
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1]
    finally:
        svc.stop()
    assert "state reset" in svc.log_text() and "Traceback" not in svc.log_text()
    alerts = _assert_equals_reference(path, topic, kafka_bootstrap, ref)
    (reset,) = _resets(alerts)
    assert reset["details"]["reason"] == "state_lost"
    assert reset["details"]["recovery"] == "restored"
    assert reset["details"]["lost_offset"] == HALF
    assert reset["model_id"] == "*" and reset["detector"] is None
    series = 'streamdrift_state_resets_total{reason="state_lost",recovery="restored"}'
    assert _metric(metrics, series) == 1


@pytest.mark.parametrize("recovery", ["rewarm", "rebuild"])
def test_redis_restarted_empty_while_the_service_was_down(
    tmp_path: Path, kafka_bootstrap: str, topic_factory, private_redis, recovery: str
) -> None:
    redis = private_redis(persistent=False)
    topic = topic_factory(partitions=1)
    path = _config(
        tmp_path, kafka_bootstrap, topic, redis.address, "f3", every_events=1000,
        every_seconds=0.5, extra={"checkpoint": {"on_state_loss": recovery}},
    )  # fmt: skip
    values = _stream()
    ref = _reference(path, topic, values)
    produce(kafka_bootstrap, topic, values[:HALF], key=b"fraud-v3")
    svc = ServiceProcess(path, tmp_path / "a.log").start()
    try:
        wait_checkpointed(redis.address, "f3", topic, [HALF], svc)
    finally:
        svc.stop()  # final checkpoint, offsets committed to the group
    redis("restart")
    produce(kafka_bootstrap, topic, values[HALF:], key=b"fraud-v3")
    svc = ServiceProcess(path, tmp_path / "b.log").start()
    try:
        wait_checkpointed(redis.address, "f3", topic, [N_EVENTS], svc)
    finally:
        svc.stop()
    assert "state reset" in svc.log_text() and "Traceback" not in svc.log_text()
    alerts = _alerts(kafka_bootstrap, topic)
    (reset,) = _resets(alerts)
    assert reset["details"]["reason"] == "state_lost"
    assert reset["details"]["recovery"] == recovery
    assert reset["details"]["lost_offset"] == HALF and reset["source"]["offset"] == HALF
    assert reset["severity"] == "critical"
    (bank,) = load_banks(load_config(path), topic, 1)
    if recovery == "rewarm":
        # Fresh detectors from the committed position: nothing counted twice, the past forgotten.
        assert _counters(bank.counters) == _checksum(HALF, N_EVENTS)
    else:
        # Re-read from the earliest offset: the same as if nothing had happened.
        _assert_equals_reference(path, topic, kafka_bootstrap, ref)


# -- Kafka ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("library", ["kafka-python", "confluent-kafka"])
def test_kafka_broker_restarted_mid_stream(
    tmp_path: Path, redis_url: str, redis_factory, library: str
) -> None:
    kafka = PrivateServer("kafka.sh", tmp_path / "kafka", KAFKA_PORT=str(free_port()))
    kafka("start")
    try:
        bootstrap = kafka.address
        _, prefix = redis_factory()
        topic = f"faults-{prefix}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, 1, 1), NewTopic(f"{topic}-alerts", 1, 1)])
        admin.close()
        path = _config(
            tmp_path, bootstrap, topic, redis_url, prefix, library,
            every_events=1000, every_seconds=0.5,
        )  # fmt: skip
        values = _stream()
        first = 2000
        produce(bootstrap, topic, values[:first], key=b"fraud-v3")
        svc = ServiceProcess(path, tmp_path / "svc.log").start()
        try:
            wait_checkpointed(redis_url, prefix, topic, [first], svc)
            # The rest is produced at a steady pace while the broker restarts under everyone.
            producer = threading.Thread(
                target=_produce_paced, args=(bootstrap, topic, values[first:], 8.0)
            )
            producer.start()
            time.sleep(2.0)
            at_restart = checkpointed_offsets(redis_url, prefix, topic, 1)[0]
            kafka("restart")  # same port and data; consumer, group and producers reconnect
            producer.join(timeout=120)
            # What the topic holds is the truth (a producer retry could have added a copy).
            actual = [r.value for r in consume_all(bootstrap, topic)]
            wait_checkpointed(redis_url, prefix, topic, [len(actual)], svc, timeout_s=90)
        finally:
            svc.stop()
        assert at_restart < len(actual), "the broker restarted mid-stream"
        assert len(actual) >= N_EVENTS
        assert "Traceback" not in svc.log_text()
        ref = _reference(path, topic, actual)
        _assert_equals_reference(path, topic, bootstrap, ref, n=len(actual))
    finally:
        kafka("stop")


@pytest.mark.parametrize("library", ["kafka-python", "confluent-kafka"])
def test_alert_topic_unavailable_for_a_while(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory, redis_factory, library: str
) -> None:
    """The broker refuses every alert (topic max.message.bytes below an alert) for a while."""
    topic = topic_factory(partitions=1)
    _, prefix = redis_factory()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    alert_topic = f"{topic}-alerts"
    admin.create_topics([NewTopic(alert_topic, 1, 1, topic_configs={"max.message.bytes": "64"})])
    port = free_port()
    path = _config(
        tmp_path, kafka_bootstrap, topic, redis_url, prefix, library, every_events=500,
        every_seconds=0.3, extra={"metrics": {"port": port}},
    )  # fmt: skip
    values = _stream()
    ref = _reference(path, topic, values)
    first_alert = ref.alert_offsets[0]
    produce(kafka_bootstrap, topic, values, key=b"fraud-v3")
    ready = f"http://127.0.0.1:{port}/readyz"
    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    try:
        wait_until(
            lambda: "kafka" in http_get(ready)[1].lower(), 60, "not ready: alerts undelivered"
        )
        # While the alerts are refused, no checkpoint goes past the first one's event.
        seen = []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            seen.append(checkpointed_offsets(redis_url, prefix, topic, 1)[0])
            assert seen[-1] <= first_alert, (seen[-1], first_alert)
            time.sleep(0.25)
        assert svc.alive() and http_get(ready)[0] == 503
        assert not consume_all(kafka_bootstrap, alert_topic, idle_s=1.0)
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, alert_topic, {"max.message.bytes": "1048588"}
                )
            ]
        )
        wait_checkpointed(redis_url, prefix, topic, [N_EVENTS], svc)
        wait_until(lambda: http_get(ready)[0] == 200, 30, "ready again")
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1]
    finally:
        admin.close()
        svc.stop()
    assert max(seen) > 0, "the service checkpointed what came before the first alert"
    assert _metric(metrics, 'streamdrift_kafka_errors_total{op="produce"}') >= 1
    _assert_equals_reference(path, topic, kafka_bootstrap, ref)


# -- the process ---------------------------------------------------------------------------------


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        value = consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close()
    return -1 if value is None else int(value)


@pytest.mark.parametrize("point", ["after_flush", "after_redis", "after_commit"])
def test_sigkill_during_a_checkpoint(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory,
    redis_factory,
    point: str,
) -> None:
    topic = topic_factory(partitions=1)
    _, prefix = redis_factory()
    # Checkpoints by count only (every 1,500 events); the kill comes in the third, after the drift
    # at 4,000, so that alerts have gone out which no checkpoint covers yet.
    path = _config(
        tmp_path, kafka_bootstrap, topic, redis_url, prefix, every_events=1500, every_seconds=600
    )
    values = _stream()
    ref = _reference(path, topic, values)
    produce(kafka_bootstrap, topic, values, key=b"fraud-v3")
    fault = {"SD_FAULT_CHECKPOINT": f"{point}:3"}
    svc = ServiceProcess(path, tmp_path / "a.log", env=fault).start()
    assert svc.proc is not None
    assert svc.proc.wait(timeout=90) == -signal.SIGKILL, svc.log_text()[-3000:]
    saved = checkpointed_offsets(redis_url, prefix, topic, 1)[0]
    committed = _committed(kafka_bootstrap, f"{topic}-{prefix}", topic)
    assert 0 < saved < N_EVENTS
    if point == "after_redis":
        assert committed < saved, "killed between the Redis write and the Kafka commit"
    else:
        assert committed == saved
    if point == "after_flush":
        (n_sent,) = end_offsets(kafka_bootstrap, f"{topic}-alerts", 1)
        covered = sum(1 for offset in ref.alert_offsets if offset < saved)
        assert n_sent > covered, "alerts that no checkpoint covers were out before the kill"

    svc = ServiceProcess(path, tmp_path / "b.log").start()
    try:
        wait_checkpointed(redis_url, prefix, topic, [N_EVENTS], svc)
    finally:
        svc.stop()
    alerts = _assert_equals_reference(path, topic, kafka_bootstrap, ref)
    by_key: dict[tuple[Any, ...], set[str]] = {}
    for a in alerts:
        by_key.setdefault((a["source"]["offset"], a["feature"], a["detector"]), set()).add(
            a["alert_id"]
        )
    assert all(len(ids) == 1 for ids in by_key.values()), "a repeated alert has the same id"


def test_rebalance_storm(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory, redis_factory
) -> None:
    """3-4 instances join and leave (SIGTERM and SIGKILL) while 4 partitions are produced."""
    partitions = 4
    topic = topic_factory(partitions=partitions)
    _, prefix = redis_factory()
    path = _config(
        tmp_path, kafka_bootstrap, topic, redis_url, prefix, every_events=500,
        every_seconds=0.5,
    )  # fmt: skip
    per_partition = 3000
    streams = [
        [orjson.dumps(e) for e in synthetic_events(
            per_partition, seed=p, model_id=f"model-{p}", drift_at=None, outlier_rate=0.0
        )[0]]
        for p in range(partitions)
    ]  # fmt: skip
    producing_s = 15.0

    def produce_paced() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20)
        chunks = 40
        step = per_partition // chunks
        for i in range(chunks):
            for p, values in enumerate(streams):
                for v in values[i * step : (i + 1) * step]:
                    producer.send(topic, value=v, partition=p)
            producer.flush()
            time.sleep(producing_s / chunks)
        producer.close()

    producer = threading.Thread(target=produce_paced)
    rng = random.Random(8)
    alive: list[ServiceProcess] = []
    gone: list[ServiceProcess] = []
    n = 0

    def start() -> None:
        nonlocal n
        n += 1
        alive.append(ServiceProcess(path, tmp_path / f"svc{n}.log").start())

    kills = {signal.SIGTERM: 0, signal.SIGKILL: 0}
    try:
        for _ in range(3):
            start()
        producer.start()
        deadline = time.monotonic() + producing_s + 4
        # The storm goes on (within a bound) until enough partitions were taken over from a
        # checkpoint: how many a given churn gives depends on how fast the group rebalances.
        hard_deadline = deadline + 45
        while time.monotonic() < deadline or (
            _takeovers(alive + gone) < 2 * partitions and time.monotonic() < hard_deadline
        ):
            time.sleep(rng.uniform(1.0, 2.5))
            if len(alive) < 3 or (len(alive) < 4 and rng.random() < 0.5):
                start()
            else:
                victim = alive.pop(rng.randrange(len(alive)))
                sig = signal.SIGKILL if rng.random() < 0.5 else signal.SIGTERM
                kills[sig] += 1
                assert victim.proc is not None
                victim.proc.send_signal(sig)
                gone.append(victim)
        producer.join()
        assert kills[signal.SIGTERM] and kills[signal.SIGKILL], kills
        ends = end_offsets(kafka_bootstrap, topic, partitions)
        assert ends == [per_partition] * partitions
        wait_checkpointed(redis_url, prefix, topic, ends, alive[0], timeout_s=120)
    finally:
        for svc in alive + gone:
            if svc.alive():
                svc.stop()
    logs = [svc.log_text() for svc in alive + gone]
    for log in logs:
        assert "Traceback" not in log, log[-3000:]
        # the revocation checkpoint commits from the consumer's IO thread without blocking
        assert "Cannot block on net.run" not in log
    takeovers = _takeovers(alive + gone)
    assert takeovers >= 2 * partitions, f"only {takeovers} takeovers from a checkpoint"
    banks = load_banks(load_config(path), topic, partitions)
    for bank, end in zip(banks, ends, strict=True):
        assert _counters(bank.counters) == _checksum(0, end)
    total = [sum(x) for x in zip(*(_counters(b.counters) for b in banks), strict=True)]
    assert total[0] == partitions * per_partition


def _takeovers(services: list[ServiceProcess]) -> int:
    """Partitions the services opened from a checkpoint (their logs say so)."""
    return sum(svc.log_text().count("resuming at offset") for svc in services)


def test_outbox_replaces_a_producer_a_refused_alert_left_fatal(kafka_bootstrap: str) -> None:
    """kafka-python's idempotent producer fails every later send after a non-retriable error."""
    from streamdrift.errors import DeliveryError
    from streamdrift.kafka import Outbox

    topic = f"faults-fatal-{os.getpid()}-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "64"})])

    def make() -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)

    try:
        stuck, renewing = Outbox(make(), backoff_s=0.1), Outbox(make(), backoff_s=0.1, renew=make)
        for outbox in (stuck, renewing):
            outbox.send(topic, b"x" * 500, b"k")
            with pytest.raises(DeliveryError):
                outbox.flush(timeout_s=10)
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "1048588"})]
        )
        time.sleep(1.0)
        renewing.reset_attempts()
        renewing.flush(timeout_s=20)
        assert renewing.n_sent == 1 and renewing.n_renewed >= 1
        stuck.reset_attempts()
        with pytest.raises(DeliveryError):  # without renew: never again, whatever the broker says
            stuck.flush(timeout_s=5)
        assert end_offsets(kafka_bootstrap, topic, 1) == [1], "kept, retried, delivered once"
        stuck.close(1.0)
        renewing.close(1.0)
    finally:
        admin.delete_topics([topic])
        admin.close()
