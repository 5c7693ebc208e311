"""The service as a real process against the real broker and Redis.

One stream with known drift points, injected outliers and malformed messages is produced once per
test into a fresh topic; the service runs as ``streamdrift run`` and is judged by what it leaves in
the alert topic, the dead-letter topic and Redis.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamdrift.synthetic import CATEGORICAL, NUMERIC, malformed_messages, synthetic_events
from tests.service_harness import (
    ServiceProcess,
    alerts_of,
    checkpointed_offsets,
    consume_all,
    detector_states,
    end_offsets,
    load_banks,
    load_config,
    produce,
    wait_checkpointed,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

N_EVENTS = 12_000
MALFORMED_AT = (3000, 3001, 3002, 3003, 3004, 3005)  # positions in the produced stream


def _stream() -> tuple[list[bytes], Any, dict[int, str], int]:
    """The produced values, the truth (positions are offsets of valid events), bad offsets."""
    events, truth = synthetic_events(N_EVENTS, seed=11, drift_at=0.5, outlier_rate=0.002)
    values = [orjson.dumps(e) for e in events]
    bad: dict[int, str] = {}
    for pos, (raw, reason) in zip(MALFORMED_AT, malformed_messages(), strict=True):
        values.insert(pos, raw)
        bad[pos] = reason
    # Map the truth (indices among valid events) to offsets in the produced stream.
    valid_offsets = [i for i in range(len(values)) if i not in bad]
    truth.drifts = [
        type(d)(d.feature, valid_offsets[d.position], d.description) for d in truth.drifts
    ]
    truth.outliers = [valid_offsets[p] for p in truth.outliers]
    return values, truth, bad, len(valid_offsets)


LIBRARIES = ["kafka-python", "confluent-kafka"]


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    """The Kafka client (``kafka.library``): the tests marked with it run with both."""
    return str(request.param)


@pytest.fixture
def setup(tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory, redis_factory):
    def make(partitions: int = 1, library: str = "kafka-python", **cfg: Any) -> dict[str, Any]:
        topic = topic_factory(partitions=partitions)
        _, prefix = redis_factory()
        cfg.setdefault("extra", {})["kafka"] = {"library": library}
        path = write_config(
            tmp_path / f"{topic}.yaml",
            bootstrap=kafka_bootstrap,
            topic=topic,
            redis_url=redis_url,
            prefix=prefix,
            group=f"{topic}-group",
            **cfg,
        )
        return {"topic": topic, "prefix": prefix, "config_path": path}

    return make


def _run_to_end(
    ctx: dict[str, Any], kafka_bootstrap: str, redis_url: str, tmp_path: Path, partitions: int = 1
) -> ServiceProcess:
    ends = end_offsets(kafka_bootstrap, ctx["topic"], partitions)
    svc = ServiceProcess(ctx["config_path"], tmp_path / f"{ctx['topic']}.log").start()
    try:
        wait_checkpointed(redis_url, ctx["prefix"], ctx["topic"], ends, svc)
    finally:
        svc.stop()
    return svc


def test_end_to_end_drift_outliers_and_dead_letters(
    setup, kafka_bootstrap: str, redis_url: str, tmp_path: Path, library: str
) -> None:
    ctx = setup(library=library)
    values, truth, bad, n_valid = _stream()
    produce(kafka_bootstrap, ctx["topic"], values, key=b"fraud-v3")
    svc = _run_to_end(ctx, kafka_bootstrap, redis_url, tmp_path)
    assert "Traceback" not in svc.log_text()
    assert f"with {library} " in svc.log_text()

    alerts = alerts_of(consume_all(kafka_bootstrap, f"{ctx['topic']}-alerts"))
    drift = [a for a in alerts if a["type"] == "drift"]
    change = truth.drifts[0].position
    for feature in ("amount", "country"):
        hits = [a for a in drift if a["feature"] == feature]
        assert hits, (
            f"no drift alert on {feature}; alerts: {[(a['feature'], a['detector']) for a in drift]}"
        )
        first = min(a["source"]["offset"] for a in hits)
        assert change <= first <= change + 2000, (feature, first, change)
    stationary = set(NUMERIC) | set(CATEGORICAL) - {"amount", "country"}
    false_alarms = [a for a in drift if a["feature"] in stationary - {"amount", "country"}]
    assert not false_alarms, false_alarms
    assert all(a["source"]["offset"] >= change for a in drift), "drift alert before the change"

    outliers = {a["source"]["offset"] for a in alerts if a["type"] == "outlier"}
    caught = outliers & set(truth.outliers)
    assert len(caught) >= 0.8 * len(truth.outliers), (len(caught), len(truth.outliers))

    for a in alerts:
        assert a["source"]["topic"] == ctx["topic"] and a["source"]["partition"] == 0
        assert len(a["alert_id"]) == 32 and a["severity"] in ("info", "warning", "critical")
    assert len({a["alert_id"] for a in alerts}) == len(alerts)

    letters = alerts_of(consume_all(kafka_bootstrap, f"{ctx['topic']}-dlq"))
    got = {d["source"]["offset"]: d["reason"] for d in letters}
    assert got == bad
    for d in letters:
        original = values[d["source"]["offset"]]
        import base64

        assert base64.b64decode(d["original_b64"]) == original
        assert d["detail"]

    (bank,) = load_banks(load_config(ctx["config_path"]), ctx["topic"], 1)
    assert bank.counters.n_events == n_valid


def _final(ctx: dict[str, Any], kafka_bootstrap: str) -> tuple[dict[str, Any], set[str]]:
    (bank,) = load_banks(load_config(ctx["config_path"]), ctx["topic"], 1)
    alerts = alerts_of(consume_all(kafka_bootstrap, f"{ctx['topic']}-alerts"))
    return detector_states(bank), {a["alert_id"] for a in alerts}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_mid_stream_equals_uninterrupted_run(
    setup, kafka_bootstrap: str, redis_url: str, tmp_path: Path, sig: int, library: str
) -> None:
    values, _, _, _ = _stream()
    reference = setup()
    produce(kafka_bootstrap, reference["topic"], values, key=b"fraud-v3")
    _run_to_end(reference, kafka_bootstrap, redis_url, tmp_path)
    want_states, want_ids = _final(reference, kafka_bootstrap)

    # Same events; checkpoints every 2,000 events so that the stop falls between two of them.
    # Only the first part is in the topic before the stop (a fast client read all 12,006
    # events before the stop otherwise); the rest arrives while the service is down.
    ctx = setup(every_events=2000, every_seconds=3.0, library=library)
    first = 7000
    produce(kafka_bootstrap, ctx["topic"], values[:first], key=b"fraud-v3")
    svc = ServiceProcess(ctx["config_path"], tmp_path / "interrupted.log").start()
    wait_until(
        lambda: checkpointed_offsets(redis_url, ctx["prefix"], ctx["topic"], 1)[0] >= 4000,
        120,
        "a checkpoint past offset 4000",
    )
    svc.stop(sig)
    stopped_at = checkpointed_offsets(redis_url, ctx["prefix"], ctx["topic"], 1)[0]
    assert 4000 <= stopped_at <= first
    produce(kafka_bootstrap, ctx["topic"], values[first:], key=b"fraud-v3")
    _run_to_end(ctx, kafka_bootstrap, redis_url, tmp_path)
    got_states, got_ids = _final(ctx, kafka_bootstrap)

    assert got_states == want_states
    # Alert ids embed the topic; compare them as (offset, model, feature, detector) instead.
    ref_alerts = alerts_of(consume_all(kafka_bootstrap, f"{reference['topic']}-alerts"))
    new_alerts = alerts_of(consume_all(kafka_bootstrap, f"{ctx['topic']}-alerts"))
    key = lambda a: (a["source"]["offset"], a["model_id"], a["feature"], a["detector"])  # noqa: E731
    assert {key(a) for a in new_alerts} == {key(a) for a in ref_alerts}
    # Duplicates (after SIGKILL) carry the same id.
    by_key: dict[Any, set[str]] = {}
    for a in new_alerts:
        by_key.setdefault(key(a), set()).add(a["alert_id"])
    assert all(len(ids) == 1 for ids in by_key.values())
    assert len(got_ids) == len(want_ids)


def test_replay_gives_the_same_alerts_as_kafka_mode(
    setup, kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    ctx = setup()
    values, _, bad, _ = _stream()
    produce(kafka_bootstrap, ctx["topic"], values, key=b"fraud-v3")
    _run_to_end(ctx, kafka_bootstrap, redis_url, tmp_path)
    kafka_alerts = alerts_of(consume_all(kafka_bootstrap, f"{ctx['topic']}-alerts"))

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(values) + b"\n")
    # The replay config is the same file without Redis (state in memory).
    cfg = load_config(ctx["config_path"]).masked()
    cfg.pop("redis")
    import yaml

    replay_cfg = tmp_path / "replay.yaml"
    cfg["kafka"]["client"] = {k: v for k, v in cfg["kafka"]["client"].items() if v is not None}
    replay_cfg.write_text(yaml.safe_dump(cfg))
    out, dlq = tmp_path / "alerts.jsonl", tmp_path / "bad.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "streamdrift",
            "replay",
            "--config",
            str(replay_cfg),
            "--input",
            str(events),
            "--output",
            str(out),
            "--dead-letter",
            str(dlq),
            "--topic",
            ctx["topic"],
        ],
        check=True,
        timeout=300,
    )
    replay_alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {a["alert_id"] for a in replay_alerts} == {a["alert_id"] for a in kafka_alerts}
    assert len(replay_alerts) > 0
    replay_bad = {
        orjson.loads(x)["source"]["offset"]: orjson.loads(x)["reason"]
        for x in dlq.read_bytes().splitlines()
    }
    assert replay_bad == bad


def test_two_instances_split_partitions_then_one_takes_over(
    setup, kafka_bootstrap: str, redis_url: str, tmp_path: Path, library: str
) -> None:
    ctx = setup(partitions=4, every_events=1000, every_seconds=0.5, library=library)
    # Four models, one per key, spread over the four partitions by the default partitioner.
    # Model m on partition m, so that every partition has work.
    first_half: list[tuple[int, bytes]] = []
    second_half: list[tuple[int, bytes]] = []
    for m in range(4):
        events, _ = synthetic_events(
            4000, seed=m, model_id=f"model-{m}", drift_at=None, outlier_rate=0.0
        )
        for i, e in enumerate(events):
            (first_half if i < 2000 else second_half).append((m, orjson.dumps(e)))
    from kafka import KafkaProducer

    def send(items: list[tuple[int, bytes]]) -> None:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=10)
        for partition, v in items:
            producer.send(ctx["topic"], value=v, partition=partition)
        producer.flush()
        producer.close()

    send(first_half)
    a = ServiceProcess(ctx["config_path"], tmp_path / "a.log").start()
    b = ServiceProcess(ctx["config_path"], tmp_path / "b.log").start()
    try:
        mark = f"assigned {ctx['topic']}["
        wait_until(
            lambda: mark in a.log_text() and mark in b.log_text(),
            60,
            "both instances to own partitions",
        )
        ends = end_offsets(kafka_bootstrap, ctx["topic"], 4)
        wait_checkpointed(redis_url, ctx["prefix"], ctx["topic"], ends, a)
        b_owned = {line.split("[", 1)[1][0] for line in b.log_text().splitlines() if mark in line}
        seen = len(a.log_text())
        b.stop(signal.SIGTERM)
        send(second_half)
        ends = end_offsets(kafka_bootstrap, ctx["topic"], 4)
        wait_checkpointed(redis_url, ctx["prefix"], ctx["topic"], ends, a)
        # a took b's partitions over from their checkpoints (not from scratch).
        taken = [line for line in a.log_text()[seen:].splitlines() if mark in line]
        resumed = {line.split("[", 1)[1][0] for line in taken if "resuming at offset" in line}
        assert b_owned and b_owned <= resumed, (b_owned, taken)
    finally:
        for svc in (a, b):
            if svc.alive():
                svc.stop()
    banks = load_banks(load_config(ctx["config_path"]), ctx["topic"], 4)
    assert sum(bank.counters.n_events for bank in banks) == 16_000
    # Every event counted exactly once: the offset checksums cover 0..end-1 of each partition.
    for bank, end in zip(banks, ends, strict=True):
        assert bank.counters.n_events == end
        assert bank.counters.offset_sum == end * (end - 1) // 2
