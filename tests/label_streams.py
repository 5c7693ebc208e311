"""Seeded three-topic streams (features, predictions, delayed labels) and an in-process driver.

The three topics have different shapes on purpose, as in a real deployment where different
services log them:

* features ``{"req": {"id", "ts"}, "model", "inputs": {x1, x2, plan}}``
* predictions ``{"rid", "at", "m", "out": {"score"}}``
* labels ``{"request_id", "observed_at", "model", "outcome": {"churned"}}``
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from streamdrift.alerts import Alert
from streamdrift.app import join_labels, open_task, process_records
from streamdrift.checkpoint import Checkpointer, Task
from streamdrift.config import Config, parse_config
from streamdrift.events import RawRecord
from streamdrift.metrics import Metrics
from streamdrift.state.base import StateStore, TaskId

T0 = 1_767_225_600.0
MODEL = "churn"


def topics_config(
    names: tuple[str, str, str | None] = ("features", "predictions", "labels"),
    **sections: Any,
) -> dict[str, Any]:
    """The config document for the three shapes (no third name: no label topic); ``sections``
    are merged into the document's sections."""
    features, predictions, labels = names
    inputs = [features, predictions] + ([labels] if labels else [])
    doc: dict[str, Any] = {
        "kafka": {"input_topics": inputs, "max_poll_records": 500},
        "mapping": {
            "model_id": "model",
            "event_id": "req.id",
            "event_time": "req.ts",
            "features": {"path": "inputs"},
            "prediction": None,
        },
        "topics": {
            predictions: {
                "carries": ["prediction"],
                "mapping": {
                    "model_id": "m",
                    "event_id": "rid",
                    "event_time": "at",
                    "prediction": "out.score",
                },
            },
        },
        "alerts": {"cooldown_events": 1000},
    }
    if labels:
        doc["topics"][labels] = {
            "carries": ["label"],
            "mapping": {
                "model_id": "model",
                "event_id": "request_id",
                "event_time": "observed_at",
                "label": "outcome.churned",
            },
        }
        doc["labels"] = {"ttl_seconds": 100_000.0, "retry_seconds": 0.2}
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(name), dict):
            doc[name] = {**doc[name], **value}
        else:
            doc[name] = value
    return doc


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class Streams:
    features: list[tuple[float, bytes]] = field(default_factory=list)
    predictions: list[tuple[float, bytes]] = field(default_factory=list)
    labels: list[tuple[float, bytes]] = field(default_factory=list)
    """(arrival event time, value); labels sorted by their own time, so out of prediction order."""
    flip_at: int | None = None
    shift_at: int | None = None
    label_ids: list[str] = field(default_factory=list)


def make_streams(
    n: int,
    seed: int,
    *,
    flip_at: int | None = None,
    score_shift_at: int | None = None,
    label_share: float = 1.0,
    max_delay_s: float = 600.0,
) -> Streams:
    """``n`` requests, one per second: stable inputs; the score is sigmoid(2 x1) (+1.5 after
    ``score_shift_at``); the outcome follows sigmoid(3 x1), inverted after ``flip_at``
    (concept drift: the inputs and the score keep their distributions)."""
    rng = random.Random(seed)
    out = Streams(flip_at=flip_at, shift_at=score_shift_at)
    for i in range(n):
        t = T0 + i
        rid = f"r-{i}"
        x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
        plan = rng.choice(["basic", "plus", "pro"])
        z = 2.0 * x1 + (1.5 if score_shift_at is not None and i >= score_shift_at else 0.0)
        score = round(sigmoid(z), 6)
        relation = -3.0 if flip_at is not None and i >= flip_at else 3.0
        churned = rng.random() < sigmoid(relation * x1)
        feature_doc = {
            "req": {"id": rid, "ts": t},
            "model": MODEL,
            "inputs": {"x1": x1, "x2": x2, "plan": plan},
        }
        out.features.append((t, orjson.dumps(feature_doc)))
        out.predictions.append(
            (t, orjson.dumps({"rid": rid, "at": t, "m": MODEL, "out": {"score": score}}))
        )
        if rng.random() < label_share:
            lt = t + rng.uniform(5.0, max_delay_s)
            label = {
                "request_id": rid,
                "observed_at": lt,
                "model": MODEL,
                "outcome": {"churned": churned},
            }
            out.labels.append((lt, orjson.dumps(label)))
            out.label_ids.append(rid)
    out.labels.sort(key=lambda x: x[0])
    return out


def label_doc(rid: str, t: float, churned: bool = True, model: str = MODEL) -> bytes:
    return orjson.dumps(
        {"request_id": rid, "observed_at": t, "model": model, "outcome": {"churned": churned}}
    )


@dataclass
class Run:
    alerts: list[Alert]
    tasks: dict[str, Task]
    dead_letters: list[Any]


def run_in_process(
    config: Config,
    per_topic: dict[str, Iterable[tuple[float, bytes]]],
    store: StateStore,
    metrics: Metrics | None = None,
    *,
    chunk: int = 500,
) -> Run:
    """Feed the topics in arrival-time order, one partition each, checkpointing every chunk."""
    merged = sorted(
        ((arrival, topic, value) for topic, items in per_topic.items() for arrival, value in items),
        key=lambda x: x[0],
    )
    tasks = {topic: open_task(store, config, TaskId(topic, 0))[0] for topic in per_topic}
    offsets = dict.fromkeys(per_topic, 0)
    checkpointer = Checkpointer(store, outbox=None)
    alerts: list[Alert] = []
    letters: list[Any] = []
    for lo in range(0, len(merged), chunk):
        by_topic: dict[str, list[RawRecord]] = {}
        for _, topic, value in merged[lo : lo + chunk]:
            by_topic.setdefault(topic, []).append(RawRecord(value, topic, 0, offsets[topic]))
            offsets[topic] += 1
        for topic, records in by_topic.items():
            decoded, got = process_records(tasks[topic], records, metrics, store)
            alerts += got
            letters += decoded.invalid
        _checkpoint(checkpointer, tasks, metrics)
        for task in tasks.values():
            alerts += join_labels(task, store, metrics)
    _checkpoint(checkpointer, tasks, metrics)
    for task in tasks.values():
        alerts += join_labels(task, store, metrics)
    _checkpoint(checkpointer, tasks, metrics)
    return Run(alerts, tasks, letters)


def _checkpoint(
    checkpointer: Checkpointer, tasks: dict[str, Task], metrics: Metrics | None
) -> None:
    report = checkpointer.checkpoint(tasks.values())
    if metrics is not None:
        for model, result in report.remembered:
            metrics.record_remembered(model, result)


def parse(doc: dict[str, Any]) -> Config:
    return parse_config(doc)


def detection_delays(seeds: int = 20) -> list[str]:
    """Concept drift at label 3000 of 6000 (relation inverted), per detector: how many labels of
    flipped events had arrived when it first alerted; and false alarms on stable streams."""
    import statistics

    from streamdrift.state.memory import MemoryStore

    cfg = parse(topics_config())
    delays: dict[str, list[int]] = {"adwin": [], "ddm": []}
    seconds: dict[str, list[float]] = {"adwin": [], "ddm": []}
    false_alarms = drift_alerts = 0
    for seed in range(seeds):
        s = make_streams(6000, seed, flip_at=3000)
        topics = {"features": s.features, "predictions": s.predictions, "labels": s.labels}
        run = run_in_process(cfg, topics, MemoryStore())
        drift_alerts += sum(a.type == "drift" for a in run.alerts)
        for kind in delays:
            perf = [a for a in run.alerts if a.type == "performance" and a.detector == kind]
            if not perf:
                continue
            first = min(perf, key=lambda a: a.offset)
            n = 0
            for t, value in s.labels:
                rid = orjson.loads(value)["request_id"]
                n += int(rid[2:]) >= 3000
                if rid == first.details["event_id"]:
                    delays[kind].append(n)
                    seconds[kind].append(t - (T0 + 3000))
                    break
        stable = make_streams(6000, 100 + seed)
        topics = {"features": stable.features, "predictions": stable.predictions}
        run = run_in_process(cfg, {**topics, "labels": stable.labels}, MemoryStore())
        false_alarms += sum(a.type in ("performance", "drift") for a in run.alerts)
    out = []
    for kind, v in delays.items():
        out.append(
            f"{kind}: alerted on {len(v)}/{seeds} seeds; labels of flipped events before the "
            f"alert: median {statistics.median(v):g}, max {max(v)}; event time after the flip: "
            f"median {statistics.median(seconds[kind]):.0f} s"
        )
    out.append(f"drift alerts on the {seeds} streams with concept drift: {drift_alerts}")
    out.append(f"false alarms (drift or performance) on {seeds} stable streams: {false_alarms}")
    return out


if __name__ == "__main__":  # python -m tests.label_streams [SEEDS]
    import sys

    print("\n".join(detection_delays(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
