"""HalfSpaceTrees throughput on batches of 10,000 rows of 10 features, against river's per event.

    python -m benchmarks.det_isolation_forest [--quick]

Both get the same uniform [0, 1) rows, the same limits ([0, 1] per feature, river's default), the
same number of trees, height and window (250). Ours is timed on steady-state batches (a first
batch, untimed, builds the reference); river runs ``score_one`` then ``learn_one`` per event on
fewer events, because it is slow, after the same untimed warm-up.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from benchmarks._harness import Timing, fmt_rate, measure, print_table
from streamdrift.detectors.isolation_forest import HalfSpaceTrees

BATCH = 10_000
FEATURES = 10
WINDOW = 250
CASES = ((10, 8, 400e3), (25, 15, 100e3))  # (trees, height, target events/s)


def _row(repeats: int, quick: bool, n_trees: int, height: int, target: float) -> dict[str, Any]:
    from river import anomaly

    rng = np.random.default_rng(0)
    n_batches = 2 if quick else 10
    warm = rng.random((BATCH, FEATURES))
    batches = [rng.random((BATCH, FEATURES)) for _ in range(n_batches)]
    limits = [(0.0, 1.0)] * FEATURES
    holder: list[Any] = []

    def fresh() -> None:
        det = HalfSpaceTrees(n_trees, height, WINDOW, limits=limits, seed=0)
        det.update(warm)
        holder[:] = [det]

    def ours() -> None:
        det = holder[0]
        for x in batches:
            det.update(x)

    n_river = 1_000 if quick else 5_000
    names = [f"f{i}" for i in range(FEATURES)]
    river_warm = [dict(zip(names, r, strict=True)) for r in warm[: 2 * WINDOW].tolist()]
    river_rows = [dict(zip(names, r, strict=True)) for r in batches[0][:n_river].tolist()]

    def river_fresh() -> None:
        model = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=WINDOW, seed=0)
        for x in river_warm:
            model.learn_one(x)
        holder[:] = [model]

    def river_run() -> None:
        model = holder[0]
        for x in river_rows:
            model.score_one(x)
            model.learn_one(x)

    return {
        "detector": "isolation_forest",
        "case": f"{n_trees} trees x h{height}, {FEATURES} features",
        "ours": measure(
            "isolation_forest",
            n_batches * BATCH,
            ours,
            repeats=repeats,
            unit="events",
            setup=fresh,
        ),
        "baseline": measure(
            "river HalfSpaceTrees",
            n_river,
            river_run,
            repeats=max(1, repeats // 2),
            unit="events",
            setup=river_fresh,
        ),
        "baseline_name": "river.anomaly.HalfSpaceTrees per event",
        "target_ratio": None,
        "target_rate": target,
    }


def run(repeats: int = 5, quick: bool = False) -> list[dict[str, Any]]:
    """Benchmark rows: ours and river, measured on the same data in this run."""
    return [_row(repeats, quick, t, h, target) for t, h, target in CASES]


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
                f"{r['ours'].rate / r['baseline'].rate:.1f}x",
                fmt_rate(r["target_rate"]),
            ]
            for r in result
        ],
    )
