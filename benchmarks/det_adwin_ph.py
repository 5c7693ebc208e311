"""ADWIN and Page-Hinkley throughput against river's detectors called once per value.

Ours run on batches of 10,000 values; river's on the same values, one ``update(x)`` per value in
a Python loop (how it is used), measured in the same run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from river import drift

from benchmarks._harness import measure
from streamdrift.detectors.adwin import ADWIN
from streamdrift.detectors.page_hinkley import PageHinkley

BATCH = 10_000


def _ours(make: Any, values: np.ndarray) -> Any:
    batches = [values[i : i + BATCH] for i in range(0, values.size, BATCH)]

    def run() -> None:
        detector = make()
        for batch in batches:
            detector.update(batch)

    return run


def _river(make: Any, values: np.ndarray) -> Any:
    xs = values.tolist()

    def run() -> None:
        detector = make()
        update = detector.update
        for x in xs:
            update(x)

    return run


def run(repeats: int = 5, quick: bool = False) -> list[dict[str, Any]]:
    """One row per (detector, case): our batch update vs river per call on the same data."""
    n = 100_000 if quick else 1_000_000
    stationary = np.random.default_rng(0).normal(size=n)
    cases = [
        (
            "adwin",
            "stationary",
            f"batch={BATCH}",
            ADWIN,
            drift.ADWIN,
            "river.drift.ADWIN",
            0.9,
            None,
        ),
        (
            "page_hinkley",
            "sigma mode (default), stationary",
            f"batch={BATCH}",
            PageHinkley,
            drift.PageHinkley,
            "river.drift.PageHinkley",
            None,
            20e6,
        ),
        (
            "page_hinkley",
            "river mode, stationary (fires every ~1,600)",
            f"batch={BATCH}",
            lambda: PageHinkley(mode="river"),
            drift.PageHinkley,
            "river.drift.PageHinkley",
            None,
            None,
        ),
    ]
    rows = []
    for detector, data, batch, ours, theirs, baseline_name, ratio, rate in cases:
        baseline = measure(
            f"{baseline_name} per call", n, _river(theirs, stationary), repeats=repeats
        )
        mine = measure(f"{detector} {batch}", n, _ours(ours, stationary), repeats=repeats)
        rows.append(
            {
                "detector": detector,
                "case": f"{batch}, {data}, {n:,} values",
                "ours": mine,
                "baseline": baseline,
                "baseline_name": f"{baseline_name} per call",
                "target_ratio": ratio,
                "target_rate": rate,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(quick=True, repeats=2):
        print(
            row["detector"],
            row["case"],
            f"ours {row['ours'].rate / 1e6:.2f} M/s",
            f"baseline {row['baseline'].rate / 1e6:.2f} M/s",
            f"ratio {row['ours'].rate / row['baseline'].rate:.2f}",
        )
