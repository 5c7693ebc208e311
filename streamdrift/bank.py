"""The detector bank of one task (input partition): columns in, alerts out, state as one document.

Per model the bank keeps one detector per (feature, detector kind) for the univariate monitors
and one multivariate detector over the model's numeric vector. Streams are created lazily the
first time a (model, feature) is seen, with the detectors the configuration resolves for it
(resolved once, then cached). The decoder's inferred feature types are part of the bank's state,
because the detectors built for a feature depend on its type.

Positions: the bank counts the events of each model (``model_seen``). A signal at row ``r`` of a
model's columns is at model position ``seen_before + r``; the cooldown policy counts in those
positions, so alerts do not depend on how the input was split into batches.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from streamdrift.alerts import SEVERITIES, Alert, CooldownPolicy, alert_id, severity_for
from streamdrift.config import Config, FeatureType
from streamdrift.detectors import CATEGORICAL, MULTIVARIATE, NUMERIC, Detector, detector_from_state
from streamdrift.detectors.base import MAX_COUNT
from streamdrift.errors import StateError
from streamdrift.events import DecodedBatch, Decoder, ModelColumns
from streamdrift.labels import LabelJoiner
from streamdrift.reference import reference_for
from streamdrift.state.base import TaskId

__all__ = ["BANK_STATE_VERSION", "BankCounters", "DetectorBank"]

BANK_STATE_VERSION = 1

GaugeObserver = Callable[[str, str, str, dict[str, float]], None]
"""Called as ``observer(model, feature, detector_kind, gauges)`` for streams a batch touched."""


@dataclass(slots=True)
class BankCounters:
    """Running totals of a bank; ``offset_sum`` and ``offset_xor`` checksum which events it saw."""

    n_events: int = 0
    n_invalid_values: int = 0
    n_alerts: int = 0
    n_suppressed: int = 0
    offset_sum: int = 0
    offset_xor: int = 0

    def to_state(self) -> list[int]:
        return [
            self.n_events,
            self.n_invalid_values,
            self.n_alerts,
            self.n_suppressed,
            self.offset_sum,
            self.offset_xor,
        ]

    @classmethod
    def from_state(cls, state: list[int]) -> BankCounters:
        return cls(*(_count("counters", x) for x in state))


def _count(name: str, value: object) -> int:
    """A count from a state document; ``StateError`` unless it is in [0, 2**62)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT:
        return value
    raise StateError(f"bank state: {name} must be integers in [0, 2**62), got {value!r}")


@dataclass(slots=True)
class _Stream:
    feature: str | None  # None for the multivariate detector
    kind: str
    detector: Detector
    features: tuple[str, ...] = ()  # the multivariate detector's input columns


_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


class DetectorBank:
    """All detectors of one task, their alert policy, and the decoder's learned types."""

    def __init__(self, config: Config, task: TaskId) -> None:
        self.config = config
        self.task = task
        self.decoder = Decoder.from_config(config, task.topic)
        self.counters = BankCounters()
        self.policy = CooldownPolicy(
            config.alerts.cooldown_events, config.alerts.outlier_cooldown_events
        )
        self._min_rank = _SEVERITY_RANK[config.alerts.min_severity]
        self._streams: dict[str, dict[str, list[_Stream]]] = {}
        self._multi: dict[str, list[_Stream]] = {}
        self._model_seen: dict[str, int] = {}
        # Delayed labels (streamdrift.labels): predictions to remember, labels to join.
        self.labels = LabelJoiner(config, task, self.policy) if config.labels_active else None

    # -- processing --------------------------------------------------------------------------

    def process(
        self,
        batch: DecodedBatch,
        *,
        now: float | None = None,
        observer: GaugeObserver | None = None,
    ) -> list[Alert]:
        """Feed a decoded batch to the detectors; return the alerts, in input order."""
        detected_at = time.time() if now is None else now
        alerts: list[Alert] = []
        for model_id, cols in batch.per_model.items():
            alerts.extend(self._process_model(model_id, cols, detected_at, observer))
            offsets = cols.offsets
            self.counters.n_events += len(offsets)
            # modulo 2**62: a checksum, and it must not outgrow a msgpack integer on long streams
            self.counters.offset_sum = (self.counters.offset_sum + int(offsets.sum())) % MAX_COUNT
            self.counters.offset_xor ^= int(np.bitwise_xor.reduce(offsets)) if len(offsets) else 0
        alerts.sort(key=lambda a: (a.offset, a.detector, a.feature or ""))
        if self.labels is not None:
            self.labels.collect(batch)
        return alerts

    def _process_model(
        self,
        model_id: str,
        cols: ModelColumns,
        detected_at: float,
        observer: GaugeObserver | None,
    ) -> list[Alert]:
        seen_before = self._model_seen.get(model_id, 0)
        by_feature = self._streams.setdefault(model_id, {})
        alerts: list[Alert] = []
        touched: list[_Stream] = []
        for columns in (cols.numeric, cols.categorical):
            for feature, values in columns.items():
                streams = by_feature.get(feature)
                if streams is None:
                    streams = self._new_streams(model_id, feature, cols.types[feature])
                    by_feature[feature] = streams
                for stream in streams:
                    result = stream.detector.update(values)
                    self.counters.n_invalid_values += result.n_invalid
                    touched.append(stream)
                    for signal in result.signals:
                        alert = self._alert(
                            model_id, stream, cols, signal, seen_before, detected_at
                        )
                        if alert is not None:
                            alerts.append(alert)
        multi = self._multi.get(model_id)
        if multi is None:
            multi = self._multi[model_id] = self._new_multi(model_id, cols)
        for stream in multi:
            result = stream.detector.update(cols.numeric_matrix(stream.features))
            touched.append(stream)
            for signal in result.signals:
                alert = self._alert(model_id, stream, cols, signal, seen_before, detected_at)
                if alert is not None:
                    alerts.append(alert)
        self._model_seen[model_id] = seen_before + len(cols)
        if observer is not None:
            for stream in touched:
                observer(model_id, stream.feature or "", stream.kind, stream.detector.gauges())
        return alerts

    def _alert(
        self,
        model_id: str,
        stream: _Stream,
        cols: ModelColumns,
        signal: Any,
        seen_before: int,
        detected_at: float,
    ) -> Alert | None:
        row = int(signal.position)
        outlier = stream.feature is None
        key = (model_id, stream.feature or "", stream.kind)
        if not self.policy.allow(key, seen_before + row, outlier=outlier):
            self.counters.n_suppressed += 1
            return None
        severity = severity_for(signal.statistic, signal.threshold, signal.details)
        if _SEVERITY_RANK[severity] < self._min_rank:
            self.counters.n_suppressed += 1
            return None
        offset = int(cols.offsets[row])
        event_time = float(cols.event_times[row])
        details = dict(signal.details)
        if outlier:
            details = _name_features(details, stream.features)
        event_id = cols.event_ids[row] if cols.event_ids else None
        if event_id is not None:
            details.setdefault("event_id", event_id)
        self.counters.n_alerts += 1
        return Alert(
            alert_id=alert_id(
                self.task.topic, self.task.partition, offset, model_id, stream.feature, stream.kind
            ),
            type="outlier" if outlier else "drift",
            model_id=model_id,
            feature=stream.feature,
            detector=stream.kind,
            statistic=float(signal.statistic),
            threshold=float(signal.threshold),
            severity=severity,
            event_time=event_time if np.isfinite(event_time) else None,
            detected_at=detected_at,
            topic=self.task.topic,
            partition=self.task.partition,
            offset=offset,
            details=details,
        )

    # -- stream construction -------------------------------------------------------------------

    def _new_streams(self, model_id: str, feature: str, ftype: FeatureType) -> list[_Stream]:
        registry = NUMERIC if ftype == "numeric" else CATEGORICAL
        streams = []
        for kind, params in self.config.monitors_for(model_id, feature, ftype).items():
            cls = registry[kind]
            kwargs = dict(params)
            if ftype == "categorical" and _accepts(cls, "max_categories"):
                kwargs.setdefault("max_categories", self.config.limits.max_categories)
            ref = reference_for(self.config) if kind == "psi" else None
            if ref is not None:  # start from the training data's profile, not a warm-up
                kwargs = ref.psi_kwargs(model_id, feature, ftype, kwargs)
            streams.append(_Stream(feature, kind, cls(**kwargs)))
        return streams

    def _new_multi(self, model_id: str, cols: ModelColumns) -> list[_Stream]:
        # The vector is fixed at the model's first batch: the numeric features present then.
        features = tuple(
            sorted(
                n
                for n, t in cols.types.items()
                if t == "numeric" and n in cols.numeric and not n.startswith("__")
            )
        )
        if len(features) < 2:
            return []
        streams = []
        for kind, params in self.config.multivariate_for(model_id).items():
            cls = MULTIVARIATE[kind]
            ref = reference_for(self.config) if kind == "isolation_forest" else None
            if ref is not None:
                params = ref.forest_kwargs(model_id, features, params)
            streams.append(_Stream(None, kind, cls(**params), features=features))
        return streams

    # -- state -----------------------------------------------------------------------------------

    def to_state(self) -> bytes:
        """The whole bank as one versioned msgpack document (no pickle)."""
        with _gc_paused():
            return self._to_state()

    def _to_state(self) -> bytes:
        doc = {
            "kind": "bank",
            "version": BANK_STATE_VERSION,
            "task": [self.task.topic, self.task.partition],
            "types": self.decoder.types_state(),
            "counters": self.counters.to_state(),
            "policy": self.policy.to_state(),
            "model_seen": self._model_seen,
            "streams": [
                [model, feature, s.kind, s.detector.to_state()]
                for model, by_feature in self._streams.items()
                for feature, streams in by_feature.items()
                for s in streams
            ],
            "empty_features": [
                [model, feature]
                for model, by_feature in self._streams.items()
                for feature, streams in by_feature.items()
                if not streams
            ],
            "multi": [
                [model, s.kind, list(s.features), s.detector.to_state()]
                for model, streams in self._multi.items()
                for s in streams
            ],
            "multi_empty": [model for model, streams in self._multi.items() if not streams],
            "labels": None if self.labels is None else self.labels.to_state(),
        }
        return bytes(msgpack.packb(doc, use_bin_type=True))

    @classmethod
    def from_state(cls, config: Config, task: TaskId, data: bytes) -> DetectorBank:
        """Restore a bank saved by :meth:`to_state`; raise ``StateError`` if it is unusable."""
        try:
            with _gc_paused():
                doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise StateError(f"bank state of {task} is not valid msgpack: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("kind") != "bank":
            raise StateError(f"bank state of {task} is not a bank document")
        if doc.get("version") != BANK_STATE_VERSION:
            raise StateError(
                f"bank state of {task} has version {doc.get('version')!r}; this streamdrift "
                f"reads version {BANK_STATE_VERSION}"
            )
        with _gc_paused():
            return cls._restore(config, task, doc)

    @classmethod
    def _restore(cls, config: Config, task: TaskId, doc: dict[str, Any]) -> DetectorBank:
        bank = cls(config, task)
        try:
            bank.decoder.load_types_state(doc["types"])
            bank.counters = BankCounters.from_state(doc["counters"])
            bank.policy.load_state(doc["policy"])
            seen = doc["model_seen"].items()
            bank._model_seen = {str(k): _count("model_seen", v) for k, v in seen}
            for model, feature, kind, det_state in doc["streams"]:
                stream = _Stream(feature, kind, detector_from_state(det_state))
                bank._streams.setdefault(model, {}).setdefault(feature, []).append(stream)
            for model, feature in doc["empty_features"]:
                bank._streams.setdefault(model, {}).setdefault(feature, [])
            for model, kind, features, det_state in doc["multi"]:
                stream = _Stream(None, kind, detector_from_state(det_state), tuple(features))
                bank._multi.setdefault(model, []).append(stream)
            for model in doc["multi_empty"]:
                bank._multi.setdefault(model, [])
            if bank.labels is not None and doc.get("labels") is not None:
                bank.labels.load_state(doc["labels"])
            bank._check_restored()
        except StateError:
            raise
        except Exception as exc:  # e.g. MemoryError or RecursionError from a hostile document
            raise StateError(f"bank state of {task} is incomplete or corrupt: {exc!r}") from exc
        return bank

    def _check_restored(self) -> None:
        """Refuse a restored bank whose parts do not fit together (it would fail mid-stream)."""
        types = self.decoder.feature_types
        for model, by_feature in self._streams.items():
            if not isinstance(model, str) or not all(isinstance(f, str) for f in by_feature):
                raise StateError("stream model ids and feature names must be strings")
            for feature, streams in by_feature.items():
                ftype = types.get(model, {}).get(feature)
                registry = NUMERIC if ftype == "numeric" else CATEGORICAL
                for s in streams:
                    cls = registry.get(s.kind) if ftype is not None else None
                    if ftype is not None and (cls is None or not isinstance(s.detector, cls)):
                        raise StateError(
                            f"detector {s.kind!r} ({s.detector.kind}) of {model}/{feature} does "
                            f"not fit the feature's type {ftype}"
                        )
        for model, streams in self._multi.items():
            for s in streams:
                cls = MULTIVARIATE.get(s.kind)
                feats = s.features
                width = getattr(s.detector, "_n_features", None)
                if (
                    not isinstance(model, str)
                    or cls is None
                    or not isinstance(s.detector, cls)
                    or len(feats) < 2
                    or len(set(feats)) != len(feats)
                    or any(types.get(model, {}).get(f) != "numeric" for f in feats)
                    or (width is not None and width != len(feats))
                ):
                    raise StateError(
                        f"multivariate detector {s.kind!r} of {model!r} does not fit its "
                        f"features {list(feats)!r}"
                    )

    # -- introspection -----------------------------------------------------------------------

    @property
    def models(self) -> list[str]:
        return sorted(self._model_seen)

    def detectors(self) -> Iterable[tuple[str, str | None, str, Detector]]:
        """(model, feature, kind, detector) for every detector in the bank."""
        for model, by_feature in self._streams.items():
            for feature, streams in by_feature.items():
                for s in streams:
                    yield model, feature, s.kind, s.detector
        for model, streams in self._multi.items():
            for s in streams:
                yield model, None, s.kind, s.detector


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a state document is built or read.

    Those build or walk millions of small lists and dicts, none of them cyclic, and every
    few thousand allocations would start a collection over the whole heap: at 1,000 models
    ``to_state`` takes 1.7x and ``from_state`` 1.6x as long with the collector on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _name_features(details: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Replace the multivariate detector's column indices by the feature names."""
    top = details.get("features")
    if isinstance(top, list):
        details["top_features"] = [
            {**t, "feature": names[t["feature"]]}
            for t in top
            if isinstance(t, dict)
            and isinstance(t.get("feature"), int)
            and t["feature"] < len(names)
        ]
    details["features"] = list(names)
    values = details.get("values")
    if isinstance(values, list) and len(values) == len(names):
        details["values"] = dict(zip(names, values, strict=True))
    return details


def _accepts(cls: type, name: str) -> bool:
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
