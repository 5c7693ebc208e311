"""Delayed labels: the join buffer (memory and real Redis), the error stream, performance alerts.

In-process tests feed the three topics of :mod:`tests.label_streams` through the real pipeline
(``process_records`` + the ordered checkpoint) with both stores; the service tests run
``streamdrift run`` against the real broker and Redis, including a SIGKILL with labels pending.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import jsonschema
import msgpack
import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from streamdrift.bank import DetectorBank
from streamdrift.labels import ERROR_FEATURE
from streamdrift.metrics import Metrics
from streamdrift.state.base import TaskId
from streamdrift.state.joins import DUPLICATE, EXPIRED, JOINED, MISSING
from streamdrift.state.memory import MemoryStore
from streamdrift.state.redis import RedisStore
from tests.label_streams import (
    MODEL,
    T0,
    label_doc,
    make_streams,
    parse,
    run_in_process,
    topics_config,
)
from tests.service_harness import (
    ServiceProcess,
    alerts_of,
    checkpointed_offsets,
    consume_all,
    end_offsets,
    produce,
    wait_until,
)

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "streamdrift/schemas/alert.schema.json").read_text()
)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryStore()
    client, prefix = request.getfixturevalue("redis_factory")()
    return RedisStore("unused://", prefix, client=client)


def _packed(value: float, t: float) -> bytes:
    return bytes(msgpack.packb([value, t]))


# -- the join buffer contract (both stores) -------------------------------------------------


def test_remember_is_idempotent_and_claims_say_joined_duplicate_expired_missing(store) -> None:
    entries = [(f"e{i}", _packed(i / 10, T0 + i), T0 + i) for i in range(5)]
    assert store.remember("m", entries, 100.0, 10).added == 5
    again = store.remember("m", entries, 100.0, 10)  # a replay after a crash writes them again
    assert (again.added, again.size) == (0, 5)
    found, newest = store.claim("m", [("e1", "t:0:7"), ("e1", "t:0:9"), ("nope", "t:0:10")])
    assert newest == T0 + 4
    assert [s for s, _ in found] == [JOINED, DUPLICATE, MISSING]
    assert msgpack.unpackb(found[0][1]) == [0.1, T0 + 1]
    # The same label replayed (same claim) joins again; another label is a duplicate.
    assert store.claim("m", [("e1", "t:0:7")])[0][0][0] == JOINED
    assert store.claim("m", [("e1", "t:0:8")])[0][0][0] == DUPLICATE
    # Models are separate buffers.
    assert store.claim("other", [("e1", "t:0:7")])[0] == [(MISSING, b"")]
    stats = store.join_stats("m")
    assert (stats.remembered, stats.labelled, stats.expired) == (5, 1, 0)
    assert stats.coverage == pytest.approx(0.2)
    # Evicted by the TTL (a newer prediction 150 s later): later labels are late, not unknown.
    done = store.remember("m", [("e9", _packed(0.9, T0 + 150), T0 + 150)], 100.0, 10)
    assert (done.added, done.expired_ttl, done.size) == (1, 4, 1)  # e1 had a label: not counted
    assert store.claim("m", [("e0", "t:0:11"), ("e4", "t:0:12")])[0] == [
        (EXPIRED, b""),
        (EXPIRED, b""),
    ]
    # A replay of the evicted predictions does not bring them back.
    assert store.remember("m", entries, 100.0, 10).added == 0
    assert store.join_stats("m").expired == 4


def test_the_cap_evicts_the_oldest_and_the_buffer_never_exceeds_it(store) -> None:
    cap = 20
    for lo in range(0, 100, 7):
        entries = [(f"e{i}", _packed(0.5, T0 + i), T0 + i) for i in range(lo, min(lo + 7, 100))]
        result = store.remember("m", entries, 1e9, cap)
        assert result.size <= cap
    assert result.size == cap
    kept = [i for i in range(100) if store.claim("m", [(f"e{i}", "x")])[0][0][0] == JOINED]
    assert kept == list(range(80, 100))
    assert store.claim("m", [("e75", "y")])[0][0][0] == EXPIRED
    # Evicted ids are remembered (to call their labels late) for at most `cap` ids too.
    assert store.claim("m", [("e3", "y")])[0][0][0] == MISSING
    assert store.join_stats("m").expired == 80


# -- the pipeline in process ---------------------------------------------------------------


def _label_position(labels: list[tuple[float, bytes]], event_id: str, flip_at: int) -> int:
    """How many labels of flipped events had arrived up to and including ``event_id``'s."""
    n = 0
    for _, value in labels:
        rid = orjson.loads(value)["request_id"]
        n += int(rid.split("-")[1]) >= flip_at
        if rid == event_id:
            return n
    raise AssertionError(f"{event_id} has no label")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_concept_drift_with_stable_inputs_gives_a_performance_alert_and_no_drift(
    store, seed: int
) -> None:
    cfg = parse(topics_config())
    s = make_streams(6000, seed, flip_at=3000)
    metrics = Metrics(CollectorRegistry())
    run = run_in_process(
        cfg, {"features": s.features, "predictions": s.predictions, "labels": s.labels}, store,
        metrics,
    )  # fmt: skip
    drift = [a for a in run.alerts if a.type == "drift"]
    assert not drift, [(a.feature, a.detector, a.offset) for a in drift]
    perf = [a for a in run.alerts if a.type == "performance"]
    assert perf, "no performance alert after the relation flipped"
    # Labels arrive in their own time order: the first alert's label may be of an event from
    # before the flip, but it must have arrived after flipped labels, and within 300 of them
    # (the stated delay; measured: see the README).
    first = min(perf, key=lambda a: a.offset)
    assert 1 <= _label_position(s.labels, first.details["event_id"], 3000) <= 300
    for a in perf:
        doc = orjson.loads(a.to_json())
        jsonschema.validate(doc, SCHEMA)
        assert doc["feature"] == ERROR_FEATURE and doc["source"]["topic"] == "labels"
        d = doc["details"]
        assert d["error_rate_after"] > d["error_rate_before"] and d["n_labelled"] > 0
    joiner = run.tasks["labels"].bank.labels
    assert joiner is not None and joiner.error_counts()[MODEL][0] == 6000
    r = metrics.registry
    assert (
        r.get_sample_value("streamdrift_labels_total", {"model": MODEL, "outcome": "joined"})
        == 6000
    )
    assert r.get_sample_value("streamdrift_label_coverage", {"model": MODEL}) == 1.0
    assert r.get_sample_value("streamdrift_label_delay_seconds_count") == 6000
    assert r.get_sample_value("streamdrift_label_error_rate", {"model": MODEL}) > 0.6
    assert r.get_sample_value(
        "streamdrift_alerts_total",
        {"type": "performance", "detector": "adwin", "model": MODEL, "feature": ERROR_FEATURE},
    ) >= 1  # fmt: skip


def test_out_of_order_duplicate_late_unknown_labels_are_each_counted(store) -> None:
    ttl, cap = 300.0, 400
    cfg = parse(
        topics_config(labels={"ttl_seconds": ttl, "max_predictions": cap, "retry_seconds": 0.1})
    )
    s = make_streams(1000, 5, max_delay_s=60.0)
    labels = list(s.labels)
    # 1. out of order: 30 labels arrive 100 s *before* their prediction (retried, then joined)
    early = {f"r-{i}" for i in range(500, 530)}
    labels = [(t - 200 if orjson.loads(v)["request_id"] in early else t, v) for t, v in labels]
    # 2. duplicates: 25 labels sent twice (the second a little later)
    labels += [(T0 + i + 90, label_doc(f"r-{i}", T0 + i + 90)) for i in range(100, 125)]
    # 3. late: 15 labels come 2 TTLs after their prediction (evicted from the buffer by then)
    late = [f"r-{i}" for i in range(200, 215)]
    labels = [(t, v) for t, v in labels if orjson.loads(v)["request_id"] not in late]
    labels += [(T0 + int(r[2:]) + 2 * ttl, label_doc(r, T0 + int(r[2:]) + 2 * ttl)) for r in late]
    # 4. unknown: 20 ids nobody predicted
    labels += [(T0 + 300 + i, label_doc(f"ghost-{i}", T0 + 300 + i)) for i in range(20)]
    metrics = Metrics(CollectorRegistry())
    run = run_in_process(
        cfg, {"features": s.features, "predictions": s.predictions, "labels": labels}, store,
        metrics, chunk=200,
    )  # fmt: skip

    def count(outcome: str) -> float:
        v = metrics.registry.get_sample_value(
            "streamdrift_labels_total", {"model": MODEL, "outcome": outcome}
        )
        return v or 0.0

    assert count("duplicate") == 25
    assert count("late") == 15
    assert count("unknown") == 20
    assert count("joined") == 1000 - 15
    assert count("dropped") == count("invalid") == 0
    assert not run.dead_letters
    joiner = run.tasks["labels"].bank.labels
    assert joiner is not None and joiner.n_pending == 0
    assert joiner.error_counts()[MODEL][0] == 985
    assert store.buffered(MODEL) <= cap
    assert (
        metrics.registry.get_sample_value("streamdrift_join_buffer_predictions", {"model": MODEL})
        <= cap
    )
    # Predictions that left the buffer without a label (the 15 late ones) are counted expired.
    expired = (
        metrics.registry.get_sample_value(
            "streamdrift_predictions_expired_total", {"model": MODEL, "reason": "ttl"}
        )
        or 0.0
    )
    expired += (
        metrics.registry.get_sample_value(
            "streamdrift_predictions_expired_total", {"model": MODEL, "reason": "cap"}
        )
        or 0.0
    )
    assert expired == 15
    assert store.join_stats(MODEL).coverage == pytest.approx(985 / 1000)
    claimed = store.claimed_ids(MODEL)
    assert len(claimed) <= cap  # claims leave with their prediction


def test_pending_labels_are_capped_and_the_overflow_counted() -> None:
    store = MemoryStore()
    cfg = parse(topics_config(labels={"max_pending": 50}))
    s = make_streams(100, 1)
    ghosts = [(T0 + i, label_doc(f"ghost-{i}", T0 + i)) for i in range(120)]
    metrics = Metrics(CollectorRegistry())
    run = run_in_process(cfg, {"predictions": s.predictions, "labels": ghosts}, store, metrics)
    joiner = run.tasks["labels"].bank.labels
    assert joiner is not None and joiner.n_pending == 50
    assert metrics.registry.get_sample_value(
        "streamdrift_labels_total", {"model": MODEL, "outcome": "dropped"}
    ) == 70  # fmt: skip
    assert metrics.registry.get_sample_value(
        "streamdrift_labels_pending", {"topic": "labels", "partition": "0"}
    ) == 50  # fmt: skip


def test_waiting_labels_and_the_error_stream_survive_the_bank_state() -> None:
    store = MemoryStore()
    cfg = parse(topics_config())
    s = make_streams(300, 2)
    run = run_in_process(cfg, {"labels": s.labels[:100]}, store)  # no predictions yet
    task = run.tasks["labels"]
    assert task.bank.labels is not None and task.bank.labels.n_pending == 100
    restored = DetectorBank.from_state(cfg, TaskId("labels", 0), task.bank.to_state())
    assert restored.labels is not None and restored.labels.n_pending == 100
    run2 = run_in_process(cfg, {"predictions": s.predictions}, store)
    assert run2.tasks["predictions"].bank.labels is not None
    from streamdrift.app import join_labels
    from streamdrift.checkpoint import Task

    again = Task(TaskId("labels", 0), restored, store.acquire(TaskId("labels", 0)), 100)
    join_labels(again, store, None)
    assert restored.labels.n_pending == 0
    assert restored.labels.error_counts()[MODEL][0] == 100


def test_a_label_in_the_prediction_event_joins_at_once_in_replay() -> None:
    from streamdrift.app import replay
    from streamdrift.config import parse_config

    cfg = parse_config(
        {
            "kafka": {"input_topics": ["events"], "max_poll_records": 250},
            "mapping": {"label": "y", "features": "f"},
            "alerts": {"cooldown_events": 10_000},
        }
    )
    assert cfg.carries("events") == ("features", "prediction", "label")
    s = make_streams(4000, 4, flip_at=2000)
    lines = []
    for i, ((_, fv), (_, pv)) in enumerate(zip(s.features, s.predictions, strict=True)):
        f, p = orjson.loads(fv), orjson.loads(pv)
        agree = p["out"]["score"] >= 0.5  # the label follows the score, then its opposite
        doc = {"model_id": MODEL, "event_id": f["req"]["id"], "ts": f["req"]["ts"],
               "f": f["inputs"], "prediction": p["out"]["score"],
               "y": agree if i < 2000 else not agree}  # fmt: skip
        lines.append(orjson.dumps(doc))
    out: list[bytes] = []
    _, bank = replay(cfg, lines, out.append, lambda b: None)
    perf = [orjson.loads(a) for a in out if orjson.loads(a)["type"] == "performance"]
    assert perf and min(a["source"]["offset"] for a in perf) >= 2000
    assert bank.labels is not None and bank.labels.error_counts()[MODEL] == (4000, 2000.0)


def test_labels_wait_while_redis_is_unreachable_then_join(redis_factory) -> None:
    import socket

    from streamdrift.app import join_labels, open_task, process_records
    from streamdrift.events import RawRecord

    with socket.socket() as sock:  # a port nothing listens on: the real client fails to connect
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    client, prefix = redis_factory()
    good = RedisStore("unused://", prefix, client=client)
    dead = RedisStore(f"redis://127.0.0.1:{dead_port}/0", prefix, socket_timeout=0.5)
    cfg = parse(topics_config())
    s = make_streams(200, 6)
    metrics = Metrics(CollectorRegistry())
    run_in_process(cfg, {"predictions": s.predictions}, good)
    task, _ = open_task(good, cfg, TaskId("labels", 0))
    records = [RawRecord(v, "labels", 0, i) for i, (_, v) in enumerate(s.labels)]
    process_records(task, records, metrics, dead)  # Redis down: nothing crashes
    assert task.bank.labels is not None and task.bank.labels.n_pending == 200
    assert metrics.registry.get_sample_value("streamdrift_redis_errors_total", {"op": "load"}) >= 1
    join_labels(task, good, metrics)  # reachable again: the retry joins them all
    assert task.bank.labels.n_pending == 0
    assert task.bank.labels.error_counts()[MODEL][0] == 200
    dead.close()


# -- the service, real Kafka and Redis -------------------------------------------------------


def _service_config(
    tmp_path: Path,
    bootstrap: str,
    redis_url: str,
    prefix: str,
    topics: dict[str, str],
    **extra: Any,
) -> Path:
    doc = topics_config((topics["features"], topics["predictions"], topics["labels"]), **extra)
    doc["kafka"].update(
        bootstrap_servers=bootstrap,
        group_id=f"{topics['labels']}-g",
        alert_topic=f"{topics['labels']}-alerts",
        dead_letter_topic=f"{topics['labels']}-dlq",
        poll_timeout_ms=200,
        client={"session_timeout_ms": 10000, "heartbeat_interval_ms": 1000},
    )
    doc["redis"] = {"url": redis_url, "key_prefix": prefix}
    doc["metrics"] = {"port": 0}
    doc.setdefault("checkpoint", {"every_events": 2000, "every_seconds": 1.0})
    path = tmp_path / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _produce_streams(bootstrap: str, topics: dict[str, str], s: Any) -> None:
    produce(bootstrap, topics["features"], [v for _, v in s.features])
    produce(bootstrap, topics["predictions"], [v for _, v in s.predictions])
    produce(bootstrap, topics["labels"], [v for _, v in s.labels])


def _labels_bank(path: Path, topic: str) -> DetectorBank:
    from tests.service_harness import load_banks, load_config

    (bank,) = load_banks(load_config(path), topic, 1)
    return bank


def _joined(redis_url: str, prefix: str, path: Path, topic: str) -> int:
    store = RedisStore(redis_url, prefix)
    try:
        if store.load(TaskId(topic, 0)) is None:
            return 0
        bank = _labels_bank(path, topic)
        assert bank.labels is not None
        return bank.labels.error_counts().get(MODEL, (0, 0.0))[0]
    finally:
        store.close()


@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_service_joins_three_topics_and_alerts_on_performance(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory, redis_factory
) -> None:
    topics = {k: topic_factory(prefix=f"sd-{k}") for k in ("features", "predictions", "labels")}
    _, prefix = redis_factory()
    path = _service_config(tmp_path, kafka_bootstrap, redis_url, prefix, topics)
    s = make_streams(6000, 1, flip_at=3000)
    _produce_streams(kafka_bootstrap, topics, s)
    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    try:
        wait_until(
            lambda: _joined(redis_url, prefix, path, topics["labels"]) == 6000 or not svc.alive(),
            120,
            "every label joined",
        )
    finally:
        svc.stop()
    assert "Traceback" not in svc.log_text(), svc.log_text()[-3000:]
    alerts = alerts_of(consume_all(kafka_bootstrap, f"{topics['labels']}-alerts"))
    assert not [a for a in alerts if a["type"] == "drift"]
    perf = [a for a in alerts if a["type"] == "performance"]
    assert perf and all(a["model_id"] == MODEL for a in perf)
    first = min(perf, key=lambda a: a["source"]["offset"])
    assert 1 <= _label_position(s.labels, first["details"]["event_id"], 3000) <= 300
    for a in perf:
        jsonschema.validate(a, SCHEMA)
    store = RedisStore(redis_url, prefix)
    assert len(store.claimed_ids(MODEL)) == 6000
    store.close()


@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_sigkill_with_labels_pending_then_restart_joins_the_same_as_an_uninterrupted_run(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory, redis_factory
) -> None:
    s = make_streams(6000, 9, flip_at=3000)
    # Labels first on their topic, predictions later: many labels wait for their prediction.
    # A few duplicates and unknown ids ride along.
    s.labels += [(T0 + 5000 + i, label_doc(f"r-{i}", T0 + 5000 + i)) for i in range(40)]
    s.labels += [(T0 + 5000 + i, label_doc(f"ghost-{i}", T0 + 5000 + i)) for i in range(10)]
    expected_joined = 6000

    # Reference: an uninterrupted in-process run (the join set does not depend on timing).
    ref_store = MemoryStore()
    ref = run_in_process(
        parse(topics_config()),
        {"features": s.features, "predictions": s.predictions, "labels": s.labels},
        ref_store,
    )
    ref_joiner = ref.tasks["labels"].bank.labels
    assert ref_joiner is not None
    want_counts = ref_joiner.error_counts()
    want_ids = set(ref_store.claimed_ids(MODEL))
    assert want_counts[MODEL][0] == expected_joined and len(want_ids) == expected_joined

    topics = {k: topic_factory(prefix=f"sd-{k}") for k in ("features", "predictions", "labels")}
    _, prefix = redis_factory()
    path = _service_config(
        tmp_path, kafka_bootstrap, redis_url, prefix, topics,
        checkpoint={"every_events": 500, "every_seconds": 0.5},
    )  # fmt: skip
    produce(kafka_bootstrap, topics["labels"], [v for _, v in s.labels])
    produce(kafka_bootstrap, topics["predictions"], [v for _, v in s.predictions[:2000]])
    svc = ServiceProcess(path, tmp_path / "first.log").start()
    wait_until(
        lambda: (
            checkpointed_offsets(redis_url, prefix, topics["labels"], 1)[0] >= len(s.labels)
            and checkpointed_offsets(redis_url, prefix, topics["predictions"], 1)[0] >= 2000
        ),
        120,
        "labels read, first predictions checkpointed",
    )
    bank = _labels_bank(path, topics["labels"])
    assert bank.labels is not None and bank.labels.n_pending > 1000, "nothing was pending"
    produce(kafka_bootstrap, topics["predictions"], [v for _, v in s.predictions[2000:4000]])
    wait_until(
        lambda: checkpointed_offsets(redis_url, prefix, topics["predictions"], 1)[0] >= 2500,
        60,
        "predictions being read",
    )
    svc.stop(signal.SIGKILL)
    produce(kafka_bootstrap, topics["predictions"], [v for _, v in s.predictions[4000:]])
    produce(kafka_bootstrap, topics["features"], [v for _, v in s.features])
    svc = ServiceProcess(path, tmp_path / "second.log").start()
    try:
        wait_until(
            lambda: (
                _joined(redis_url, prefix, path, topics["labels"]) >= expected_joined
                or not svc.alive()
            ),
            120,
            "every label joined after the restart",
        )
        ends = end_offsets(kafka_bootstrap, topics["predictions"], 1)
        wait_until(
            lambda: checkpointed_offsets(redis_url, prefix, topics["predictions"], 1) == ends,
            60,
            "predictions checkpointed to the end",
        )
    finally:
        svc.stop()
    assert "Traceback" not in svc.log_text()
    bank = _labels_bank(path, topics["labels"])
    assert bank.labels is not None
    assert bank.labels.error_counts() == want_counts
    store = RedisStore(redis_url, prefix)
    assert set(store.claimed_ids(MODEL)) == want_ids
    store.close()
    assert bank.labels.n_pending == ref_joiner.n_pending == 10  # the ghosts still wait
