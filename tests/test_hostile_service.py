"""A hostile stream through the real service process (issue 8): real Kafka topic, real Redis.

Valid traffic mixed with every kind of broken message (garbage bytes, tombstones, deep nesting,
huge numbers and strings, NaN literals, lone surrogates, wrong types, missing fields, oversized
records) and a flood of new model ids. The service neither crashes nor stalls (its checkpoint
reaches the end of the topic), every rejected message is on the dead-letter topic with its reason
and original bytes (valid against the published schema), the metrics count the same, the metric
series stay within ``metrics.max_series`` and the process memory stays bounded.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import psutil
import pytest

from streamdrift.config import load_config
from streamdrift.events import OVERSIZED_KEEP_BYTES, Decoder, RawRecord
from streamdrift.synthetic import synthetic_events
from tests.service_harness import (
    ServiceProcess,
    consume_all,
    free_port,
    produce,
    wait_checkpointed,
    write_config,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "streamdrift" / "schemas" / "dead-letter.schema.json").read_text())
MAX_BYTES = 20_000
pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def hostile_messages() -> list[bytes | None]:
    deep = b'{"model_id": "fraud-v3", "features": {"amount": ' + b"[" * 3000 + b"]" * 3000 + b"}}"
    return [
        None,  # tombstone
        b"",
        b"\x00\xff\xfe garbage",
        b"{not json",
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        deep,
        (b'{"a":' * 2000) + b"1" + b"}" * 2000,
        b'{"model_id": "fraud-v3", "features": {"amount": 1e400}}',
        b'{"model_id": "fraud-v3", "features": {"amount": -1e400}}',
        b'{"model_id": "fraud-v3", "features": {"amount": 1e200}}',
        b'{"model_id": "fraud-v3", "features": {"amount": NaN}}',
        b'{"model_id": "fraud-v3", "features": {"amount": Infinity}}',
        b'{"model_id": "\\ud800", "features": {"amount": 1.0}}',
        b'{"model_id": "fraud-v3", "features": {"country": "\xed\xa0\x80"}}',
        b'{"model_id": "fraud-v3", "features": {"amount": "lots"}}',
        b'{"model_id": "fraud-v3", "features": {"amount": [1, 2]}}',
        b'{"model_id": "fraud-v3", "features": {"amount": {"v": 1}}}',
        b'{"model_id": "fraud-v3", "features": "not an object"}',
        b'{"model_id": ["fraud-v3"], "features": {"amount": 1.0}}',
        b'{"features": {"amount": 1.0}}',
        b'{"model_id": "", "features": {"amount": 1.0}}',
        b'{"model_id": "' + b"m" * 300 + b'", "features": {"amount": 1.0}}',
        b'{"model_id": "fraud-v3", "ts": "yesterday", "features": {"amount": 1.0}}',
        b'{"model_id": "fraud-v3", "features": {"' + b"n" * 300 + b'": 1.0}}',
        b'{"model_id": "fraud-v3", "features": {"__prediction__": 1.0}}',
        b'{"model_id": "fraud-v3", "features": {"c": "' + b"z" * (MAX_BYTES + 10) + b'"}}',
        b"x" * (5 * MAX_BYTES),
    ]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_hostile_stream_through_the_service(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory: Any, redis_factory: Any
) -> None:
    topic = topic_factory(partitions=1)
    _, prefix = redis_factory()
    port = free_port()
    path = write_config(
        tmp_path / "cfg.yaml",
        bootstrap=kafka_bootstrap,
        topic=topic,
        redis_url=redis_url,
        prefix=prefix,
        group=f"{topic}-g",
        every_events=1000,
        every_seconds=0.5,
        extra={
            "kafka": {"max_message_bytes": MAX_BYTES},
            "limits": {"max_models": 3, "max_features": 20},
            "metrics": {"port": port, "max_series": 20},
        },
    )
    events, _ = synthetic_events(3000, seed=11, drift_at=0.5)
    valid = [orjson.dumps(e) for e in events]
    hostile = hostile_messages()
    flood = [
        orjson.dumps({"model_id": f"flood-{i}", "features": {"amount": 1.0, "age": 2.0}})
        for i in range(300)
    ]
    values: list[bytes | None] = []
    for i, v in enumerate(valid):  # hostile records spread through the valid stream
        values.append(v)
        if i % 100 == 50:
            values.extend(hostile)
        if i % 10 == 5:
            values.append(flood[i // 10])
    produce(kafka_bootstrap, topic, values, key=b"k")  # type: ignore[arg-type]

    # What the decoder says about the same records (the service must agree, record by record).
    decoder = Decoder.from_config(load_config(path))
    expected = decoder.decode_batch([RawRecord(v, topic, 0, i) for i, v in enumerate(values)])
    expected_reasons = {letter.offset: letter.reason for letter in expected.invalid}
    hostile_offsets = {i for i, v in enumerate(values) if v in hostile and v is not None}
    hostile_offsets |= {i for i, v in enumerate(values) if v is None}
    assert hostile_offsets <= set(expected_reasons), "every hostile record is rejected"

    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    try:
        wait_checkpointed(redis_url, prefix, topic, [len(values)], svc, timeout_s=120)
        metrics = _get(f"http://127.0.0.1:{port}/metrics")
        rss = psutil.Process(svc.proc.pid).memory_info().rss  # type: ignore[union-attr]
        assert svc.alive()
    finally:
        code = svc.stop()
    assert code == 0, svc.log_text()[-3000:]
    assert "Traceback" not in svc.log_text()

    letters = consume_all(kafka_bootstrap, f"{topic}-dlq")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    got: dict[int, str] = {}
    for record in letters:
        doc = orjson.loads(record.value)
        validator.validate(doc)
        offset = doc["source"]["offset"]
        got[offset] = doc["reason"]
        original = values[offset]
        b64 = doc["original_b64"]
        decoded = None if b64 is None else base64.b64decode(b64)
        if doc["reason"] == "oversized":
            assert original is not None and decoded == original[:OVERSIZED_KEEP_BYTES]
        else:
            assert decoded == original
        assert record.key == b"k"
    assert got == expected_reasons  # each rejected record exactly once, with the same reason
    assert {"too_many_models", "oversized", "invalid_json", "non_finite", "empty"} <= set(
        got.values()
    )

    n_invalid = len(expected_reasons)
    assert _sample(metrics, "streamdrift_events_consumed_total", topic=topic) == len(values)
    assert _sample(metrics, "streamdrift_events_decoded_total", topic=topic) == (
        len(values) - n_invalid
    )
    assert _sample(metrics, "streamdrift_events_invalid_total", topic=topic) == n_invalid
    assert _sample(metrics, "streamdrift_dead_letters_total") == n_invalid
    for reason in set(got.values()):
        n = sum(1 for r in got.values() if r == reason)
        assert _sample(metrics, "streamdrift_dead_letters_total", reason=reason) == n, reason
    # Cardinality: 3 models admitted, detector series capped by metrics.max_series.
    models = set(re.findall(r'model="([^"]+)"', metrics))
    assert len(models) <= 3
    assert _sample(metrics, "streamdrift_metric_series_dropped_total") > 0
    assert len(set(re.findall(r"streamdrift_detector_statistic\{[^}]*\}", metrics))) <= 20
    assert rss < 500 * 1024 * 1024, f"service RSS {rss / 2**20:.0f} MiB"
