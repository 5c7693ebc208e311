"""The error of one joined (prediction, label) pair, and the severity of a performance alert."""

from __future__ import annotations

import math

from streamdrift.config import LabelsConfig

__all__ = ["Value", "error_of", "performance_severity"]

Value = float | str


def error_of(prediction: Value, label: Value, cfg: LabelsConfig) -> float | None:
    """The error of one (prediction, label) pair, or None when they cannot be compared.

    >>> cfg = LabelsConfig()
    >>> error_of(0.9, 1.0, cfg), error_of(0.2, "yes", cfg), error_of("cat", "dog", cfg)
    (0.0, 1.0, 1.0)
    >>> error_of(3.5, 2.0, LabelsConfig(problem="regression")), error_of("a", 2.0, cfg)
    (1.5, 1.0)
    """
    if cfg.problem == "regression":
        if isinstance(prediction, str) or isinstance(label, str):
            return None
        return abs(prediction - label)
    if isinstance(prediction, str):
        if isinstance(label, str):
            return float(prediction != label)
        text = str(int(label)) if float(label).is_integer() else repr(label)
        return float(prediction != text)
    predicted = prediction >= cfg.score_threshold
    actual = label.lower() in cfg.positive_labels if isinstance(label, str) else label >= 0.5
    return float(predicted != actual)


def performance_severity(before: float, after: float, problem: str = "classification") -> str:
    """``critical`` when the error at least doubled (classification: or its rate rose by 0.1 or
    more), ``warning`` from 1.25x (or +0.05), ``info`` below. A regression error has units, so
    only the ratio counts there.

    >>> [performance_severity(0.1, 0.3), performance_severity(0.2, 0.26)]
    ['critical', 'warning']
    >>> performance_severity(0.2, 0.21), performance_severity(10.0, 10.2, "regression")
    ('info', 'info')
    """
    rise = after - before if problem == "classification" else 0.0
    ratio = after / before if before > 0 else math.inf
    if ratio >= 2.0 or rise >= 0.1:
        return "critical"
    if ratio >= 1.25 or rise >= 0.05:
        return "warning"
    return "info"
