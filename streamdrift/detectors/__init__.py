"""Incremental drift and outlier detectors with a batch API and explicit state.

Every detector follows the contract in :mod:`streamdrift.detectors.base`.
"""

from streamdrift.detectors.base import Detector, Signal, UpdateResult

__all__ = ["Detector", "Signal", "UpdateResult"]
