"""The service keeps going through an unreachable Redis, loses nothing, and says so on /readyz."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from streamdrift.synthetic import synthetic_events
from tests.service_harness import (
    ServiceProcess,
    end_offsets,
    free_port,
    http_get,
    load_banks,
    load_config,
    produce,
    wait_checkpointed,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def private_redis(tmp_path: Path):
    """A Redis of this test's own (scripts/redis.sh with its own run dir), to freeze at will."""
    env = {**os.environ, "STREAMDRIFT_RUN_DIR": str(tmp_path / "run")}
    out = subprocess.run(
        [str(REPO / "scripts" / "redis.sh"), "start"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    url = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("REDIS_URL="))
    pid = int((tmp_path / "run" / "redis" / "redis.pid").read_text())
    yield url, pid
    os.kill(pid, signal.SIGCONT)
    subprocess.run([str(REPO / "scripts" / "redis.sh"), "stop"], env=env, check=False)


def test_redis_unreachable_during_checkpoint_pauses_then_recovers(
    tmp_path: Path, kafka_bootstrap: str, topic_factory, private_redis
) -> None:
    redis_url, redis_pid = private_redis
    topic = topic_factory(partitions=1)
    port = free_port()
    path = write_config(
        tmp_path / "cfg.yaml",
        bootstrap=kafka_bootstrap,
        topic=topic,
        redis_url=redis_url,
        prefix="faults",
        group=f"{topic}-g",
        every_events=1000,
        every_seconds=0.5,
        extra={"metrics": {"port": port}},
    )
    events, _ = synthetic_events(6000, seed=3, drift_at=None, outlier_rate=0.0)
    values = [orjson.dumps(e) for e in events]
    produce(kafka_bootstrap, topic, values[:3000])
    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    try:
        wait_checkpointed(redis_url, "faults", topic, [3000], svc)
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 30, "ready")

        os.kill(redis_pid, signal.SIGSTOP)  # Redis stops answering (a hung or partitioned server)
        produce(kafka_bootstrap, topic, values[3000:])
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 503, 60, "not ready")
        _, reason = http_get(f"http://127.0.0.1:{port}/readyz")
        assert "redis" in reason.lower()
        assert svc.alive()
        os.kill(redis_pid, signal.SIGCONT)

        wait_checkpointed(redis_url, "faults", topic, end_offsets(kafka_bootstrap, topic, 1), svc)
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "ready again")
        _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
    finally:
        os.kill(redis_pid, signal.SIGCONT)
        svc.stop()
    log = svc.log_text()
    assert "checkpoint failed (redis)" in log and "Traceback" not in log
    (bank,) = load_banks(load_config(path), topic, 1)
    assert bank.counters.n_events == 6000, "no event lost, none counted twice"
    assert bank.counters.offset_sum == 6000 * 5999 // 2
    assert f'streamdrift_events_consumed_total{{topic="{topic}"}} 6000.0' in metrics
    assert f'streamdrift_consumer_lag{{partition="0",topic="{topic}"}} 0.0' in metrics
    assert 'streamdrift_detector_statistic{detector="psi",feature="amount",model="fraud-v3"}' in (
        metrics
    )
    failed = [ln for ln in metrics.splitlines() if 'checkpoints_total{result="failed"}' in ln]
    assert failed and float(failed[0].split()[-1]) >= 1
