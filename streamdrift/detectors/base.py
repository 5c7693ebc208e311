"""The detector contract shared by every detector, and the state document format.

A detector is pure computation: no I/O, no clock, no randomness that is not seeded from its own
settings. It consumes a numpy array per call and reports where it fired *inside that array*.

Contract
--------
* Settings are constructor arguments stored under their own names; learned state is
  underscore-prefixed. Bad settings raise ``ValueError`` naming the valid values.
* ``update(values)`` takes a 1-D float array (2-D rows x features for multivariate detectors)
  and returns an :class:`UpdateResult`. Feeding one batch gives exactly the same result as feeding
  the same values one by one (or in any other split).
* NaN and +-inf are never fed into a statistic: they are skipped and counted in
  ``UpdateResult.n_invalid`` (positions still refer to the original array).
* ``to_state()`` returns a plain document (dict of str -> numbers, strings, lists, bytes, dicts)
  with ``kind`` and ``version`` keys; ``from_state(doc)`` restores it exactly. Restoring mid-stream
  and continuing gives identical later detections. No pickle, anywhere.
* ``gauges()`` returns the current internals worth plotting (the statistic and its threshold,
  window width, ...), as plain floats, for the metrics layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from streamdrift.errors import StateError

__all__ = [
    "MAX_COUNT",
    "Detector",
    "FloatArray",
    "Signal",
    "UpdateResult",
    "all_finite",
    "as_float_array",
    "check_state",
    "finite_part",
]

FloatArray = npt.NDArray[np.float64]
StateDoc = dict[str, Any]

MAX_COUNT = 1 << 62
"""Upper bound of any count or position read from a state document: far beyond any real stream,
and far enough below msgpack's 64-bit integers that counting on cannot overflow the next save."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One firing of a detector: what an alert needs to say about it.

    Parameters
    ----------
    position
        Index inside the array given to ``update`` (row index for 2-D input).
    statistic
        The value of the detector's statistic when it fired (PSI, PH cumulative sum, ...).
    threshold
        The threshold the statistic crossed.
    details
        Detector-specific, JSON-serialisable summary: means before/after, PSI per bin,
        outlier score and contributing features, ...
    """

    position: int
    statistic: float
    threshold: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What one ``update`` call produced."""

    signals: tuple[Signal, ...] = ()
    n_invalid: int = 0

    @property
    def positions(self) -> list[int]:
        """Positions inside the batch where the detector fired, in increasing order."""
        return [s.position for s in self.signals]

    def __bool__(self) -> bool:
        return bool(self.signals)


@runtime_checkable
class Detector(Protocol):
    """The protocol every detector implements."""

    kind: ClassVar[str]
    state_version: ClassVar[int]

    def update(self, values: npt.ArrayLike) -> UpdateResult: ...

    def to_state(self) -> StateDoc: ...

    @classmethod
    def from_state(cls, state: StateDoc) -> Self: ...

    def gauges(self) -> dict[str, float]: ...


def as_float_array(values: npt.ArrayLike, ndim: int = 1) -> FloatArray:
    """Return ``values`` as a contiguous float64 array of ``ndim`` dimensions (no copy if it is)."""
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if ndim == 1 and arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != ndim:
        raise ValueError(f"expected a {ndim}-D array of values, got shape {arr.shape}")
    return arr


_SMALL = 16


def all_finite(arr: FloatArray) -> bool:
    """Whether no value of the 1-D ``arr`` is NaN or +-inf.

    A few values (thousands of models on one partition give a few per model per batch) are
    checked as Python floats, which beats the ~2 us of a numpy ufunc and reduction.
    """
    if arr.ndim == 1 and arr.size <= _SMALL:
        return all(map(math.isfinite, arr.tolist()))
    return bool(np.isfinite(arr).all())


def finite_part(arr: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp] | None]:
    """The finite values of ``arr`` and their positions in it (``None``: all are finite).

    Detectors feed only the first into their statistic and map firings back with the second.

    >>> finite_part(np.array([1.0, np.nan, 3.0, np.inf]))
    (array([1., 3.]), array([0, 2]))
    """
    if all_finite(arr):
        return arr, None
    where = np.flatnonzero(np.isfinite(arr))
    return arr[where], where


def check_state(state: Any, kind: str, versions: tuple[int, ...]) -> StateDoc:
    """Validate the envelope of a state document and return it.

    Raises :class:`StateError` when ``state`` is not a document of ``kind`` in one of the
    supported ``versions``; the message says what was found and what is supported.
    """
    if not isinstance(state, dict):
        raise StateError(f"{kind} state must be a mapping, got {type(state).__name__}")
    found_kind = state.get("kind")
    if found_kind != kind:
        raise StateError(f"state document is of kind {found_kind!r}, expected {kind!r}")
    version = state.get("version")
    if version not in versions:
        raise StateError(
            f"{kind} state version {version!r} is not supported by this streamdrift "
            f"(supported: {', '.join(map(str, versions))}); upgrade streamdrift or reset the state"
        )
    return state
