"""Decoding batches of raw Kafka records into per-model columns (the start of the hot path).

One :class:`Decoder` per task (input partition): the feature types it infers are part of that
task's state (:meth:`Decoder.types_state`). Per record it only parses the JSON, finds the model
and stashes the document; the fields are then pulled out column by column and converted with one
numpy call per column, so the per-event Python work stays a handful of operations.

Every record ends up exactly once either in :attr:`DecodedBatch.per_model` or in
:attr:`DecodedBatch.invalid` as a :class:`DeadLetter` with a machine ``reason`` (see
:data:`REASONS`) and a ``detail`` naming the field and its path.

>>> from streamdrift.config import LimitsConfig, MappingConfig
>>> decoder = Decoder(MappingConfig(), LimitsConfig(), max_message_bytes=1 << 20)
>>> batch = decoder.decode_batch([
...     RawRecord(b'{"model_id": "m", "ts": 1.5, "features": {"x": 2, "c": "FR"}}', "t", 0, 7),
...     RawRecord(b'{"model_id": "m", "features": {"x": "oops"}}', "t", 0, 8),
... ])
>>> cols = batch.per_model["m"]
>>> cols.offsets.tolist(), cols.numeric["x"].tolist(), cols.categorical["c"].tolist()
([7], [2.0], ['FR'])
>>> [(d.offset, d.reason) for d in batch.invalid]
[(8, 'wrong_type')]
"""

from __future__ import annotations

import base64
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final, NamedTuple

import numpy as np
import orjson

from streamdrift._columns import Bad, describe
from streamdrift._decode_model import Field, ModelColumns, Plan, build_columns
from streamdrift.config import (
    LABEL,
    PREDICTION,
    Config,
    FeaturesConfig,
    FeatureType,
    LimitsConfig,
    MappingConfig,
)
from streamdrift.errors import StateError
from streamdrift.paths import compile_extractor, compile_path, parse_path

__all__ = [
    "LABEL",
    "PREDICTION",
    "REASONS",
    "DeadLetter",
    "DecodedBatch",
    "Decoder",
    "ModelColumns",
    "RawRecord",
    "compile_path",
]

REASONS: Final = (
    "empty",
    "oversized",
    "invalid_json",
    "non_finite",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "too_many_models",
    "too_many_features",
)
"""Machine codes of :attr:`DeadLetter.reason` (stable: dashboards and consumers use them)."""

MAX_MODEL_ID_LENGTH: Final = 256
OVERSIZED_KEEP_BYTES: Final = 65_536
"""An oversized record's dead letter keeps only this prefix (the whole would not fit either)."""
TYPES_STATE_VERSION: Final = 1


class RawRecord(NamedTuple):
    """One Kafka record as the decoder needs it."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be decoded, and why."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    received_at: float = field(default_factory=time.time)
    key: bytes | None = None

    def to_json(self) -> bytes:
        """The dead-letter document (one JSON object, UTF-8).

        >>> DeadLetter(b"{", "t", 0, 5, "invalid_json", "not JSON", 0.0).to_json()[:60]
        b'{"reason":"invalid_json","detail":"not JSON","source":{"topi'
        """
        original_utf8: str | None = None
        if self.value is not None:
            try:
                original_utf8 = self.value.decode("utf-8")
            except UnicodeDecodeError:
                original_utf8 = None
        received = datetime.fromtimestamp(self.received_at, UTC)
        return orjson.dumps(
            {
                "reason": self.reason,
                "detail": self.detail,
                "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
                "received_at": received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "original_b64": (
                    None if self.value is None else base64.b64encode(self.value).decode("ascii")
                ),
                "original_utf8": original_utf8,
            }
        )


@dataclass(slots=True)
class DecodedBatch:
    """The result of :meth:`Decoder.decode_batch`."""

    per_model: dict[str, ModelColumns]
    invalid: list[DeadLetter]
    n_records: int
    new_types: list[tuple[str, str, FeatureType]] = field(default_factory=list)
    """(model, feature, type) inferred for the first time in this batch, to report."""

    @property
    def n_decoded(self) -> int:
        return sum(len(cols) for cols in self.per_model.values())

    @property
    def invalid_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for letter in self.invalid:
            counts[letter.reason] = counts.get(letter.reason, 0) + 1
        return counts


def _field(path: str | None) -> Field | None:
    return (compile_extractor(path), path) if path else None


class Decoder:
    """Decodes batches of records according to ``mapping``; keeps the inferred feature types."""

    def __init__(
        self,
        mapping: MappingConfig,
        limits: LimitsConfig,
        max_message_bytes: int,
        *,
        labels_only: bool = False,
    ) -> None:
        self.mapping = mapping
        self.limits = limits
        self.max_message_bytes = max_message_bytes
        self._model_constant = mapping.model_id.constant
        self._model_path = mapping.model_id.path or ""
        self._model = _field(mapping.model_id.path)
        features = mapping.features
        self._features = _field(features.path)
        declared: dict[str, FeatureType] = dict(mapping.feature_types)
        for name, ftype in ((PREDICTION, mapping.prediction_type), (LABEL, mapping.label_type)):
            if ftype is not None:
                declared[name] = ftype
        self._declared = declared
        self._plan = Plan(
            features_steps=parse_path(features.path) if features.path else None,
            fields={name: (compile_extractor(p), p) for name, p in (features.fields or {}).items()},
            event_id=_field(mapping.event_id),
            event_time=_field(mapping.event_time),
            time_from_record=mapping.event_time_fallback == "kafka_timestamp",
            prediction=_field(mapping.prediction),
            label=_field(mapping.label),
            declared=declared,
            allow_missing=mapping.allow_missing_features,
            max_features=limits.max_features,
            # A label event without its label or id is useless: a dead letter, not a silent skip.
            label_required=labels_only,
            event_id_required=labels_only,
        )
        self._types: dict[str, dict[str, FeatureType]] = {}

    @classmethod
    def from_config(cls, config: Config, topic: str | None = None) -> Decoder:
        """The decoder of ``topic``: its mapping, restricted to what the topic carries."""
        if topic is None:
            return cls(config.mapping, config.limits, config.kafka.max_message_bytes)
        return cls(
            topic_mapping(config, topic),
            config.limits,
            config.kafka.max_message_bytes,
            labels_only="label" in config.carries(topic)
            and "prediction" not in config.carries(topic),
        )

    # -- state of the inferred types -------------------------------------------------------------

    @property
    def inferred_types(self) -> dict[str, dict[str, FeatureType]]:
        """Model -> feature -> type, for the features whose type was inferred (not declared)."""
        return {
            model: {f: t for f, t in types.items() if f not in self._declared}
            for model, types in self._types.items()
        }

    @property
    def feature_types(self) -> dict[str, dict[str, FeatureType]]:
        """Model -> feature -> type for every feature seen (declared or inferred)."""
        return {model: dict(types) for model, types in self._types.items()}

    def types_state(self) -> dict[str, Any]:
        """The known models and their feature types, as a plain versioned document."""
        return {
            "kind": "decoder_types",
            "version": TYPES_STATE_VERSION,
            "models": self.feature_types,
        }

    def load_types_state(self, state: Any) -> None:
        """Restore :meth:`types_state`; declared types of the current config take precedence."""
        if not isinstance(state, dict) or state.get("kind") != "decoder_types":
            raise StateError("decoder types state must be a 'decoder_types' document")
        if state.get("version") != TYPES_STATE_VERSION:
            raise StateError(
                f"decoder types state version {state.get('version')!r} is not supported "
                f"(supported: {TYPES_STATE_VERSION}); upgrade streamdrift or reset the state"
            )
        models = state.get("models")
        if not isinstance(models, dict):
            raise StateError("decoder types state has no 'models' mapping")
        restored: dict[str, dict[str, FeatureType]] = {}
        for model, types in models.items():
            if not isinstance(model, str) or not isinstance(types, dict):
                raise StateError(f"decoder types state: bad entry for model {model!r}")
            restored[model] = {}
            for feature, ftype in types.items():
                if not isinstance(feature, str) or ftype not in ("numeric", "categorical"):
                    raise StateError(f"decoder types state: bad type {ftype!r} for {feature!r}")
                restored[model][feature] = self._declared.get(feature) or ftype
        self._types = restored

    # -- decoding --------------------------------------------------------------------------------

    def decode_batch(self, records: Sequence[RawRecord]) -> DecodedBatch:
        """Decode ``records`` into per-model columns and dead letters (never raises on data)."""
        # Parsed JSON cannot form reference cycles, but allocating thousands of containers makes
        # the cyclic GC run again and again over them (~40% of the decode time): pause it. The
        # documents are freed when the batch is done, so the GC has nothing left to catch up on.
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._decode(records)
        finally:
            if gc_enabled:
                gc.enable()

    def _decode(self, records: Sequence[RawRecord]) -> DecodedBatch:
        now = time.time()
        bad: Bad = {}  # batch position -> (reason, detail); the first problem found wins
        rows, docs = self._parse(records, bad)
        models, fresh = self._model_ids(rows, docs, bad)
        feats = self._feature_objects(rows, docs, bad)
        if fresh:
            self._admit(fresh, bad)
        if len(rows) != len(records) - len(bad):
            keep = [i for i, pos in enumerate(rows) if pos not in bad]
            rows, docs, models = _pick(rows, keep), _pick(docs, keep), _pick(models, keep)
            feats = _pick(feats, keep) if feats else feats
        offsets = np.fromiter(map(itemgetter(3), records), dtype=np.int64, count=len(records))
        per_model: dict[str, ModelColumns] = {}
        new_types: list[tuple[str, str, FeatureType]] = []
        for model, (g_rows, g_docs, g_feats) in _group(models, rows, docs, feats).items():
            local: Bad = {}
            known = self._types.get(model, {})
            columns = build_columns(
                self._plan, model, g_docs, g_feats, g_rows, records, offsets, known, local
            )
            for row, problem in local.items():
                bad[g_rows[row]] = problem
            # Types are learned even when every event failed on some value: they were decided
            # by the first value, as they would have been in a batch with a valid event.
            new_types.extend((model, f, t) for f, t in columns.types.items() if f not in known)
            self._types[model] = {**known, **columns.types}
            if len(local) == len(g_rows):
                continue  # nothing valid in this batch
            if local:
                keep_mask = np.ones(len(g_rows), dtype=bool)
                keep_mask[list(local)] = False
                columns = columns.filtered(keep_mask)
            per_model[model] = columns
        invalid = [self._letter(records[pos], *bad[pos], now) for pos in sorted(bad)]
        return DecodedBatch(per_model, invalid, len(records), new_types)

    def _parse(self, records: Sequence[RawRecord], bad: Bad) -> tuple[list[int], list[Any]]:
        """Parse every value; return the positions and documents of the JSON objects."""
        values: list[Any] = [record[0] for record in records]
        limit = self.max_message_bytes
        try:
            too_big = max(map(len, values), default=0) > limit
        except TypeError:  # a None value (tombstone): look at each one
            too_big = True
        if too_big:
            for pos, value in enumerate(values):
                if value is not None and len(value) > limit:
                    bad[pos] = (
                        "oversized",
                        f"message of {len(value)} bytes is over kafka.max_message_bytes={limit}",
                    )
                    values[pos] = None
        loads, error = orjson.loads, orjson.JSONDecodeError
        try:  # the common case, every value parses: one C-level loop (~15% faster)
            docs: list[Any] = list(map(loads, values))
        except error:  # find which, one by one
            docs = []
            append = docs.append
            for pos, value in enumerate(values):
                try:
                    append(loads(value))
                except error as exc:
                    append(None)
                    if pos not in bad:
                        bad[pos] = _parse_problem(value, exc)
        if set(map(type, docs)) - {dict}:
            for pos, doc in enumerate(docs):
                if doc.__class__ is not dict and pos not in bad:
                    bad[pos] = ("not_an_object", f"expected a JSON object, got {describe(doc)}")
        if not bad:
            return list(range(len(docs))), docs
        rows = [pos for pos in range(len(docs)) if pos not in bad]
        return rows, [docs[pos] for pos in rows]

    def _model_ids(
        self, rows: list[int], docs: list[dict[str, Any]], bad: Bad
    ) -> tuple[list[Any], list[tuple[int, str]]]:
        """The model id of each document (unusable ones are recorded in ``bad``), and the
        (position, model) of the rows whose model is new, for :meth:`_admit`."""
        if self._model is None:
            models: list[Any] = [self._model_constant] * len(docs)
        else:
            models = list(self._model[0](docs))
        path = self._model_path
        problems: dict[Any, tuple[str, str]] = {}
        if set(map(type, models)) != {str}:
            for i, model in enumerate(models):
                if model.__class__ is int:  # numeric ids are common; bool is not int here
                    models[i] = str(model)
                elif model is None:
                    bad[rows[i]] = ("missing_field", f"model id missing at path {path!r}")
                elif model.__class__ is not str:
                    bad[rows[i]] = (
                        "wrong_type",
                        f"model id at path {path!r}: expected a string, got {describe(model)}",
                    )
                    models[i] = None
        new: set[str] = set()
        for model in dict.fromkeys(models):
            if model.__class__ is not str:
                continue
            if model == "":
                problems[model] = ("missing_field", f"model id at path {path!r} is empty")
            elif len(model) > MAX_MODEL_ID_LENGTH:
                problems[model] = (
                    "wrong_type",
                    f"model id at path {path!r} is longer than {MAX_MODEL_ID_LENGTH} characters",
                )
            elif model not in self._types:
                new.add(model)
        if problems:
            for i, model in enumerate(models):
                if model.__class__ is str and model in problems:
                    bad.setdefault(rows[i], problems[model])
        fresh = [(pos, m) for pos, m in zip(rows, models, strict=True) if m in new] if new else []
        return models, fresh

    def _admit(self, fresh: list[tuple[int, str]], bad: Bad) -> None:
        """Give new models their slots under ``limits.max_models`` as if the events came one by
        one: a model takes a slot with its first event that has a usable model id and features
        (whatever its values); once no slot is left, every event of a new model is refused
        (``too_many_models``). So the outcome does not depend on how the stream was split into
        batches (tests/test_fuzz_decode.py, scripts/fuzz_decode.py)."""
        slots = self.limits.max_models - len(self._types)
        for pos, model in fresh:  # in batch order
            if model in self._types:
                continue
            if slots > 0:
                if pos not in bad:
                    self._types[model] = {}
                    slots -= 1
                continue  # an unusable event keeps its own reason and takes no slot
            bad[pos] = (
                "too_many_models",
                f"new model id {model[:64]!r} is over limits.max_models={self.limits.max_models}",
            )

    def _feature_objects(self, rows: list[int], docs: list[dict[str, Any]], bad: Bad) -> list[Any]:
        """The features object of each document (path mode; empty list in fields mode)."""
        if self._features is None:
            return []
        feats = list(self._features[0](docs))
        if set(map(type, feats)) - {dict}:
            path = self._features[1]
            for i, feat in enumerate(feats):
                if feat is None:
                    bad.setdefault(
                        rows[i], ("missing_field", f"features object missing at path {path!r}")
                    )
                elif feat.__class__ is not dict:
                    bad.setdefault(
                        rows[i],
                        (
                            "wrong_type",
                            f"features at path {path!r}: "
                            f"expected an object of name -> value, got "
                            f"{describe(feat)}",
                        ),
                    )
        return feats

    @staticmethod
    def _letter(record: RawRecord, reason: str, detail: str, now: float) -> DeadLetter:
        value = record[0]
        if reason == "oversized" and value is not None:
            value = value[:OVERSIZED_KEEP_BYTES]
            detail += f"; the original is cut to its first {len(value)} bytes"
        return DeadLetter(value, record[1], record[2], record[3], reason, detail, now, record[5])


def topic_mapping(config: Config, topic: str) -> MappingConfig:
    """``topic``'s mapping without the paths of what the topic does not carry."""
    mapping = config.topic_mapping(topic)
    carries = config.carries(topic)
    update: dict[str, Any] = {}
    if "features" not in carries:
        update.update(features=FeaturesConfig(fields={}), feature_types={})
    if "prediction" not in carries:
        update["prediction"] = None
    if "label" not in carries:
        update["label"] = None
    elif mapping.label_type is None and config.labels.problem == "regression":
        update["label_type"] = "numeric"
    return mapping.model_copy(update=update) if update else mapping


def _parse_problem(value: Any, exc: Exception) -> tuple[str, str]:
    if not value:
        return "empty", "record has no value (empty or tombstone)"
    if "infinity" in str(exc):
        return "non_finite", f"a number is out of range: {exc}"
    return "invalid_json", f"not valid JSON: {exc}"


def _pick(items: list[Any], keep: list[int]) -> list[Any]:
    return [items[i] for i in keep]


def _group(
    models: list[Any], rows: list[int], docs: list[Any], feats: list[Any]
) -> dict[str, tuple[list[int], list[Any], list[Any]]]:
    """Split the rows by model, in order of first appearance (one model: no copies)."""
    if not models:
        return {}
    if len(set(models)) == 1:
        return {models[0]: (rows, docs, feats)}
    index: dict[str, list[int]] = {model: [] for model in dict.fromkeys(models)}
    for i, model in enumerate(models):
        index[model].append(i)
    return {
        model: (_pick(rows, keep), _pick(docs, keep), _pick(feats, keep) if feats else [])
        for model, keep in index.items()
    }
