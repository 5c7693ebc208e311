"""Alerts: the model, deterministic ids, and the cooldown policy that turns signals into alerts.

An alert's id depends only on where its triggering event sits in the input (topic, partition,
offset) and on which detector fired for which model and feature. A replay after a crash therefore
produces the same ids, so consumers of the alert topic can drop duplicates.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "ALERT_TYPES",
    "SEVERITIES",
    "Alert",
    "CooldownPolicy",
    "alert_id",
    "severity_for",
]

ALERT_TYPES = ("drift", "outlier", "performance", "state_reset")
SEVERITIES = ("info", "warning", "critical")
SCHEMA_VERSION = 1


def alert_id(
    topic: str, partition: int, offset: int, model_id: str, feature: str | None, detector: str
) -> str:
    """Deterministic id of an alert: the same event and detector always give the same id.

    >>> a = alert_id("events", 0, 42, "fraud", "amount", "psi")
    >>> a == alert_id("events", 0, 42, "fraud", "amount", "psi"), len(a)
    (True, 32)
    >>> a == alert_id("events", 0, 43, "fraud", "amount", "psi")
    False
    """
    key = f"{topic}\x1f{partition}\x1f{offset}\x1f{model_id}\x1f{feature or ''}\x1f{detector}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def effect_size(details: dict[str, Any]) -> float | None:
    """|mean after - mean before| in standard deviations, when a detector reports them.

    Sequential detectors (ADWIN, Page-Hinkley) fire the moment their statistic crosses the
    threshold, so statistic/threshold is always just above 1 for them; the size of the shift
    is what tells a small drift from a large one.

    >>> effect_size({"mean_before": 50.0, "mean_recent": 62.0, "sigma": 10.0})
    1.2
    >>> effect_size({"psi": 0.3}) is None
    True
    """
    before = details.get("mean_before")
    after = details.get("mean_after", details.get("mean_recent"))
    sigma = details.get("sigma")
    if sigma is None and details.get("window_variance") is not None:
        sigma = math.sqrt(max(0.0, float(details["window_variance"])))
    values = (before, after, sigma)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        return None
    assert before is not None and after is not None and sigma is not None
    return abs(float(after) - float(before)) / float(sigma) if sigma > 0 else None


def severity_for(
    statistic: float, threshold: float, details: dict[str, Any] | None = None
) -> str:
    """Severity of a signal.

    With an effect size (see :func:`effect_size`): ``critical`` from 1 standard deviation,
    ``warning`` from 0.5, ``info`` below. Otherwise from how far the statistic went past its
    threshold: ``critical`` at twice the threshold or more, ``warning`` from 1.25x.

    >>> severity_for(0.5, 0.2), severity_for(0.26, 0.2), severity_for(0.21, 0.2)
    ('critical', 'warning', 'info')
    >>> severity_for(150.0, 140.0, {"mean_before": 50.0, "mean_recent": 62.0, "sigma": 10.0})
    'critical'
    """
    effect = effect_size(details) if details else None
    if effect is not None:
        return "critical" if effect >= 1.0 else "warning" if effect >= 0.5 else "info"
    if not (math.isfinite(statistic) and math.isfinite(threshold)) or threshold <= 0:
        return "warning"
    ratio = abs(statistic) / threshold
    if ratio >= 2.0:
        return "critical"
    if ratio >= 1.25:
        return "warning"
    return "info"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as published on the alert topic (see ``schemas/alert.schema.json``)."""

    alert_id: str
    type: str
    model_id: str
    feature: str | None
    detector: str
    statistic: float
    threshold: float
    severity: str
    event_time: float | None
    detected_at: float
    topic: str
    partition: int
    offset: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "alert_id": self.alert_id,
            "type": self.type,
            "model_id": self.model_id,
            "feature": self.feature,
            "detector": self.detector or None,  # none for state_reset
            "statistic": _finite_or_none(self.statistic),
            "threshold": _finite_or_none(self.threshold),
            "severity": self.severity,
            "event_time": _iso(self.event_time),
            "detected_at": _iso(self.detected_at),
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "details": self.details,
        }

    def to_json(self) -> bytes:
        # OPT_SERIALIZE_NUMPY: details may carry numpy scalars/arrays from the detectors.
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    @property
    def key(self) -> bytes:
        """Kafka message key: the model id, so one model's alerts stay in order."""
        return self.model_id.encode()


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


class CooldownPolicy:
    """Hysteresis: after an alert on a stream, further signals are suppressed for a while.

    A *stream* is one (model, feature, detector). The cooldown is counted in events of that
    stream, not in wall time, so that a replay of the same events gives the same alerts whatever
    the speed or the batching. One drift episode therefore yields one alert instead of one per
    window, and a detector that keeps firing (a persistent shift it re-detects) re-alerts at most
    once per ``cooldown`` events.

    >>> p = CooldownPolicy(cooldown=100)
    >>> [p.allow(("m", "f", "psi"), n) for n in (10, 50, 109, 110, 400)]
    [True, False, False, True, True]
    """

    def __init__(self, cooldown: int, outlier_cooldown: int = 0) -> None:
        if cooldown < 0 or outlier_cooldown < 0:
            raise ValueError("cooldown must be >= 0 events")
        self.cooldown = cooldown
        self.outlier_cooldown = outlier_cooldown
        self._last: dict[tuple[str, str, str], int] = {}

    def allow(self, stream: tuple[str, str, str], position: int, *, outlier: bool = False) -> bool:
        """Whether a signal at ``position`` (events seen on the stream) becomes an alert."""
        cooldown = self.outlier_cooldown if outlier else self.cooldown
        last = self._last.get(stream)
        if last is not None and position - last < cooldown:
            return False
        self._last[stream] = position
        return True

    def to_state(self) -> list[list[Any]]:
        return [[m, f, d, n] for (m, f, d), n in self._last.items()]

    def load_state(self, state: list[list[Any]]) -> None:
        self._last = {(str(m), str(f), str(d)): int(n) for m, f, d, n in state}
