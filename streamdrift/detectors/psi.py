"""Population Stability Index of tumbling windows against a reference histogram.

PSI = Σ_b (q_b − p_b) · ln(q_b / p_b), over the bins b of a reference distribution p and of one
window q. :class:`PSI` bins numbers at quantile edges of the reference; :class:`CategoricalPSI`
has one bin per reference category. Both share the windowing, the statistic, the threshold and
the state in :class:`_WindowedPSI`.

Reference
    Either the first ``reference_size`` values of the stream (the warm-up) or a profile built from
    training data with ``profile_from_values`` and passed as ``reference``. The default of 5,000
    keeps the reference's own noise, (B − 1)/n_ref, at a fifth of a default window's (1,000), pins
    each quantile bin's mass to about ±0.4 % (√(0.1·0.9/5,000)), and bounds the warm-up buffer,
    the only state that grows with it, to about 45 kB.
Smoothing
    A window's proportions are ``(count + epsilon) / (window + epsilon·B)`` with
    ``epsilon = 0.5`` (the Krichevsky–Trofimov / Jeffreys pseudo-count); the reference gets the
    same pseudo-share, ``(share + epsilon/window) / (1 + epsilon·B/window)``. An empty bin thus
    adds a finite term (its log-ratio is at most about ln(2·window)) instead of infinity, a bin
    empty on both sides adds exactly 0, and well-filled bins barely move.
Threshold
    Under no drift, with p̂ = π + a and q̂ = π + b, ln(q̂/p̂) ≈ (b − a)/π, so PSI ≈ Σ (b − a)²/π.
    b − a has covariance (1/n_ref + 1/n_w)(diag π − ππᵀ), hence PSI ≈ (1/n_ref + 1/n_w)·χ²
    with B − 1 degrees of freedom (B = bins the reference occupies) and mean (B − 1)(1/n_ref +
    1/n_w). A fixed 0.25 therefore fires on a large share of windows of 50 and never reacts to
    real but small shifts in windows of 100,000. The default threshold is
    ``max(min_psi, (1/n_ref + 1/window)·χ²_{B−1}(1 − alpha))`` with ``alpha = 1e-4`` false
    alarms per window and ``min_psi = 0.1`` (the customary "no significant change" bound): from
    windows of about 370 up (default reference) the floor decides, so that large windows do not
    alert on negligible shifts.
    ``threshold`` overrides it with a fixed value.
Windows and signals
    Tumbling windows of ``window`` values (missing values included, invalid ones not). Every
    window's PSI goes into :attr:`windows` and the ``psi`` gauge; one crossing the threshold
    gives a :class:`Signal` at the value that completed it, whose details hold ``n_window``,
    ``n_missing``, ``reference_size``, ``expected_psi`` (the no-drift mean above) and ``bins``:
    per bin its label, the raw reference and window shares and its (smoothed) PSI term. Numeric
    signals add ``edges``, ``mean_before`` (reference) and ``mean_after`` (window, missing
    values excluded).
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from itertools import repeat
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from streamdrift.detectors._psi_window import (
    MISSING,
    UNSEEN,
    BoolArray,
    IntArray,
    ObjectArray,
    _bin_index,
    _counts,
    _field,
    _integer,
    _interval_labels,
    _number,
    _numeric_profile,
    _WindowedPSI,
    chi2_isf,
)
from streamdrift.detectors.base import (
    FloatArray,
    all_finite,
    as_float_array,
)

__all__ = ["MISSING", "PSI", "UNSEEN", "CategoricalPSI", "chi2_isf"]

_EMPTY: FloatArray = np.empty(0)
_EMPTY.flags.writeable = False
_WARM_MIN_CAPACITY = 64


class PSI(_WindowedPSI):
    """Population Stability Index of a numeric feature, per tumbling window.

    Bins are the reference's quantiles with open outer bins (−inf, e1], ..., (ek, +inf) and a
    missing bin for NaN; ties in the reference merge edges, so a 0/1 feature has two bins. ±inf
    values are skipped and counted in ``UpdateResult.n_invalid``. A signal is reported at the
    value that completed a window whose PSI exceeds the threshold (see the module docstring for
    the threshold, smoothing and reference size).

    Parameters
    ----------
    window
        Values per tumbling window, missing values included.
    bins
        Quantile bins of the reference (fewer when the reference has ties).
    reference_size
        Warm-up values that form the reference when ``reference`` is not given.
    alpha
        False-alarm probability per window of the default threshold.
    min_psi
        Floor of the default threshold, so large windows do not alert on negligible shifts.
    threshold
        Fixed threshold replacing the default one.
    epsilon
        Pseudo-count added to every bin of both histograms.
    history
        Evaluated windows kept in :attr:`windows`.
    reference
        A profile from :meth:`profile_from_values`
        (``{"type": "numeric", "edges": [...], "counts": [...], "missing": n}``, optional
        ``"mean"``); skips the warm-up.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(42)
    >>> stream = [rng.gauss(0, 1) for _ in range(8_000)] + [rng.gauss(0.5, 1) for _ in range(2_000)]
    >>> detector = PSI()
    >>> result = detector.update(stream)
    >>> for s in result.signals:
    ...     print(s.position, round(s.statistic, 2), s.threshold, round(s.details["mean_after"], 2))
    8999 0.25 0.1 0.49
    9999 0.22 0.1 0.49
    >>> [round(w["psi"], 3) for w in detector.windows]
    [0.012, 0.023, 0.01, 0.248, 0.225]

    A reference from training data skips the warm-up:

    >>> profile = PSI.profile_from_values([rng.gauss(0, 1) for _ in range(5_000)], bins=4)
    >>> len(profile["edges"]), profile["counts"], profile["missing"]
    (3, [1250, 1250, 1250, 1250], 0)
    >>> PSI(window=500, reference=profile).update(stream[-1_000:]).positions
    [499, 999]
    """

    kind: ClassVar[str] = "psi"

    def __init__(
        self,
        window: int = 1000,
        bins: int = 10,
        reference_size: int = 5000,
        alpha: float = 1e-4,
        min_psi: float = 0.1,
        threshold: float | None = None,
        epsilon: float = 0.5,
        history: int = 32,
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        self.bins = _integer("bins", bins, 2)
        self._edges: FloatArray = np.empty(0)
        self._ref_mean: float | None = None
        super().__init__(
            window=window,
            reference_size=reference_size,
            alpha=alpha,
            min_psi=min_psi,
            threshold=threshold,
            epsilon=epsilon,
            history=history,
            reference=reference,
        )

    @classmethod
    def profile_from_values(cls, values: npt.ArrayLike, bins: int = 10) -> dict[str, Any]:
        """Reference profile of ``values`` (training data), binned as the warm-up would be."""
        arr = as_float_array(values)
        arr = arr[~np.isinf(arr)]
        nan = np.isnan(arr)
        return _numeric_profile(arr[~nan], int(np.count_nonzero(nan)), _integer("bins", bins, 2))

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "bins": self.bins}

    def _coerce(self, values: Any) -> FloatArray:
        return as_float_array(values)

    def _codes(self, values: FloatArray) -> tuple[IntArray, FloatArray | None, int]:
        codes = _bin_index(self._edges, values)
        if all_finite(values):
            return codes, values, 0
        nan = np.isnan(values)
        codes[nan] = self._edges.size + 1
        inf = np.isinf(values)
        codes[inf] = -1
        return codes, values, int(np.count_nonzero(inf))

    def _valid_mask(self, values: FloatArray) -> BoolArray | None:
        inf = np.isinf(values)
        return ~inf if inf.any() else None

    def _warm_up(self, arr: FloatArray) -> tuple[int, int]:
        if not all_finite(arr):
            return super()._warm_up(arr)
        # All finite (the common case): nothing to skip, no missing value to count.
        cut = min(arr.size, self.reference_size - self._warm_n)
        self._warm_append(arr[:cut])
        self._warm_n += cut
        self._warm_done()
        return cut, 0

    def _clear_warmup(self) -> None:
        # The warm-up values live in a float64 buffer that grows by doubling up to
        # reference_size (8 bytes a value; a list of floats costs 32), filled up to _warm_len.
        self._warm_values: FloatArray = _EMPTY
        self._warm_len = 0
        self._warm_missing = 0

    def _warm_add(self, values: FloatArray) -> None:
        nan = np.isnan(values)
        n_nan = int(np.count_nonzero(nan))
        self._warm_missing += n_nan
        finite = values[~nan] if n_nan else values
        self._warm_append(finite)

    def _warm_append(self, finite: FloatArray) -> None:
        if finite.size == 0:
            return
        start, stop = self._warm_len, self._warm_len + finite.size
        if stop > self._warm_values.size:
            grown = max(stop, 2 * self._warm_values.size, _WARM_MIN_CAPACITY)
            buffer = np.empty(min(self.reference_size, grown))
            buffer[:start] = self._warm_values[:start]
            self._warm_values = buffer
        self._warm_values[start:stop] = finite
        self._warm_len = stop

    def _warm_profile(self) -> dict[str, Any]:
        finite = self._warm_values[: self._warm_len]
        return _numeric_profile(finite, self._warm_missing, self.bins)

    def _warm_state(self) -> dict[str, Any]:
        values = self._warm_values[: self._warm_len].tolist()
        return {"values": values, "missing": self._warm_missing}

    def _warm_restore(self, doc: Mapping[str, Any]) -> int:
        listed = doc["values"]
        if not isinstance(listed, list | tuple):
            raise ValueError(f"warmup values must be a list, got {type(listed).__name__}")
        if set(map(type, listed)) <= {float}:  # what to_state writes: convert in one call
            values = np.array(listed, dtype=np.float64)
            if not np.isfinite(values).all():
                bad = float(values[~np.isfinite(values)][0])
                raise ValueError(f"warmup value must be finite, got {bad!r}")
        else:
            checked = [_number("warmup value", v, "finite", math.isfinite) for v in listed]
            values = np.array(checked, dtype=np.float64)
        self._warm_missing = _integer("warmup.missing", doc["missing"], 0)
        if values.size + self._warm_missing >= self.reference_size:
            raise ValueError("warm-up buffer is already complete")
        self._warm_len = 0
        self._warm_append(values)
        return values.size + self._warm_missing

    def _load_profile(self, profile: Mapping[str, Any]) -> IntArray:
        if _field(profile, "type") != "numeric":
            raise ValueError(f"PSI needs a 'numeric' profile, got type {profile['type']!r}")
        edges = np.array(
            [_number("edges", e, "finite", math.isfinite) for e in _field(profile, "edges")]
        )
        if edges.size > 1 and not (np.diff(edges) > 0).all():
            raise ValueError("reference edges must be strictly increasing")
        counts = _counts("counts", _field(profile, "counts"))
        if counts.size != edges.size + 1:
            raise ValueError(f"{edges.size} edges need {edges.size + 1} counts, got {counts.size}")
        mean = _field(profile, "mean", None)
        self._ref_mean = None if mean is None else _number("mean", mean, "finite", math.isfinite)
        self._edges = edges
        return np.append(counts, _integer("missing", _field(profile, "missing", 0), 0))

    def _bin_labels(self) -> list[str]:
        return _interval_labels(self._edges.tolist())

    @property
    def reference_profile(self) -> dict[str, Any] | None:
        """The reference as a plain profile (``None`` while warming up)."""
        if self._ref_counts is None:
            return None
        return {
            "type": "numeric",
            "edges": self._edges.tolist(),
            "counts": self._ref_counts[:-1].tolist(),
            "missing": int(self._ref_counts[-1]),
            "mean": self._ref_mean,
        }

    def _extra_details(self, counts: IntArray, total: float) -> dict[str, Any]:
        present = self.window - int(counts[-1])
        return {
            "edges": self._edges.tolist(),
            "mean_before": self._ref_mean,
            "mean_after": total / present if present else None,
        }


# -- categorical --------------------------------------------------------------------------------


def _missing_mask(values: ObjectArray) -> BoolArray:
    """None or NaN, elementwise in C (NaN is the one value unequal to itself)."""
    is_none = np.fromiter(map(operator.is_, values, repeat(None)), dtype=bool, count=values.size)
    return is_none | np.asarray(np.not_equal(values, values), dtype=np.bool_)


def _get_or_invalid(get: Callable[[Any, int], int], value: Any) -> int:
    try:
        return get(value, -1)
    except TypeError:
        return -2  # unhashable: neither a category nor missing


def _is_str(values: ObjectArray) -> BoolArray:
    return np.fromiter(map(isinstance, values, repeat(str)), dtype=bool, count=values.size)


def _categorical_profile(
    counts: Mapping[str, int], unseen: int, missing: int, max_categories: int | None
) -> dict[str, Any]:
    # Most frequent first, ties by name, so the folded tail does not depend on arrival order.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked if max_categories is None else ranked[:max_categories]
    folded = sum(c for _, c in ranked[len(kept) :])
    return {
        "type": "categorical",
        "categories": [k for k, _ in kept],
        "counts": [c for _, c in kept],
        "unseen": unseen + folded,
        "missing": missing,
    }


class CategoricalPSI(_WindowedPSI):
    """Population Stability Index of a categorical feature, per tumbling window.

    Input is an array of strings (object array or list; None or NaN is missing; other values are
    skipped and counted in ``UpdateResult.n_invalid``). Bins: one per reference category, an
    ``<unseen>`` bin for everything else, and a ``<missing>`` bin. With ``max_categories`` only
    the most frequent reference categories keep a bin and the rest of the reference is folded
    into ``<unseen>`` (the profile's ``"unseen"`` count), so state stays bounded.

    Parameters
    ----------
    window, reference_size, alpha, min_psi, threshold, epsilon, history
        As for :class:`PSI`.
    max_categories
        Reference categories that keep their own bin (``None``: all of them).
    reference
        A profile from :meth:`profile_from_values` (``{"type": "categorical", "categories":
        [...], "counts": [...], "unseen": n, "missing": n}``); skips the warm-up.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> before = rng.choices(["web", "ios", "android"], [0.5, 0.3, 0.2], k=8_000)
    >>> after = rng.choices(["web", "ios", "android", "tv"], [0.4, 0.25, 0.15, 0.2], k=2_000)
    >>> detector = CategoricalPSI()
    >>> for s in detector.update(before + after).signals:
    ...     top = max(s.details["bins"], key=lambda b: b["psi"])
    ...     print(s.position, round(s.statistic, 2), top["bin"], top["window"])
    8999 1.27 <unseen> 0.203
    9999 1.28 <unseen> 0.203
    """

    kind: ClassVar[str] = "psi_categorical"

    def __init__(
        self,
        window: int = 1000,
        reference_size: int = 5000,
        alpha: float = 1e-4,
        min_psi: float = 0.1,
        threshold: float | None = None,
        epsilon: float = 0.5,
        history: int = 32,
        max_categories: int | None = 100,
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        self.max_categories = (
            None if max_categories is None else _integer("max_categories", max_categories, 1)
        )
        self._categories: list[str] = []
        self._lookup: dict[Hashable, int] = {}
        super().__init__(
            window=window,
            reference_size=reference_size,
            alpha=alpha,
            min_psi=min_psi,
            threshold=threshold,
            epsilon=epsilon,
            history=history,
            reference=reference,
        )

    @classmethod
    def profile_from_values(
        cls, values: Iterable[Any], max_categories: int | None = None
    ) -> dict[str, Any]:
        """Reference profile of ``values`` (training data), folded as the warm-up would be."""
        if max_categories is not None:
            max_categories = _integer("max_categories", max_categories, 1)
        arr = cls._coerce_values(values)
        is_str = _is_str(arr)
        counts = Counter(arr[is_str].tolist())
        missing = int(np.count_nonzero(_missing_mask(arr[~is_str])))
        return _categorical_profile(counts, 0, missing, max_categories)

    @staticmethod
    def _coerce_values(values: Any) -> ObjectArray:
        if isinstance(values, np.ndarray) and values.dtype == object:
            arr: ObjectArray = values
        else:
            listed = [values] if isinstance(values, str) else list(values)
            arr = np.empty(len(listed), dtype=object)
            arr[:] = listed
        if arr.ndim != 1:
            raise ValueError(f"expected a 1-D array of categories, got shape {arr.shape}")
        return arr

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "max_categories": self.max_categories}

    def _coerce(self, values: Any) -> ObjectArray:
        return self._coerce_values(values)

    def _codes(self, values: ObjectArray) -> tuple[IntArray, FloatArray | None, int]:
        n, get = values.size, self._lookup.get
        try:
            codes = np.fromiter(map(get, values, repeat(-1)), dtype=np.intp, count=n)
        except TypeError:  # an unhashable value (list, dict) somewhere: look up one by one
            codes = np.fromiter((_get_or_invalid(get, v) for v in values), np.intp, n)
        unknown = np.flatnonzero(codes < 0)
        if unknown.size == 0:
            return codes, None, 0
        # Values not in the lookup: new strings are unseen; NaN is missing; the rest is invalid.
        sub = values[unknown]
        is_str = _is_str(sub)
        codes[unknown[is_str]] = len(self._categories)
        other = unknown[~is_str]
        missing = _missing_mask(values[other])
        codes[other[missing]] = len(self._categories) + 1
        codes[other[~missing]] = -1
        return codes, None, int(np.count_nonzero(~missing))

    def _valid_mask(self, values: ObjectArray) -> BoolArray | None:
        valid = _is_str(values)
        other = np.flatnonzero(~valid)
        if other.size == 0:
            return None
        valid[other] = _missing_mask(values[other])
        return valid

    def _clear_warmup(self) -> None:
        self._warm_counts: Counter[str] = Counter()
        self._warm_missing = 0

    def _warm_add(self, values: ObjectArray) -> None:
        is_str = _is_str(values)
        self._warm_counts.update(values[is_str].tolist())
        self._warm_missing += values.size - int(np.count_nonzero(is_str))

    def _warm_profile(self) -> dict[str, Any]:
        return _categorical_profile(self._warm_counts, 0, self._warm_missing, self.max_categories)

    def _warm_state(self) -> dict[str, Any]:
        return {
            "categories": list(self._warm_counts),
            "counts": list(self._warm_counts.values()),
            "missing": self._warm_missing,
        }

    def _warm_restore(self, doc: Mapping[str, Any]) -> int:
        categories, counts = doc["categories"], _counts("warmup.counts", doc["counts"])
        if len(categories) != counts.size or not all(isinstance(c, str) for c in categories):
            raise ValueError("warm-up needs as many string categories as counts")
        self._warm_counts = Counter(dict(zip(categories, counts.tolist(), strict=True)))
        self._warm_missing = _integer("warmup.missing", doc["missing"], 0)
        return int(counts.sum()) + self._warm_missing

    def _load_profile(self, profile: Mapping[str, Any]) -> IntArray:
        if _field(profile, "type") != "categorical":
            raise ValueError(
                f"CategoricalPSI needs a 'categorical' profile, got type {profile['type']!r}"
            )
        categories = list(_field(profile, "categories"))
        counts = _counts("counts", _field(profile, "counts"))
        if len(categories) != counts.size:
            raise ValueError(f"{len(categories)} categories but {counts.size} counts")
        if not all(isinstance(c, str) for c in categories) or len(set(categories)) != counts.size:
            raise ValueError("reference categories must be distinct strings")
        unseen = _integer("unseen", _field(profile, "unseen", 0), 0)
        missing = _integer("missing", _field(profile, "missing", 0), 0)
        if self.max_categories is not None and len(categories) > self.max_categories:
            by_name = dict(zip(categories, counts.tolist(), strict=True))
            folded = _categorical_profile(by_name, unseen, missing, self.max_categories)
            categories, unseen = folded["categories"], folded["unseen"]
            counts = np.array(folded["counts"], dtype=np.intp)
        self._categories = categories
        self._lookup = {c: i for i, c in enumerate(categories)}
        self._lookup[None] = len(categories) + 1
        return np.append(counts, [unseen, missing]).astype(np.intp)

    def _bin_labels(self) -> list[str]:
        return [*self._categories, UNSEEN, MISSING]

    @property
    def reference_profile(self) -> dict[str, Any] | None:
        """The reference as a plain profile (``None`` while warming up)."""
        if self._ref_counts is None:
            return None
        counts = self._ref_counts.tolist()
        return {
            "type": "categorical",
            "categories": list(self._categories),
            "counts": counts[:-2],
            "unseen": counts[-2],
            "missing": counts[-1],
        }
