"""Prometheus metrics of the service, and the small HTTP server exposing them.

Every metric lives on the :class:`CollectorRegistry` given to :class:`Metrics` (a private one by
default), so tests build a fresh registry and read values with ``get_sample_value``. Label values
come only from configuration (topics, models, features, detector kinds) or from fixed sets defined
here (reasons, ops, results, alert types); an unknown value of a fixed set is counted as ``other``
rather than becoming a new series.

Cardinality, for T topics, P owned partitions, N models, M features per model, D univariate
detectors per feature and K = admitted ``(model, feature, detector)`` label sets, with
K ≤ min(``max_series``, N·(M·D + 1)) (the +1 is the multivariate detector, feature ``""``):

=====================================================  =========================================
metric (without the ``streamdrift_`` prefix)           series
=====================================================  =========================================
events_consumed_total, events_decoded_total            T each
events_invalid_total{topic,reason}                     T·10 (9 reasons + other)
dead_letters_total{reason}                             9 (+ other)
alerts_total{type,detector,model,feature}              ≤ 4·K (in practice ≈ 2·K)
detector_statistic, detector_threshold                 ≤ K each
adwin_width, adwin_mean                                ≤ K each (only detectors reporting them)
reference_age_events, last_alert_timestamp_seconds     ≤ K each
isolation_forest_score{model,quantile}                 ≤ 2·N
isolation_forest_outlier_rate{model}                   ≤ N
consumer_lag{topic,partition}                          P
checkpoints_total{result}                              3 (+ other)
redis_errors_total{op}, kafka_errors_total{op}         7 each (6 ops + other)
histograms (batch_*, event_latency, checkpoint)        buckets + 3 each (no labels)
owned_partitions, ready, checkpoint_bytes,             1 each
metric_series_dropped_total
=====================================================  =========================================

With the default limits (1000 models × 200 features) the product exceeds the default
``max_series`` of 10 000 label sets, which is what the bound is for: past it, new label sets are
not created and ``metric_series_dropped_total`` counts each refused update.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from streamdrift._histogram import BatchHistogram
from streamdrift._label_metrics import LabelMetrics
from streamdrift.errors import ConfigError, StreamdriftError
from streamdrift.events import REASONS
from streamdrift.resets import RECOVERIES, RESET_REASONS

__all__ = ["ALERT_TYPES", "CHECKPOINT_RESULTS", "IO_OPS", "Metrics", "MetricsServer"]

log = logging.getLogger(__name__)

ALERT_TYPES: Final = ("drift", "outlier", "performance", "state_reset")
CHECKPOINT_RESULTS: Final = ("ok", "fenced", "failed")
IO_OPS: Final = ("load", "save", "fence", "produce", "commit", "poll")
OTHER: Final = "other"
"""Label value standing in for anything outside a fixed set (a bug to fix, not a new series)."""

BATCH_SECONDS_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BATCH_EVENTS_BUCKETS: Final = (1, 10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)
LATENCY_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
CHECKPOINT_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

_QUANTILES: Final = {"score_p50": "0.5", "score_p99": "0.99"}
_KEYED_GAUGES: Final = ("statistic", "threshold", "width", "mean", "reference_age")

SeriesKey = tuple[str, str, str]  # (model, feature, detector)


def _fixed(value: str, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else OTHER


def _remove(metric: MetricWrapperBase, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # older prometheus_client versions raise for unknown labels
        metric.remove(*labels)


class Metrics:
    """All the service's metrics, on one registry, with the recording methods the service calls.

    Parameters
    ----------
    registry
        Where to register. ``None`` creates a private registry (what :class:`MetricsServer`
        serves); the process and platform collectors are added unless it is the global
        ``REGISTRY``, which has them already.
    namespace
        Prefix of every metric name.
    max_series
        Bound on the ``(model, feature, detector)`` label sets of the per-detector metrics
        (gauges, ``alerts_total``, ``last_alert_timestamp_seconds``). :meth:`forget_model` frees
        a model's label sets.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "streamdrift",
        max_series: int = 10_000,
    ) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        self.registry = CollectorRegistry() if registry is None else registry
        self.max_series = max_series
        r, ns = self.registry, namespace
        if r is not REGISTRY:
            ProcessCollector(namespace=ns, registry=r)
            PlatformCollector(registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=ns, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, namespace=ns, registry=r)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, namespace=ns, registry=r, buckets=buckets)

        # Names are given without the _total suffix, which Counter appends to the exposition.
        self.events_consumed = counter("events_consumed", "Records read from Kafka.", ("topic",))
        self.events_decoded = counter(
            "events_decoded", "Records decoded into valid events.", ("topic",)
        )
        self.events_invalid = counter(
            "events_invalid", "Records rejected by the decoder, by reason.", ("topic", "reason")
        )
        self.dead_letters = counter(
            "dead_letters", "Dead letters handed to the producer, by reason.", ("reason",)
        )
        self.alerts = counter(
            "alerts",
            "Alerts raised (feature is empty for multivariate detectors).",
            ("type", "detector", "model", "feature"),
        )
        self.batch_seconds = histogram(
            "batch_seconds", "Time to decode and detect one batch.", BATCH_SECONDS_BUCKETS
        )
        self.batch_events = histogram(
            "batch_events", "Records per processed batch.", BATCH_EVENTS_BUCKETS
        )
        self.event_latency = BatchHistogram(
            f"{ns}_event_latency_seconds",
            "End-to-end latency from event time to processing (clock skew clipped to 0).",
            LATENCY_BUCKETS,
            r,
        )
        self.consumer_lag = gauge(
            "consumer_lag", "Records behind the end of an owned partition.", ("topic", "partition")
        )
        self.owned_partitions = gauge("owned_partitions", "Partitions assigned to this consumer.")
        self.checkpoint_seconds = histogram(
            "checkpoint_seconds",
            "Duration of completed (ok or fenced) checkpoints.",
            CHECKPOINT_BUCKETS,
        )
        self.checkpoint_bytes = gauge("checkpoint_bytes", "Size of the last checkpoint's state.")
        self.checkpoints = counter(
            "checkpoints", "Checkpoint attempts by result (ok, fenced, failed).", ("result",)
        )
        self.redis_errors = counter("redis_errors", "Failed Redis operations by op.", ("op",))
        self.kafka_errors = counter("kafka_errors", "Failed Kafka operations by op.", ("op",))
        self.ready = gauge("ready", "1 when partitions are assigned and Redis/Kafka reachable.")
        self.state_resets = counter(
            "state_resets",
            "Partition states found lost or unreadable, by reason and recovery (state_reset).",
            ("reason", "recovery"),
        )
        key = ("model", "feature", "detector")
        self.detector_statistic = gauge(
            "detector_statistic", "The statistic a detector compares to its threshold.", key
        )
        self.detector_threshold = gauge(
            "detector_threshold", "The threshold a detector alerts above.", key
        )
        self.adwin_width = gauge("adwin_width", "Events in the ADWIN window.", key)
        self.adwin_mean = gauge("adwin_mean", "Mean of the ADWIN window.", key)
        self.reference_age = gauge(
            "reference_age_events", "Events since the detector's reference was (re)set.", key
        )
        self.last_alert_timestamp = gauge(
            "last_alert_timestamp_seconds", "Unix time of the last alert of a detector.", key
        )
        self.isolation_forest_score = gauge(
            "isolation_forest_score",
            "Quantiles of the last batch's anomaly scores.",
            ("model", "quantile"),
        )
        self.isolation_forest_outlier_rate = gauge(
            "isolation_forest_outlier_rate",
            "Share of the last batch flagged as outliers.",
            ("model",),
        )
        self.label_metrics = LabelMetrics(r, ns)  # delayed labels (streamdrift.labels)
        # Its metrics are attributes here too, so that every metric is found on this object.
        for name, metric in vars(self.label_metrics).items():
            setattr(self, f"label_{name}", metric)
        self.series_dropped = counter(
            "metric_series_dropped",
            "Per-detector updates refused because max_series label sets exist already.",
        )
        self._keyed: dict[str, Gauge] = {
            "statistic": self.detector_statistic,
            "threshold": self.detector_threshold,
            "width": self.adwin_width,
            "mean": self.adwin_mean,
            "reference_age": self.reference_age,
        }
        # Admitted label sets, each with its cached gauge children (labels() is a dict lookup
        # under a lock; the hot path updates every stream of every batch).
        self._series: dict[SeriesKey, dict[str, Gauge]] = {}
        self._alert_series: set[tuple[str, str, str, str]] = set()
        self._topics: dict[str, tuple[Counter, Counter, dict[str, Counter]]] = {}
        self._lock = threading.Lock()
        for fixed, values in (
            (self.dead_letters, REASONS),
            (self.checkpoints, CHECKPOINT_RESULTS),
            (self.redis_errors, IO_OPS),
            (self.kafka_errors, IO_OPS),
        ):
            for value in values:
                fixed.labels(value)  # zero-valued series exist before the first increment
        for reason in RESET_REASONS:
            for recovery in RECOVERIES:
                self.state_resets.labels(reason, recovery)

    # -- throughput --------------------------------------------------------------------------

    def record_batch(
        self,
        topic: str,
        n_consumed: int,
        n_decoded: int,
        invalid_by_reason: Mapping[str, int],
        seconds: float,
    ) -> None:
        """One processed batch of ``topic``: counts, invalid records by reason, duration."""
        consumed, decoded, invalid = self._topic(topic)
        consumed.inc(n_consumed)
        decoded.inc(n_decoded)
        for reason, n in invalid_by_reason.items():
            if n:
                invalid[reason if reason in invalid else OTHER].inc(n)
        self.batch_seconds.observe(seconds)
        self.batch_events.observe(n_consumed)

    def observe_latency(self, now_s: float, event_times: npt.ArrayLike) -> None:
        """Observe ``now_s - event_times`` for a whole batch at once.

        NaN and infinite event times (absent or unusable) are dropped; events in the future
        (producer clock ahead of ours) count as latency 0 instead of lowering the sum.
        """
        latency = now_s - np.asarray(event_times, dtype=np.float64)
        latency = latency[np.isfinite(latency)]
        np.maximum(latency, 0.0, out=latency)
        self.event_latency.observe_many(latency)

    def record_dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(_fixed(reason, REASONS)).inc()

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Remove the lag series of a partition no longer owned (after a rebalance)."""
        _remove(self.consumer_lag, (topic, str(partition)))
        _remove(self.label_metrics.pending, (topic, str(partition)))

    def set_owned(self, n: int) -> None:
        self.owned_partitions.set(n)

    def set_ready(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)

    # -- delayed labels ----------------------------------------------------------------------

    def record_join(self, task: Any, report: Any, joins: Any) -> None:
        """A label join or retry (``streamdrift.labels.JoinReport``); ``joins`` gives coverage."""
        self.label_metrics.record_join(task, report, _join_stats(joins, report, self))
        if report.store_failed:
            self.redis_error("load")
        for model, kind, gauges in report.gauges:
            self.update_detector_gauges(model, "__error__", kind, gauges)

    def record_remembered(self, model: str, result: Any) -> None:
        self.label_metrics.record_remembered(model, result)

    # -- checkpoints and I/O -----------------------------------------------------------------

    def record_checkpoint(self, seconds: float, nbytes: int, result: str) -> None:
        """One checkpoint attempt; a failed one has no meaningful duration or size."""
        self.checkpoints.labels(_fixed(result, CHECKPOINT_RESULTS)).inc()
        if result != "failed":
            self.checkpoint_seconds.observe(seconds)
            self.checkpoint_bytes.set(nbytes)

    def record_state_reset(self, reason: str, recovery: str) -> None:
        self.state_resets.labels(_fixed(reason, RESET_REASONS), _fixed(recovery, RECOVERIES)).inc()

    def redis_error(self, op: str) -> None:
        self.redis_errors.labels(_fixed(op, IO_OPS)).inc()

    def kafka_error(self, op: str) -> None:
        self.kafka_errors.labels(_fixed(op, IO_OPS)).inc()

    # -- detectors ---------------------------------------------------------------------------

    def record_alert(self, type: str, detector: str, model: str, feature: str, ts: float) -> None:
        """Count an alert and remember its time (Grafana shows ``time() - last_alert``)."""
        children = self._admit(model, feature, detector)
        if children is None:
            return
        labels = (_fixed(type, ALERT_TYPES), detector, model, feature)
        self._alert_series.add(labels)
        self.alerts.labels(*labels).inc()
        self._child(children, "last_alert", (model, feature, detector)).set(ts)

    def update_detector_gauges(
        self, model: str, feature: str, detector: str, gauges: Mapping[str, float]
    ) -> None:
        """Map a detector's ``gauges()`` onto the detector metrics; unknown keys are ignored.

        NaN is set as is: it is valid in Prometheus and means "not defined yet" (a PSI before
        its first window, a score before the forest is built). Skipping it would leave the value
        from before a reset on the dashboard.
        """
        children = self._admit(model, feature, detector)
        if children is None:
            return
        key = (model, feature, detector)
        for name, value in gauges.items():
            if name in self._keyed:
                self._child(children, name, key).set(value)
            elif name in _QUANTILES:
                self.isolation_forest_score.labels(model, _QUANTILES[name]).set(value)
            elif name == "outlier_rate":
                self.isolation_forest_outlier_rate.labels(model).set(value)

    def forget_model(self, model: str) -> None:
        """Remove every series of ``model`` (it was evicted) and free its label sets."""
        with self._lock:
            keys = [k for k in self._series if k[0] == model]
            for k in keys:
                del self._series[k]
            alerts = [a for a in self._alert_series if a[2] == model]
            self._alert_series.difference_update(alerts)
        gauges = (*self._keyed.values(), self.last_alert_timestamp)
        removals: list[tuple[MetricWrapperBase, tuple[str, ...]]] = [
            (g, k) for k in keys for g in gauges
        ]
        removals += [(self.alerts, a) for a in alerts]
        removals += [(self.isolation_forest_score, (model, q)) for q in _QUANTILES.values()]
        removals.append((self.isolation_forest_outlier_rate, (model,)))
        for metric, labels in removals:
            _remove(metric, labels)

    @property
    def n_series(self) -> int:
        """Admitted ``(model, feature, detector)`` label sets."""
        return len(self._series)

    # -- internals ---------------------------------------------------------------------------

    def _admit(self, model: str, feature: str, detector: str) -> dict[str, Gauge] | None:
        key = (model, feature, detector)
        children = self._series.get(key)
        if children is not None:
            return children
        with self._lock:
            children = self._series.get(key)
            if children is None:
                if len(self._series) >= self.max_series:
                    self.series_dropped.inc()
                    return None
                children = self._series[key] = {}
                # The alert counter exists at 0 from the start: increase()/changes() cannot see
                # a series that appears already at 1, so the first alert would be invisible.
                kind = "performance" if feature == "__error__" else "drift"
                labels = (
                    "outlier" if detector == "isolation_forest" else kind,
                    detector,
                    model,
                    feature,
                )
                self._alert_series.add(labels)
                self.alerts.labels(*labels)
        return children

    def _child(self, children: dict[str, Gauge], name: str, key: SeriesKey) -> Gauge:
        child = children.get(name)
        if child is None:
            family = self.last_alert_timestamp if name == "last_alert" else self._keyed[name]
            child = children[name] = family.labels(*key)
        return child

    def _topic(self, topic: str) -> tuple[Counter, Counter, dict[str, Counter]]:
        found = self._topics.get(topic)
        if found is None:
            invalid = {r: self.events_invalid.labels(topic, r) for r in (*REASONS, OTHER)}
            found = (self.events_consumed.labels(topic), self.events_decoded.labels(topic), invalid)
            self._topics[topic] = found
        return found


def _join_stats(joins: Any, report: Any, metrics: Metrics) -> dict[str, Any]:
    models = {model for model, _ in report.outcomes}
    stats: dict[str, Any] = {}
    for model in sorted(models):
        try:
            stats[model] = joins.join_stats(model)
        except StreamdriftError:
            metrics.redis_error("load")
    return stats


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, in a daemon thread.

    ``health()`` says whether the processing loop is alive; ``ready()`` returns ``(ready,
    reason)``. A callback that raises answers 503 with the error, never a dead server thread.
    The socket is bound in the constructor (port 0 picks a free port: see :attr:`port`).
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        health: Callable[[], bool],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        handler = _handler(metrics.registry, health, ready)
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} ({exc}); set metrics.host/metrics.port "
                "to a free local address"
            ) from exc
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                # A short poll interval: stop() waits for it at shutdown.
                target=self._httpd.serve_forever,
                args=(0.05,),
                name="metrics-http",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _handler(
    registry: CollectorRegistry,
    health: Callable[[], bool],
    ready: Callable[[], tuple[bool, str]],
) -> type[BaseHTTPRequestHandler]:
    def probe(check: Callable[[], tuple[bool, str]]) -> tuple[int, bytes]:
        try:
            ok, reason = check()
        except Exception as exc:  # a probe must answer, whatever the service's state
            ok, reason = False, f"probe failed: {exc!r}"
        return (200 if ok else 503), reason.encode()

    def alive() -> tuple[bool, str]:
        ok = health()
        return ok, "ok" if ok else "processing loop not alive"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            ctype = "text/plain; charset=utf-8"
            if path == "/metrics":
                code, body, ctype = 200, generate_latest(registry), CONTENT_TYPE_LATEST
            elif path == "/healthz":
                code, body = probe(alive)
            elif path == "/readyz":
                code, body = probe(ready)
            else:
                code, body = 404, b"not found: try /metrics, /healthz or /readyz"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics http: " + format, *args)

    return Handler
