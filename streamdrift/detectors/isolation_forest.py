"""Streaming isolation forest: Half-Space Trees (Tan, Ting & Liu, 2011), vectorised with numpy.

Trees
    ``n_trees`` complete binary trees of ``height`` levels below the root, stored as implicit
    arrays (node ``i`` has children ``2i + 1`` and ``2i + 2``). Each tree gets its own random
    workspace from the feature limits ``[lo, hi]``, as in the paper: per dimension a random
    ``sq`` in ``[lo, hi]``, ``ws = 2·max(sq − lo, hi − sq)``, workspace ``[sq − ws, sq + ws]``.
    A node splits its box at the midpoint (paper) of a dimension drawn with probability
    proportional to the box's width relative to the workspace (river's weighting), so a tree
    does not keep halving a dimension it has already cut thin. On Shuttle this weighting and the
    uniform choice of the paper are within seed noise of each other.
Limits
    Configured (``limits``), or learned from the first ``window`` valid events: their per-feature
    min and max (a constant feature gets ``±max(|v|, 1)/2`` around its value). Values outside
    the workspace simply fall into the outermost nodes.
Masses and windows
    Every event adds 1 to the latest mass ``l`` of each node on its path; after every ``window``
    events ``l`` becomes the reference ``r`` and ``l`` restarts at zero. An event is scored
    against the ``r`` of the window before its own, so the first window (the warm-up, which with
    learned limits also builds the trees) has no score: ``last_scores`` holds NaN for it.
Score
    Per tree, the path stops at the first node with ``r < size_limit`` (default ``0.1·window``,
    the paper's and river's constant) or at a leaf; the tree's mass is ``r·2^depth`` there (the
    paper's). The score is ``1 − Σ_trees r·2^depth / (n_trees·window·2^height)``, in [0, 1] with
    high meaning anomalous, the normalisation river uses. ``r·2^depth / window`` estimates the
    density at the event relative to a uniform spread over the workspace, so ordinary events score
    close to 1 with deep trees: use the calibrated threshold (default), or a fixed one read off
    ``gauges()["score_p99"]``.
Decision
    ``score > threshold``, or ``score == 1`` (an empty node in every tree, which no quantile can
    excuse). The threshold is ``threshold`` if given, else the ``1 − contamination`` quantile of
    the last ``calibration`` scores (a ring buffer, part of the state), recomputed at every window
    swap so that it is fixed within a window. No decisions before the buffer is full, i.e. before
    event ``window + calibration``.
Attribution
    For a signal, every tree whose path ended in a low-mass node names the dimension of the split
    that led into it, weighted by ``1 − r_node / r_parent`` (1 when the event fell where the
    reference had nothing). Summed over trees and divided by ``n_trees``, the three heaviest
    dimensions are the signal's ``features``. It costs nothing for events that do not fire.
State
    Split dimensions and values, the per-tree workspace and the masses go into the document as
    little-endian ``bytes`` (msgpack-serialisable; not JSON). Masses are stored as the non-zero
    leaf counts, from which internal masses are the sums of their children, so a state holds at
    most ``2·window·n_trees`` mass entries whatever the height; the trees themselves take about
    12 bytes per internal node per tree, i.e. they double with each extra level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
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
)
from streamdrift.errors import StateError

__all__ = ["HalfSpaceTrees"]

IntArray = npt.NDArray[np.intp]
DimArray = npt.NDArray[np.signedinteger[Any]]  # int8/int16/int32: the smallest that holds f
MassArray = npt.NDArray[np.unsignedinteger[Any]]  # uint16 (window <= 65535) or uint32
BoolArray = npt.NDArray[np.bool_]
_F8, _I4, _U1 = np.dtype("<f8"), np.dtype("<i4"), np.dtype("<u1")
MAX_TREES = 10_000
MAX_CALIBRATION = 10_000_000
_MAX_DETAIL_VALUES = 20  # signals carry the row's values when it has at most this many features


def _integer(name: str, value: object, low: int, high: int | None = None) -> int:
    if not isinstance(value, bool) and isinstance(value, Integral):
        v = int(value)
        if low <= v < MAX_COUNT and (high is None or v <= high):
            return v
    valid = f">= {low} and below 2**62" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{name} must be an integer {valid}, got {value!r}")


def _real(name: str, value: object, valid: str, lo: float, hi: float, closed: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    v = float(value)
    if not (lo < v < hi or (closed and v == hi)):
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    return v


def _limits(limits: object) -> list[tuple[float, float]]:
    """``{"mins": [...], "maxs": [...]}`` or ``[(lo, hi), ...]`` as finite pairs with lo < hi."""
    if isinstance(limits, Mapping):
        if set(limits) != {"mins", "maxs"}:
            raise ValueError(f"limits as a mapping needs exactly 'mins' and 'maxs', got {limits}")
        pairs = list(zip(limits["mins"], limits["maxs"], strict=True))
    elif isinstance(limits, Sequence) and not isinstance(limits, str | bytes):
        pairs = [tuple(p) for p in limits]
    else:
        raise ValueError("limits must be {'mins': [...], 'maxs': [...]} or a list of (lo, hi)")
    out = []
    for i, pair in enumerate(pairs):
        lo, hi = (float(v) for v in pair) if len(pair) == 2 else (math.nan, math.nan)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"limits[{i}] must be a finite (lo, hi) with lo < hi, got {pair}")
        out.append((lo, hi))
    if not out:
        raise ValueError("limits must name at least one feature")
    return out


class HalfSpaceTrees:
    """Streaming isolation forest (Half-Space Trees) over rows of numeric features.

    See the module docstring for the trees, windows, score, threshold and attribution. A signal
    is reported at every row whose score crosses the threshold; ``details`` has the ``score``,
    the top-3 ``features`` (``{"feature": index, "weight": w}``) and, for at most 20 features,
    the row's ``values``.

    Parameters
    ----------
    n_trees
        Number of trees (at most 10,000).
    height
        Levels below the root; a tree has ``2^(height + 1) − 1`` nodes.
    window
        Events per mass window (reference and latest profiles swap after each).
    limits
        Per-feature ``(lo, hi)`` list or ``{"mins": [...], "maxs": [...]}``; learned from the
        first window when ``None``.
    size_limit
        Mass under which a path stops; ``0.1·window`` when ``None``.
    threshold
        Fixed score threshold in (0, 1]; calibrated from recent scores when ``None``.
    contamination
        Share of recent scores above the calibrated threshold, in (0, 0.5).
    calibration
        Recent scores kept for calibration, the score gauges and ``outlier_rate`` (at most
        10,000,000).
    seed
        Seed of the generator that draws the trees; the only source of randomness.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> rows = [[rng.gauss(0, 1), rng.gauss(5, 2), rng.gauss(-3, 0.5)] for _ in range(3_000)]
    >>> rows[2_000] = [6.0, 15.0, -3.0]  # far out in the first two features
    >>> rows[2_500] = [-4.0, 5.0, 0.0]  # and in the first and the last
    >>> detector = HalfSpaceTrees(threshold=0.9995, seed=2)
    >>> for s in detector.update(rows).signals:
    ...     print(s.position, round(s.statistic, 4), [f["feature"] for f in s.details["features"]])
    590 0.9995 [0, 1]
    2000 0.9999 [0, 1]
    2500 0.9995 [0, 2, 1]
    >>> [round(float(v), 2) for v in rows[590]]  # the stream's own tail
    [3.02, 3.68, -2.98]
    """

    kind: ClassVar[str] = "isolation_forest"
    state_version: ClassVar[int] = 1

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window: int = 250,
        *,
        limits: Mapping[str, Sequence[float]] | Sequence[Sequence[float]] | None = None,
        size_limit: float | None = None,
        threshold: float | None = None,
        contamination: float = 0.01,
        calibration: int = 2_000,
        seed: int = 0,
    ) -> None:
        # Upper bounds: memory is allocated from these, and a state document read from Redis
        # must not be able to ask for gigabytes (tests/test_state_corrupt.py).
        self.n_trees = _integer("n_trees", n_trees, 1, MAX_TREES)
        self.height = _integer("height", height, 1, 24)
        self.window = _integer("window", window, 1, 2**31 - 1)
        self.limits = None if limits is None else _limits(limits)
        self.size_limit = (
            None
            if size_limit is None
            else _real("size_limit", size_limit, "a number > 0 (or None)", 0.0, math.inf, False)
        )
        self.threshold = (
            None
            if threshold is None
            else _real("threshold", threshold, "in (0, 1] (or None)", 0.0, 1.0, True)
        )
        self.contamination = _real("contamination", contamination, "in (0, 0.5)", 0.0, 0.5, False)
        self.calibration = _integer("calibration", calibration, 1, MAX_CALIBRATION)
        self.seed = _integer("seed", seed, 0, 2**64 - 1)

        self._rng = np.random.default_rng(self.seed)
        self._size_limit = 0.1 * self.window if self.size_limit is None else self.size_limit
        self._n_nodes = 2 ** (self.height + 1) - 1
        self._max_mass = float(self.n_trees * self.window * 2**self.height)
        self._offsets: IntArray = np.arange(self.n_trees, dtype=np.intp) * self._n_nodes
        # child = 2·parent + 1 + right in local indices; 2·g + (1 − offset) + right in global ones
        self._child_base: IntArray = 1 - self._offsets
        self._n_features: int | None = None if self.limits is None else len(self.limits)
        # Masses never exceed `window` (a node holds at most one window's events): uint16 for
        # the default window halves them, 10,000 models x 10 trees x 511 nodes x 2 profiles.
        self._mass_dtype = np.dtype(np.uint16 if self.window <= 0xFFFF else np.uint32)
        self._built = False
        self._dim: DimArray = np.zeros(0, dtype=np.int8)  # flat (n_trees·n_nodes), leaves 0
        self._value: FloatArray = np.zeros(0)  # flat, leaves +inf
        self._ws_lo: FloatArray = np.zeros(0)  # (n_trees, n_features) per-tree workspace
        self._ws_hi: FloatArray = np.zeros(0)
        self._r: MassArray = np.zeros(0, dtype=self._mass_dtype)
        self._l: MassArray = np.zeros(0, dtype=self._mass_dtype)
        self._has_reference = False
        self._in_window = 0
        self._warm: list[FloatArray] = []
        self._warm_n = 0
        self._cal_scores: FloatArray = np.zeros(self.calibration)
        self._cal_fired: BoolArray = np.zeros(self.calibration, dtype=np.bool_)
        self._cal_n = 0  # scores held (<= calibration); the next goes to _cal_n % calibration
        self._cal_next = 0
        self._threshold = math.nan if self.threshold is None else self.threshold
        self._n_seen = 0
        self._n_scored = 0
        self._n_detections = 0
        self._last_scores: FloatArray = np.zeros(0)
        if self.limits is not None:
            lims = np.array(self.limits, dtype=np.float64)
            self._build(lims[:, 0], lims[:, 1])

    # -- trees ---------------------------------------------------------------------------------

    def _build(self, lo: FloatArray, hi: FloatArray) -> None:
        """Draw the trees level by level, all trees at once (the only use of the generator)."""
        t, f = self.n_trees, lo.size
        sq = self._rng.uniform(lo, hi, size=(t, f))
        ws = 2.0 * np.maximum(sq - lo, hi - sq)
        self._ws_lo, self._ws_hi = sq - ws, sq + ws
        span = self._ws_hi - self._ws_lo
        dim = np.zeros((t, self._n_nodes), dtype=np.intp)
        value = np.full((t, self._n_nodes), np.inf)
        box_lo, box_hi = self._ws_lo[:, None, :], self._ws_hi[:, None, :]
        for depth in range(self.height):
            first, count = 2**depth - 1, 2**depth
            cum = np.cumsum((box_hi - box_lo) / span[:, None, :], axis=2)
            u = self._rng.random((t, count, 1)) * cum[:, :, -1:]
            q = np.minimum((cum <= u).sum(axis=2), f - 1)
            a = np.take_along_axis(box_lo, q[..., None], axis=2)[..., 0]
            b = np.take_along_axis(box_hi, q[..., None], axis=2)[..., 0]
            mid = 0.5 * (a + b)
            dim[:, first : first + count], value[:, first : first + count] = q, mid
            cut = np.arange(f) == q[..., None]
            left_hi = np.where(cut, mid[..., None], box_hi)
            right_lo = np.where(cut, mid[..., None], box_lo)
            box_lo = np.stack([box_lo, right_lo], axis=2).reshape(t, 2 * count, f)
            box_hi = np.stack([left_hi, box_hi], axis=2).reshape(t, 2 * count, f)
        self._set_trees(dim.ravel(), value.ravel())

    def _set_trees(self, dim: npt.NDArray[np.integer[Any]], value: FloatArray) -> None:
        # The smallest signed dtype that holds every feature index (int8 up to 128 features):
        # routing reads it into a same-dtype buffer, then adds the row offsets into intp.
        n_features = self._n_features or 1
        small = np.int8 if n_features <= 0x80 else np.int16 if n_features <= 0x8000 else np.int32
        self._dim, self._value = dim.astype(small), value
        self._r = np.zeros(self.n_trees * self._n_nodes, dtype=self._mass_dtype)
        self._l = np.zeros_like(self._r)
        self._built = True

    def _route(self, x: FloatArray) -> IntArray:
        """Global node index of every event in every tree at every depth: (height+1, n, n_trees)."""
        n, f = x.shape
        paths = np.empty((self.height + 1, n, self.n_trees), dtype=np.intp)
        paths[0] = self._offsets
        rows = (np.arange(n, dtype=np.intp) * f)[:, None]
        flat = x.ravel()
        at = np.empty((n, self.n_trees), dtype=np.intp)
        dim = np.empty(at.shape, dtype=self._dim.dtype)  # np.take's out must be of its dtype
        xv, cut = np.empty(at.shape), np.empty(at.shape)
        right = np.empty(at.shape, dtype=np.bool_)
        for d in range(self.height):
            node, child = paths[d], paths[d + 1]
            np.take(self._dim, node, out=dim)
            np.add(dim, rows, out=at)
            np.take(flat, at, out=xv)
            np.take(self._value, node, out=cut)
            np.greater_equal(xv, cut, out=right)  # river's convention: value < split goes left
            np.multiply(node, 2, out=child)
            child += self._child_base
            child += right
        return paths

    # -- update --------------------------------------------------------------------------------

    def update(self, values: npt.ArrayLike) -> UpdateResult:
        """Score and learn a batch of rows in order; return the rows whose score fired."""
        x = as_float_array(values, ndim=2)
        if self._n_features is None:
            if x.shape[1] < 1:
                raise ValueError("rows must have at least one feature")
            self._n_features = x.shape[1]
        elif x.shape[1] != self._n_features:
            raise ValueError(f"expected rows of {self._n_features} features, got {x.shape[1]}")
        n = x.shape[0]
        scores = np.full(n, np.nan)
        valid = np.isfinite(x).all(axis=1)
        n_invalid = n - int(np.count_nonzero(valid))
        rows = np.flatnonzero(valid) if n_invalid else np.arange(n)
        good = x[valid] if n_invalid else x
        start = 0 if self._built else self._warm_up(good)
        signals: list[Signal] = []
        if start < good.shape[0]:
            rest = good[start:]
            paths = self._route(rest)
            a = 0
            while a < rest.shape[0]:
                b = a + min(self.window - self._in_window, rest.shape[0] - a)
                self._segment(rest, paths, a, b, rows[start:], scores, signals)
                a = b
        self._n_seen += n
        self._last_scores = scores
        return UpdateResult(tuple(signals), n_invalid)

    def _warm_up(self, good: FloatArray) -> int:
        take = min(self.window - self._warm_n, int(good.shape[0]))
        self._warm.append(good[:take].copy())
        self._warm_n += take
        if self._warm_n < self.window:
            return take
        warm = np.concatenate(self._warm)
        lo, hi = warm.min(axis=0), warm.max(axis=0)
        flat = hi <= lo
        pad = 0.5 * np.maximum(np.abs(lo), 1.0)
        self._build(np.where(flat, lo - pad, lo), np.where(flat, hi + pad, hi))
        self._warm, self._warm_n = [], 0
        counts = np.bincount(self._route(warm).ravel(), minlength=self._l.size)
        self._l += counts.astype(self._l.dtype)
        self._swap()
        return take

    def _segment(
        self,
        x: FloatArray,
        paths: IntArray,
        a: int,
        b: int,
        rows: IntArray,
        scores: FloatArray,
        signals: list[Signal],
    ) -> None:
        """Events ``a:b`` of one window: score against the fixed reference, then learn them."""
        seg = paths[:, a:b]
        if self._has_reference:
            mass = np.take(self._r, seg)  # (height+1, m, n_trees), non-increasing with depth
            depth = np.minimum((mass >= self._size_limit).sum(axis=0), self.height)
            end = np.take_along_axis(mass, depth[None], axis=0)[0]
            s = 1.0 - np.ldexp(end.astype(np.float64), depth).sum(axis=1) / self._max_mass
            scores[rows[a:b]] = s
            fired = np.zeros(s.size, dtype=np.bool_)
            if not math.isnan(self._threshold):
                fired = (s > self._threshold) | (s >= 1.0)
                for i in np.flatnonzero(fired).tolist():
                    row, at = x[a + i], int(rows[a + i])
                    signals.append(self._signal(row, at, float(s[i]), mass[:, i], seg[:, i]))
                self._n_detections += int(np.count_nonzero(fired))
            self._calibrate_add(s, fired)
            self._n_scored += s.size
        idx = seg.ravel()
        if idx.size * 8 >= self._l.size:
            self._l += np.bincount(idx, minlength=self._l.size).astype(self._l.dtype)
        else:  # deep trees: touching only the visited nodes beats a full-size bincount
            # a same-dtype increment array keeps np.add.at on its fast path (a scalar 1 is 100x
            # slower)
            np.add.at(self._l, idx, np.ones(idx.size, dtype=self._l.dtype))
        self._in_window += b - a
        if self._in_window == self.window:
            self._swap()

    def _swap(self) -> None:
        self._r, self._l = self._l, self._r
        self._l.fill(0)
        self._has_reference = True
        self._in_window = 0
        if self.threshold is None and self._cal_n == self.calibration:
            q = 1.0 - self.contamination
            self._threshold = float(np.quantile(self._cal_scores, q, method="higher"))

    def _calibrate_add(self, s: FloatArray, fired: BoolArray) -> None:
        keep = min(s.size, self.calibration)
        at = (self._cal_next + np.arange(keep)) % self.calibration
        self._cal_scores[at], self._cal_fired[at] = s[-keep:], fired[-keep:]
        self._cal_next = int((self._cal_next + keep) % self.calibration)
        self._cal_n = min(self.calibration, self._cal_n + keep)

    def _signal(
        self, row: FloatArray, position: int, score: float, mass: MassArray, path: IntArray
    ) -> Signal:
        """One row's signal; ``mass`` and ``path`` are its path's r-mass and nodes, (h+1, trees)."""
        low = mass < self._size_limit
        trees = np.flatnonzero(low.any(axis=0) & ~low[0])
        depth = np.argmax(low[:, trees], axis=0)  # the first low-mass node, below the root
        parent = mass[depth - 1, trees].astype(np.float64)
        weights = np.zeros(row.size)
        np.add.at(weights, self._dim[path[depth - 1, trees]], 1.0 - mass[depth, trees] / parent)
        weights /= self.n_trees
        top = np.argsort(-weights, kind="stable")[:3].tolist()
        details: dict[str, Any] = {
            "score": score,
            "features": [{"feature": i, "weight": float(weights[i])} for i in top if weights[i]],
        }
        if row.size <= _MAX_DETAIL_VALUES:
            details["values"] = row.tolist()
        return Signal(position, score, self._threshold, details)

    # -- reporting -----------------------------------------------------------------------------

    @property
    def last_scores(self) -> FloatArray:
        """Scores of the last batch's rows (NaN for invalid rows and before the first swap)."""
        return self._last_scores

    @property
    def threshold_(self) -> float:
        """The threshold in force (NaN while the calibration buffer is filling)."""
        return self._threshold

    def gauges(self) -> dict[str, float]:
        """Recent outlier rate and score quantiles, the threshold, window position, detections."""
        held = self._cal_scores[: self._cal_n]
        p50, p99 = np.quantile(held, [0.5, 0.99]).tolist() if held.size else (math.nan,) * 2
        return {
            "outlier_rate": float(self._cal_fired[: self._cal_n].mean()) if held.size else math.nan,
            "score_p50": float(p50),
            "score_p99": float(p99),
            "threshold": self._threshold,
            "window_position": float(self._in_window if self._built else self._warm_n),
            "n_detections": float(self._n_detections),
        }

    # -- state ---------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return {
            "n_trees": self.n_trees,
            "height": self.height,
            "window": self.window,
            "limits": None if self.limits is None else [list(p) for p in self.limits],
            "size_limit": self.size_limit,
            "threshold": self.threshold,
            "contamination": self.contamination,
            "calibration": self.calibration,
            "seed": self.seed,
        }

    def _leaves(self, mass: MassArray) -> dict[str, bytes]:
        leaves = mass.reshape(self.n_trees, -1)[:, 2**self.height - 1 :].ravel()
        nz = np.flatnonzero(leaves)
        return {"index": nz.astype("<i8").tobytes(), "count": leaves[nz].astype(_I4).tobytes()}

    def to_state(self) -> StateDoc:
        """Plain document (msgpack-serialisable; bytes inside) that :meth:`from_state` restores."""
        trees = masses = warmup = None
        if self._built:
            internal = (slice(None), slice(0, 2**self.height - 1))
            trees = {
                "split_dim": self._dim.reshape(self.n_trees, -1)[internal].astype(_I4).tobytes(),
                "split_value": self._value.reshape(self.n_trees, -1)[internal].tobytes(),
                "workspace_lo": self._ws_lo.astype(_F8).tobytes(),
                "workspace_hi": self._ws_hi.astype(_F8).tobytes(),
            }
            masses = {
                "reference": self._leaves(self._r) if self._has_reference else None,
                "latest": self._leaves(self._l),
                "in_window": self._in_window,
            }
        elif self._warm_n:  # (batches of only non-finite rows leave empty chunks: no warm-up)
            warmup = np.concatenate(self._warm).astype(_F8).tobytes()
        order = (self._cal_next - self._cal_n + np.arange(self._cal_n)) % self.calibration
        return {
            "kind": self.kind,
            "version": self.state_version,
            "settings": self._settings(),
            "n_features": self._n_features,
            "warmup": warmup,
            "trees": trees,
            "masses": masses,
            "calibration": {  # oldest first
                "scores": self._cal_scores[order].astype(_F8).tobytes(),
                "fired": self._cal_fired[order].astype(_U1).tobytes(),
            },
            "threshold": None if math.isnan(self._threshold) else self._threshold,
            "n_seen": self._n_seen,
            "n_scored": self._n_scored,
            "n_detections": self._n_detections,
        }

    @classmethod
    def from_state(cls, state: StateDoc) -> Self:
        """Restore a detector from :meth:`to_state`; ``StateError`` if the document is invalid."""
        doc = check_state(state, cls.kind, (cls.state_version,))
        try:
            settings = dict(doc["settings"])
            limits = settings.pop("limits")
            det = cls(**settings)  # without limits, so that no trees are drawn only to be replaced
            det.limits = None if limits is None else _limits(limits)
            det._restore(doc)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise StateError(
                f"{cls.kind} state document is invalid ({type(exc).__name__}: {exc}); "
                "reset this detector's state"
            ) from exc
        return det

    def _restore(self, doc: StateDoc) -> None:
        n_features = doc["n_features"]
        if n_features is not None:
            self._n_features = _integer("n_features", n_features, 1)
        if self.limits is not None and self._n_features != len(self.limits):
            raise ValueError("n_features does not match the configured limits")
        t, f, n_int = self.n_trees, self._n_features or 0, 2**self.height - 1
        if doc["trees"] is not None:
            trees = doc["trees"]
            # Check the sizes against the document before allocating from the settings.
            split_dim = _array(trees["split_dim"], _I4, (t, n_int))
            split_value = _array(trees["split_value"], _F8, (t, n_int))
            dim = np.zeros((t, self._n_nodes), dtype=np.intp)
            value = np.full((t, self._n_nodes), np.inf)
            dim[:, :n_int] = split_dim
            value[:, :n_int] = split_value
            if f == 0 or dim.min() < 0 or dim.max() >= f or not np.isfinite(value[:, :n_int]).all():
                raise ValueError("split dimensions or values out of range")
            self._ws_lo = _array(trees["workspace_lo"], _F8, (t, f))
            self._ws_hi = _array(trees["workspace_hi"], _F8, (t, f))
            self._set_trees(dim.ravel(), value.ravel())
            masses = doc["masses"]
            self._in_window = _integer("masses.in_window", masses["in_window"], 0, self.window - 1)
            self._l = self._from_leaves(masses["latest"], self._in_window)
            if masses["reference"] is not None:
                self._r = self._from_leaves(masses["reference"], self.window)
                self._has_reference = True
            elif self.limits is None:
                raise ValueError("trees learned from a warm-up must come with a reference mass")
        elif self.limits is not None or doc["masses"] is not None:
            raise ValueError("masses or configured limits but no trees")
        elif doc["warmup"] is not None:
            warm = _array(doc["warmup"], _F8, None).reshape(-1, f) if f else np.zeros(0)
            if not 0 < warm.shape[0] < self.window or not np.isfinite(warm).all():
                raise ValueError("warm-up buffer has the wrong size or non-finite values")
            self._warm, self._warm_n = [warm], warm.shape[0]
        cal = doc["calibration"]
        scores = _array(cal["scores"], _F8, None)
        fired = _array(cal["fired"], _U1, scores.shape)
        if scores.size > self.calibration or not ((scores >= 0) & (scores <= 1)).all():
            raise ValueError("calibration scores must be at most `calibration` values in [0, 1]")
        n = scores.size
        self._cal_scores[:n], self._cal_fired[:n] = scores, fired.astype(np.bool_)
        self._cal_n, self._cal_next = n, n % self.calibration
        threshold = doc["threshold"]
        if threshold is not None:
            self._threshold = _real("threshold", threshold, "in [0, 1]", -1e-300, 1.0, True)
        elif self.threshold is not None:
            raise ValueError("a configured threshold is missing from the state")
        self._n_seen = _integer("n_seen", doc["n_seen"], 0)
        self._n_scored = _integer("n_scored", doc["n_scored"], 0)
        self._n_detections = _integer("n_detections", doc["n_detections"], 0)

    def _from_leaves(self, doc: Mapping[str, Any], total: int) -> MassArray:
        """Full masses from non-zero leaf counts; every tree's root must hold ``total`` events."""
        t, n_leaves = self.n_trees, 2**self.height
        index = _array(doc["index"], np.dtype("<i8"), None)
        count = _array(doc["count"], _I4, index.shape)
        if index.size and (index.min() < 0 or index.max() >= t * n_leaves or count.min() <= 0):
            raise ValueError("leaf masses out of range")
        leaves = np.zeros(t * n_leaves, dtype=np.int64)
        np.add.at(leaves, index, count)
        level = leaves.reshape(t, n_leaves)
        full = np.zeros((t, self._n_nodes), dtype=np.int64)
        for depth in range(self.height, -1, -1):
            full[:, 2**depth - 1 : 2 ** (depth + 1) - 1] = level
            if depth:
                level = level.reshape(t, -1, 2).sum(axis=2)
        if not (full[:, 0] == total).all():
            raise ValueError(f"every tree's mass must sum to {total} events")
        # counts are positive and every root holds total <= window: every node fits the dtype
        return full.astype(self._mass_dtype).ravel()


def _array(raw: object, dtype: np.dtype[Any], shape: tuple[int, ...] | None) -> Any:
    """A native-order, writeable copy of little-endian ``raw`` bytes, checked against ``shape``."""
    if not isinstance(raw, bytes):
        raise ValueError(f"expected bytes, got {type(raw).__name__}")
    if len(raw) % dtype.itemsize:
        raise ValueError(f"{len(raw)} bytes is not a whole number of {dtype} values")
    arr = np.frombuffer(raw, dtype=dtype)
    if shape is not None:
        if arr.size != math.prod(shape):
            raise ValueError(f"expected {math.prod(shape)} values, got {arr.size}")
        arr = arr.reshape(shape)
    return arr.astype(dtype.newbyteorder("="))
