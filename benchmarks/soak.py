"""Soak test: the service under a steady produce rate for a bounded time; RSS, lag, checkpoints.

Runs on demand, not in CI (it takes the machine for ``--duration``)::

    .venv/bin/python -m benchmarks.soak                      # 10 minutes at 2,000 events/s
    .venv/bin/python -m benchmarks.soak --duration 60 --json

Real Kafka and Redis (``scripts/kafka.sh`` / ``scripts/redis.sh``, or ``--bootstrap``/``--redis``),
the real service process (``streamdrift run``), a producer thread at ``--rate`` events/s of the
synthetic model stream with 0.5% broken messages and a trickle of new model ids (up to
``limits.max_models``). Every ``--sample-every`` seconds it records the service's RSS and CPU,
the consumer lag and consumed count (from ``/metrics``), the mean checkpoint duration and the
checkpoint size. The verdict compares the second half of the run against its first:

* RSS flat: slope over the second half below ``--max-rss-slope`` MiB/min;
* lag flat: the service keeps up (second-half lag below 5 s of input, slope not positive beyond
  noise);
* checkpoint time flat: second-half median (of per-interval means) at most 1.5x the first
  half's (+5 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from benchmarks._harness import machine
from benchmarks.bench_e2e import create_topics, delete_topics, dev_address

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Sample:
    t_s: float
    produced: int
    consumed: float
    lag: float
    rss_mib: float
    cpu_pct: float
    checkpoints: float
    checkpoint_ms: float  # mean over the interval (NaN: none in it)
    checkpoint_kib: float
    dead_letters: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            continue
    return out


class Producer(threading.Thread):
    """Steady rate, in 50 ms ticks, of synthetic events with some broken ones."""

    def __init__(self, bootstrap: str, topic: str, rate: float, partitions: int) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaProducer

        from streamdrift.synthetic import synthetic_events

        events, _ = synthetic_events(50_000, seed=21, drift_at=None, outlier_rate=0.002)
        self.values = [orjson.dumps(e) for e in events]
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20)
        self.topic, self.rate, self.partitions = topic, rate, partitions
        self.sent = 0
        self.stop_event = threading.Event()
        self.rng = random.Random(5)

    def _value(self, i: int) -> bytes:
        r = self.rng.random()
        if r < 0.005:
            return b"{broken" if r < 0.0025 else b'{"model_id": "fraud-v3", "features": 7}'
        if r < 0.0055:  # new model ids: admitted up to limits.max_models, then dead letters
            return orjson.dumps({"model_id": f"m-{i}", "features": {"amount": r, "age": 1}})
        return self.values[i % len(self.values)]

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                self.producer.send(
                    self.topic, self._value(self.sent), partition=self.sent % self.partitions
                )
                self.sent += 1
            self.stop_event.wait(0.05)
        self.producer.flush(timeout=60)
        self.producer.close()


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs = [p[0] / 60.0 for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def _median(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else float("nan")


def verdict(samples: list[Sample], rate: float, max_rss_slope: float) -> dict[str, Any]:
    half = samples[len(samples) // 2 :]
    first = samples[1 : len(samples) // 2]  # skip the start-up sample
    rss_slope = _slope_per_min([(s.t_s, s.rss_mib) for s in half])
    lag_slope = _slope_per_min([(s.t_s, s.lag) for s in half])
    lag_max = max((s.lag for s in half), default=0.0)
    cp_first, cp_second = (
        _median([s.checkpoint_ms for s in first]),
        _median([s.checkpoint_ms for s in half]),
    )
    rss_flat = rss_slope < max_rss_slope
    lag_flat = lag_max < 5 * rate and lag_slope < 0.5 * rate
    cp_flat = not cp_second > 1.5 * cp_first + 5.0
    return {
        "rss_slope_mib_per_min_second_half": rss_slope,
        "rss_mib_first": samples[1].rss_mib if len(samples) > 1 else float("nan"),
        "rss_mib_last": samples[-1].rss_mib,
        "lag_max_second_half": lag_max,
        "lag_slope_per_min_second_half": lag_slope,
        "checkpoint_ms_first_half": cp_first,  # median of the per-interval means
        "checkpoint_ms_second_half": cp_second,
        "rss_flat": rss_flat,
        "lag_flat": lag_flat,
        "checkpoint_flat": cp_flat,
        "flat": rss_flat and lag_flat and cp_flat,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = args.bootstrap or dev_address("kafka.sh", "BOOTSTRAP")
    redis_url = args.redis or dev_address("redis.sh", "REDIS_URL")
    topic = f"soak-{uuid.uuid4().hex[:8]}"
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    create_topics(bootstrap, [topic, f"{topic}-alerts", f"{topic}-dlq"], args.partitions)
    work = Path(tempfile.mkdtemp(prefix="streamdrift-soak-"))
    config = work / "soak.yaml"
    doc = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"{topic}-g",
            "input_topics": [topic],
            "alert_topic": f"{topic}-alerts",
            "dead_letter_topic": f"{topic}-dlq",
        },
        "redis": {"url": redis_url, "key_prefix": prefix},
        "checkpoint": {"every_seconds": 1.0},
        "limits": {"max_models": 20},
        "metrics": {"port": port},
        "log_level": "WARNING",
    }
    config.write_text(yaml.safe_dump(doc))
    log = (work / "service.log").open("wb")
    svc = subprocess.Popen(
        [sys.executable, "-m", "streamdrift", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    proc = psutil.Process(svc.pid)
    proc.cpu_percent()
    producer = Producer(bootstrap, topic, args.rate, args.partitions)
    samples: list[Sample] = []
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for the endpoint
            try:
                _metrics(port)
                break
            except OSError:
                if svc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"service did not start; log in {work}/service.log") from None
                time.sleep(0.5)
        producer.start()
        start = time.monotonic()
        prev_sum = prev_count = 0.0
        while (elapsed := time.monotonic() - start) < args.duration:
            time.sleep(min(args.sample_every, max(0.0, args.duration - elapsed)))
            if svc.poll() is not None:
                raise SystemExit(f"service exited with {svc.returncode}; log in {work}")
            m = _metrics(port)
            cp_sum = m.get("streamdrift_checkpoint_seconds_sum", 0.0)
            cp_count = m.get("streamdrift_checkpoint_seconds_count", 0.0)
            n = cp_count - prev_count
            samples.append(
                Sample(
                    t_s=round(time.monotonic() - start, 1),
                    produced=producer.sent,
                    consumed=m.get("streamdrift_events_consumed_total", 0.0),
                    lag=m.get("streamdrift_consumer_lag", 0.0),
                    rss_mib=proc.memory_info().rss / 2**20,
                    cpu_pct=proc.cpu_percent(),
                    checkpoints=cp_count,
                    checkpoint_ms=(cp_sum - prev_sum) / n * 1000 if n else float("nan"),
                    checkpoint_kib=m.get("streamdrift_checkpoint_bytes", 0.0) / 1024,
                    dead_letters=m.get("streamdrift_dead_letters_total", 0.0),
                )
            )
            prev_sum, prev_count = cp_sum, cp_count
    finally:
        producer.stop_event.set()
        if producer.is_alive():
            producer.join(timeout=60)
        if svc.poll() is None:
            svc.send_signal(signal.SIGTERM)
            try:
                svc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                svc.kill()
        log.close()
        try:
            delete_topics(bootstrap, [topic, f"{topic}-alerts", f"{topic}-dlq"])
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{{{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
        except Exception as exc:  # cleanup is best effort
            print(f"cleanup: {exc}", file=sys.stderr)
    return {
        "machine": machine(),
        "settings": {
            "duration_s": args.duration,
            "rate": args.rate,
            "partitions": args.partitions,
            "sample_every_s": args.sample_every,
        },
        "exit_code": svc.returncode,
        "samples": [asdict(s) for s in samples],
        "verdict": verdict(samples, args.rate, args.max_rss_slope),
    }


def print_report(result: dict[str, Any]) -> None:
    cols = [
        ("t_s", "t (s)", "{:.0f}"),
        ("produced", "produced", "{:,}"),
        ("consumed", "consumed", "{:,.0f}"),
        ("lag", "lag", "{:,.0f}"),
        ("rss_mib", "RSS MiB", "{:.1f}"),
        ("cpu_pct", "CPU %", "{:.0f}"),
        ("checkpoints", "checkpoints", "{:.0f}"),
        ("checkpoint_ms", "ckpt ms", "{:.1f}"),
        ("checkpoint_kib", "ckpt KiB", "{:.0f}"),
        ("dead_letters", "dead letters", "{:,.0f}"),
    ]
    print("| " + " | ".join(h for _, h, _ in cols) + " |")
    print("|" + "---|" * len(cols))
    for s in result["samples"]:
        print("| " + " | ".join(fmt.format(s[k]) for k, _, fmt in cols) + " |")
    v = result["verdict"]

    def word(ok: bool) -> str:
        return "flat" if ok else "NOT flat"

    print()
    print(
        f"RSS {v['rss_mib_first']:.1f} -> {v['rss_mib_last']:.1f} MiB, second-half slope "
        f"{v['rss_slope_mib_per_min_second_half']:+.2f} MiB/min ({word(v['rss_flat'])}); "
        f"lag max {v['lag_max_second_half']:,.0f}, slope "
        f"{v['lag_slope_per_min_second_half']:+,.0f}/min ({word(v['lag_flat'])}); "
        f"checkpoint median {v['checkpoint_ms_first_half']:.1f} -> "
        f"{v['checkpoint_ms_second_half']:.1f} ms ({word(v['checkpoint_flat'])})"
    )
    print(
        f"verdict: {'FLAT' if v['flat'] else 'NOT FLAT'}; service exit code {result['exit_code']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s (default 2000)")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument("--max-rss-slope", type=float, default=1.0, help="MiB/min (default 1)")
    parser.add_argument("--bootstrap", default=None, help="default: scripts/kafka.sh env")
    parser.add_argument("--redis", default=None, help="default: scripts/redis.sh env")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if result["verdict"]["flat"] and result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
