"""``streamdrift demo``: the summary matches the injected truth, the plot, producing into Kafka.

The demo is also a quality check of the defaults: on its stream (three drifts, 0.2% outliers,
six malformed lines) every drift must be detected within ``MAX_DELAY`` events and at most
``MAX_FALSE_ALARMS`` alerts may fall on features that did not drift.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamdrift.demo import MAX_DELAY, MAX_FALSE_ALARMS

REPO = Path(__file__).resolve().parents[1]


def demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamdrift", "demo", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
    )


def test_demo_summary_matches_the_injected_truth_within_the_tolerances() -> None:
    started = time.monotonic()
    result = demo("--json")
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert wall < 60, f"the demo took {wall:.1f} s"  # measured here: ~2 s
    truth = {d["feature"]: d["position"] for d in doc["truth"]["drifts"]}
    assert truth == {"amount": 12_000, "__prediction__": 12_000, "country": 20_000,
                     "age": 28_000}
    for drift in doc["drifts"]:
        assert drift["detected"], f"{drift['feature']} missed"
        assert drift["first_delay"] <= MAX_DELAY, drift
    # The fast detectors react to the sudden shifts within a few hundred events.
    first = {d["feature"]: d["first_delay"] for d in doc["drifts"]}
    assert first["amount"] <= 200 and first["__prediction__"] <= 300, first
    # PSI sees the categorical shift at the first full window after it.
    assert first["country"] < 1000, first
    assert doc["missed"] == []
    assert doc["false_alarms"] <= MAX_FALSE_ALARMS
    # Every drift alert is classified; detections are at or after the true position.
    verdicts = {a["verdict"] for a in doc["alerts"]}
    assert verdicts <= {"detected", "repeat", "late", "false alarm"}
    for a in doc["alerts"]:
        if a["verdict"] == "detected":
            assert 0 <= a["delay"] <= MAX_DELAY
    # Outliers: the forest flags most injected ones (contamination 1% -> precision is low).
    out = doc["outliers"]
    assert out["injected"] == 80 and out["recall"] >= 0.8, out
    assert doc["dead_letters"] == doc["expected_dead_letters"]
    assert sum(doc["dead_letters"].values()) == 6
    assert doc["lines"] == 40_006 and doc["events_per_s"] > 5_000
    assert doc["passed"] is True


def test_demo_text_summary_names_each_drift_and_the_tolerances() -> None:
    result = demo("--events", "20000", "--seed", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in ("amount: mean +1 sd", "country: US share", "age: mean +1 sd",
                   "missed drifts: none", "false alarms:", "outliers:",
                   "dead letters: 6 lines rejected, the 6 malformed lines injected", "throughput:"):
        assert needle in out, f"{needle!r} not in:\n{out}"
    assert "events/s" in result.stderr  # progress went to stderr
    assert "Traceback" not in result.stderr


def test_demo_fails_when_a_tolerance_is_not_met(tmp_path: Path) -> None:
    # A config whose PSI never fires and without ADWIN/Page-Hinkley: the categorical drift
    # is then missed, and the demo says so with exit code 1.
    config = tmp_path / "weak.yaml"
    config.write_text(
        "kafka: {input_topics: [model-events]}\n"
        "monitors:\n"
        "  - numeric: {adwin: false, page_hinkley: false, psi: {threshold: 1000.0}}\n"
        "    categorical: {psi: {threshold: 1000.0}}\n"
    )
    result = demo("--config", str(config), "--events", "10000", "--json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc["missed"]) == {"amount", "__prediction__", "country", "age"}
    assert doc["passed"] is False


@pytest.mark.slow
def test_demo_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra: pip install 'streamdrift[plot]'")
    png = tmp_path / "demo.png"
    result = demo("--events", "20000", "--plot", str(png), "--quiet")
    assert result.returncode == 0, result.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height >= 1000, (width, height)
    assert len(data) > 50_000  # a drawn figure, not an empty canvas


def test_demo_plot_without_matplotlib_is_one_clear_line(tmp_path: Path) -> None:
    # Hide matplotlib from the child interpreter.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from streamdrift.cli import main\n"
        f"sys.exit(main(['demo', '--plot', {str(tmp_path / 'x.png')!r}, '--quiet']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "streamdrift: error: --plot needs matplotlib, which is not installed; install it with: "
        "pip install 'streamdrift[plot]'"
    ]


@pytest.mark.slow
@pytest.mark.kafka
def test_demo_kafka_produces_n_events_at_about_the_rate(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from tests.service_harness import consume_all

    topic = topic_factory(partitions=2)
    n, rate = 1500, 500.0
    result = demo("--kafka", kafka_bootstrap, "--topic", topic, "--rate", str(rate),
                  "--events", str(n), "--models", "fraud-v3,credit-v1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["produced"] == n
    # 1,500 events at 500/s take ~3 s; paced, not a burst, and not much slower than asked.
    assert 2.7 <= summary["seconds"] <= 6.0, summary
    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == n
    events = [json.loads(r.value) for r in records]
    assert {r.key for r in records} == {b"fraud-v3", b"credit-v1"}
    assert all(r.key == e["model_id"].encode() for r, e in zip(records, events, strict=True))
    assert len({e["event_id"] for e in events}) == n
    assert set(events[0]["features"]) == {"amount", "age", "tx_per_day", "balance", "session_s",
                                          "country", "device"}


def test_demo_kafka_errors_are_one_line_with_the_fix() -> None:
    result = demo("--kafka", "127.0.0.1:9", "--events", "10")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "streamdrift: error: --kafka needs --topic: the topic to produce the stream to"
    )
