"""Metrics: every recording method against a fresh registry, and the HTTP endpoints."""

from __future__ import annotations

import math
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streamdrift._histogram import BatchHistogram
from streamdrift.errors import ConfigError
from streamdrift.metrics import LATENCY_BUCKETS, Metrics, MetricsServer


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"streamdrift_{name}", labels)


def test_record_batch_counts_by_topic_and_reason(metrics: Metrics, registry: CollectorRegistry):
    metrics.record_batch("events", 10, 7, {"invalid_json": 2, "oversized": 1}, 0.003)
    metrics.record_batch("events", 5, 5, {}, 0.2)
    metrics.record_batch("other", 1, 0, {"made_up_reason": 1, "empty": 0}, 0.001)

    assert value(registry, "events_consumed_total", topic="events") == 15
    assert value(registry, "events_decoded_total", topic="events") == 12
    assert value(registry, "events_invalid_total", topic="events", reason="invalid_json") == 2
    assert value(registry, "events_invalid_total", topic="events", reason="oversized") == 1
    # Every known reason exists at 0 from the first batch; unknown ones fold into "other".
    assert value(registry, "events_invalid_total", topic="events", reason="too_many_models") == 0
    assert value(registry, "events_invalid_total", topic="other", reason="other") == 1
    assert value(registry, "events_invalid_total", topic="other", reason="made_up_reason") is None
    assert value(registry, "batch_seconds_count") == 3
    assert value(registry, "batch_seconds_sum") == pytest.approx(0.204)
    assert value(registry, "batch_seconds_bucket", le="0.005") == 2
    assert value(registry, "batch_events_sum") == 16
    assert value(registry, "batch_events_bucket", le="1.0") == 1
    assert value(registry, "batch_events_bucket", le="10.0") == 3


def test_dead_letters_by_reason(metrics: Metrics, registry: CollectorRegistry):
    assert value(registry, "dead_letters_total", reason="wrong_type") == 0
    metrics.record_dead_letter("wrong_type")
    metrics.record_dead_letter("wrong_type")
    metrics.record_dead_letter("event-id-1234")
    assert value(registry, "dead_letters_total", reason="wrong_type") == 2
    assert value(registry, "dead_letters_total", reason="other") == 1
    assert value(registry, "dead_letters_total", reason="event-id-1234") is None


def test_alert_counts_and_last_timestamp(metrics: Metrics, registry: CollectorRegistry):
    metrics.record_alert("drift", "adwin", "m1", "age", 1_700_000_000.0)
    metrics.record_alert("drift", "adwin", "m1", "age", 1_700_000_060.0)
    metrics.record_alert("outlier", "isolation_forest", "m1", "", 1_700_000_010.0)
    key = {"model": "m1", "feature": "age", "detector": "adwin"}
    assert value(registry, "alerts_total", type="drift", **key) == 2
    assert (
        value(
            registry,
            "alerts_total",
            type="outlier",
            detector="isolation_forest",
            model="m1",
            feature="",
        )
        == 1
    )
    assert value(registry, "last_alert_timestamp_seconds", **key) == 1_700_000_060.0


def test_lag_owned_ready(metrics: Metrics, registry: CollectorRegistry):
    metrics.set_lag("events", 3, 120)
    metrics.set_lag("events", 3, 40)
    metrics.set_lag("events", 4, 0)
    metrics.set_owned(2)
    metrics.set_ready(True)
    assert value(registry, "consumer_lag", topic="events", partition="3") == 40
    assert value(registry, "consumer_lag", topic="events", partition="4") == 0
    assert value(registry, "owned_partitions") == 2
    assert value(registry, "ready") == 1
    metrics.set_ready(False)
    metrics.forget_partition("events", 3)
    metrics.forget_partition("events", 99)  # never set: no error
    assert value(registry, "ready") == 0
    assert value(registry, "consumer_lag", topic="events", partition="3") is None


def test_checkpoints(metrics: Metrics, registry: CollectorRegistry):
    metrics.record_checkpoint(0.02, 4096, "ok")
    metrics.record_checkpoint(0.03, 2048, "fenced")
    metrics.record_checkpoint(0.0, 0, "failed")
    assert value(registry, "checkpoints_total", result="ok") == 1
    assert value(registry, "checkpoints_total", result="fenced") == 1
    assert value(registry, "checkpoints_total", result="failed") == 1
    assert value(registry, "checkpoint_seconds_count") == 2  # a failed attempt has no duration
    assert value(registry, "checkpoint_seconds_sum") == pytest.approx(0.05)
    assert value(registry, "checkpoint_bytes") == 2048


def test_io_errors_by_op(metrics: Metrics, registry: CollectorRegistry):
    for op in ("load", "save", "fence", "produce", "commit", "poll"):
        assert value(registry, "redis_errors_total", op=op) == 0
        assert value(registry, "kafka_errors_total", op=op) == 0
    metrics.redis_error("save")
    metrics.redis_error("save")
    metrics.kafka_error("commit")
    metrics.kafka_error("bogus")
    assert value(registry, "redis_errors_total", op="save") == 2
    assert value(registry, "kafka_errors_total", op="commit") == 1
    assert value(registry, "kafka_errors_total", op="other") == 1


def test_detector_gauges_mapping(metrics: Metrics, registry: CollectorRegistry):
    key = {"model": "m1", "feature": "age", "detector": "adwin"}
    metrics.update_detector_gauges(
        "m1",
        "age",
        "adwin",
        {
            "statistic": 0.4,
            "threshold": 0.9,
            "width": 512.0,
            "mean": 3.5,
            "reference_age": 1000.0,
            "unknown_key": 7.0,
        },
    )
    metrics.update_detector_gauges("m1", "age", "adwin", {"statistic": 0.6})
    assert value(registry, "detector_statistic", **key) == 0.6
    assert value(registry, "detector_threshold", **key) == 0.9
    assert value(registry, "adwin_width", **key) == 512
    assert value(registry, "adwin_mean", **key) == 3.5
    assert value(registry, "reference_age_events", **key) == 1000
    assert b"unknown_key" not in generate_latest(registry)

    metrics.update_detector_gauges(
        "m1",
        "",
        "isolation_forest",
        {"score_p50": 0.45, "score_p99": 0.71, "outlier_rate": 0.02, "statistic": math.nan},
    )
    assert value(registry, "isolation_forest_score", model="m1", quantile="0.5") == 0.45
    assert value(registry, "isolation_forest_score", model="m1", quantile="0.99") == 0.71
    assert value(registry, "isolation_forest_outlier_rate", model="m1") == 0.02
    # NaN is kept as NaN ("not defined yet"), not skipped.
    stat = value(
        registry, "detector_statistic", model="m1", feature="", detector="isolation_forest"
    )
    assert stat is not None and math.isnan(stat)


def test_max_series_bounds_label_sets(registry: CollectorRegistry):
    metrics = Metrics(registry, max_series=2)
    metrics.update_detector_gauges("m1", "a", "psi", {"statistic": 1.0})
    metrics.update_detector_gauges("m1", "b", "psi", {"statistic": 2.0})
    metrics.update_detector_gauges("m1", "c", "psi", {"statistic": 3.0})
    metrics.update_detector_gauges("m1", "c", "psi", {"statistic": 3.0})
    metrics.record_alert("drift", "psi", "m1", "c", 1.0)
    metrics.update_detector_gauges("m1", "a", "psi", {"statistic": 4.0})  # admitted: updates
    assert metrics.n_series == 2
    assert value(registry, "metric_series_dropped_total") == 3
    assert value(registry, "detector_statistic", model="m1", feature="c", detector="psi") is None
    assert (
        value(registry, "alerts_total", type="drift", detector="psi", model="m1", feature="c")
        is None
    )
    assert value(registry, "detector_statistic", model="m1", feature="a", detector="psi") == 4


def test_forget_model_removes_series_and_frees_slots(registry: CollectorRegistry):
    metrics = Metrics(registry, max_series=2)
    metrics.update_detector_gauges("m1", "a", "adwin", {"statistic": 1.0, "width": 3.0})
    metrics.update_detector_gauges(
        "m1", "", "isolation_forest", {"score_p50": 0.5, "outlier_rate": 0.1}
    )
    metrics.record_alert("drift", "adwin", "m1", "a", 5.0)
    metrics.forget_model("m1")
    metrics.forget_model("never-seen")
    assert metrics.n_series == 0
    text = generate_latest(registry).decode()
    assert 'model="m1"' not in text
    metrics.update_detector_gauges("m2", "a", "adwin", {"statistic": 2.0})
    assert value(registry, "detector_statistic", model="m2", feature="a", detector="adwin") == 2
    assert value(registry, "metric_series_dropped_total") == 0


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_batch_histogram_equals_per_value_observe():
    rng = np.random.default_rng(7)
    # Values on the bucket bounds check "le" (value <= bound) exactly.
    values = np.concatenate([rng.exponential(30.0, 5000), np.array(LATENCY_BUCKETS), [1e6]])
    ours, ref = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lat_seconds", "Latency.", LATENCY_BUCKETS, ours)
    reference = Histogram("lat_seconds", "Latency.", registry=ref, buckets=LATENCY_BUCKETS)
    batch.observe_many(values[:3000])
    batch.observe_many(values[3000:])
    batch.observe_many(np.array([], dtype=np.float64))
    for v in values:
        reference.observe(float(v))

    got, want = _samples(ours), _samples(ref)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12), k

    def text(r: CollectorRegistry) -> list[str]:
        lines = generate_latest(r).decode().splitlines()
        return [line for line in lines if "_sum" not in line and "_created " not in line]

    assert text(ours) == text(ref)


def test_observe_latency_drops_nan_and_clips_future(metrics: Metrics, registry: CollectorRegistry):
    now = 1_000.0
    times = np.array([now - 0.005, now - 2.0, np.nan, now + 3.0, now - 7200.0, -np.inf])
    metrics.observe_latency(now, times)
    assert value(registry, "event_latency_seconds_count") == 4
    assert value(registry, "event_latency_seconds_sum") == pytest.approx(0.005 + 2.0 + 7200.0)
    assert value(registry, "event_latency_seconds_bucket", le="0.01") == 2  # 0.005 and clipped
    assert value(registry, "event_latency_seconds_bucket", le="2.5") == 3
    assert value(registry, "event_latency_seconds_bucket", le="3600.0") == 3
    assert value(registry, "event_latency_seconds_bucket", le="+Inf") == 4
    assert value(registry, "event_latency_seconds_created") is not None


def test_process_collectors_and_help_texts(metrics: Metrics, registry: CollectorRegistry):
    text = generate_latest(registry).decode()
    assert "python_info" in text
    assert "# HELP streamdrift_alerts_total Alerts raised" in text
    assert value(registry, "process_cpu_seconds_total") is not None  # Linux /proc
    for family in registry.collect():
        assert family.documentation, family.name
        if family.type == "counter" and family.name.startswith("streamdrift_"):
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)


def test_two_instances_on_separate_registries():
    a, b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    a.set_owned(3)
    assert b.registry.get_sample_value("streamdrift_owned_partitions") == 0


def test_invalid_max_series():
    with pytest.raises(ValueError, match="max_series"):
        Metrics(CollectorRegistry(), max_series=0)


# -- HTTP ------------------------------------------------------------------------------------


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers["Content-Type"]


def test_http_endpoints(metrics: Metrics):
    state = {"alive": True, "ready": (False, "starting: no partitions assigned yet")}

    def ready() -> tuple[bool, str]:
        return state["ready"]  # type: ignore[return-value]

    metrics.set_owned(4)
    with MetricsServer(metrics, "127.0.0.1", 0, lambda: bool(state["alive"]), ready) as server:
        assert server.port > 0
        code, body, ctype = get(server.port, "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        assert "streamdrift_owned_partitions 4.0" in body
        assert get(server.port, "/healthz")[:2] == (200, "ok")
        assert get(server.port, "/readyz")[:2] == (503, "starting: no partitions assigned yet")
        state["ready"] = (True, "ready")
        state["alive"] = False
        assert get(server.port, "/readyz")[:2] == (200, "ready")
        assert get(server.port, "/healthz")[0] == 503
        assert get(server.port, "/nope")[0] == 404


def test_http_probe_that_raises_answers_503(metrics: Metrics):
    def broken() -> tuple[bool, str]:
        raise RuntimeError("redis client gone")

    with MetricsServer(metrics, "127.0.0.1", 0, lambda: True, broken) as server:
        code, body, _ = get(server.port, "/readyz")
        assert code == 503 and "redis client gone" in body


def test_http_stop_releases_port_and_threads(metrics: Metrics):
    server = MetricsServer(metrics, "127.0.0.1", 0, lambda: True, lambda: (True, "ready"))
    server.start()
    port = server.port
    assert get(port, "/healthz")[0] == 200
    server.stop()
    server.stop()  # idempotent
    # The serving thread is gone (request threads are daemons that end on their own).
    assert "metrics-http" not in {t.name for t in threading.enumerate()}
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_http_port_in_use_is_a_config_error(metrics: Metrics):
    with (
        MetricsServer(metrics, "127.0.0.1", 0, lambda: True, lambda: (True, "")) as server,
        pytest.raises(ConfigError, match=r"metrics\.port"),
    ):
        MetricsServer(metrics, "127.0.0.1", server.port, lambda: True, lambda: (True, ""))


def test_alert_counter_exists_at_zero_once_a_stream_is_seen() -> None:
    from prometheus_client import CollectorRegistry

    from streamdrift.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.update_detector_gauges("m", "amount", "psi", {"statistic": 0.01})
    metrics.update_detector_gauges("m", "", "isolation_forest", {"outlier_rate": 0.0})
    labels = {"type": "drift", "detector": "psi", "model": "m", "feature": "amount"}
    assert registry.get_sample_value("streamdrift_alerts_total", labels) == 0.0
    outlier = {"type": "outlier", "detector": "isolation_forest", "model": "m", "feature": ""}
    assert registry.get_sample_value("streamdrift_alerts_total", outlier) == 0.0
    metrics.record_alert("drift", "psi", "m", "amount", 1.0)
    assert registry.get_sample_value("streamdrift_alerts_total", labels) == 1.0
    metrics.forget_model("m")
    assert registry.get_sample_value("streamdrift_alerts_total", labels) is None
