"""Building the columns of one model from its accepted documents (used by :mod:`.events`)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdrift._columns import (
    Bad,
    FloatArray,
    ObjectArray,
    categorical_column,
    describe,
    infer_type,
    numeric_column,
    to_epoch_seconds,
    to_ids,
)
from streamdrift.config import LABEL, PREDICTION, RESERVED_FEATURES, FeatureType
from streamdrift.paths import Extractor, Step, format_path

IntArray = npt.NDArray[np.int64]
_USABLE = frozenset({str, int, float, bool})


MAX_FEATURE_NAME_LENGTH = 256
"""Longer feature names (keys of ``features.path`` objects) make the event a dead letter."""

Field = tuple[Extractor, str]
"""A compiled path (docs -> values) and the path as written, for dead-letter details."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What the decoder compiled from the mapping config, once."""

    features_steps: tuple[Step, ...] | None
    """Steps of ``features.path``; None in ``fields`` mode."""
    fields: dict[str, Field]
    event_id: Field | None
    event_time: Field | None
    time_from_record: bool
    prediction: Field | None
    label: Field | None
    declared: dict[str, FeatureType]
    allow_missing: bool
    max_features: int
    label_required: bool = False
    event_id_required: bool = False


@dataclass(slots=True)
class ModelColumns:
    """The valid events of one model in a batch, as columns (row ``i`` is the same event in all).

    The prediction, when mapped, is the column :data:`~streamdrift.config.PREDICTION`
    (``"__prediction__"``) of ``numeric`` or ``categorical``, depending on its type.
    """

    model_id: str
    offsets: IntArray
    """Source offsets of the events, in batch order."""
    positions: IntArray
    """Index of each event in the batch given to ``decode_batch``."""
    event_times: FloatArray
    """Epoch seconds; NaN when the event had none (and no record timestamp was used)."""
    event_ids: list[str | None]
    numeric: dict[str, FloatArray]
    """Feature -> float64 values; NaN = missing; booleans are 0/1."""
    categorical: dict[str, ObjectArray]
    """Feature -> object array of str; None = missing."""
    label: FloatArray | ObjectArray | None = None
    """The label column when ``mapping.label`` is set (float64 or object, by its type)."""
    types: dict[str, FeatureType] = field(default_factory=dict)
    """Type of every column in ``numeric``/``categorical`` (and :data:`LABEL`)."""

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def prediction(self) -> FloatArray | ObjectArray | None:
        column = self.numeric.get(PREDICTION)
        return column if column is not None else self.categorical.get(PREDICTION)

    def numeric_matrix(self, features: Sequence[str] | None = None) -> FloatArray:
        """Rows x features float64 matrix of ``features`` (default: numeric features, sorted,
        without the prediction) for the multivariate detector."""
        names = sorted(n for n in self.numeric if n != PREDICTION) if features is None else features
        out = np.empty((len(self), len(names)), dtype=np.float64)
        for j, name in enumerate(names):  # cheaper than column_stack's checks and copies
            out[:, j] = self.numeric[name]
        return out

    def missing_counts(self) -> dict[str, int]:
        """Feature -> number of missing values, for the features that have any."""
        counts = {name: int(np.isnan(col).sum()) for name, col in self.numeric.items()}
        counts.update((name, sum(v is None for v in col)) for name, col in self.categorical.items())
        return {name: n for name, n in counts.items() if n}

    def filtered(self, keep: npt.NDArray[np.bool_]) -> ModelColumns:
        """The rows where ``keep`` is true."""
        return ModelColumns(
            self.model_id,
            self.offsets[keep],
            self.positions[keep],
            self.event_times[keep],
            list(itertools.compress(self.event_ids, keep.tolist())),
            {name: col[keep] for name, col in self.numeric.items()},
            {name: col[keep] for name, col in self.categorical.items()},
            None if self.label is None else self.label[keep],
            self.types,
        )


def _feature_names(
    plan: Plan, model: str, feats: list[dict[str, Any]], known: dict[str, FeatureType], bad: Bad
) -> list[str]:
    """Known features of the model plus the new ones this batch may add (within the limit)."""
    names = [name for name in known if name not in RESERVED_FEATURES]
    keys = set().union(*feats) if feats else set()
    new = keys.difference(known)
    # Reserved names are checked against every key, not only new ones: once the prediction's
    # type is known (it is kept under the reserved name), the check must not stop.
    for name in keys & RESERVED_FEATURES:
        for row, feat in enumerate(feats):
            if name in feat:
                bad.setdefault(
                    row,
                    (
                        "wrong_type",
                        f"feature name {name!r} is reserved by "
                        "streamdrift; rename it in the events",
                    ),
                )
    new -= RESERVED_FEATURES
    if not new:
        return names
    too_long = {name for name in new if len(name) > MAX_FEATURE_NAME_LENGTH}
    if too_long:  # names become state keys and metric labels: bounded like model ids
        for row, feat in enumerate(feats):
            long_name = next((k for k in feat if k in too_long), None)
            if long_name is not None:
                bad.setdefault(
                    row,
                    (
                        "wrong_type",
                        f"feature name {long_name[:40]!r}... is longer than "
                        f"{MAX_FEATURE_NAME_LENGTH} characters",
                    ),
                )
        new -= too_long
    budget = plan.max_features - len(names)
    if len(new) <= budget:
        return names + sorted(new)
    admitted: dict[str, None] = {}
    for row, feat in enumerate(feats):  # over the limit: first come, first admitted
        extra = [k for k in feat if k in new and k not in admitted]
        if not extra:
            continue
        if len(admitted) + len(extra) <= budget:
            admitted.update(dict.fromkeys(extra))
        else:
            bad.setdefault(
                row,
                (
                    "too_many_features",
                    f"event adds feature(s) "
                    f"{', '.join(map(repr, extra[:5]))} but model {model!r} has "
                    f"{len(names) + len(admitted)} (limits.max_features="
                    f"{plan.max_features})",
                ),
            )
    return names + list(admitted)


@functools.lru_cache(maxsize=65536)
def _feature_label(steps: tuple[Step, ...], name: str) -> str:
    """How dead-letter details name a feature, e.g. ``feature 'amount' at features.amount``.

    Cached: it is needed for every feature of every model in every batch, and formatting the
    path was 5% of the decode with thousands of models (benchmarks/bench_scaling.py).
    """
    return f"feature {name!r} at {format_path((*steps, name))}"


def build_columns(
    plan: Plan,
    model: str,
    docs: list[dict[str, Any]],
    feats: list[dict[str, Any]],
    rows: list[int],
    records: Sequence[Any],
    offsets: IntArray,
    known: dict[str, FeatureType],
    bad: Bad,
) -> ModelColumns:
    """Columns for the documents of one model; ``rows`` are their positions in the batch and
    ``offsets`` the offsets of the whole batch. Rows that fail are recorded in ``bad`` (by index
    into ``docs``), not removed."""
    numeric: dict[str, FloatArray] = {}
    categorical: dict[str, ObjectArray] = {}
    types: dict[str, FeatureType] = {}

    def add(
        name: str,
        values: Callable[[], Iterator[Any]],
        what: str,
        allow_missing: bool,
        discovered: bool = False,
    ) -> None:
        """One column. A feature ``discovered`` among the keys of the features object that the
        model does not know yet starts at its first usable value (a string, number or boolean):
        with ``allow_missing`` false only the rows from there on must have a value, as if the
        earlier ones had come in an earlier batch (scripts/fuzz_decode.py checks that the
        outcome does not depend on batch boundaries). Mapped fields exist from the start."""
        ftype = known.get(name)
        listed = None
        first = 0
        if ftype is None:
            listed = list(values())
            usable = next((i for i, v in enumerate(listed) if v.__class__ in _USABLE), -1)
            if discovered:
                first = usable
            declared = plan.declared.get(name)
            if first >= 0:
                ftype = declared or infer_type(listed)
            if declared is None and usable > 0:  # lists or objects while the type was open
                for row in range(usable):
                    if listed[row] is not None:
                        bad.setdefault(
                            row,
                            (
                                "wrong_type",
                                f"{what}: expected a number or a string, "
                                f"got {describe(listed[row])}",
                            ),
                        )
            if ftype is None:  # only nulls so far: the type is decided when a value arrives
                # ... and lists or objects, which no type takes, are never dropped silently.
                for row, value in enumerate(listed):
                    if value is not None:
                        bad.setdefault(
                            row,
                            (
                                "wrong_type",
                                f"{what}: expected a number or a string, got {describe(value)}",
                            ),
                        )
                    elif not allow_missing and not discovered:
                        bad.setdefault(row, ("missing_field", f"{what} is missing or null"))
                return
        types[name] = ftype
        strict = not allow_missing and first == 0
        column: FloatArray | ObjectArray
        if ftype == "numeric":
            column = numeric[name] = numeric_column(values, listed, what, not strict, bad)
        else:
            column = categorical[name] = categorical_column(values, listed, what, not strict, bad)
        if not allow_missing and first > 0:
            tail = column[first:].tolist()
            for row, value in enumerate(tail, start=first):
                if value is None or value != value:  # None or NaN
                    bad.setdefault(row, ("missing_field", f"{what} is missing or null"))

    if plan.features_steps is None:
        for name, (extract, path) in plan.fields.items():
            add(name, partial(extract, docs), f"feature {name!r} at {path}", plan.allow_missing)
    else:
        # Sorted: when an event has several problems, the one reported must not depend on
        # which features were already known, i.e. on the batch boundaries.
        for name in sorted(_feature_names(plan, model, feats, known, bad)):
            add(
                name,
                partial(map, dict.get, feats, repeat(name)),
                _feature_label(plan.features_steps, name),
                plan.allow_missing,
                discovered=True,
            )
    if plan.prediction is not None:
        extract, path = plan.prediction
        add(PREDICTION, partial(extract, docs), f"prediction at {path}", True)
    label: FloatArray | ObjectArray | None = None
    if plan.label is not None:
        extract, path = plan.label
        add(LABEL, partial(extract, docs), f"label at {path}", not plan.label_required)
        label = numeric.pop(LABEL) if LABEL in numeric else categorical.pop(LABEL, None)

    def record_time(row: int) -> float:
        stamp = records[rows[row]][4] if plan.time_from_record else None
        return np.nan if stamp is None else float(stamp) / 1000.0

    if plan.event_time is not None:
        extract, path = plan.event_time
        times = to_epoch_seconds(partial(extract, docs), record_time, path, bad)
    else:
        times = np.array([record_time(row) for row in range(len(docs))], dtype=np.float64)
    if plan.event_id is not None:
        extract, path = plan.event_id
        event_ids = to_ids(list(extract(docs)), path, bad)
        if plan.event_id_required:
            for row, event_id in enumerate(event_ids):
                if event_id is None:
                    bad.setdefault(row, ("missing_field", f"event id missing at path {path!r}"))
    else:
        event_ids = [None] * len(docs)
    positions = np.array(rows, dtype=np.int64)
    return ModelColumns(
        model, offsets[positions], positions, times, event_ids, numeric, categorical, label, types
    )
