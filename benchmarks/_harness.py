"""Shared benchmark plumbing: repeated timing, machine description, table and JSON output.

Every benchmark measures its baseline in the same run, so the figure that matters is the ratio,
which survives a noisy machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any


@dataclass
class Timing:
    """Throughput of one case over repeated runs (median and spread)."""

    name: str
    units: int  # values or events processed per run
    unit: str  # "values" or "events"
    seconds: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.units / self.median_s

    @property
    def rate_min(self) -> float:
        return self.units / max(self.seconds)

    @property
    def rate_max(self) -> float:
        return self.units / min(self.seconds)

    @property
    def us_per_unit(self) -> float:
        return self.median_s / self.units * 1e6

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            median_s=self.median_s,
            rate=self.rate,
            rate_min=self.rate_min,
            rate_max=self.rate_max,
            us_per_unit=self.us_per_unit,
        )
        return d


def measure(
    name: str,
    units: int,
    run: Callable[[], object],
    *,
    repeats: int = 5,
    warmup: int = 1,
    unit: str = "values",
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``run`` ``repeats`` times after ``warmup`` untimed runs (``setup`` runs untimed)."""
    t = Timing(name=name, units=units, unit=unit)
    for i in range(warmup + repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            t.seconds.append(elapsed)
    return t


def machine() -> dict[str, Any]:
    """Describe the machine and the library versions the figures were taken with."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for pkg in ("streamdrift", "numpy", "river", "orjson", "kafka-python", "redis", "pydantic"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
    }


def fmt_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k/s"
    return f"{rate:.0f} /s"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a GitHub-flavoured markdown table (pasteable into the README)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))


def emit_json(payload: dict[str, Any]) -> None:
    payload = {"machine": machine(), **payload}
    print(json.dumps(payload, indent=2, default=str))
