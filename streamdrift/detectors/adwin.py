"""ADWIN on river's Rust core, with a batch API and the core's own bytes as state."""

from __future__ import annotations

import math
import struct
from operator import length_hint
from typing import Any, ClassVar, Self

import numpy.typing as npt
from river._river_rust.drift import AdaptiveWindowing

from streamdrift.detectors.base import (
    FloatArray,
    Signal,
    StateDoc,
    UpdateResult,
    as_float_array,
    check_state,
    finite_part,
)
from streamdrift.errors import StateError

__all__ = ["ADWIN"]

_I32_MAX = 2**31 - 1


class ADWIN:
    r"""Adaptive windowing (ADWIN2) change detector, position-for-position identical to river's.

    The window grows while the data looks stationary; when two sub-windows :math:`W_0` (older)
    and :math:`W_1` (recent) have means further apart than
    :math:`\varepsilon_{cut}` the older part is dropped and the detector fires. As in
    ``river.drift.ADWIN``, the whole window is discarded on the value *after* a firing, so a
    stream fires at exactly the same positions as river's detector with the same settings.

    Parameters
    ----------
    delta
        Significance value in (0, 1); smaller means fewer false alarms and longer delays.
    clock
        Check for a change every ``clock`` values (river's default 32).
    max_buckets
        Buckets of each size kept before merging (memory/precision trade-off).
    min_window_length
        Smallest sub-window considered for a cut.
    grace_period
        No change is looked for until the window holds more than this many values.

    Notes
    -----
    Each :class:`Signal` reports ``statistic`` :math:`= |\mu_0 - \mu_1|`, the means of the
    dropped older part and of the kept recent window, and ``threshold`` = the
    :math:`\varepsilon_{cut}` of Bifet & Gavaldà (2007) with river's constants, evaluated at that
    overall split with the variance of the whole window before the cut. The core may drop the
    older part in several steps, each tested with the shrunken window, so the reported threshold
    is an approximation of the last test it made (it is exact when one bucket was dropped).

    Examples
    --------
    >>> import random
    >>> from streamdrift.detectors.adwin import ADWIN

    >>> rng = random.Random(42)
    >>> stream = [rng.gauss(0, 1) for _ in range(1000)] + [rng.gauss(1.5, 1) for _ in range(1000)]
    >>> detector = ADWIN()
    >>> result = detector.update(stream)
    >>> result.positions
    [1023]
    >>> signal = result.signals[0]
    >>> round(signal.details["mean_before"], 2), round(signal.details["mean_after"], 2)
    (-0.02, 0.74)
    >>> signal.statistic > signal.threshold
    True

    References
    ----------
    A. Bifet and R. Gavaldà. Learning from time-changing data with adaptive windowing.
    SIAM International Conference on Data Mining, 2007.
    """

    kind: ClassVar[str] = "adwin"
    state_version: ClassVar[int] = 1

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta < 1:
            raise ValueError(f"delta must be a number in the open interval (0, 1), got {delta!r}")
        _check_int("clock", clock, 1)
        _check_int("max_buckets", max_buckets, 1)
        _check_int("min_window_length", min_window_length, 1)
        _check_int("grace_period", grace_period, 0)
        self.delta = float(delta)
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._core = self._new_core()
        # river discards the window on the update *after* a firing, not at the firing itself;
        # the flag carries that across batches (and state documents).
        self._pending_reset = False
        self._n_detections = 0

    def _params(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "clock": self.clock,
            "max_buckets": self.max_buckets,
            "min_window_length": self.min_window_length,
            "grace_period": self.grace_period,
        }

    def _new_core(self) -> Any:
        return AdaptiveWindowing(**self._params())

    def update(self, values: npt.ArrayLike) -> UpdateResult:
        """Feed a batch of values; NaN and +-inf are skipped and counted.

        Parameters
        ----------
        values
            1-D array of values; positions in the result index into it.
        """
        arr = as_float_array(values)
        x, where = finite_part(arr)
        xs = x.tolist()
        total = len(xs)
        it = iter(xs)
        signals: list[Signal] = []
        done = 0
        while done < total:
            if self._pending_reset:
                self._core = self._new_core()
                self._pending_reset = False
            core = self._core
            start = done
            snapshot = core.__getstate__()
            # any() over map() runs the core at C speed and stops right after the first firing;
            # the list iterator's length hint then says where that was.
            fired = any(map(core.update, it))
            done = total - length_hint(it)
            if not fired:
                break
            self._pending_reset = True
            self._n_detections += 1
            j = done - 1
            position = j if where is None else int(where[j])
            signals.append(self._signal(position, x[start : j + 1], snapshot))
        return UpdateResult(tuple(signals), int(arr.size - x.size))

    def _signal(self, position: int, segment: FloatArray, snapshot: bytes) -> Signal:
        # Replay the firing: restore the core as it was at the start of `segment`, feed all but
        # the last value (none of them fired), then redo the last insertion and the first cut
        # test in Python with the core's own arithmetic, so statistic and threshold are the
        # exact |mean(W0) - mean(W1)| and epsilon_cut of the split that made it fire.
        core = self._new_core()
        core.__setstate__(snapshot)
        for value in segment[:-1].tolist():
            core.update(value)
        window = _parse_window(core.__getstate__())
        window.insert(float(segment[-1]), self.max_buckets)
        cut = window.first_cut(self.delta, float(self.min_window_length))
        kept = float(self._core.get_width())
        details: dict[str, Any] = {
            "width_kept": int(kept),
            "mean_kept": self._core.get_total() / kept if kept else 0.0,
            "window_width": int(window.width),
            "window_mean": window.total / window.width,
            "window_variance": window.variance / window.width,
        }
        if cut is None:  # unreachable while the core and this mirror agree; stay truthful
            return Signal(position, float("nan"), float("nan"), details)
        n0, n1, mean0, mean1, epsilon = cut
        details.update(
            mean_before=mean0, width_before=int(n0), mean_after=mean1, width_after=int(n1)
        )
        return Signal(position, abs(mean0 - mean1), epsilon, details)

    def gauges(self) -> dict[str, float]:
        """Window width, window mean and per-value variance, number of detections so far."""
        width = float(self._core.get_width())
        return {
            "width": width,
            "mean": self._core.get_total() / width if width else 0.0,
            "variance": self._core.get_variance() / width if width else 0.0,
            "n_detections": float(self._n_detections),
        }

    @property
    def n_detections(self) -> int:
        """Firings since this detector was created (river's count restarts with each window)."""
        return self._n_detections

    def to_state(self) -> StateDoc:
        """Plain document; ``window`` is the Rust core's own serialisation (bytes)."""
        return {
            "kind": self.kind,
            "version": self.state_version,
            "params": self._params(),
            "window": bytes(self._core.__getstate__()),
            "pending_reset": self._pending_reset,
            "n_detections": self._n_detections,
        }

    @classmethod
    def from_state(cls, state: StateDoc) -> Self:
        """Restore a detector from :meth:`to_state` output; raise :class:`StateError` if bad."""
        doc = check_state(state, cls.kind, (cls.state_version,))
        params = _get(doc, "params", dict)
        expected = {"delta", "clock", "max_buckets", "min_window_length", "grace_period"}
        if set(params) != expected:
            raise StateError(
                f"adwin state params must have exactly the keys {sorted(expected)}, "
                f"got {sorted(map(str, params))}; reset the state"
            )
        try:
            self = cls(**params)
        except (TypeError, ValueError) as exc:
            raise StateError(f"adwin state has invalid params: {exc}; reset the state") from exc
        window = _get(doc, "window", bytes)
        pending = _get(doc, "pending_reset", bool)
        n_detections = _get(doc, "n_detections", int)
        if n_detections < 0:
            raise StateError(f"adwin state n_detections must be >= 0, got {n_detections}")
        _check_window(window, self._params())
        core = self._new_core()
        try:
            core.__setstate__(window)
        except BaseException as exc:  # pyo3 panics derive from BaseException
            if type(exc).__module__ != "pyo3_runtime" and not isinstance(exc, Exception):
                raise
            raise StateError(f"adwin window bytes were refused by river's core: {exc}") from exc
        self._core = core
        self._pending_reset = pending
        self._n_detections = n_detections
        return self


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _I32_MAX:
        raise ValueError(f"{name} must be an integer in [{low}, {_I32_MAX}], got {value!r}")


def _get(doc: StateDoc, key: str, typ: type[Any]) -> Any:
    if key not in doc:
        raise StateError(f"adwin state is missing {key!r}; reset the state")
    value = doc[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise StateError(
            f"adwin state {key!r} must be {typ.__name__}, got {type(value).__name__}; "
            "reset the state"
        )
    return value


# Layout of river 0.26's bincode serialisation of its Rust AdaptiveWindowing (fixed-width,
# little-endian). It is checked before the core sees it: the core unwraps its decoder and
# indexes buckets without bounds checks of its own, so a truncated or edited blob would panic
# (now, or on a later update) instead of raising.
_HEAD = struct.Struct("<diQdd dddd iiii Q")
_ROW = struct.Struct("<QQQ")
_TAIL = struct.Struct("<diQii")


class _Window:
    """Python mirror of the core's buckets: enough to redo one insertion and one cut test."""

    def __init__(self, head: tuple[Any, ...], rows: list[tuple[list[float], list[float]]]):
        self.total, self.variance, self.width = float(head[5]), float(head[6]), float(head[7])
        self.rows = rows  # rows[i] = (totals, variances) of buckets of 2**i values, oldest first

    def insert(self, value: float, max_buckets: int) -> None:
        # Same operations in the same order as the core's insert_element/compress_buckets.
        self.width += 1.0
        increment = 0.0
        if self.width > 1.0:
            dv = value - self.total / (self.width - 1.0)
            increment = (self.width - 1.0) * dv * dv / self.width
        self.variance += increment
        self.total += value
        self.rows[0][0].append(value)
        self.rows[0][1].append(0.0)
        idx = 0
        while len(self.rows[idx][0]) == max_buckets + 1:
            totals, variances = self.rows[idx]
            n1 = float(1 << idx)
            mu1, mu2 = totals[0] / n1, totals[1] / n1
            merged = (
                totals[0] + totals[1],
                variances[0] + variances[1] + n1 * 0.5 * (mu1 - mu2) * (mu1 - mu2),
            )
            if idx + 1 >= len(self.rows):
                self.rows.append(([], []))
            self.rows[idx + 1][0].append(merged[0])
            self.rows[idx + 1][1].append(merged[1])
            del totals[:2], variances[:2]
            if len(self.rows[idx + 1][0]) <= max_buckets:
                break
            idx += 1

    def first_cut(
        self, delta: float, min_len: float
    ) -> tuple[float, float, float, float, float] | None:
        """(n0, n1, mean0, mean1, epsilon) of the first split the core's detect loop accepts."""
        n0, n1, u0, u1 = 0.0, self.width, 0.0, self.total
        delta_prime = math.log(2.0 * math.log(self.width) / delta)
        for idx in range(len(self.rows) - 1, -1, -1):
            size = float(1 << idx)
            totals = self.rows[idx][0]
            for k, t in enumerate(totals):
                n0 += size
                n1 -= size
                u0 += t
                u1 -= t
                if idx == 0 and k == len(totals) - 1:
                    return None
                if n1 >= min_len and n0 >= min_len:
                    m_recip = 1.0 / (n0 - min_len + 1.0) + 1.0 / (n1 - min_len + 1.0)
                    epsilon = (
                        math.sqrt(2.0 * m_recip * (self.variance / self.width) * delta_prime)
                        + 2.0 / 3.0 * delta_prime * m_recip
                    )
                    if abs(u0 / n0 - u1 / n1) > epsilon:
                        return n0, n1, u0 / n0, u1 / n1, epsilon
        return None


def _parse_window(blob: bytes) -> _Window:
    head, rows, _ = _unpack(blob)
    return _Window(head, rows)


def _unpack(blob: bytes) -> tuple[tuple[Any, ...], list[tuple[list[float], list[float]]], Any]:
    head = _HEAD.unpack_from(blob, 0)
    offset = _HEAD.size
    rows: list[tuple[list[float], list[float]]] = []
    for _ in range(min(head[13], 64)):
        size, current, n_totals = _ROW.unpack_from(blob, offset)
        offset += _ROW.size
        totals = struct.unpack_from(f"<{n_totals}d", blob, offset)
        offset += 8 * n_totals
        (n_vars,) = struct.unpack_from("<Q", blob, offset)
        variances = struct.unpack_from(f"<{n_vars}d", blob, offset + 8)
        offset += 8 + 8 * n_vars
        if size != head[2] or n_totals != size + 1 or n_vars != size + 1 or current > size:
            raise ValueError(f"bucket row {len(rows)} has an impossible shape")
        rows.append((list(totals[:current]), list(variances[:current])))
    tail = _TAIL.unpack_from(blob, offset)
    if offset + _TAIL.size != len(blob):
        raise ValueError("trailing bytes")
    return head, rows, tail


def _check_window(blob: bytes, params: dict[str, Any]) -> None:
    def bad(why: str) -> StateError:
        return StateError(f"adwin window bytes are corrupt ({why}); reset the state")

    try:
        head, rows, tail = _unpack(blob)
    except (struct.error, ValueError, OverflowError, MemoryError) as exc:
        raise bad(str(exc)) from exc
    settings = (
        params["delta"],
        params["clock"],
        params["max_buckets"],
        params["min_window_length"],
        params["grace_period"],
    )
    if head[:5] != settings or tail != settings:
        raise bad("its settings differ from the state's params")
    if not 1 <= head[13] <= 64:
        raise bad(f"{head[13]} bucket rows")
    values = [*head[5:9], *(v for totals, variances in rows for v in (*totals, *variances))]
    if not all(map(math.isfinite, values)):
        raise bad("non-finite window statistics")
    if float(sum(len(totals) << i for i, (totals, _) in enumerate(rows))) != head[7]:
        raise bad("bucket counts do not add up to the window width")
