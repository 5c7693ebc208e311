"""Detector hot-path throughput against the libraries people would use instead, in one run.

    python -m benchmarks.bench_detectors            # table (markdown)
    python -m benchmarks.bench_detectors --json     # machine-readable
    python -m benchmarks.bench_detectors --quick    # fewer values and repeats (smoke)

Each row: our detector on batches of 10,000 values, the baseline on the same data measured in the
same process right before or after, and the ratio. Medians over repeated runs; min-max spread.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from benchmarks._harness import emit_json, fmt_rate, machine, print_table

MODULES = ("det_adwin_ph", "det_psi", "det_isolation_forest")


def collect(repeats: int, quick: bool, only: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in MODULES:
        if only and only not in name:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        rows.extend(module.run(repeats=repeats, quick=quick))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=None, help="run only modules whose name contains this")
    args = parser.parse_args(argv)
    rows = collect(args.repeats if not args.quick else 2, args.quick, args.only)
    if args.json:
        emit_json(
            {
                "benchmark": "detectors",
                "rows": [
                    {
                        **{k: v for k, v in r.items() if k not in ("ours", "baseline")},
                        "ours": r["ours"].as_dict(),
                        "baseline": r["baseline"].as_dict(),
                        "ratio": r["ours"].rate / r["baseline"].rate,
                    }
                    for r in rows
                ],
            }
        )
        return 0
    m = machine()
    print(
        f"{m['cpu']} ({m['cores']} cores), Python {m['python']}, "
        f"numpy {m['versions']['numpy']}, river {m['versions']['river']}\n"
    )
    table = []
    for r in rows:
        ours, base = r["ours"], r["baseline"]
        target = []
        if r.get("target_rate"):
            target.append(f">= {fmt_rate(r['target_rate'])}")
        if r.get("target_ratio"):
            target.append(f">= {r['target_ratio']}x")
        table.append(
            [
                r["detector"],
                r["case"],
                f"{fmt_rate(ours.rate)} ({fmt_rate(ours.rate_min)}-{fmt_rate(ours.rate_max)})",
                f"{r['baseline_name']}: {fmt_rate(base.rate)}",
                f"{ours.rate / base.rate:.1f}x",
                ", ".join(target) or "-",
            ]
        )
    print_table(
        ["detector", "case", "ours (spread)", "baseline, same run", "ratio", "target"], table
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
