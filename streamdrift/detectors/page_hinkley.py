"""Page-Hinkley mean-shift test, vectorised: river's exact behaviour or a scale-free variant."""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from streamdrift.detectors.base import (
    MAX_COUNT,
    FloatArray,
    Signal,
    StateDoc,
    UpdateResult,
    as_float_array,
    check_state,
    finite_part,
)
from streamdrift.errors import StateError

__all__ = ["PageHinkley"]

_MODES = ("sigma", "river")
_DIRECTIONS = ("up", "down", "both")
# Per-mode defaults for (threshold, delta, alpha). river's are in the stream's units and fire
# about every 1,600 values on unit-variance noise. The sigma ones are a CUSUM with k = 0.5 sigma
# (optimal for a 1-sigma shift) and no forgetting: with alpha < 1 the sums saturate near
# -delta/(1 - alpha) and their noise alone crosses any useful threshold. h = 15 sigma measured
# 0 false alarms in 100 x 100,000 N(0, 1) values (h = 12: 5 in 20) and a median delay of 29
# values on a 1-sigma shift.
_DEFAULTS = {"river": (50.0, 0.005, 1 - 0.0001), "sigma": (15.0, 0.5, 1.0)}
# Discounted sums are computed as alpha**k * cumsum(alpha**-k * u) over blocks short enough
# that alpha**-k stays below this (far from overflow); the rounding of alpha**k * P is of the
# same order as the plain recurrence's (the tests pin river's positions).
_MAX_GROWTH = 2.0**20
_MAX_BLOCK = 1 << 16
_MIN_SPAN = 1024


class PageHinkley:
    r"""Page-Hinkley test for a shift of the mean, up and/or down, on numpy batches.

    For each value :math:`x_t` with running mean :math:`\bar x_t` (since the last reset) the
    test keeps :math:`m_t = \alpha m_{t-1} + (x_t - \bar x_t) - \delta` and fires when
    :math:`m_t - \min_{s \le t} m_s` exceeds ``threshold`` (and the mirror image for a
    decrease). After a firing everything restarts from the next value, as in river.

    Parameters
    ----------
    threshold
        The detection threshold (lambda). Default 15 (sigma) or 50 (river).
    delta
        Magnitude of change tolerated per value. Default 0.5 (sigma) or 0.005 (river).
    alpha
        Forgetting factor in (0, 1] for the cumulative sums. Default 1 (sigma) or 0.9999 (river).
    direction
        Which shifts to detect: ``"up"``, ``"down"`` or ``"both"`` (river calls this ``mode``).
    mode
        ``"sigma"`` (default): ``threshold`` and ``delta`` are in units of the stream's standard
        deviation, estimated on the first ``warmup`` values after each reset, during which it
        does not fire. ``"river"``: raw units, identical firing positions to
        ``river.drift.PageHinkley`` with the same settings.
    warmup
        Values used to estimate the standard deviation (sigma mode only).
    min_instances
        No firing before this many values since the last reset.
    clip
        Sigma mode only (default 4): values are winsorised at ``clip`` sigmas around the
        warm-up mean before they enter the sums, so that a single outlier (a value at 100 sigma,
        say) cannot by itself cross the threshold; a real shift still accumulates.

    Notes
    -----
    *Sigma mode re-warms after each firing*: a detected change often moves the spread along
    with the mean, and a stale sigma would then either flood alerts (spread grew) or go blind
    (spread shrank). The price is ``warmup`` values without detection after each firing. If
    the warm-up values are all equal, sigma is floored at 1e-9 x max(1, |mean|), so any later
    change fires. Sigma mode also starts the sums at 0 and counts that 0 in the running
    min/max (a textbook CUSUM); river mode keeps river's quirk of starting the running max of
    the decrease sum at -1.

    The running mean is kept as ``ref + S/n`` with ``S`` a running sum of ``x - ref`` (``ref``
    is the first value after a reset), computed with ``np.cumsum`` seeded by the carried sum:
    in-order summation, so any split of the stream gives bit-identical results. It differs
    from river's incremental mean in the last bits only; the tests pin identical positions.

    Examples
    --------
    >>> import random
    >>> from streamdrift.detectors.page_hinkley import PageHinkley

    >>> rng = random.Random(7)
    >>> stream = [rng.gauss(10, 2) for _ in range(3000)] + [rng.gauss(12, 2) for _ in range(1000)]
    >>> detector = PageHinkley()
    >>> result = detector.update(stream)
    >>> result.positions
    [3048]
    >>> signal = result.signals[0]
    >>> signal.details["direction"], round(signal.details["sigma"], 2), round(signal.threshold, 1)
    ('up', 2.04, 30.6)
    >>> round(signal.details["mean_before"], 2), round(signal.details["mean_recent"], 2)
    (10.04, 11.68)
    """

    kind: ClassVar[str] = "page_hinkley"
    state_version: ClassVar[int] = 1
    # Slots: with 31 attributes an instance dict costs 1.6 kB (past CPython's 30 shared keys),
    # and a bank of 10,000 models x 11 streams holds 110,000 of these.
    __slots__ = (
        "_block", "_center", "_down", "_inv", "_k", "_max_down", "_min_up", "_n", "_n_at_down",
        "_n_at_up", "_n_detections", "_p_down", "_p_up", "_pending_reset", "_pow", "_ref",
        "_sigma", "_start", "_sum", "_sum_at_down", "_sum_at_up", "_sumsq", "_up", "alpha",
        "clip", "delta", "direction", "min_instances", "mode", "threshold", "warmup",
    )  # fmt: skip

    def __init__(
        self,
        threshold: float | None = None,
        delta: float | None = None,
        alpha: float | None = None,
        direction: str = "both",
        mode: str = "sigma",
        warmup: int = 500,
        min_instances: int = 30,
        clip: float | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        d_threshold, d_delta, d_alpha = _DEFAULTS[mode]
        self.threshold = _number("threshold", d_threshold if threshold is None else threshold)
        self.delta = _number("delta", d_delta if delta is None else delta)
        self.alpha = _number("alpha", d_alpha if alpha is None else alpha)
        if not self.threshold > 0:
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        if not self.delta >= 0:
            raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be a number in (0, 1], got {alpha!r}")
        if clip is not None and mode == "river":
            raise ValueError("clip is a sigma-mode setting; river mode has none (parity)")
        self.clip = _number("clip", 4.0 if clip is None and mode == "sigma" else (clip or 0.0))
        if mode == "sigma" and not self.clip > 0:
            raise ValueError(f"clip must be a finite number > 0 (in sigmas), got {clip!r}")
        _integer("warmup", warmup, 2)
        _integer("min_instances", min_instances, 1)
        self.direction = direction
        self.mode = mode
        self.warmup = warmup
        self.min_instances = min_instances
        self._up = direction in ("up", "both")
        self._down = direction in ("down", "both")
        self._start = warmup if mode == "sigma" else 0
        self._block, self._pow, self._inv = _discount_tables(self.alpha)
        self._n_detections = 0
        self._reset()

    def _reset(self) -> None:
        self._pending_reset = False
        self._n = 0  # values since the reset
        self._ref = 0.0
        self._sum = 0.0  # sum of (x - ref)
        self._sumsq = 0.0  # sum of (x - ref)**2, during the warm-up only
        self._sigma: float | None = None if self.mode == "sigma" else 1.0
        self._center: float | None = None  # warm-up mean: the centre of the clipping band
        self._begin_sums()

    def _begin_sums(self) -> None:
        river = self.mode == "river"
        self._p_up = self._p_down = 0.0  # discounted sums (rescaled within the current block)
        self._k = 0  # position in the discount block
        self._min_up: float | None = None if river else 0.0  # None: +inf, nothing seen yet
        self._max_down = -1.0 if river else 0.0
        # S and n where each running min/max was set: the start of the current excursion.
        self._sum_at_up = self._sum_at_down = self._sum
        self._n_at_up = self._n_at_down = self._n

    # -- the hot path ----------------------------------------------------------------------

    def update(self, values: npt.ArrayLike) -> UpdateResult:
        """Feed a batch of values; NaN and +-inf are skipped and counted.

        Parameters
        ----------
        values
            1-D array of values; positions in the result index into it.
        """
        arr = as_float_array(values)
        x, where = finite_part(arr)
        signals: list[Signal] = []
        pos, total = 0, x.size
        while pos < total:
            if self._pending_reset:
                self._reset()
            if self._n == 0:
                self._ref = float(x[pos])
            if self._n < self._start:
                take = min(total - pos, self._start - self._n)
                self._warm(x[pos : pos + take])
                pos += take
                continue
            # Scan at most about as many values as seen since the reset: a firing wastes the
            # work done past it, and this keeps a stream that fires constantly O(n log n).
            end = min(total, pos + max(_MIN_SPAN, self._n))
            fired = self._scan(x[pos:end])
            if fired is None:
                pos = end
                continue
            j, signal = fired
            position = pos + j if where is None else int(where[pos + j])
            signals.append(Signal(position, signal.statistic, signal.threshold, signal.details))
            self._pending_reset = True
            self._n_detections += 1
            pos += j + 1
        return UpdateResult(tuple(signals), int(arr.size - x.size))

    def _warm(self, x: FloatArray) -> None:
        if x.size <= _SMALL_BATCH:
            # A few values (thousands of models on one partition): the same additions in the
            # same order as the cumsums below, without their numpy calls.
            ref, total, total_sq = self._ref, self._sum, self._sumsq
            for value in x.tolist():
                c = value - ref
                total += c
                total_sq += c * c
            self._sum, self._sumsq = total, total_sq
        else:
            centred = x - self._ref
            self._sum = float(_seeded(np.cumsum, self._sum, centred)[-1])
            self._sumsq = float(_seeded(np.cumsum, self._sumsq, centred * centred)[-1])
        self._n += x.size
        if self._n == self._start:
            n = float(self._n)
            var = max(0.0, (self._sumsq - self._sum * self._sum / n) / (n - 1.0))
            floor = 1e-9 * max(1.0, abs(self._ref + self._sum / n))
            self._sigma = max(math.sqrt(var), floor)
            self._center = self._ref + self._sum / n
            self._begin_sums()

    def _scan(self, x: FloatArray) -> tuple[int, Signal] | None:
        """Advance over ``x``; stop at the first firing and return its index and signal."""
        if not self._block and x.size <= _SMALL_BATCH:
            return self._scan_small(x)
        sigma = self._sigma if self._sigma is not None else 1.0
        delta, threshold = self.delta * sigma, self.threshold * sigma
        if self._center is not None and self.clip:
            # Winsorise at clip sigmas around the warm-up mean: one wild value (an outlier)
            # moves the sums by at most clip sigmas, far below the threshold, while a real shift
            # of any size still accumulates at up to clip sigmas per value.
            band = self.clip * sigma
            x = np.clip(x, self._center - band, self._center + band)
        n0 = self._n
        s = _seeded(np.cumsum, self._sum, x - self._ref)
        n = np.arange(n0 + 1, n0 + x.size + 1, dtype=np.float64)
        dev = x - (s / n + self._ref)
        first = max(0, max(self.min_instances, self._start + 1) - n0 - 1)
        fire = np.zeros(x.size, dtype=bool)
        up = down = None
        if self._up:
            m_up, p_up = self._discounted(self._p_up, dev - delta)
            seed_up = math.inf if self._min_up is None else self._min_up
            lo = _seeded(np.minimum.accumulate, seed_up, m_up)
            t_up = m_up - lo
            up = (m_up, p_up, lo, t_up)
            fire[first:] = t_up[first:] > threshold
        if self._down:
            m_down, p_down = self._discounted(self._p_down, dev + delta)
            seed_down = self._max_down
            hi = _seeded(np.maximum.accumulate, seed_down, m_down)
            t_down = hi - m_down
            down = (m_down, p_down, hi, t_down)
            fire[first:] |= t_down[first:] > threshold
        j = int(np.argmax(fire))
        fired = bool(fire[j])
        last = j if fired else x.size - 1
        # Carry the state as of `last` (a firing leaves it as it was at the firing, like river).
        self._n = n0 + last + 1
        self._sum = float(s[last])
        self._k = (self._k + last + 1) % self._block if self._block else 0
        if up is not None:
            self._p_up, self._min_up = float(up[1][last]), float(up[2][last])
            self._sum_at_up, self._n_at_up = _excursion(
                up[2], last, seed_up, s, n0, (self._sum_at_up, self._n_at_up)
            )
        if down is not None:
            self._p_down, self._max_down = float(down[1][last]), float(down[2][last])
            self._sum_at_down, self._n_at_down = _excursion(
                down[2], last, seed_down, s, n0, (self._sum_at_down, self._n_at_down)
            )
        if not fired:
            return None
        t_up_j = float(up[3][j]) if up is not None else -math.inf
        t_down_j = float(down[3][j]) if down is not None else -math.inf
        going_up = t_up_j >= t_down_j
        sum_at, n_at = (
            (self._sum_at_up, self._n_at_up) if going_up else (self._sum_at_down, self._n_at_down)
        )
        run = self._n - n_at
        details = {
            "direction": "up" if going_up else "down",
            "mean_before": self._ref + self._sum / self._n,
            "mean_recent": self._ref + (self._sum - sum_at) / run if run else float(x[j]),
            "run_length": run,
            "sigma": sigma,
            "n_since_reset": self._n,
        }
        return j, Signal(j, max(t_up_j, t_down_j), threshold, details)

    def _scan_small(self, x: FloatArray) -> tuple[int, Signal] | None:
        """:meth:`_scan` for a few values without forgetting (``alpha == 1``, the sigma mode's
        default), in Python: the same operations in the same order as the cumsums and running
        minima there, so the same floats (the conformance suite feeds value by value and in one
        batch and compares the states). Thousands of models on one partition give a few values
        per model per batch, where the ~25 numpy calls of :meth:`_scan` cost ~30 us."""
        sigma = self._sigma if self._sigma is not None else 1.0
        delta, threshold = self.delta * sigma, self.threshold * sigma
        values = x.tolist()
        if self._center is not None and self.clip:
            band = self.clip * sigma
            low, high = self._center - band, self._center + band
            values = [min(max(v, low), high) for v in values]
        n0, ref, up, down = self._n, self._ref, self._up, self._down
        first = max(0, max(self.min_instances, self._start + 1) - n0 - 1)
        total = self._sum
        m_up, lo = self._p_up, math.inf if self._min_up is None else self._min_up
        m_down, hi = self._p_down, self._max_down
        at_up = (self._sum_at_up, self._n_at_up)
        at_down = (self._sum_at_down, self._n_at_down)
        t_up = t_down = -math.inf
        last, fired = len(values) - 1, False
        for i, v in enumerate(values):
            total += v - ref
            dev = v - (total / float(n0 + i + 1) + ref)
            if up:
                m_up += dev - delta
                if m_up < lo:  # a new minimum: the excursion starts here
                    lo, at_up = m_up, (total, n0 + i + 1)
                t_up = m_up - lo
            if down:
                m_down += dev + delta
                if m_down > hi:
                    hi, at_down = m_down, (total, n0 + i + 1)
                t_down = hi - m_down
            if i >= first and (t_up > threshold or t_down > threshold):
                last, fired = i, True
                break
        self._n = n0 + last + 1
        self._sum = total
        self._k = 0
        if up:
            self._p_up, self._min_up = m_up, lo
            self._sum_at_up, self._n_at_up = at_up
        if down:
            self._p_down, self._max_down = m_down, hi
            self._sum_at_down, self._n_at_down = at_down
        if not fired:
            return None
        going_up = t_up >= t_down
        sum_at, n_at = at_up if going_up else at_down
        run = self._n - n_at
        details = {
            "direction": "up" if going_up else "down",
            "mean_before": self._ref + self._sum / self._n,
            "mean_recent": self._ref + (self._sum - sum_at) / run if run else values[last],
            "run_length": run,
            "sigma": sigma,
            "n_since_reset": self._n,
        }
        return last, Signal(last, max(t_up, t_down), threshold, details)

    def _discounted(self, carry: float, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Sums m_t = alpha*m_{t-1} + u_t, and the carry to resume after each step."""
        if not self._block:  # alpha == 1: a plain running sum
            m = _seeded(np.cumsum, carry, u)
            return m, m
        m = np.empty_like(u)
        p = np.empty_like(u)
        k, pos = self._k, 0
        while pos < u.size:
            take = min(u.size - pos, self._block - k)
            part = u[pos : pos + take] * self._inv[k + 1 : k + take + 1]
            p[pos : pos + take] = _seeded(np.cumsum, carry, part)
            m[pos : pos + take] = p[pos : pos + take] * self._pow[k + 1 : k + take + 1]
            k += take
            pos += take
            if k == self._block:  # start a new block from the actual sum
                p[pos - 1] = m[pos - 1]
                k = 0
            carry = float(p[pos - 1])
        return m, p

    # -- state and gauges ------------------------------------------------------------------

    def _statistics(self) -> tuple[float, float]:
        scale = float(self._pow[self._k]) if self._block else 1.0
        t_up = self._p_up * scale - self._min_up if self._up and self._min_up is not None else 0.0
        t_down = self._max_down - self._p_down * scale if self._down else 0.0
        return t_up, t_down

    def gauges(self) -> dict[str, float]:
        """Current statistic (max of up/down), threshold and sigma in stream units, mean, count."""
        t_up, t_down = self._statistics() if self._n > self._start else (0.0, 0.0)
        sigma = self._sigma if self._sigma is not None else math.nan
        return {
            "statistic": max(t_up, t_down),
            "threshold": self.threshold * sigma,
            "mean": self._ref + self._sum / self._n if self._n else 0.0,
            "sigma": sigma,
            "n_detections": float(self._n_detections),
        }

    @property
    def n_detections(self) -> int:
        """Firings since this detector was created."""
        return self._n_detections

    def to_state(self) -> StateDoc:
        """Plain document of floats, ints, strings, bools and None (JSON and msgpack safe)."""
        return {
            "kind": self.kind,
            "version": self.state_version,
            "params": self._params(),
            "learned": {name: getattr(self, "_" + name) for name in _LEARNED},
        }

    def _params(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "delta": self.delta,
            "alpha": self.alpha,
            "direction": self.direction,
            "mode": self.mode,
            "warmup": self.warmup,
            "min_instances": self.min_instances,
            "clip": None if self.mode == "river" else self.clip,
        }

    @classmethod
    def from_state(cls, state: StateDoc) -> Self:
        """Restore a detector from :meth:`to_state` output; raise :class:`StateError` if bad."""
        doc = check_state(state, cls.kind, (cls.state_version,))
        params, learned = doc.get("params"), doc.get("learned")
        if not isinstance(params, dict) or not isinstance(learned, dict):
            raise StateError("page_hinkley state needs 'params' and 'learned' mappings")
        if set(params) != set(_PARAMS):
            raise StateError(
                f"page_hinkley state params must have the keys {sorted(_PARAMS)}, "
                f"got {sorted(map(str, params))}; reset the state"
            )
        try:
            self = cls(**params)
        except (TypeError, ValueError) as exc:
            raise StateError(f"page_hinkley state has invalid params: {exc}") from exc
        if set(learned) != set(_LEARNED):
            raise StateError(
                f"page_hinkley state 'learned' must have the keys {sorted(_LEARNED)}, "
                f"got {sorted(map(str, learned))}; reset the state"
            )
        for name, types in _LEARNED.items():
            value = learned[name]
            ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise StateError(
                    f"page_hinkley state {name!r} must be a finite "
                    f"{' or '.join(t.__name__ for t in types)}, got {value!r}"
                )
            if float in types and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            setattr(self, "_" + name, value)
        counts = (self._n, self._n_detections, self._n_at_up, self._n_at_down, self._k)
        if not all(0 <= c < MAX_COUNT for c in counts) or (
            self._block and not 0 <= self._k < self._block
        ):
            raise StateError("page_hinkley state counters are out of range; reset the state")
        if self.mode == "sigma" and (self._sigma is None) != (self._n < self._start):
            raise StateError("page_hinkley state sigma does not match its warm-up progress")
        return self


_PARAMS = ("threshold", "delta", "alpha", "direction", "mode", "warmup", "min_instances", "clip")
_LEARNED: dict[str, tuple[type, ...]] = {
    "n": (int,),
    "ref": (float, int),
    "sum": (float, int),
    "sumsq": (float, int),
    "sigma": (float, int, type(None)),
    "center": (float, int, type(None)),
    "p_up": (float, int),
    "p_down": (float, int),
    "k": (int,),
    "min_up": (float, int, type(None)),
    "max_down": (float, int),
    "sum_at_up": (float, int),
    "n_at_up": (int,),
    "sum_at_down": (float, int),
    "n_at_down": (int,),
    "pending_reset": (bool,),
    "n_detections": (int,),
}


_SMALL_BATCH = 16


def _seeded(accumulate: Any, seed: float, values: FloatArray) -> FloatArray:
    """``accumulate`` over ``[seed, *values]`` without the seed: continues a running sum/min/max
    in order, so results do not depend on how the stream was split into batches."""
    buf = np.empty(values.size + 1)
    buf[0] = seed
    buf[1:] = values
    out: FloatArray = accumulate(buf, out=buf)
    return out[1:]


def _excursion(
    extreme: FloatArray, last: int, seed: float, s: FloatArray, n0: int, carried: tuple[float, int]
) -> tuple[float, int]:
    """(S, n) where the running min (max) first reached its value at ``last``: the start of the
    current excursion, i.e. the CUSUM estimate of where a change began. ``extreme`` is
    monotone, so a binary search finds it; ``carried`` if the extreme is older than ``x``."""
    final = extreme[last]
    if final == seed:
        return carried
    head = extreme[: last + 1]
    idx = int(np.searchsorted(head, final) if head[0] <= final else np.searchsorted(-head, -final))
    return float(s[idx]), n0 + idx + 1


@functools.lru_cache(maxsize=64)
def _discount_tables(alpha: float) -> tuple[int, FloatArray, FloatArray]:
    """Block length and alpha**k, alpha**-k for k in 0..block: shared, read-only, by alpha
    (river's alpha gives 65,537-value tables, 1 MB per detector if each had its own)."""
    if alpha == 1.0:
        block, powers, inverse = 0, np.ones(1), np.ones(1)
    else:
        block = int(min(_MAX_BLOCK, max(1, math.floor(math.log(_MAX_GROWTH) / -math.log(alpha)))))
        k = np.arange(block + 1, dtype=np.float64)
        powers, inverse = np.power(alpha, k), np.power(alpha, -k)
    powers.flags.writeable = inverse.flags.writeable = False
    return block, powers, inverse


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _integer(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value >= MAX_COUNT:
        raise ValueError(f"{name} must be below 2**62, got {value!r}")
