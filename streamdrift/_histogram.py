"""A histogram that takes a whole array of observations in one call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = ["BatchHistogram"]

# floatToGoString formats `le` exactly as Histogram does; it is not annotated upstream.
_go_float = cast(Callable[[float], str], floatToGoString)


class BatchHistogram:
    """A label-less histogram that takes a whole array of observations in one call.

    ``prometheus_client.Histogram`` has no batch observe, and ``observe()`` per event costs
    ~1 µs under a lock: too slow at 100k events/s. This collector buckets an array with one
    ``searchsorted`` and adds the counts and the sum at once; its exposition is the same as a
    ``Histogram`` with the same buckets fed value by value (``le`` is "value ≤ bound").

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> h = BatchHistogram("lag_seconds", "Lag.", (0.1, 1.0), registry)
    >>> h.observe_many(np.array([0.05, 0.1, 0.5, 7.0]))
    >>> [registry.get_sample_value("lag_seconds_bucket", {"le": b}) for b in ("0.1", "1.0", "+Inf")]
    [2.0, 3.0, 4.0]
    >>> registry.get_sample_value("lag_seconds_sum")
    7.65
    """

    def __init__(
        self, name: str, documentation: str, buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self._name = name
        self._documentation = documentation
        self._bounds = np.array(bounds)
        self._labels = [_go_float(b) for b in bounds]
        self._counts = np.zeros(len(bounds), dtype=np.int64)
        self._sum = 0.0
        self._created = time.time()
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many(np.array([value], dtype=np.float64))

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        """Add every value of ``values`` (no NaN: filter before; it would poison the sum)."""
        if values.size == 0:
            return
        index = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(index, minlength=self._bounds.size)
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        family = HistogramMetricFamily(
            self._name,
            self._documentation,
            buckets=[(le, float(c)) for le, c in zip(self._labels, cumulative, strict=True)],
            sum_value=total,
        )
        family.add_sample(f"{self._name}_created", {}, self._created)
        yield family
