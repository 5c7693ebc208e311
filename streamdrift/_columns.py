"""Turning lists of decoded JSON values into typed numpy columns (the decoder's inner loops).

Every function takes the values of one field for the rows of one model, converts the whole list
in one numpy call when the types allow it (the common case), and otherwise records the offending
rows in ``bad`` (row -> (reason, detail)), the first reason for a row winning.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdrift.config import FeatureType

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]
Bad = dict[int, tuple[str, str]]

NONE_TYPE = type(None)
NUMERIC_TYPES = frozenset({float, int, bool, NONE_TYPE})
CATEGORICAL_TYPES = frozenset({str, NONE_TYPE})
MAX_MAGNITUDE = 1e100
"""Numbers beyond ±this are refused (``non_finite``): squared, as in the running variances of
ADWIN and Page-Hinkley, larger ones overflow to inf (found by scripts/fuzz_decode.py)."""
EPOCH_MS_THRESHOLD = 1e11
"""Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973)."""


def describe(value: Any) -> str:
    """A short description of a JSON value for dead-letter details."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    return "an object" if isinstance(value, dict) else "a list"


def infer_type(values: list[Any]) -> FeatureType | None:
    """The type the first usable value implies, or None when there is none yet.

    >>> infer_type([None, {"x": 1}, "FR", 3.0])
    'categorical'
    >>> infer_type([None, True])
    'numeric'
    """
    for value in values:
        cls = value.__class__
        if cls is str:
            return "categorical"
        if cls in NUMERIC_TYPES and value is not None:
            return "numeric"
    return None


def check_types(
    values: list[Any], ftype: FeatureType, what: str, allow_missing: bool, bad: Bad
) -> None:
    """Record rows of ``values`` whose value is not of ``ftype`` (and set them to None), and, when
    missing values are not allowed, rows that are None.

    ``what`` names the field in dead-letter details, e.g. ``"feature 'amount' at features.amount"``.

    >>> bad, values = {}, [1, 2.5, True, None, "x"]
    >>> check_types(values, "numeric", "feature 'a'", True, bad)
    >>> bad
    {4: ('wrong_type', "feature 'a': expected a number, got string 'x'")}
    >>> values
    [1, 2.5, True, None, None]
    """
    kinds = set(map(type, values))
    allowed = NUMERIC_TYPES if ftype == "numeric" else CATEGORICAL_TYPES
    if not kinds <= allowed:
        expected = "a number" if ftype == "numeric" else "a string (categorical)"
        for row, value in enumerate(values):
            if value.__class__ not in allowed:
                bad.setdefault(
                    row, ("wrong_type", f"{what}: expected {expected}, got {describe(value)}")
                )
                values[row] = None
    if not allow_missing and NONE_TYPE in kinds:
        for row, value in enumerate(values):
            if value is None:
                bad.setdefault(row, ("missing_field", f"{what} is missing or null"))


def numeric_column(
    values: Callable[[], Iterator[Any]],
    listed: list[Any] | None,
    what: str,
    allow_missing: bool,
    bad: Bad,
) -> FloatArray:
    """float64 column (NaN = missing, booleans 0/1) of the values ``values()`` iterates.

    Fast path: ``array('d', ...)`` converts and type-checks in C, refusing str and None; only
    when it refuses are the values listed and checked one by one. (orjson never yields
    non-finite numbers: it rejects literals that overflow, and its integers fit in 64 bits.)

    >>> bad = {}
    >>> numeric_column(lambda: iter([1, True, None, "2"]), None, "f", True, bad)
    array([ 1.,  1., nan, nan])
    >>> bad
    {3: ('wrong_type', "f: expected a number, got string '2'")}
    """
    if listed is None:
        listed = list(values())  # listing first is faster than array() pulling an iterator
        try:
            column = np.frombuffer(array("d", listed), dtype=np.float64)
        except (TypeError, OverflowError):
            pass
        else:
            return _within_magnitude(column, what, bad)
    check_types(listed, "numeric", what, allow_missing, bad)
    return _within_magnitude(np.array(listed, dtype=np.float64), what, bad)


def _within_magnitude(column: FloatArray, what: str, bad: Bad) -> FloatArray:
    """``column`` with the values beyond :data:`MAX_MAGNITUDE` recorded in ``bad`` (as NaN).

    >>> bad = {}
    >>> _within_magnitude(np.array([1.0, -1e101, np.nan]), "f", bad)
    array([ 1., nan, nan])
    >>> bad
    {1: ('non_finite', 'f: -1e+101 is beyond ±1e+100, too large to monitor')}
    """
    big = np.abs(column) > MAX_MAGNITUDE  # NaN is not
    if not big.any():
        return column
    column = column.copy()
    for row in np.flatnonzero(big).tolist():
        bad.setdefault(
            row,
            (
                "non_finite",
                f"{what}: {column[row]:g} is beyond ±{MAX_MAGNITUDE:g}, too large to monitor",
            ),
        )
    column[big] = np.nan
    return column


def categorical_column(
    values: Callable[[], Iterator[Any]],
    listed: list[Any] | None,
    what: str,
    allow_missing: bool,
    bad: Bad,
) -> ObjectArray:
    """Object column of str (None = missing) of the values ``values()`` iterates."""
    if listed is None:
        listed = list(values())
    check_types(listed, "categorical", what, allow_missing, bad)
    column = np.empty(len(listed), dtype=object)
    column[:] = listed
    return column


@functools.lru_cache(maxsize=8192)
def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO-8601 string (naive = UTC); ``ValueError`` if it is not one.

    Cached: within a batch many events share a timestamp string.

    >>> parse_iso("2026-01-01T00:00:00Z"), parse_iso("2026-01-01T01:00:00+01:00")
    (1767225600.0, 1767225600.0)
    """
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def to_epoch_seconds(
    values: Callable[[], Iterator[Any]], fallback: Callable[[int], float], what: str, bad: Bad
) -> FloatArray:
    """Event times as epoch seconds: numbers (seconds, or ms above 1e11) and ISO strings.

    Missing values take ``fallback(row)`` (the record timestamp, or NaN).

    >>> to_epoch_seconds(lambda: iter([1.5, 1767225600000, "2026-01-01T00:00:00Z", None]),
    ...                  lambda row: float("nan"), "ts", {})
    array([1.5000000e+00, 1.7672256e+09, 1.7672256e+09,           nan])
    """
    listed = list(values())
    if set(map(type, listed)) <= {float, int}:  # array('d') alone would take booleans too
        times = np.frombuffer(array("d", listed), dtype=np.float64)
    else:
        times = np.empty(len(listed), dtype=np.float64)
        for row, value in enumerate(listed):
            cls = value.__class__
            if cls is float or cls is int:
                times[row] = value
            elif value is None:
                times[row] = fallback(row)
            else:
                try:
                    times[row] = parse_iso(value) if cls is str else np.nan
                except ValueError:
                    times[row] = np.nan
                if np.isnan(times[row]):
                    bad.setdefault(
                        row,
                        (
                            "wrong_type",
                            f"event time at {what}: expected epoch "
                            f"seconds/ms or an ISO-8601 string, got "
                            f"{describe(value)}",
                        ),
                    )
    millis = times > EPOCH_MS_THRESHOLD
    if millis.any():
        times[millis] /= 1000.0
    return times


def to_ids(values: list[Any], what: str, bad: Bad) -> list[str | None]:
    """Event ids as strings (integers are converted), None when absent."""
    if set(map(type, values)) <= CATEGORICAL_TYPES:
        return values
    out: list[str | None] = []
    for row, value in enumerate(values):
        cls = value.__class__
        if cls is str or value is None:
            out.append(value)
        elif cls is int:
            out.append(str(value))
        else:
            out.append(None)
            bad.setdefault(
                row, ("wrong_type", f"event id at {what}: expected a string, got {describe(value)}")
            )
    return out
