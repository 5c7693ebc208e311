"""The delayed-label metrics (part of :class:`streamdrift.metrics.Metrics`, same registry).

Series: ``labels_total{model,outcome}`` ≤ 6·N, ``predictions_remembered_total``,
``join_buffer_predictions``, ``label_coverage`` and ``label_error_rate`` ≤ N each,
``predictions_expired_total{model,reason}`` ≤ 2·N, ``labels_pending{topic,partition}`` ≤ P, the
``label_delay_seconds`` histogram (no labels). N is bounded by ``limits.max_models``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from streamdrift._histogram import BatchHistogram

if TYPE_CHECKING:
    from streamdrift.labels import JoinReport
    from streamdrift.state.base import TaskId
    from streamdrift.state.joins import JoinStats, Remembered

__all__ = ["LABEL_DELAY_BUCKETS", "LabelMetrics"]

# Seconds, from a second to four weeks: labels arrive minutes to weeks after the prediction.
LABEL_DELAY_BUCKETS: Final = (
    1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0,
    86400.0, 3 * 86400.0, 7 * 86400.0, 14 * 86400.0, 28 * 86400.0,
)  # fmt: skip
OUTCOMES: Final = ("joined", "duplicate", "late", "unknown", "dropped", "invalid")
EXPIRY_REASONS: Final = ("ttl", "cap")


class LabelMetrics:
    """Label coverage, delay, outcomes, the join buffer and the realized error rate."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        r, ns = registry, namespace
        self.labels_total = Counter(
            "labels",
            "Labels by outcome: joined, duplicate, late (after the TTL), unknown (no such "
            "prediction within the TTL), dropped (pending cap), invalid (not comparable).",
            ("model", "outcome"),
            namespace=ns,
            registry=r,
        )
        self.remembered = Counter(
            "predictions_remembered",
            "Predictions written to the join buffer to wait for their label.",
            ("model",),
            namespace=ns,
            registry=r,
        )
        self.expired = Counter(
            "predictions_expired",
            "Predictions evicted from the join buffer without a label, by reason (ttl, cap).",
            ("model", "reason"),
            namespace=ns,
            registry=r,
        )
        self.buffer_size = Gauge(
            "join_buffer_predictions",
            "Predictions in the join buffer after the last write.",
            ("model",),
            namespace=ns,
            registry=r,
        )
        self.coverage = Gauge(
            "label_coverage",
            "Share of remembered predictions that got a label (over the join buffer's life, "
            "all instances).",
            ("model",),
            namespace=ns,
            registry=r,
        )
        self.error_rate = Gauge(
            "label_error_rate",
            "Realized error of the model over its last 500 joined labels (classification: "
            "error rate; regression: mean absolute error).",
            ("model",),
            namespace=ns,
            registry=r,
        )
        self.pending = Gauge(
            "labels_pending",
            "Labels of an owned partition waiting for their prediction.",
            ("topic", "partition"),
            namespace=ns,
            registry=r,
        )
        self.delay = BatchHistogram(
            f"{ns}_label_delay_seconds",
            "Event time of the label minus event time of its prediction (joined labels).",
            LABEL_DELAY_BUCKETS,
            r,
        )

    def record_join(self, task: TaskId, report: JoinReport, stats: Mapping[str, JoinStats]) -> None:
        for (model, outcome), n in report.outcomes.items():
            self.labels_total.labels(model, outcome if outcome in OUTCOMES else "other").inc(n)
        if report.delays:
            delays = np.maximum(np.asarray(report.delays, dtype=np.float64), 0.0)
            self.delay.observe_many(delays)
        for model, rate in report.error_rates.items():
            self.error_rate.labels(model).set(rate)
        for model, s in stats.items():
            if not math.isnan(s.coverage):
                self.coverage.labels(model).set(s.coverage)
        self.pending.labels(task.topic, str(task.partition)).set(report.pending)

    def record_remembered(self, model: str, result: Remembered) -> None:
        self.remembered.labels(model).inc(result.added)
        if result.expired_ttl:
            self.expired.labels(model, "ttl").inc(result.expired_ttl)
        if result.evicted_cap:
            self.expired.labels(model, "cap").inc(result.evicted_cap)
        self.buffer_size.labels(model).set(result.size)
