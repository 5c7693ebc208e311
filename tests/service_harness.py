"""Run the real service as a process and watch its effects in Kafka and Redis (test helpers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamdrift.bank import DetectorBank
from streamdrift.config import Config, load_config
from streamdrift.state.base import TaskId
from streamdrift.state.redis import RedisStore


def free_port() -> int:
    """A TCP port free on loopback now (for a metrics endpoint or a private server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; an HTTP error is its status, no connection at all is 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def write_config(
    path: Path,
    *,
    bootstrap: str,
    topic: str,
    redis_url: str,
    prefix: str,
    group: str,
    every_events: int = 5000,
    every_seconds: float = 1.0,
    extra: dict[str, Any] | None = None,
) -> Path:
    doc: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "input_topics": [topic],
            "alert_topic": f"{topic}-alerts",
            "dead_letter_topic": f"{topic}-dlq",
            "max_poll_records": 1000,
            "poll_timeout_ms": 200,
            "client": {"session_timeout_ms": 10000, "heartbeat_interval_ms": 1000},
        },
        "redis": {"url": redis_url, "key_prefix": prefix},
        "checkpoint": {"every_events": every_events, "every_seconds": every_seconds},
        "metrics": {"port": 0},
    }
    for section, values in (extra or {}).items():
        doc.setdefault(section, {})
        if isinstance(values, dict):
            doc[section].update(values)
        else:
            doc[section] = values
    path.write_text(yaml.safe_dump(doc))
    return path


class ServiceProcess:
    """``streamdrift run --config FILE`` as a child process, logs in a file."""

    def __init__(
        self, config_path: Path, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = env or {}  # extra variables, e.g. the test-only SD_FAULT_CHECKPOINT hook
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"service did not stop on {sig!r} within {timeout_s} s") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    for value in values:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=60)
    producer.close()


def consume_all(bootstrap: str, topic: str, *, idle_s: float = 3.0) -> list[Any]:
    """Every record currently in ``topic`` (reads until ``idle_s`` pass with nothing new)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_s * 1000),
    )
    records = list(consumer)
    consumer.close()
    return records


def checkpointed_offsets(redis_url: str, prefix: str, topic: str, partitions: int) -> list[int]:
    store = RedisStore(redis_url, prefix)
    out = []
    for p in range(partitions):
        snap = store.load(TaskId(topic, p))
        out.append(-1 if snap is None else snap.offset)
    store.close()
    return out


def wait_checkpointed(
    redis_url: str,
    prefix: str,
    topic: str,
    ends: list[int],
    service: ServiceProcess | None = None,
    timeout_s: float = 120.0,
) -> None:
    """Wait until every partition's checkpoint reached its end offset."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if checkpointed_offsets(redis_url, prefix, topic, len(ends)) == ends:
            return
        if service is not None and not service.alive():
            raise AssertionError(f"service exited early:\n{service.log_text()[-4000:]}")
        time.sleep(0.3)
    got = checkpointed_offsets(redis_url, prefix, topic, len(ends))
    log = service.log_text()[-4000:] if service else ""
    raise AssertionError(f"checkpoints at {got}, expected {ends} after {timeout_s} s\n{log}")


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = consumer.end_offsets(tps)
    consumer.close()
    return [ends[tp] for tp in tps]


def load_banks(config: Config, topic: str, partitions: int) -> list[DetectorBank]:
    assert config.redis is not None
    store = RedisStore(config.redis.url.get_secret_value(), config.redis.key_prefix)
    banks = []
    for p in range(partitions):
        snap = store.load(TaskId(topic, p))
        assert snap is not None, f"no checkpoint for partition {p}"
        banks.append(DetectorBank.from_state(config, TaskId(topic, p), snap.state))
    store.close()
    return banks


def detector_states(bank: DetectorBank) -> dict[str, Any]:
    """The bank's detector states keyed by stream, for comparing two runs."""
    return {
        f"{model}/{feature}/{kind}": det.to_state()
        for model, feature, kind, det in bank.detectors()
    }


def alerts_of(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


__all__ = [
    "ServiceProcess",
    "alerts_of",
    "checkpointed_offsets",
    "consume_all",
    "detector_states",
    "end_offsets",
    "load_banks",
    "load_config",
    "produce",
    "wait_checkpointed",
    "wait_until",
    "write_config",
]
