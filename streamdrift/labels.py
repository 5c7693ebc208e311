"""Delayed labels: joining them to their predictions and watching each model's error stream.

A task whose topic carries predictions collects, per batch, the predictions to remember
(:meth:`LabelJoiner.collect`, no I/O); they are written to the join buffer at the task's next
checkpoint (:meth:`LabelJoiner.flush`, before its state and offset) and are not part of its state:
a replay after a crash collects them again. A task whose topic carries labels claims each
label's prediction in the join buffer (:mod:`streamdrift.state.joins`); a label whose prediction
is not visible yet waits in the task's state (bounded by ``labels.max_pending``) and is retried
every ``labels.retry_seconds`` until found, or until the model's newest prediction is more than
``labels.ttl_seconds`` (event time) later than the label: its prediction could no longer join.
A label and a prediction in the same event are joined at once.

Each joined pair appends one value to its model's *error stream* (classification: 0/1, regression:
``|prediction - label|``), watched by the ``labels.detectors`` (ADWIN and DDM by default). A
firing that shows the error getting worse becomes an alert of type ``performance`` on the
feature :data:`ERROR_FEATURE`, at the offset of the label that completed the evidence.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import numpy as np

from streamdrift._label_errors import Value, error_of, performance_severity
from streamdrift.alerts import Alert, CooldownPolicy, alert_id
from streamdrift.config import Config
from streamdrift.detectors import ERROR, Detector, detector_from_state
from streamdrift.errors import StateError, StoreError
from streamdrift.events import DecodedBatch, ModelColumns
from streamdrift.state.base import TaskId
from streamdrift.state.joins import DUPLICATE, EXPIRED, JOINED, JoinStore, Remembered

__all__ = ["ERROR_FEATURE", "OUTCOMES", "JoinReport", "LabelJoiner", "error_of"]

ERROR_FEATURE: Final = "__error__"
"""The pseudo-feature of a model's error stream in alerts and metrics."""
OUTCOMES: Final = ("joined", "duplicate", "late", "unknown", "dropped", "invalid")
"""What became of a label (``streamdrift_labels_total{outcome}``)."""
STATE_VERSION: Final = 1
RECENT: Final = 500
"""Joined pairs behind the realized error rate gauge (per model)."""


@dataclass(slots=True)
class _Pending:
    model: str
    event_id: str
    label: Value
    time: float
    offset: int


@dataclass(slots=True)
class _ErrorStream:
    detectors: list[tuple[str, Detector]]
    n_joined: int = 0
    error_sum: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))


@dataclass(slots=True)
class JoinReport:
    """What one call did, for the metrics (the counts are per call, not running totals)."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    delays: list[float] = field(default_factory=list)
    error_rates: dict[str, float] = field(default_factory=dict)
    gauges: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)
    pending: int = 0
    store_failed: bool = False


def _value(column: Any, row: int) -> Value | None:
    if column is None:
        return None
    v = column[row]
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return v if isinstance(v, str) else float(v)


class LabelJoiner:
    """The label side and the prediction side of one task (see the module docstring)."""

    def __init__(self, config: Config, task: TaskId, policy: CooldownPolicy) -> None:
        self.config = config
        self.cfg = config.labels
        self.task = task
        self.policy = policy
        carries = config.carries(task.topic)
        self.remembers = "prediction" in carries and config.labels_active
        self.takes_labels = "label" in carries
        self._pending: deque[_Pending] = deque()
        self._streams: dict[str, _ErrorStream] = {}
        self._to_remember: dict[str, dict[str, tuple[bytes, float]]] = {}

    # -- the prediction side ----------------------------------------------------------------

    def collect(self, batch: DecodedBatch) -> None:
        """Keep the batch's predictions that wait for a label (written by :meth:`flush`)."""
        if not self.remembers:
            return
        now = time.time()
        for model, cols in batch.per_model.items():
            pred = cols.prediction
            if pred is None:
                continue
            out = self._to_remember.setdefault(model, {})
            for row, event_id in enumerate(cols.event_ids):
                value = _value(pred, row)
                if event_id is None or value is None or _value(cols.label, row) is not None:
                    continue
                t = float(cols.event_times[row])
                t = t if math.isfinite(t) else now
                out[event_id] = (msgpack.packb([value, t]), t)

    @property
    def n_to_remember(self) -> int:
        return sum(map(len, self._to_remember.values()))

    def flush(self, store: JoinStore) -> list[tuple[str, Remembered]]:
        """Write the collected predictions (at the checkpoint, before the state and offset)."""
        done: list[tuple[str, Remembered]] = []
        for model in list(self._to_remember):
            entries = [(i, v, t) for i, (v, t) in self._to_remember[model].items()]
            if entries:
                result = store.remember(
                    model, entries, self.cfg.ttl_seconds, self.cfg.max_predictions
                )
                done.append((model, result))
            del self._to_remember[model]  # only once written: a failed write is retried
        return done

    # -- the label side ---------------------------------------------------------------------

    def process(
        self, batch: DecodedBatch, store: JoinStore, detected_at: float
    ) -> tuple[list[Alert], JoinReport]:
        """Join the batch's labels: at once (same event), from the buffer, or later."""
        report = JoinReport()
        alerts: list[Alert] = []
        if not self.takes_labels:
            return alerts, report
        now = time.time()
        for model, cols in batch.per_model.items():
            if cols.label is None:
                continue
            joins: list[tuple[_Pending, Value, float]] = []  # (label, prediction, its time)
            waiting: list[_Pending] = []
            for row, event_id in enumerate(cols.event_ids):
                label = _value(cols.label, row)
                if label is None:
                    continue
                t = float(cols.event_times[row])
                item = _Pending(
                    model,
                    event_id or "",
                    label,
                    t if math.isfinite(t) else now,
                    int(cols.offsets[row]),
                )
                direct = _value(cols.prediction, row)
                if direct is not None:
                    joins.append((item, direct, item.time))
                elif event_id is not None:
                    waiting.append(item)
                else:  # neither its prediction nor an id to find it by (mixed topics only)
                    report.outcomes[(model, "invalid")] += 1
            joins += self._claim(store, model, waiting, report)
            joins.sort(key=lambda j: j[0].offset)
            alerts += self._join(model, cols, joins, report, detected_at)
        report.pending = len(self._pending)
        return alerts, report

    def retry(self, store: JoinStore, detected_at: float) -> tuple[list[Alert], JoinReport]:
        """Look again for the predictions of the waiting labels."""
        report = JoinReport()
        alerts: list[Alert] = []
        by_model: dict[str, list[_Pending]] = {}
        for item in self._pending:
            by_model.setdefault(item.model, []).append(item)
        if by_model:
            self._pending = deque()
            for model, items in by_model.items():
                joins = self._claim(store, model, items, report)
                alerts += self._join(model, None, joins, report, detected_at)
            self._pending = deque(sorted(self._pending, key=lambda p: p.offset))
        report.pending = len(self._pending)
        return alerts, report

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def _claim(
        self,
        store: JoinStore,
        model: str,
        items: Sequence[_Pending],
        report: JoinReport,
    ) -> list[tuple[_Pending, Value, float]]:
        if not items:
            return []
        topic, partition = self.task
        requests = [(p.event_id, f"{topic}:{partition}:{p.offset}") for p in items]
        try:
            found, newest = store.claim(model, requests)
        except StoreError:
            report.store_failed = True  # nothing is lost: they wait and are retried
            self._wait(list(items), report)
            return []
        joins: list[tuple[_Pending, Value, float]] = []
        missing: list[_Pending] = []
        for item, (status, packed) in zip(items, found, strict=True):
            if status == JOINED:
                value, t = msgpack.unpackb(packed)
                if item.time - t > self.cfg.ttl_seconds:
                    report.outcomes[(model, "late")] += 1
                else:
                    joins.append((item, value, float(t)))
            elif status == DUPLICATE:
                report.outcomes[(model, "duplicate")] += 1
            elif status == EXPIRED:
                report.outcomes[(model, "late")] += 1
            elif newest - item.time > self.cfg.ttl_seconds:
                # The model's predictions have moved on by the TTL: its prediction would have
                # left the buffer by now even if it came, so it never will be joined.
                report.outcomes[(model, "unknown")] += 1
            else:
                missing.append(item)
        self._wait(missing, report)
        return joins

    def _wait(self, items: list[_Pending], report: JoinReport) -> None:
        self._pending.extend(items)
        while len(self._pending) > self.cfg.max_pending:
            dropped = self._pending.popleft()
            report.outcomes[(dropped.model, "dropped")] += 1

    # -- the error stream -------------------------------------------------------------------

    def _join(
        self,
        model: str,
        cols: ModelColumns | None,
        joins: list[tuple[_Pending, Value, float]],
        report: JoinReport,
        detected_at: float,
    ) -> list[Alert]:
        errors: list[float] = []
        labels: list[_Pending] = []
        for item, prediction, t in joins:
            error = error_of(prediction, item.label, self.cfg)
            if error is None or not math.isfinite(error):
                report.outcomes[(model, "invalid")] += 1
                continue
            errors.append(error)
            labels.append(item)
            report.delays.append(item.time - t)
        if not errors:
            return []
        report.outcomes[(model, "joined")] += len(errors)
        stream = self._streams.get(model)
        if stream is None:
            stream = self._streams[model] = _ErrorStream(self._new_detectors())
        before_n, before_sum = stream.n_joined, stream.error_sum
        values = np.asarray(errors, dtype=np.float64)
        alerts: list[Alert] = []
        for kind, detector in stream.detectors:
            result = detector.update(values)
            for signal in result.signals:
                alert = self._alert(
                    model, kind, signal, labels, before_n, before_sum, values, stream, detected_at
                )
                if alert is not None:
                    alerts.append(alert)
            report.gauges.append((model, kind, detector.gauges()))
        stream.n_joined += len(values)
        stream.error_sum += float(values.sum())
        stream.recent.extend(errors)
        report.error_rates[model] = sum(stream.recent) / len(stream.recent)
        return alerts

    def _new_detectors(self) -> list[tuple[str, Detector]]:
        return [
            (kind, ERROR[kind](**params)) for kind, params in self.config.error_detectors().items()
        ]

    def _alert(
        self,
        model: str,
        kind: str,
        signal: Any,
        labels: list[_Pending],
        before_n: int,
        before_sum: float,
        values: Any,
        stream: _ErrorStream,
        detected_at: float,
    ) -> Alert | None:
        row = int(signal.position)
        d = signal.details
        before = d.get("error_rate_before", d.get("mean_before"))
        after = d.get("error_rate_after", d.get("mean_after", d.get("mean_recent")))
        n_labelled = d.get("n_labelled")
        if n_labelled is None and "width_before" in d:
            n_labelled = int(d["width_before"]) + int(d["width_after"])
        if before is None or after is None:  # no split reported: all before vs the recent ones
            recent = [*stream.recent, *values[: row + 1].tolist()][-RECENT:]
            before = before_sum / before_n if before_n else float("nan")
            after = sum(recent) / len(recent)
        if n_labelled is None:
            n_labelled = before_n + row + 1
        if not after > before:  # the error got smaller: good news, not an alert
            return None
        if not self.policy.allow((model, ERROR_FEATURE, kind), before_n + row):
            return None
        item = labels[row]
        details = {
            "error_rate_before": float(before),
            "error_rate_after": float(after),
            "n_labelled": int(n_labelled),
            "problem": self.cfg.problem,
            "event_id": item.event_id or None,
            **{k: v for k, v in d.items() if k not in ("error_rate_before", "error_rate_after")},
        }
        return Alert(
            alert_id=alert_id(*self.task, item.offset, model, ERROR_FEATURE, kind),
            type="performance",
            model_id=model,
            feature=ERROR_FEATURE,
            detector=kind,
            statistic=float(signal.statistic),
            threshold=float(signal.threshold),
            severity=performance_severity(float(before), float(after), self.cfg.problem),
            event_time=item.time,
            detected_at=detected_at,
            topic=self.task.topic,
            partition=self.task.partition,
            offset=item.offset,
            details=details,
        )

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "labels",
            "version": STATE_VERSION,
            "pending": [[p.model, p.event_id, p.label, p.time, p.offset] for p in self._pending],
            "streams": [
                [
                    model,
                    s.n_joined,
                    s.error_sum,
                    list(s.recent),
                    [[kind, det.to_state()] for kind, det in s.detectors],
                ]
                for model, s in self._streams.items()
            ],
        }

    def load_state(self, doc: Any) -> None:
        if not isinstance(doc, dict) or doc.get("kind") != "labels":
            raise StateError("labels state must be a 'labels' document")
        if doc.get("version") != STATE_VERSION:
            raise StateError(
                f"labels state version {doc.get('version')!r} is not supported (supported: "
                f"{STATE_VERSION}); upgrade streamdrift or reset the state"
            )
        try:
            self._pending = deque(
                _Pending(str(m), str(i), v, float(t), int(o)) for m, i, v, t, o in doc["pending"]
            )
            self._streams = {}
            for model, n, total, recent, dets in doc["streams"]:
                stream = _ErrorStream([(str(k), detector_from_state(s)) for k, s in dets])
                stream.n_joined, stream.error_sum = int(n), float(total)
                stream.recent.extend(float(x) for x in recent)
                self._streams[str(model)] = stream
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"labels state is incomplete or corrupt: {exc!r}") from exc

    # -- introspection ----------------------------------------------------------------------

    def error_counts(self) -> dict[str, tuple[int, float]]:
        """Model -> (joined pairs, sum of their errors) over the task's life."""
        return {m: (s.n_joined, s.error_sum) for m, s in self._streams.items()}

    def detectors(self) -> list[tuple[str, str, Detector]]:
        return [(m, k, d) for m, s in self._streams.items() for k, d in s.detectors]
