"""Every query of the Grafana dashboard returns data from a real Prometheus scraping the service.

The real service consumes a real Kafka topic of synthetic events (``amount`` and ``country`` drift
at half-way) and checkpoints to Redis; a Prometheus of this test's own (scripts/prometheus.sh with
its own run dir) scrapes its /metrics every second. Then each panel target of
deploy/grafana/dashboards/streamdrift.json, Grafana variables substituted, goes to Prometheus'
HTTP API, which must answer with data, and the drift panel must show the injected drift.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kafka import KafkaProducer

from streamdrift.synthetic import synthetic_events
from tests.service_harness import (
    ServiceProcess,
    end_offsets,
    free_port,
    produce,
    wait_checkpointed,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "streamdrift.json"
MODEL = "fraud-v3"
N_EVENTS = 12_000
# What Grafana puts in for its macros with a 1 s scrape interval (rate interval = 4 scrapes is
# Grafana's minimum; 15 s leaves room for a late scrape).
MACROS = {"$__rate_interval": "15s", "$__interval": "15s", "$__range": "5m"}

# Panels whose query legitimately has no data in this run, and why. Each is still checked: the
# expression without its trailing `> 0` filter must return (zero-valued) series.
EMPTY_WHEN_NOTHING_FAILS = {
    "Redis / Kafka errors": "shows failed Redis/Kafka operations only (`> 0`); none fail here",
}
# Panels showing events in an interval (`increase(...) > 0`): empty at most instants by design,
# so they must show data somewhere over the run (a range query, as Grafana draws them).
EVENT_PANELS = {"Alerts by feature and detector", "Outlier alerts"}
# Panels of delayed-label joins: this stream has no label topic, so they stay empty here; their
# metrics are exercised by tests/test_labels.py and their names checked by tests/test_deploy.py.
LABEL_PANELS = {
    "Realized error (delayed labels)", "Label coverage", "Labels by outcome", "Label delay",
    "Join buffer", "Performance alerts",
}


# -- helpers -------------------------------------------------------------------------------------


def _api(base: str, path: str, **params: Any) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]


def _instant(base: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    data = _api(base, "/api/v1/query", query=expr, **({} if at is None else {"time": at}))
    assert data["resultType"] == "vector", (expr, data)
    result: list[dict[str, Any]] = data["result"]
    return result


def _range(base: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    data = _api(base, "/api/v1/query_range", query=expr, start=start, end=end, step=1)
    result: list[dict[str, Any]] = data["result"]
    return result


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if math.isfinite(float(v))]


def _scalar(base: str, expr: str, at: float | None = None) -> float:
    result = _instant(base, expr, at)
    assert len(result) == 1, f"{expr}: expected one series, got {result}"
    return float(result[0]["value"][1])


def _substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**MACROS, **variables}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def _panels(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "targets" in node:
            yield node
        for value in node.values():
            yield from _panels(value)
    elif isinstance(node, list):
        for value in node:
            yield from _panels(value)


def _scraped(base: str, n: int) -> bool:
    """The scrape target is up and ``n`` more scrapes happened since the last call with 0."""
    result = _instant(base, 'up{job="streamdrift"}')
    return bool(result) and result[0]["value"][1] == "1" and (
        n == 0 or _scalar(base, 'count_over_time(up{job="streamdrift"}[1h])') >= n)


def _produce_slowly(bootstrap: str, topic: str, values: list[bytes], chunks: int,
                    pause_s: float, errors: list[BaseException]) -> None:
    """Send ``values`` in ``chunks`` parts, ``pause_s`` apart: the service works while scraped."""
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
        size = -(-len(values) // chunks)
        for i in range(0, len(values), size):
            for value in values[i:i + size]:
                producer.send(topic, value=value)
            producer.flush(timeout=30)
            time.sleep(pause_s)
        producer.close()
    except BaseException as exc:  # re-raised in the test
        errors.append(exc)


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def private_prometheus(tmp_path: Path, metrics_port: int) -> Iterator[str]:
    """A Prometheus of this test's own scraping the service's metrics port every second."""
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "streamdrift", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }))
    env = {**os.environ, "STREAMDRIFT_RUN_DIR": str(tmp_path / "run"),
           "PROMETHEUS_CONFIG": str(config)}
    script = str(REPO / "scripts" / "prometheus.sh")
    started = subprocess.run([script, "start"], env=env, check=False, capture_output=True,
                             text=True)
    try:
        if started.returncode != 0:
            pytest.fail(f"scripts/prometheus.sh start failed:\n{started.stderr}", pytrace=False)
        url = next(line.split("=", 1)[1] for line in started.stdout.splitlines()
                   if line.startswith("PROMETHEUS_URL="))
        yield url
    finally:
        subprocess.run([script, "stop"], env=env, check=False, capture_output=True)


# -- the test ------------------------------------------------------------------------------------


def test_every_dashboard_query_returns_data_and_the_drift_panel_shows_the_drift(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory, redis_factory,
    metrics_port: int, private_prometheus: str,
) -> None:
    prom = private_prometheus
    topic = topic_factory(partitions=1)
    _, prefix = redis_factory()
    path = write_config(
        tmp_path / "cfg.yaml", bootstrap=kafka_bootstrap, topic=topic, redis_url=redis_url,
        prefix=prefix, group=f"{topic}-g", every_events=1000, every_seconds=0.5,
        extra={"metrics": {"port": metrics_port}},
    )
    # Event times from now on (a realistic latency panel), 1,000 events per second of event time.
    events, truth = synthetic_events(N_EVENTS, seed=11, drift_at=0.5, start_ts=time.time(),
                                     rate_per_s=1000.0)
    assert truth.drifted_features >= {"amount", "country"}
    values = [orjson.dumps(e) for e in events]
    half = N_EVENTS // 2
    t_start = time.time()
    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    errors: list[BaseException] = []
    producer: threading.Thread | None = None
    try:
        # Phase 1: the stationary first half (PSI reference of 5,000 + one window of 1,000).
        produce(kafka_bootstrap, topic, values[:half])
        wait_checkpointed(redis_url, prefix, topic, [half], svc, timeout_s=60)
        wait_until(lambda: _scraped(prom, 0), 30, "Prometheus scraping the service")
        time.sleep(3)  # a few scrapes of the pre-drift state
        t_before_drift = time.time()

        # Phase 2: the drifted half, trickled so that rates and histograms have fresh samples
        # while Prometheus scrapes.
        producer = threading.Thread(
            target=_produce_slowly, args=(kafka_bootstrap, topic, values[half:], 12, 0.5, errors),
            daemon=True)
        producer.start()
        producer.join(timeout=60)
        assert not producer.is_alive() and not errors, f"producing failed: {errors}"
        wait_checkpointed(redis_url, prefix, topic, end_offsets(kafka_bootstrap, topic, 1), svc,
                          timeout_s=60)
        n_scrapes = _scalar(prom, 'count_over_time(up{job="streamdrift"}[1h])')
        wait_until(lambda: _scraped(prom, int(n_scrapes) + 3), 30, "3 more scrapes")
        t_end = time.time()
        assert svc.alive(), svc.log_text()[-4000:]

        doc = json.loads(DASHBOARD.read_text())
        checked = _check_panels(prom, doc, t_start, t_end)
        _check_drift(prom, t_before_drift)
    finally:
        if producer is not None:
            producer.join(timeout=30)
        svc.stop()
    assert "Traceback" not in svc.log_text()
    assert checked >= 30, f"only {checked} dashboard queries checked"


def _detectors(prom: str) -> list[str]:
    """The values of the dashboard's ``$detector`` variable (its label_values query)."""
    doc = json.loads(DASHBOARD.read_text())
    (var,) = [v for v in doc["templating"]["list"] if v["name"] == "detector"]
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"]["query"])
    assert match
    selector = _substitute(match[1], {"$model": MODEL})
    found: list[str] = _api(prom, f"/api/v1/label/{match[2]}/values", **{"match[]": selector})
    return found


def _check_panels(prom: str, doc: dict[str, Any], start: float, end: float) -> int:
    models = _api(prom, "/api/v1/label/model/values",
                  **{"match[]": "streamdrift_detector_threshold"})
    assert MODEL in models, f"$model has no {MODEL}: {models}"
    detectors = _detectors(prom)
    assert {"psi", "page_hinkley"} <= set(detectors), detectors

    problems: list[str] = []
    checked = 0
    titles = {panel["title"] for panel in _panels(doc.get("panels", []))}
    assert titles >= LABEL_PANELS, f"LABEL_PANELS names panels not on the dashboard: {titles}"
    for panel in _panels(doc.get("panels", [])):
        title = panel["title"]
        if title in LABEL_PANELS:
            continue
        # A repeated panel is drawn once per value of its variable.
        repeats = detectors if panel.get("repeat") == "detector" else [""]
        for detector in repeats:
            for t in panel["targets"]:
                expr = _substitute(t["expr"], {"$model": MODEL, "$detector": detector})
                name = f"{title.replace('$detector', detector)} [{t['refId']}]: {expr}"
                checked += 1
                if title in EMPTY_WHEN_NOTHING_FAILS:
                    bare = re.sub(r"\s*>\s*0\s*$", "", expr)
                    assert bare != expr, f"{name}: expected a trailing `> 0`"
                    if not _instant(prom, bare):
                        problems.append(f"{name}: no series even without `> 0`")
                    continue
                if title in EVENT_PANELS:
                    series = _range(prom, expr, start, end)
                    if not any(_finite([v for _, v in s["values"]]) for s in series):
                        problems.append(f"{name}: no data over the whole run (range query)")
                    continue
                result = _instant(prom, expr, end)
                if not any(_finite([s["value"][1]]) for s in result):
                    problems.append(f"{name}: {'only NaN' if result else 'empty result'}")
    for ann in doc["annotations"]["list"]:
        if "expr" in ann:
            expr = _substitute(ann["expr"], {"$model": MODEL})
            checked += 1
            if not _range(prom, expr, start, end):
                problems.append(f"annotation {ann['name']}: no data over the run: {expr}")
    assert not problems, "dashboard queries without data:\n" + "\n".join(problems)
    return checked


def _check_drift(prom: str, before_drift: float) -> None:
    def ratio(feature: str, at: float | None = None) -> float:
        labels = f'model="{MODEL}",feature="{feature}",detector="psi"'
        return _scalar(prom, f"max_over_time((streamdrift_detector_statistic{{{labels}}} / "
                             f"streamdrift_detector_threshold{{{labels}}})[5m:1s])", at)

    # Before the drift the PSI of amount was defined (one window past the reference) and below
    # its threshold; after it, it crossed the threshold. age never drifts.
    assert ratio("amount", before_drift) < 1.0
    assert ratio("amount") > 1.0, "the drift panel does not show the drift of amount"
    assert ratio("country") > 1.0, "the drift panel does not show the drift of country"
    assert 0.0 <= ratio("age") < 1.0, "a stationary feature crossed its threshold"
