"""Incremental drift and outlier detectors with a batch API and explicit, versioned state.

Every detector follows the contract in :mod:`streamdrift.detectors.base`: settings in the
constructor, ``update(values) -> UpdateResult`` on numpy arrays, ``to_state()``/``from_state()``
as plain data (never pickle), NaN/inf counted and never fed into a statistic.

Configuration names (``monitors`` in the YAML file) map to classes as follows.
"""

from __future__ import annotations

from typing import Any

from streamdrift.detectors.adwin import ADWIN
from streamdrift.detectors.base import Detector, Signal, UpdateResult
from streamdrift.detectors.ddm import DDM
from streamdrift.detectors.isolation_forest import HalfSpaceTrees
from streamdrift.detectors.page_hinkley import PageHinkley
from streamdrift.detectors.psi import PSI, CategoricalPSI
from streamdrift.errors import StateError

__all__ = [
    "ADWIN",
    "CATEGORICAL",
    "DDM",
    "ERROR",
    "KINDS",
    "MULTIVARIATE",
    "NUMERIC",
    "PSI",
    "CategoricalPSI",
    "Detector",
    "HalfSpaceTrees",
    "PageHinkley",
    "Signal",
    "UpdateResult",
    "detector_from_state",
]

NUMERIC: dict[str, type[Any]] = {"adwin": ADWIN, "page_hinkley": PageHinkley, "psi": PSI}
"""Config name -> detector class for numeric features (and a numeric prediction)."""
CATEGORICAL: dict[str, type[Any]] = {"psi": CategoricalPSI}
"""Config name -> detector class for categorical features (and a class prediction)."""
MULTIVARIATE: dict[str, type[Any]] = {"isolation_forest": HalfSpaceTrees}
"""Config name -> detector class for a model's numeric feature vector."""

ERROR: dict[str, type[Any]] = {"adwin": ADWIN, "page_hinkley": PageHinkley, "ddm": DDM}
"""Config name -> detector class for a model's error stream (``labels.detectors``)."""

KINDS: dict[str, type[Any]] = {
    cls.kind: cls for cls in (ADWIN, PageHinkley, PSI, CategoricalPSI, HalfSpaceTrees, DDM)
}
"""State ``kind`` -> class, to restore any detector from its state document."""


def detector_from_state(state: Any) -> Any:
    """Restore a detector of whatever kind ``state`` says it is."""
    kind = state.get("kind") if isinstance(state, dict) else None
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise StateError(
            f"unknown detector kind {kind!r} in state (known: {', '.join(sorted(KINDS))})"
        )
    return cls.from_state(state)
