"""DDM, the Drift Detection Method on a binary error stream (Gama et al. 2004), as in river."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy.typing as npt

from streamdrift.detectors.base import (
    Signal,
    StateDoc,
    UpdateResult,
    as_float_array,
    check_state,
    finite_part,
)
from streamdrift.errors import StateError

__all__ = ["DDM"]


class DDM:
    r"""Drift Detection Method on a stream of errors (1 = wrong, 0 = right).

    With :math:`p_i` the error rate since the last reset and
    :math:`s_i = \sqrt{p_i (1 - p_i) / i}`, DDM remembers :math:`p_{min}, s_{min}` where
    :math:`p_i + s_i` was smallest and fires when :math:`p_i + s_i > p_{min} +
    d \cdot s_{min}` (``drift_threshold`` :math:`d`), after ``warm_start`` values. It then
    restarts from the next value. Same arithmetic, so the same positions, as
    ``river.drift.binary.DDM`` (tested); it is the detector made for binary error rates, where
    ADWIN's Hoeffding bound is loose.

    Parameters
    ----------
    warm_start
        Values needed after a reset before it can fire.
    warning_threshold
        :math:`w` of the warning zone (reported in ``gauges()``, never an alert).
    drift_threshold
        :math:`d`; must be above ``warning_threshold``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(42)
    >>> errors = rng.choices([0, 1], k=1000) + rng.choices([0, 1], k=1000, weights=[0.3, 0.7])
    >>> result = DDM().update(errors)
    >>> result.positions
    [1334]
    >>> s = result.signals[0].details
    >>> round(s["error_rate_before"], 3), round(s["error_rate_after"], 3), s["n_labelled"]
    (0.477, 0.566, 1335)
    """

    kind: ClassVar[str] = "ddm"
    state_version: ClassVar[int] = 1

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        if not isinstance(warm_start, int) or warm_start < 0:
            raise ValueError(f"warm_start must be an integer >= 0, got {warm_start!r}")
        if not warning_threshold > 0:
            raise ValueError(f"warning_threshold must be > 0, got {warning_threshold!r}")
        if not drift_threshold > warning_threshold:
            raise ValueError(
                f"drift_threshold must be > warning_threshold ({warning_threshold}), "
                f"got {drift_threshold!r}"
            )
        self.warm_start = warm_start
        self.warning_threshold = float(warning_threshold)
        self.drift_threshold = float(drift_threshold)
        self._n_detections = 0
        self._reset()

    def _reset(self) -> None:
        self._n = 0.0
        self._mean = 0.0
        self._p_min: float | None = None
        self._s_min: float | None = None
        self._ps_min = math.inf
        self._warning = False

    def update(self, values: npt.ArrayLike) -> UpdateResult:
        """Feed a batch of errors (0/1; NaN and inf are skipped and counted)."""
        arr = as_float_array(values)
        finite, where = finite_part(arr)
        signals: list[Signal] = []
        warm, w_l, d_l = self.warm_start, self.warning_threshold, self.drift_threshold
        n, mean = self._n, self._mean
        p_min, s_min, ps_min = self._p_min, self._s_min, self._ps_min
        for i, x in enumerate(finite.tolist()):
            # river's stats.Mean, operation for operation (parity of positions).
            n += 1.0
            mean += (1.0 / n) * (x - mean)
            s_i = math.sqrt(mean * (1 - mean) / n)
            if n <= warm:
                continue
            if mean + s_i <= ps_min:
                p_min, s_min = mean, s_i
                ps_min = p_min + s_min
            assert p_min is not None and s_min is not None
            threshold = p_min + d_l * s_min
            if mean + s_i > threshold:
                position = i if where is None else int(where[i])
                details: dict[str, Any] = {
                    "error_rate_before": p_min,
                    "error_rate_after": mean,
                    "n_labelled": int(n),
                    "std_before": s_min,
                }
                signals.append(Signal(position, mean + s_i, threshold, details))
                self._n_detections += 1
                n, mean, p_min, s_min, ps_min = 0.0, 0.0, None, None, math.inf
                self._warning = False
            else:
                self._warning = mean + s_i > p_min + w_l * s_min
        self._n, self._mean = n, mean
        self._p_min, self._s_min, self._ps_min = p_min, s_min, ps_min
        if n <= warm:
            self._warning = False
        return UpdateResult(tuple(signals), len(arr) - len(finite))

    @property
    def warning_detected(self) -> bool:
        return self._warning

    def gauges(self) -> dict[str, float]:
        """Error rate since the reset (``mean``), DDM's statistic and its threshold."""
        n = self._n
        s_i = math.sqrt(self._mean * (1 - self._mean) / n) if n else math.nan
        threshold = (
            self._p_min + self.drift_threshold * self._s_min
            if self._p_min is not None and self._s_min is not None
            else math.nan
        )
        return {
            "statistic": self._mean + s_i,
            "threshold": threshold,
            "mean": self._mean if n else math.nan,
            "width": n,
            "warning": 1.0 if self._warning else 0.0,
            "n_detections": float(self._n_detections),
        }

    def to_state(self) -> StateDoc:
        return {
            "kind": self.kind,
            "version": self.state_version,
            "params": {
                "warm_start": self.warm_start,
                "warning_threshold": self.warning_threshold,
                "drift_threshold": self.drift_threshold,
            },
            "n": self._n,
            "mean": self._mean,
            "p_min": self._p_min,
            "s_min": self._s_min,
            "warning": self._warning,
            "n_detections": self._n_detections,
        }

    @classmethod
    def from_state(cls, state: StateDoc) -> Self:
        doc = check_state(state, cls.kind, (cls.state_version,))
        try:
            det = cls(**doc["params"])
            det._n = float(doc["n"])
            det._mean = float(doc["mean"])
            p_min, s_min = doc["p_min"], doc["s_min"]
            det._p_min = None if p_min is None else float(p_min)
            det._s_min = None if s_min is None else float(s_min)
            det._ps_min = (
                math.inf if det._p_min is None or det._s_min is None else det._p_min + det._s_min
            )
            det._warning = bool(doc["warning"])
            det._n_detections = int(doc["n_detections"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"ddm state is incomplete or corrupt: {exc!r}") from exc
        return det
