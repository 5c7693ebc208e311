"""The benchmarks cannot rot: their quick modes run and print the documented JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_scaling_quick_json_shape(redis_url: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_scaling",
            "--quick",
            "--json",
            "--redis",
            redis_url,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["benchmark"] == "scaling" and doc["quick"] is True
    assert {"cpu", "cores", "python", "versions"} <= set(doc["machine"])
    results = doc["results"]
    assert {r["axis"] for r in results} == {"footprint", "features", "models"}
    (footprint,) = [r for r in results if r["axis"] == "footprint"]
    assert set(footprint["kinds"]) == {"adwin", "page_hinkley", "psi", "isolation_forest"}
    for kind in footprint["kinds"].values():
        assert kind["instances"] > 0 and kind["state_bytes"] > 0
    results = [r for r in results if r["axis"] != "footprint"]
    for r in results:
        assert 0 < r["us_per_event_min"] <= r["us_per_event"] <= r["us_per_event_max"]
        assert r["detectors"] > 0 and r["memory"] and r["peak_rss"] > 0
        for point in r["memory"]:
            assert point["events_per_model"] in r["stages"]
            assert point["per_model"] == point["rss_delta"] / r["models"]
    # More models hold more detectors: the bank really built them all.
    models = sorted((r for r in results if r["axis"] == "models"), key=lambda r: r["models"])
    assert models[-1]["detectors"] == models[0]["detectors"] * models[-1]["models"]
    ckpt = models[-1]["checkpoint"]
    assert ckpt["state_bytes"] > 0 and ckpt["to_state_s"] > 0 and ckpt["from_state_s"] > 0
    assert ckpt["redis_save_s"] > 0
    assert ckpt["checkpoint_s"] == ckpt["to_state_s"] + ckpt["redis_save_s"]
    assert doc["summary"]["largest_models"] == models[-1]["models"]
