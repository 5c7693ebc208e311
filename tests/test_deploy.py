"""The deployment files (Dockerfile, docker-compose.yml, deploy/) stay consistent with the code.

No Docker engine is needed: the compose file is parsed with PyYAML and checked against the files
it mounts and the configuration it runs, Prometheus' config and the dashboard's PromQL go through
``promtool`` (Debian's ``prometheus`` package; ``scripts/test`` installs it), every metric and label
the dashboard queries must exist in :class:`streamdrift.metrics.Metrics`, and the demo producer's
command (``streamdrift demo --kafka``) runs against the real dev broker.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from streamdrift.cli import build_parser
from streamdrift.config import Config, load_config
from streamdrift.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DEPLOY_CONFIG = REPO / "deploy" / "streamdrift.yaml"
PROMETHEUS = REPO / "deploy" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "streamdrift.json"
BUILD_DASHBOARD = REPO / "deploy" / "grafana" / "build_dashboard.py"
CONFIG_IN_IMAGE = "/etc/streamdrift/streamdrift.yaml"
RUN_COMMAND = ["run", "--config", CONFIG_IN_IMAGE]
PROMTOOL_MISSING = (
    "promtool is missing: install Debian's prometheus package with "
    "`sudo apt-get install -y prometheus` (scripts/test does this when it runs as root)"
)

# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in compose["services"], f"docker-compose.yml has no {name!r} service"
    svc: dict[str, Any] = compose["services"][name]
    return svc


def bind_mounts(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (named volumes left out)."""
    out: dict[str, Path] = {}
    for volume in svc.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = (REPO / source).resolve()
    return out


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def argv(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def deploy_config(env: dict[str, str] | None = None) -> Config:
    return load_config(DEPLOY_CONFIG, env={} if env is None else env)


def load_build_dashboard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILD_DASHBOARD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exposed_metrics() -> dict[str, set[str]]:
    """Every sample name a fresh ``Metrics()`` exposes, with its label names.

    Labelled metrics have no samples until a child exists, so each gets one first.
    """
    metrics = Metrics()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*["x"] * len(value._labelnames))
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def dashboard_queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(expression, legend format) of every panel target, variable and annotation."""
    out = [(t["expr"], t.get("legendFormat", "")) for t in walk(doc.get("panels", []))
           if "expr" in t]
    out += [(a["expr"], a.get("titleFormat", "") + " " + a.get("textFormat", ""))
            for a in doc["annotations"]["list"] if "expr" in a]
    for var in doc["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        assert match, f"variable {var['name']}: expected label_values(selector, label): {query}"
        out.append((match[1], "{{" + match[2] + "}}"))
    return out


GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m", "$__interval": "1m", "$model": ".*", "$detector": "adwin",
}


def as_promql(expr: str) -> str:
    for macro, value in GRAFANA_SUBSTITUTIONS.items():
        expr = expr.replace(macro, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


METRIC = re.compile(r"\bstreamdrift_[a-zA-Z0-9_]+\b")
SELECTOR = re.compile(r"\b(streamdrift_[a-zA-Z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
SCRAPE_LABELS = {"instance", "job"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(PROMTOOL_MISSING, pytrace=False)
    return path


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, simplified: the last matching pattern (or ! exception) wins,
    and a pattern matching a parent directory matches what is inside it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


# -- (1) every file the compose file builds or mounts exists -------------------------------------


def test_compose_builds_and_mounts_only_existing_files(compose: dict[str, Any]) -> None:
    declared_volumes = set(compose.get("volumes") or {})
    checked = 0
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get(
                "dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: no {context / dockerfile}"
            checked += 1
        else:
            image = svc.get("image", "")
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), (
                f"{name}: pin the image version ({image!r})")
        for target, source in bind_mounts(svc).items():
            assert source.exists(), f"{name}: mounts {source} at {target}, which does not exist"
            assert REPO in source.parents, f"{name}: mounts {source} from outside the repository"
            checked += 1
        for volume in svc.get("volumes", []):
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: volume {source!r} is not declared"
        for dependency in svc.get("depends_on") or []:
            assert dependency in compose["services"], f"{name}: depends on unknown {dependency}"
    assert checked >= 6


def test_compose_images_are_the_documented_ones(compose: dict[str, Any]) -> None:
    assert service(compose, "kafka")["image"] == "apache/kafka:4.1.1"
    assert service(compose, "redis")["image"].startswith("redis:7")
    assert argv(service(compose, "redis")["command"])[-2:] == ["--appendonly", "yes"]
    assert "/data" in [str(v).split(":")[1] for v in service(compose, "redis")["volumes"]]
    assert service(compose, "prometheus")["image"].startswith("prom/prometheus:")
    assert service(compose, "grafana")["image"].startswith("grafana/grafana:")


# -- (2) the streamdrift service runs deploy/streamdrift.yaml, which is valid --------------------


def test_compose_service_runs_the_deploy_config(compose: dict[str, Any]) -> None:
    svc = service(compose, "streamdrift")
    command = argv(svc.get("command", RUN_COMMAND))
    assert command == RUN_COMMAND
    args = build_parser().parse_args(command)
    assert args.command == "run" and args.config == CONFIG_IN_IMAGE
    assert bind_mounts(svc).get(CONFIG_IN_IMAGE) == DEPLOY_CONFIG
    assert "entrypoint" not in svc, "the image's ENTRYPOINT (streamdrift) must run"

    deploy_config()  # valid on its own: no variable needed
    # and with the image's and the compose file's environment (a stray STREAMDRIFT_* variable
    # would be rejected as an unknown override and stop the service at start)
    image_env = dict(
        m.groups()
        for m in re.finditer(r"^ENV\s+(\w+)=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    )
    config = deploy_config({**image_env, **environment(svc)})
    assert config.metrics.host == "0.0.0.0", "Prometheus scrapes from another container"
    assert f"{config.metrics.port}:{config.metrics.port}" in svc.get("ports", [])


def test_deploy_config_points_at_the_compose_services(compose: dict[str, Any]) -> None:
    config = deploy_config(environment(service(compose, "streamdrift")))
    kafka_env = environment(service(compose, "kafka"))
    listeners = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    advertised = {listener.split("://", 1)[1] for listener in listeners}
    assert set(config.kafka.bootstrap_servers) <= advertised
    assert config.redis is not None
    redis_url = config.redis.url.get_secret_value()
    assert re.match(r"redis://redis:6379/\d+$", redis_url), redis_url
    assert "redis" in compose["services"]

    init_script = " ".join(argv(service(compose, "kafka-init")["command"]))
    created = re.findall(r"([\w.-]+):\d+", init_script)
    wanted = [*config.kafka.input_topics, config.kafka.alert_topic]
    if config.kafka.dead_letter_topic:
        wanted.append(config.kafka.dead_letter_topic)
    assert set(wanted) <= set(created), f"kafka-init creates {created}, the config uses {wanted}"

    producer = service(compose, "demo-producer")
    args = build_parser().parse_args([*argv(producer["command"])])
    assert argv(producer["entrypoint"]) == ["streamdrift"] and args.command == "demo"
    assert args.topic in config.kafka.input_topics
    assert args.kafka in config.kafka.bootstrap_servers
    assert producer.get("image") == service(compose, "streamdrift").get("image"), (
        "the producer runs from the streamdrift image (it imports streamdrift.synthetic)")


# -- (3) Prometheus -----------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config() -> None:
    result = subprocess.run([promtool(), "check", "config", str(PROMETHEUS)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_service_every_5s(compose: dict[str, Any]) -> None:
    doc = yaml.safe_load(PROMETHEUS.read_text())
    config = deploy_config(environment(service(compose, "streamdrift")))
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "streamdrift"]
    assert job.get("scrape_interval", doc["global"]["scrape_interval"]) == "5s"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"streamdrift:{config.metrics.port}"]
    mounts = bind_mounts(service(compose, "prometheus"))
    assert mounts.get("/etc/prometheus/prometheus.yml") == PROMETHEUS


# -- (4) the dashboard --------------------------------------------------------------------------


def test_dashboard_is_what_build_dashboard_generates() -> None:
    module = load_build_dashboard()
    assert DASHBOARD.read_text() == module.render(), (
        "deploy/grafana/dashboards/streamdrift.json is stale: run "
        ".venv/bin/python deploy/grafana/build_dashboard.py")
    assert json.loads(module.render()) == module.build()


def test_dashboard_metrics_and_labels_exist() -> None:
    exposed = exposed_metrics()
    queries = dashboard_queries(dashboard())
    used: set[str] = set()
    for expr, legend in queries:
        names = METRIC.findall(expr)
        assert names, f"query without a streamdrift metric: {expr}"
        unknown = sorted(set(names) - set(exposed))
        assert not unknown, f"{unknown} not exposed by streamdrift.metrics (query: {expr})"
        used.update(names)
        labels = set().union(*(exposed[n] for n in names)) | SCRAPE_LABELS
        for name, matchers in SELECTOR.findall(expr):
            keys = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
            assert keys <= exposed[name] | SCRAPE_LABELS, f"{name} has no label {keys}: {expr}"
        for group in GROUPING.findall(expr):
            keys = {k.strip() for k in group.split(",") if k.strip()}
            assert keys <= labels, f"grouping by {keys - labels} not on {names}: {expr}"
        assert set(LEGEND.findall(legend)) <= labels, f"legend {legend!r} for {expr}"
    # The rows the dashboard is for.
    for required in ("streamdrift_events_consumed_total", "streamdrift_events_decoded_total",
                     "streamdrift_events_invalid_total", "streamdrift_consumer_lag",
                     "streamdrift_batch_seconds_bucket", "streamdrift_event_latency_seconds_bucket",
                     "streamdrift_checkpoint_seconds_bucket", "streamdrift_redis_errors_total",
                     "streamdrift_kafka_errors_total", "streamdrift_ready",
                     "streamdrift_owned_partitions", "streamdrift_detector_statistic",
                     "streamdrift_detector_threshold", "streamdrift_alerts_total",
                     "streamdrift_isolation_forest_score",
                     "streamdrift_isolation_forest_outlier_rate"):
        assert required in used, f"the dashboard does not show {required}"


def test_dashboard_variables_and_annotation() -> None:
    doc = dashboard()
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["model"]["query"]["query"] == (
        "label_values(streamdrift_detector_threshold, model)")
    annotations = [a for a in doc["annotations"]["list"] if "expr" in a]
    assert any("streamdrift_alerts_total" in a["expr"] for a in annotations)
    rows = [p["title"] for p in doc["panels"] if p["type"] == "row"]
    assert [r.split(" (")[0] for r in rows] == ["Service health", "Drift overview", "Outliers"]
    ids = [p["id"] for p in walk(doc["panels"]) if "gridPos" in p]
    assert len(ids) == len(set(ids))
    for panel in walk(doc["panels"]):
        if "gridPos" in panel:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """promtool parses every expression (as recording rules), Grafana macros substituted."""
    queries = dashboard_queries(dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": as_promql(expr)}
        for i, (expr, _) in enumerate(queries)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool(), "check", "rules", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_matches_compose(compose: dict[str, Any]) -> None:
    mounts = bind_mounts(service(compose, "grafana"))
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == REPO / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    uids = {n["datasource"]["uid"] for n in walk(dashboard()) if isinstance(
        n.get("datasource"), dict) and n["datasource"].get("type") == "prometheus"}
    assert uids == {source["uid"]}
    providers = yaml.safe_load((provisioning / "dashboards" / "streamdrift.yml").read_text())
    (provider,) = providers["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent


# -- (5) the Dockerfile -------------------------------------------------------------------------


def test_dockerfile_runs_streamdrift_as_non_root_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms), froms
    final = dockerfile_final_stage()
    words = dict(final)  # the last of each instruction of the runtime stage
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage needs a USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert json.loads(words["ENTRYPOINT"]) == ["streamdrift"]
    assert json.loads(words["CMD"]) == RUN_COMMAND
    assert "9108" in words["EXPOSE"].split()
    assert deploy_config().metrics.port == 9108
    health = words["HEALTHCHECK"]
    assert "/healthz" in " ".join(rest for word, rest in final if word in {"HEALTHCHECK", "ENV"})
    assert "urllib.request" in health and "python" in health


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for word, rest in dockerfile_instructions():
        if word != "COPY" or "--from" in rest:
            continue
        sources = [s for s in rest.split() if not s.startswith("--")][:-1]
        for source in sources:
            files = [source] if (REPO / source).is_file() else [
                str(p.relative_to(REPO)) for p in (REPO / source).rglob("*.py")]
            assert files, f"COPY {source}: nothing there"
            for file in files:
                assert (REPO / file).exists(), f"COPY {file}: missing"
                assert not dockerignored(file, patterns), f"COPY {file}: excluded by .dockerignore"
    assert dockerignored(".venv/bin/python", patterns)
    assert dockerignored("streamdrift/__pycache__/x.pyc", patterns)
    assert fnmatch.fnmatch("pyproject.toml", "*")  # the allow-list starts from "everything out"


# -- the demo producer --------------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.slow
def test_compose_demo_producer_streams_events_the_deploy_config_decodes(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    from tests.service_harness import consume_all

    topic = topic_factory(partitions=2)
    n = 1200
    # The compose service's own command, pointed at the test broker and topic, and faster.
    command = argv(service(yaml.safe_load(COMPOSE.read_text()), "demo-producer")["command"])
    command[command.index("--kafka") + 1] = kafka_bootstrap
    command[command.index("--topic") + 1] = topic
    command[command.index("--rate") + 1] = "100000"
    command[command.index("--events") + 1] = str(n)
    result = subprocess.run([sys.executable, "-m", "streamdrift", *command],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == n
    events = [json.loads(r.value) for r in records]
    assert {r.key for r in records} == {b"fraud-v3", b"credit-v1"}
    assert all(r.key == e["model_id"].encode() for r, e in zip(records, events, strict=True))
    assert len({e["event_id"] for e in events}) == n, "a new seed per round, new event ids"

    # The events fit deploy/streamdrift.yaml's mapping: replay them (state in memory) with it.
    doc = yaml.safe_load(DEPLOY_CONFIG.read_text())
    doc["redis"] = None
    config = tmp_path / "deploy-replay.yaml"
    config.write_text(yaml.safe_dump(doc))
    lines = tmp_path / "events.jsonl"
    lines.write_text("".join(json.dumps(e) + "\n" for e in events))
    dead = tmp_path / "dead.jsonl"
    replay = subprocess.run(
        [sys.executable, "-m", "streamdrift", "replay", "--config", str(config), "--input",
         str(lines), "--output", str(tmp_path / "alerts.jsonl"), "--dead-letter", str(dead),
         "--quiet"], capture_output=True, text=True, timeout=120, check=False)
    assert replay.returncode == 0, replay.stderr
    assert dead.read_text() == "", f"events rejected by the deploy mapping:\n{dead.read_text()}"
