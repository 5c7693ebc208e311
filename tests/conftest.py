"""Shared fixtures: the real Kafka broker and Redis started by scripts/, fresh names per test.

Tests that need a server fail (never skip) when it is missing, with the command that starts it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ.get("STREAMDRIFT_RUN_DIR", REPO / ".run"))


def _recorded(env_var: str, port_file: Path, fmt: str) -> str | None:
    if os.environ.get(env_var):
        return os.environ[env_var]
    if port_file.exists():
        return fmt.format(port=port_file.read_text().strip())
    return None


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of the dev broker; fails with the fix when it is not running."""
    bootstrap = _recorded("SD_TEST_KAFKA", RUN_DIR / "kafka" / "port", "127.0.0.1:{port}")
    if bootstrap is None or not kafka_is_ready(bootstrap):
        pytest.fail(
            f"Kafka is not running{f' on {bootstrap}' if bootstrap else ''}: start it with "
            "`scripts/kafka.sh start` (or run everything with `scripts/test`)",
            pytrace=False,
        )
    return bootstrap


def kafka_is_ready(bootstrap: str, timeout_s: float = 0.0) -> bool:
    probe = REPO / "scripts" / "kafka_ready.py"
    cmd = [sys.executable, str(probe), bootstrap, str(timeout_s)]
    return subprocess.run(cmd, check=False).returncode == 0


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``redis://`` URL of the dev Redis; fails with the fix when it is not running."""
    import redis

    url = _recorded(
        "SD_TEST_REDIS", RUN_DIR / "redis" / "port", "redis://127.0.0.1:{port}/0"
    )
    try:
        if url is None:
            raise redis.ConnectionError("no Redis recorded")
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        pytest.fail(
            f"Redis is not running{f' on {url}' if url else ''}: start it with "
            "`scripts/redis.sh start` (or run everything with `scripts/test`)",
            pytrace=False,
        )
    return url


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create fresh topics: ``topic_factory(partitions=2) -> name``; deleted after the test."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="streamdrift-tests")
    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "sd-test") -> str:
        name = unique_name(prefix)
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        created.append(name)
        _wait_for_topic(admin, name, partitions)
        return name

    yield make
    if created:
        # Best effort: a fault test may have stopped the broker.
        with contextlib.suppress(Exception):
            admin.delete_topics(created)
    admin.close()


def _wait_for_topic(admin: object, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_topics([name])  # type: ignore[attr-defined]
        parts = described[0].get("partitions") or [] if described else []
        if len(parts) == partitions and all(p.get("leader_id", -1) >= 0 for p in parts):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {name} has no leaders after {timeout_s} s")


@pytest.fixture
def redis_factory(redis_url: str) -> Iterator[Callable[[], tuple[object, str]]]:
    """Fresh key prefixes: ``redis_factory() -> (client, prefix)``; their keys are deleted after."""
    import redis

    clients: list[tuple[redis.Redis, str]] = []

    def make() -> tuple[redis.Redis, str]:
        client = redis.Redis.from_url(redis_url)
        prefix = unique_name("sdtest")
        clients.append((client, prefix))
        return client, prefix

    yield make
    for client, prefix in clients:
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
        except redis.RedisError:
            pass
