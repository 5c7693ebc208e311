"""Generate the Grafana dashboard of the compose deployment: ``streamdrift.json`` next to this file.

Plain dicts, so the dashboard is reviewable here and regenerable::

    .venv/bin/python deploy/grafana/build_dashboard.py            # rewrite streamdrift.json
    .venv/bin/python deploy/grafana/build_dashboard.py --check    # exit 1 if it is stale

``tests/test_deploy.py`` checks that the committed JSON equals this output and that every metric
it queries exists in ``streamdrift.metrics.Metrics``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "streamdrift.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
RATE = "$__rate_interval"
MODEL = 'model=~"$model"'

Panel = dict[str, Any]


class Layout:
    """Assigns panel ids and grid positions: rows of panels, 24 units wide."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def add(self, panel: Panel, w: int, h: int = 8) -> None:
        if self.x + w > 24:
            self.newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def newline(self) -> None:
        self.y += self.row_h
        self.x = 0
        self.row_h = 0


def target(expr: str, legend: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref,
            "range": True, **extra}


def targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def timeseries(title: str, description: str, pairs: list[tuple[str, str]], unit: str = "short",
               *, stack: bool = False, bars: bool = False, overrides: list[Any] | None = None,
               min_zero: bool = True, **extra: Any) -> Panel:
    custom: dict[str, Any] = {"drawStyle": "bars" if bars else "line", "lineWidth": 1,
                              "fillOpacity": 60 if bars else 10, "showPoints": "never",
                              "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults: dict[str, Any] = {"unit": unit, "custom": custom}
    if min_zero:
        defaults["min"] = 0
    return {
        "type": "timeseries", "title": title, "description": description,
        "datasource": DATASOURCE, "targets": targets(*pairs),
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        **extra,
    }


def stat(title: str, description: str, expr: str, unit: str = "short",
         thresholds: list[dict[str, Any]] | None = None,
         mappings: list[Any] | None = None) -> Panel:
    return {
        "type": "stat", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, "", "A", instant=False)],
        "fieldConfig": {"defaults": {
            "unit": unit, "mappings": mappings or [],
            "thresholds": {"mode": "absolute", "steps": thresholds or [
                {"color": "green", "value": None}]},
        }, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "textMode": "auto"},
    }


def table(title: str, description: str, expr: str, value_name: str, unit: str,
          sort_desc: bool = True) -> Panel:
    return {
        "type": "table", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, "", "A", instant=True, range=False, format="table")],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"showHeader": True,
                    "sortBy": [{"displayName": value_name, "desc": sort_desc}]},
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "__name__": True, "instance": True, "job": True},
            "renameByName": {"Value": value_name}}}],
    }


def quantiles(metric: str, by: str = "le") -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket[{RATE}])))", f"p{p}")
            for q, p in (("0.5", "50"), ("0.99", "99"))]


def threshold_dashed(match: str) -> dict[str, Any]:
    return {"matcher": {"id": "byRegexp", "options": match}, "properties": [
        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        {"id": "custom.fillOpacity", "value": 0}]}


def service_health(lay: Layout) -> None:
    lay.row("Service health")
    lay.add(stat("Ready", "1 when partitions are assigned and Redis/Kafka are reachable, per "
                 "instance (the lowest shown).", "min(streamdrift_ready)", thresholds=[
                     {"color": "red", "value": None}, {"color": "green", "value": 1}],
                 mappings=[{"type": "value", "options": {
                     "0": {"text": "NOT READY", "index": 0}, "1": {"text": "READY", "index": 1}}}]),
            w=4, h=4)
    lay.add(stat("Owned partitions", "Partitions assigned, over all instances.",
                 "sum(streamdrift_owned_partitions)"), w=4, h=4)
    lay.add(stat("Consumer lag", "Records behind the end of the owned partitions, in total.",
                 "sum(streamdrift_consumer_lag)", thresholds=[
                     {"color": "green", "value": None}, {"color": "orange", "value": 10000},
                     {"color": "red", "value": 100000}]), w=4, h=4)
    lay.add(stat("Events/s", "Records consumed per second, all topics.",
                 f"sum(rate(streamdrift_events_consumed_total[{RATE}]))", unit="reqps"), w=4, h=4)
    lay.add(stat("Invalid/s", "Records rejected by the decoder per second.",
                 f"sum(rate(streamdrift_events_invalid_total[{RATE}])) or vector(0)", unit="reqps",
                 thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.1}]),
            w=4, h=4)
    lay.add(stat("Checkpoint size", "State size of the last checkpoint.",
                 "max(streamdrift_checkpoint_bytes)", unit="bytes"), w=4, h=4)
    lay.add(timeseries("Events consumed / decoded", "Records read from Kafka and decoded into "
                       "valid events, per topic.", [
                           (f"sum by (topic) (rate(streamdrift_events_consumed_total[{RATE}]))",
                            "consumed {{topic}}"),
                           (f"sum by (topic) (rate(streamdrift_events_decoded_total[{RATE}]))",
                            "decoded {{topic}}")], "reqps"), w=8)
    lay.add(timeseries("Invalid events by reason", "Decoder rejections per topic and reason; "
                       "dead letters handed to the producer, by reason.", [
                           (f"sum by (topic, reason) (rate(streamdrift_events_invalid_total"
                            f"[{RATE}]))", "{{topic}} {{reason}}"),
                           (f"sum by (reason) (rate(streamdrift_dead_letters_total[{RATE}]))",
                            "dead letter {{reason}}")], "reqps", stack=False), w=8)
    lay.add(timeseries("Consumer lag", "Records behind the end of each owned partition.", [
        ("sum by (topic, partition) (streamdrift_consumer_lag)", "{{topic}}/{{partition}}")]),
            w=8)
    lay.add(timeseries("Batch processing time", "Time to decode and detect one batch "
                       "(histogram quantiles); mean batch size on the right axis.", [
                           *quantiles("streamdrift_batch_seconds"),
                           (f"sum(rate(streamdrift_batch_events_sum[{RATE}])) / "
                            f"sum(rate(streamdrift_batch_events_count[{RATE}]))",
                            "mean batch size")], "s", overrides=[
                           {"matcher": {"id": "byName", "options": "mean batch size"},
                            "properties": [{"id": "unit", "value": "short"},
                                           {"id": "custom.axisPlacement", "value": "right"}]}]),
            w=8)
    lay.add(timeseries("End-to-end latency", "From event time to processing (producer clock "
                       "ahead of ours counts as 0).",
                       quantiles("streamdrift_event_latency_seconds"), "s"), w=8)
    lay.add(timeseries("Checkpoints", "Duration of completed checkpoints (quantiles); attempts "
                       "by result on the right axis.", [
                           *quantiles("streamdrift_checkpoint_seconds"),
                           (f"sum by (result) (rate(streamdrift_checkpoints_total[{RATE}]))",
                            "{{result}}/s")], "s", overrides=[
                           {"matcher": {"id": "byRegexp", "options": ".*/s$"},
                            "properties": [{"id": "unit", "value": "ops"},
                                           {"id": "custom.axisPlacement", "value": "right"}]}]),
            w=8)
    lay.add(timeseries("Redis / Kafka errors", "Failed operations by system and op.", [
        (f"sum by (op) (increase(streamdrift_redis_errors_total[{RATE}])) > 0", "redis {{op}}"),
        (f"sum by (op) (increase(streamdrift_kafka_errors_total[{RATE}])) > 0", "kafka {{op}}")],
        bars=True), w=8)
    lay.add(timeseries("Ready and owned partitions", "Per instance.", [
        ("streamdrift_ready", "ready {{instance}}"),
        ("streamdrift_owned_partitions", "partitions {{instance}}")]), w=8)
    lay.add(timeseries("Process", "CPU and memory of the service; metric series refused by the "
                       "max_series bound.", [
                           (f"rate(streamdrift_process_cpu_seconds_total[{RATE}])",
                            "cpu {{instance}}"),
                           ("streamdrift_process_resident_memory_bytes / 2^30",
                            "rss GiB {{instance}}"),
                           (f"rate(streamdrift_metric_series_dropped_total[{RATE}])",
                            "series dropped/s")]), w=8)


def drift_overview(lay: Layout) -> None:
    lay.row("Drift overview ($model)")
    lay.add(timeseries(
        "$detector: statistic vs threshold", "The statistic each detector compares to its "
        "threshold (solid) and the threshold (dashed), per feature of the selected models; "
        "an alert fires where the statistic crosses the threshold.", [
            (f'streamdrift_detector_statistic{{{MODEL}, detector="$detector"}}',
             "{{model}} {{feature}}"),
            (f'streamdrift_detector_threshold{{{MODEL}, detector="$detector"}}',
             "{{model}} {{feature}} threshold")],
        overrides=[threshold_dashed(".* threshold$")], min_zero=False,
        repeat="detector", repeatDirection="h", maxPerRow=3), w=8, h=9)
    lay.newline()
    lay.add(table("Statistic / threshold", "Closest to alerting first: 100% or more means the "
                  "detector is at or past its threshold.",
                  f"streamdrift_detector_statistic{{{MODEL}}} / "
                  f"streamdrift_detector_threshold{{{MODEL}}}", "ratio", "percentunit"),
            w=8, h=10)
    lay.add(timeseries("Alerts by feature and detector", "Drift alerts raised in each interval "
                       "(published or below min_severity).", [
                           (f'sum by (model, feature, detector) (increase(streamdrift_alerts_total'
                            f'{{{MODEL}, type="drift"}}[{RATE}])) > 0',
                            "{{model}} {{feature}} {{detector}}")], bars=True, stack=True),
            w=8, h=10)
    lay.add(table("Time since the last alert", "Per model, feature and detector.",
                  f"time() - streamdrift_last_alert_timestamp_seconds{{{MODEL}}}", "since", "s",
                  sort_desc=False), w=8, h=10)
    lay.add(timeseries("ADWIN window", "Width of each ADWIN window (it shrinks on a change).", [
        (f"streamdrift_adwin_width{{{MODEL}}}", "{{model}} {{feature}}")]), w=12)
    lay.add(timeseries("Reference age", "Events since each detector's reference was (re)set.", [
        (f"streamdrift_reference_age_events{{{MODEL}}}",
         "{{model}} {{feature}} {{detector}}")]), w=12)


def delayed_labels(lay: Layout) -> None:
    """Concept drift from delayed labels, in the drift row (test_deploy pins the three rows)."""
    lay.newline()
    lay.add(timeseries("Realized error (delayed labels)", "Each model's error over its last 500 "
                       "labels joined to their predictions (classification: error rate; "
                       "regression: mean absolute error).", [
                           (f"streamdrift_label_error_rate{{{MODEL}}}", "{{model}}")],
                       "percentunit"), w=6)
    lay.add(timeseries("Label coverage", "Share of the predictions in the join buffer that got "
                       "their label.", [
                           (f"streamdrift_label_coverage{{{MODEL}}}", "{{model}}")],
                       "percentunit"), w=6)
    lay.add(timeseries("Labels by outcome", "Joined, duplicate, late (after the TTL), unknown "
                       "event id, dropped (pending cap), invalid, per interval.", [
                           (f"sum by (model, outcome) (increase(streamdrift_labels_total"
                            f"{{{MODEL}}}[{RATE}])) > 0", "{{model}} {{outcome}}")],
                       bars=True, stack=True), w=6)
    lay.add(timeseries("Label delay", "Label event time minus prediction event time.",
                       quantiles("streamdrift_label_delay_seconds"), "s"), w=6)
    lay.add(timeseries("Join buffer", "Predictions waiting for a label, and those that "
                       "expired without one (per interval).", [
                           (f"streamdrift_join_buffer_predictions{{{MODEL}}}", "{{model}} waiting"),
                           ("sum by (model, reason) (increase("
                            f"streamdrift_predictions_expired_total{{{MODEL}}}[{RATE}]))",
                            "{{model}} expired ({{reason}})")]), w=12)
    lay.add(timeseries("Performance alerts", "Alerts of type performance (the error stream got "
                       "worse) per interval.", [
                           (f'sum by (model, detector) (increase(streamdrift_alerts_total'
                            f'{{{MODEL}, type="performance"}}[{RATE}])) > 0',
                            "{{model}} {{detector}}"),
                           ("sum(streamdrift_labels_pending)", "labels pending")],
                       bars=True), w=12)


def outliers(lay: Layout) -> None:
    lay.row("Outliers ($model)")
    lay.add(timeseries("Isolation forest score quantiles", "Quantiles of the last batch's "
                       "anomaly scores (higher = more anomalous).", [
                           (f"streamdrift_isolation_forest_score{{{MODEL}}}",
                            "{{model}} q{{quantile}}")], min_zero=False), w=8)
    lay.add(timeseries("Outlier rate", "Share of the last batch flagged as outliers.", [
        (f"streamdrift_isolation_forest_outlier_rate{{{MODEL}}}", "{{model}}")],
        "percentunit"), w=8)
    lay.add(timeseries("Outlier alerts", "Outlier alerts per interval.", [
        (f'sum by (model) (increase(streamdrift_alerts_total{{{MODEL}, type="outlier"}}'
         f"[{RATE}])) > 0", "{{model}}")], bars=True), w=8)


def variable(name: str, label: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-query"}, "definition": query,
        "refresh": 2, "sort": 1, "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "hide": 0, **extra,
    }


def build() -> dict[str, Any]:
    """The dashboard as a dict (what ``streamdrift.json`` holds)."""
    lay = Layout()
    service_health(lay)
    drift_overview(lay)
    delayed_labels(lay)
    outliers(lay)
    return {
        "uid": "streamdrift",
        "title": "streamdrift",
        "description": "Drift and outlier monitoring: service health, detector statistics "
                       "against thresholds, alerts, outliers. Generated by "
                       "deploy/grafana/build_dashboard.py.",
        "tags": ["streamdrift", "kafka", "drift"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "links": [],
        "templating": {"list": [
            # From the threshold gauge: every detector kind with a threshold sets it (ADWIN
            # has none), also before its first statistic.
            variable("model", "model", "label_values(streamdrift_detector_threshold, model)"),
            # From the statistic gauge: the kinds the "statistic vs threshold" panel can draw
            # (psi, page_hinkley). isolation_forest has a threshold but reports score quantiles,
            # not a statistic; ADWIN has neither. The statistic is set (NaN until defined) with
            # the threshold, so the variable is complete from the first batch.
            variable("detector", "detector", "label_values(streamdrift_detector_statistic"
                     '{model=~"$model"}, detector)'),
        ]},
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
             "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "name": "Annotations & Alerts", "type": "dashboard"},
            {"name": "streamdrift alerts", "datasource": DATASOURCE, "enable": True,
             "iconColor": "red", "step": "1m",
             "expr": "sum by (type, model, feature, detector) "
                     f"(changes(streamdrift_alerts_total{{{MODEL}}}[1m])) > 0",
             "titleFormat": "{{type}} alert", "textFormat": "{{model}} {{feature}} {{detector}}",
             "tagKeys": "type,model,detector", "useValueForTime": False},
        ]},
        "panels": lay.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate deploy/grafana/dashboards/*.json.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
