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


def test_bench_e2e_quick_json_both_clients(kafka_bootstrap: str, redis_url: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_e2e",
            "--json",
            "--events",
            "6000",
            "--baseline-events",
            "300",
            "--bootstrap",
            kafka_bootstrap,
            "--redis",
            redis_url,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["benchmark"] == "e2e" and doc["events"] == 6000
    assert set(doc["ours"]) == {"kafka-python", "confluent-kafka"}
    alerts = {run["alerts"] for run in doc["ours"].values()}
    assert len(alerts) == 1  # both clients: the same events, the same alerts
    for library, run in doc["ours"].items():
        assert run["library"] == library and run["events"] == 6000
        assert run["checkpoint_seconds"]["count"] >= 1
        assert 0 < run["checkpoint_seconds"]["p50"] <= run["checkpoint_seconds"]["p99"]
        assert len(run["checkpoint_bytes"]) == doc["partitions"]
        ratios = doc["ratios"][library]
        assert ratios["wall_baseline"] > 0  # (steady needs more events than one checkpoint)
    for floor in ("floor", "floor_no_crc", "floor_confluent"):
        assert doc[floor]["events"] == 6000 and doc[floor]["rate"] > 0
    assert doc["baseline"]["events"] == 300 and doc["orjson_us_per_event"] > 0
