"""PSI and CategoricalPSI throughput on batches of 10,000 values, against plain baselines.

    python -m benchmarks.det_psi [--quick]

Numeric baseline: what one would write by hand — per 10k batch, ``np.histogram`` against the
same fixed edges and the PSI formula (one PSI per batch; ours evaluates ten 1,000-value windows
per batch, tracks missing values and the open window). Categorical baseline: pure Python, a
``collections.Counter`` per 1,000-value window and the PSI formula over the reference categories.
"""

from __future__ import annotations

import math
import random
import sys
from collections import Counter
from typing import Any

import numpy as np

from benchmarks._harness import Timing, fmt_rate, measure, print_table
from streamdrift.detectors.psi import PSI, CategoricalPSI

BATCH = 10_000
WINDOW = 1_000
EPS = 0.5
TARGET_RATE = 30e6  # numeric values/s on 10k batches


def _numeric_batches(n_batches: int, missing: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(n_batches):
        x = rng.normal(0.0, 1.0, BATCH)
        if missing:
            x[rng.random(BATCH) < missing] = np.nan
        batches.append(x)
    return batches


def _numpy_psi(batches: list[np.ndarray], edges: np.ndarray, ref: np.ndarray) -> None:
    bins = np.concatenate(([-np.inf], edges, [np.inf]))
    p = (ref + EPS) / (ref.sum() + EPS * ref.size)
    for x in batches:
        counts, _ = np.histogram(x, bins=bins)
        q = (counts + EPS) / (counts.sum() + EPS * counts.size)
        float(np.sum((q - p) * np.log(q / p)))


def _numeric_row(repeats: int, n_batches: int, case: str, missing: float) -> dict[str, Any]:
    profile = PSI.profile_from_values(np.random.default_rng(1).normal(0.0, 1.0, 5_000))
    edges, ref = np.array(profile["edges"]), np.array(profile["counts"])
    batches = _numeric_batches(n_batches, missing)
    holder: list[PSI] = []

    def fresh() -> None:
        holder[:] = [PSI(window=WINDOW, reference=profile)]

    def ours() -> None:
        det = holder[0]
        for x in batches:
            det.update(x)

    units = n_batches * BATCH
    return {
        "detector": "psi",
        "case": case,
        "ours": measure("psi", units, ours, repeats=repeats, setup=fresh),
        "baseline": measure(
            "numpy histogram PSI",
            units,
            lambda: _numpy_psi(batches, edges, ref),
            repeats=repeats,
        ),
        "baseline_name": "numpy histogram + PSI per batch",
        "target_ratio": None,
        "target_rate": TARGET_RATE,
    }


def _counter_psi(batches: list[np.ndarray], categories: list[str], ref: list[int]) -> None:
    n_ref, size = sum(ref), len(categories) + 1
    p = [(c + EPS) / (n_ref + EPS * size) for c in [*ref, 0]]
    known = set(categories)
    for batch in batches:
        values = batch.tolist()
        for start in range(0, len(values), WINDOW):
            counts = Counter(values[start : start + WINDOW])
            unseen = sum(c for k, c in counts.items() if k not in known)
            window = [counts.get(k, 0) for k in categories] + [unseen]
            n = sum(window)
            q = [(c + EPS) / (n + EPS * size) for c in window]
            sum((qi - pi) * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))


def _categorical_rows(repeats: int, n_batches: int) -> list[dict[str, Any]]:
    names = [f"cat_{i:02d}" for i in range(20)]
    weights = [1.0 / (i + 1) for i in range(20)]
    rng = random.Random(0)
    profile = CategoricalPSI.profile_from_values(rng.choices(names, weights, k=5_000))
    batches = []
    for _ in range(n_batches):
        batch = np.empty(BATCH, dtype=object)
        batch[:] = rng.choices([*names, None], [*weights, 0.05], k=BATCH)
        batches.append(batch)
    holder: list[CategoricalPSI] = []

    def fresh() -> None:
        holder[:] = [CategoricalPSI(window=WINDOW, reference=profile)]

    def ours() -> None:
        det = holder[0]
        for batch in batches:
            det.update(batch)

    units = n_batches * BATCH
    return [
        {
            "detector": "psi_categorical",
            "case": "batch_10k_20_categories",
            "ours": measure("psi_categorical", units, ours, repeats=repeats, setup=fresh),
            "baseline": measure(
                "Counter PSI",
                units,
                lambda: _counter_psi(batches, profile["categories"], profile["counts"]),
                repeats=repeats,
            ),
            "baseline_name": "python Counter + PSI per window",
            "target_ratio": None,
            "target_rate": None,
        }
    ]


def run(repeats: int = 5, quick: bool = False) -> list[dict[str, Any]]:
    """Benchmark rows: ours and the baseline, measured on the same data in this run."""
    n_batches = 10 if quick else 100
    return [
        _numeric_row(repeats, n_batches, "batch_10k", 0.0),
        _numeric_row(repeats, n_batches, "batch_10k_1pct_nan", 0.01),
        *_categorical_rows(repeats, n_batches // 2),
    ]


def _rate(t: Timing) -> str:
    return f"{fmt_rate(t.rate)} ({fmt_rate(t.rate_min)}-{fmt_rate(t.rate_max)})"


if __name__ == "__main__":
    result = run(repeats=2 if "--quick" in sys.argv else 5, quick="--quick" in sys.argv)
    print_table(
        ["detector", "case", "ours", "baseline", "ratio", "target"],
        [
            [
                r["detector"],
                r["case"],
                _rate(r["ours"]),
                f"{r['baseline_name']}: {_rate(r['baseline'])}",
                f"{r['ours'].rate / r['baseline'].rate:.2f}x",
                fmt_rate(r["target_rate"]) if r["target_rate"] else "-",
            ]
            for r in result
        ],
    )
