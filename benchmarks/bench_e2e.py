"""End-to-end throughput through the real Kafka broker and Redis: one ``streamdrift run`` process.

    python -m benchmarks.bench_e2e                    # 1,000,000 events, table (markdown)
    python -m benchmarks.bench_e2e --events 200000    # fewer events
    python -m benchmarks.bench_e2e --json             # machine-readable
    python -m benchmarks.bench_e2e --quick            # 50,000 events, small baselines (smoke)

The broker and Redis come from ``scripts/kafka.sh env`` / ``scripts/redis.sh env`` unless
``--bootstrap`` / ``--redis`` are given. N events (the shape of ``bench_hotpath``: 10 numeric + 2
categorical features and a score, drift at half-way) are produced round-robin onto a fresh
4-partition topic before anything is timed. Then ONE service process starts (``python -m
streamdrift run --config FILE``, default monitors, ``max_poll_records`` 2,000, checkpoints every
1 s, metrics port 0) and is timed from its start until the Redis checkpoints of all partitions
reach the end offsets ("wall": includes interpreter start-up and the group join), and from its
first checkpoint to the last ("steady"). Its RSS is sampled with psutil; the checkpoint size is the
length of the state documents in Redis.

Baseline, same run: the naive service — a kafka-python consumer handling one message at a time
(``json.loads``), river ``ADWIN`` + ``PageHinkley`` per numeric feature, the partition's detector
state unpickled from Redis and pickled back to it per event, alerts produced per drift — on the
first ``--baseline-events`` of the topic. Floor: a kafka-python consumer polling the whole topic
in batches of 2,000 and discarding it, with the client's default ``check_crcs=True`` (as the
service runs) and again with ``check_crcs=False`` (without the optional ``crc32c`` package
kafka-python verifies CRCs in pure Python). Baseline and floor are timed from their first message
to their last. Everything (broker, Redis, service, this script) shares the same machine. The
topics created are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import yaml

from benchmarks._harness import emit_json, fmt_rate, machine, print_table
from benchmarks.bench_hotpath import NUMERIC, make_events

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 4


CONFLUENT = "confluent-kafka"
LIBRARIES = ["kafka-python", CONFLUENT]


def confluent_version() -> str:
    try:
        import confluent_kafka
    except ImportError:
        return "not installed"
    return f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"


def machine_speed_us(raw: list[bytes]) -> float:
    """Median of 3 ``orjson.loads`` passes over 100,000 of the events, in us per event: how
    fast this machine is during this run (figures from runs on a slower moment scale with it)."""
    import statistics

    import orjson

    sample = raw[:100_000]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for value in sample:
            orjson.loads(value)
        times.append((time.perf_counter() - start) / len(sample) * 1e6)
    return statistics.median(times)


def dev_address(script: str, var: str) -> str:
    out = subprocess.run(
        [str(REPO / "scripts" / script), "env"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if line.startswith(f"{var}="):
            return line.split("=", 1)[1].strip()
    raise SystemExit(f"scripts/{script} env printed no {var}=; is the server running?")


# -- topic set-up ----------------------------------------------------------------------------


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: list[str]) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        todo = [n for n in names if n in existing]
        if todo:
            admin.delete_topics(todo)
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=50,
        batch_size=512 * 1024,
    )
    start = time.perf_counter()
    send = producer.send
    for i, value in enumerate(values):
        send(topic, value=value, partition=i % partitions)
    producer.flush(timeout=600)
    producer.close()
    return time.perf_counter() - start


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]
    finally:
        consumer.close()


# -- ours: the service process ---------------------------------------------------------------


def write_config(
    path: Path,
    bootstrap: str,
    redis_url: str,
    topic: str,
    prefix: str,
    group: str,
    check_crcs: bool = True,
    library: str = "kafka-python",
    metrics_port: int = 0,
) -> None:
    doc: dict[str, Any] = {
        "kafka": {
            "library": library,
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "input_topics": [topic],
            "alert_topic": f"{topic}-alerts",
            "dead_letter_topic": f"{topic}-dlq",
        },
        "redis": {"url": redis_url, "key_prefix": prefix},
        "checkpoint": {"every_seconds": 1.0},
        "metrics": {"port": metrics_port},
        "log_level": "WARNING",
    }
    if not check_crcs:
        doc["kafka"]["client"] = {"check_crcs": False}
    path.write_text(yaml.safe_dump(doc))


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def saved_offsets(store: Any, topic: str, partitions: int) -> list[int]:
    """The checkpointed next offset per partition (-1: none yet), without fetching the state."""
    out = []
    for p in range(partitions):
        task_key, _ = store._keys(_task(topic, p))
        raw = store._client.hget(task_key, "offset")
        out.append(-1 if raw is None else int(raw))
    return out


def checkpoints(store: Any, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(offset, state bytes) per partition; (-1, 0) where there is none yet."""
    from streamdrift.state.base import TaskId

    out = []
    for p in range(partitions):
        snap = store.load(TaskId(topic, p))
        out.append((-1, 0) if snap is None else (snap.offset, len(snap.state)))
    return out


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.every_s = every_s
        self.peak = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.stop_flag.wait(self.every_s)


def run_service(
    bootstrap: str,
    redis_url: str,
    topic: str,
    ends: list[int],
    workdir: Path,
    timeout_s: float,
    check_crcs: bool = True,
    library: str = "kafka-python",
) -> dict[str, Any]:
    from streamdrift.state.redis import RedisStore

    run_id = uuid.uuid4().hex[:8]
    prefix, group = f"bench-e2e-{run_id}", f"bench-e2e-{run_id}"
    config = workdir / "service.yaml"
    log_path = workdir / "service.log"
    port = free_port()
    write_config(config, bootstrap, redis_url, topic, prefix, group, check_crcs, library, port)
    store = RedisStore(redis_url, prefix)
    total = sum(ends)
    alerts_before = sum(end_offsets(bootstrap, f"{topic}-alerts", PARTITIONS))
    first: tuple[float, int] | None = None
    me = psutil.Process()
    with log_path.open("wb") as log:
        own_cpu_s = _cpu_s(me)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            deadline = start + timeout_s
            while True:
                now = time.perf_counter()
                offsets = saved_offsets(store, topic, len(ends))
                done = sum(max(0, o) for o in offsets)
                if first is None and done > 0:
                    first = (now, done)
                if offsets == ends:
                    end = now
                    break
                if proc.poll() is not None:
                    raise SystemExit(f"service exited early:\n{log_path.read_text()[-3000:]}")
                if now > deadline:
                    raise SystemExit(f"checkpoints at {offsets} after {timeout_s} s, ends {ends}")
                time.sleep(0.1)
            own_cpu_s = _cpu_s(me) - own_cpu_s
            service_cpu_s = _cpu_s(psutil.Process(proc.pid))
            # The histogram is observed after the Redis write (and the Kafka commit) that the loop
            # above waited for: give the last checkpoint a moment to be counted.
            checkpoint_times = checkpoint_quantiles(port)
            settle = time.perf_counter() + 5.0
            while checkpoint_times["count"] < 1 and time.perf_counter() < settle:
                time.sleep(0.1)
                checkpoint_times = checkpoint_quantiles(port)
            time.sleep(0.3)
            checkpoint_times = checkpoint_quantiles(port)
        finally:
            sampler.stop_flag.set()
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            sampler.join()
    assert first is not None
    sizes = [size for _, size in checkpoints(store, topic, len(ends))]
    for p in range(len(ends)):  # leave nothing behind in the shared Redis
        store._client.delete(*store._keys(_task(topic, p)))
    store.close()
    wall = end - start
    steady = end - first[0]
    return {
        "events": total,
        "wall_s": wall,
        "wall_rate": total / wall,
        "steady_s": steady,
        "steady_events": total - first[1],
        "steady_rate": (total - first[1]) / steady if steady > 0 else float("nan"),
        "first_checkpoint_s": first[0] - start,
        "peak_rss_bytes": sampler.peak,
        "service_cpu_s": service_cpu_s,
        "check_crcs": check_crcs,
        "library": library,
        "watcher_cpu_s": own_cpu_s,
        "checkpoint_bytes": sizes,
        "checkpoint_seconds": checkpoint_times,
        # runs share the alert topic: this run's alerts are what it added
        "alerts": sum(end_offsets(bootstrap, f"{topic}-alerts", PARTITIONS)) - alerts_before,
        "log_tail": log_path.read_text(errors="replace")[-2000:],
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def checkpoint_quantiles(port: int) -> dict[str, float]:
    """p50/p99 of the service's ``checkpoint_seconds`` histogram, interpolated within buckets as
    Prometheus' ``histogram_quantile`` does (what a Grafana panel shows), plus count and mean."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("streamdrift_checkpoint_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("streamdrift_checkpoint_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("streamdrift_checkpoint_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])

    def quantile(q: float) -> float:
        rank, lower, below = q * count, 0.0, 0.0
        for upper, cumulative in buckets:
            if cumulative >= rank:
                if upper == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
            lower, below = upper, cumulative
        return float("nan")

    return {
        "count": count,
        "mean": total / count if count else float("nan"),
        "p50": quantile(0.5),
        "p99": quantile(0.99),
    }


def _task(topic: str, partition: int) -> Any:
    from streamdrift.state.base import TaskId

    return TaskId(topic, partition)


# -- baseline and floor ----------------------------------------------------------------------


def _consumer(bootstrap: str, topic: str, partitions: int, **kwargs: Any) -> Any:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kwargs,
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer


def run_floor(bootstrap: str, topic: str, total: int, check_crcs: bool = True) -> dict[str, Any]:
    """Poll batches of 2,000 (as the service does) and drop them."""
    consumer = _consumer(bootstrap, topic, PARTITIONS, check_crcs=check_crcs)
    n = nbytes = 0
    first = 0.0
    while n < total:
        polled = consumer.poll(timeout_ms=500, max_records=2000)
        if polled and n == 0:
            first = time.perf_counter()
        for records in polled.values():
            n += len(records)
            nbytes += sum(len(r.value) for r in records)
    seconds = time.perf_counter() - first
    consumer.close()
    return {
        "events": n,
        "seconds": seconds,
        "rate": n / seconds,
        "bytes": nbytes,
        "check_crcs": check_crcs,
    }


def run_floor_confluent(bootstrap: str, topic: str, total: int) -> dict[str, Any]:
    """The same with confluent-kafka: ``consume`` batches of 2,000, each message's fields read."""
    import confluent_kafka as ck

    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-floor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(PARTITIONS)])
    n = nbytes = 0
    first = 0.0
    while n < total:
        messages = consumer.consume(2000, 0.5)
        if messages and n == 0:
            first = time.perf_counter()
        for m in messages:
            if m.error() is None:
                value = m.value()
                m.topic(), m.partition(), m.offset(), m.timestamp(), m.key()
                n += 1
                nbytes += len(value)
    seconds = time.perf_counter() - first
    consumer.close()
    return {"events": n, "seconds": seconds, "rate": n / seconds, "bytes": nbytes}


def run_naive(bootstrap: str, redis_url: str, topic: str, total: int) -> dict[str, Any]:
    """One message at a time; detector state pickled from and to Redis around every event."""
    import redis
    from kafka import KafkaProducer
    from river import drift

    client = redis.Redis.from_url(redis_url)
    prefix = f"bench-naive-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    consumer = _consumer(bootstrap, topic, PARTITIONS)
    alert_topic = f"{topic}-alerts-naive"
    n = n_alerts = 0
    first = 0.0
    state_bytes = 0
    for record in consumer:
        if n == 0:
            first = time.perf_counter()
        event = json.loads(record.value)
        key = f"{prefix}:{record.topic}:{record.partition}:{event['model_id']}"
        blob = client.get(key)
        if blob is None:
            state = {f: (drift.ADWIN(), drift.PageHinkley()) for f in NUMERIC}
        else:
            state = pickle.loads(blob)
        feats = event["features"]
        for f, (adwin, ph) in state.items():
            value = feats[f]
            for kind, det in (("adwin", adwin), ("page_hinkley", ph)):
                det.update(value)
                if det.drift_detected:
                    n_alerts += 1
                    alert = {
                        "type": "drift",
                        "model_id": event["model_id"],
                        "feature": f,
                        "detector": kind,
                        "offset": record.offset,
                        "partition": record.partition,
                    }
                    producer.send(alert_topic, json.dumps(alert).encode())
        blob = pickle.dumps(state)
        state_bytes = len(blob)
        client.set(key, blob)
        n += 1
        if n >= total:
            break
    producer.flush()
    seconds = time.perf_counter() - first
    consumer.close()
    producer.close()
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
    return {
        "events": n,
        "seconds": seconds,
        "rate": n / seconds,
        "alerts": n_alerts,
        "state_bytes": state_bytes,
    }


# -- main ------------------------------------------------------------------------------------


def collect(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = args.bootstrap or dev_address("kafka.sh", "BOOTSTRAP")
    redis_url = args.redis or dev_address("redis.sh", "REDIS_URL")
    n = args.events or (50_000 if args.quick else 1_000_000)
    n_base = args.baseline_events or (2_000 if args.quick else 20_000)
    topic = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    topics = [topic, f"{topic}-alerts", f"{topic}-dlq", f"{topic}-alerts-naive"]
    t = time.perf_counter()
    raw = make_events(n)
    gen_s = time.perf_counter() - t
    create_topics(bootstrap, topics, PARTITIONS)
    try:
        produce_s = produce(bootstrap, topic, raw, PARTITIONS)
        speed_us = machine_speed_us(raw)
        del raw
        ends = end_offsets(bootstrap, topic, PARTITIONS)
        if sum(ends) != n:
            raise SystemExit(f"topic holds {sum(ends)} events, expected {n}")
        ours_by: dict[str, dict[str, Any]] = {}
        for library in args.library:
            with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
                ours_by[library] = run_service(
                    bootstrap,
                    redis_url,
                    topic,
                    ends,
                    Path(tmp),
                    args.timeout,
                    args.check_crcs,
                    library,
                )
        naive = run_naive(bootstrap, redis_url, topic, min(n_base, n))
        floor = run_floor(bootstrap, topic, n)
        floor_nocrc = run_floor(bootstrap, topic, n, check_crcs=False)
        floor_ck = run_floor_confluent(bootstrap, topic, n) if CONFLUENT in args.library else None
    finally:
        delete_topics(bootstrap, topics)
    return {
        "bootstrap": bootstrap,
        "events": n,
        "partitions": PARTITIONS,
        "generate_s": gen_s,
        "produce_s": produce_s,
        "produce_rate": n / produce_s,
        "orjson_us_per_event": speed_us,
        "ours": ours_by,
        "baseline": naive,
        "floor": floor,
        "floor_no_crc": floor_nocrc,
        "floor_confluent": floor_ck,
        "ratios": {
            library: {
                "steady_baseline": ours["steady_rate"] / naive["rate"],
                "wall_baseline": ours["wall_rate"] / naive["rate"],
                # against the floor read with the same client (and check_crcs)
                "steady_floor": ours["steady_rate"]
                / (
                    floor_ck
                    if library == CONFLUENT and floor_ck
                    else floor
                    if args.check_crcs
                    else floor_nocrc
                )["rate"],
            }
            for library, ours in ours_by.items()
        },
        "topics_deleted": topics,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--events", type=int, default=None, help="events (default 1,000,000)")
    parser.add_argument("--baseline-events", type=int, default=None, help="default 20,000")
    parser.add_argument("--bootstrap", default=None, help="default: scripts/kafka.sh env")
    parser.add_argument("--redis", default=None, help="default: scripts/redis.sh env")
    parser.add_argument("--timeout", type=float, default=900.0, help="service run limit, s")
    parser.add_argument(
        "--check-crcs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the service's kafka.client.check_crcs (default: on, the client's default)",
    )
    parser.add_argument(
        "--library",
        action="append",
        choices=LIBRARIES,
        default=None,
        help="the service's kafka.library; repeat for several (default: both, one run each)",
    )
    args = parser.parse_args(argv)
    args.library = args.library or LIBRARIES
    res = collect(args)
    base, floor = res["baseline"], res["floor"]
    nocrc, floor_ck = res["floor_no_crc"], res["floor_confluent"]
    if args.json:
        emit_json({"benchmark": "e2e", **res})
        return 0
    m = machine()
    v = m["versions"]
    mib = 1024 * 1024
    print(
        f"{m['cpu']} ({m['cores']} cores, shared by broker, Redis, service and this script), "
        f"Python {m['python']}, kafka-python {v['kafka-python']}, confluent-kafka "
        f"{confluent_version()}, redis-py {v['redis']}\n"
        f"{res['events']:,} events on {res['partitions']} partitions, produced in "
        f"{res['produce_s']:.1f} s ({fmt_rate(res['produce_rate'])}) before timing; machine "
        f"speed: orjson.loads {res['orjson_us_per_event']:.2f} us/event in this run\n"
    )
    rows = []
    for library, ours in res["ours"].items():
        cp, ct = ours["checkpoint_bytes"], ours["checkpoint_seconds"]
        rows.append(
            [
                f"ours: 1 streamdrift run process, {library}"
                + ("" if ours["check_crcs"] else ", check_crcs=False"),
                f"{ours['events']:,}",
                f"{fmt_rate(ours['wall_rate'])} ({ours['wall_s']:.1f} s)",
                f"{fmt_rate(ours['steady_rate'])} ({ours['steady_s']:.1f} s)",
                f"{ours['peak_rss_bytes'] / mib:.0f} MiB",
                f"{ct['p50'] * 1000:.0f} / {ct['p99'] * 1000:.0f} ms ({ct['count']:.0f})",
                f"{sum(cp) / 1024:.0f} KiB ({len(cp)} x ~{max(cp) / 1024:.0f} KiB)",
                f"{ours['alerts']:,}",
            ]
        )
    rows += [
        [
            "baseline: naive per-event consumer",
            f"{base['events']:,}",
            "-",
            f"{fmt_rate(base['rate'])} ({base['seconds']:.1f} s)",
            "-",
            "every event",
            f"{base['state_bytes'] / 1024:.0f} KiB per partition, per event",
            f"{base['alerts']:,}",
        ],
        [
            "floor: kafka-python poll + discard",
            f"{floor['events']:,}",
            "-",
            f"{fmt_rate(floor['rate'])} ({floor['seconds']:.1f} s)",
            "-",
            "-",
            "-",
            "-",
        ],
        [
            "floor, check_crcs=False",
            f"{nocrc['events']:,}",
            "-",
            f"{fmt_rate(nocrc['rate'])} ({nocrc['seconds']:.1f} s)",
            "-",
            "-",
            "-",
            "-",
        ],
    ]
    if floor_ck is not None:
        rows.append(
            [
                "floor: confluent-kafka consume + discard",
                f"{floor_ck['events']:,}",
                "-",
                f"{fmt_rate(floor_ck['rate'])} ({floor_ck['seconds']:.1f} s)",
                "-",
                "-",
                "-",
                "-",
            ]
        )
    print_table(
        [
            "case",
            "events",
            "wall: start to last checkpoint",
            "steady (1st message or checkpoint to last)",
            "peak RSS",
            "checkpoint p50 / p99 (n)",
            "checkpoint size",
            "alerts",
        ],
        rows,
    )
    print()
    for library, ours in res["ours"].items():
        r = res["ratios"][library]
        print(
            f"{library}: ours/baseline {r['steady_baseline']:.1f}x steady, "
            f"{r['wall_baseline']:.1f}x wall; ours/floor (same client): "
            f"{r['steady_floor']:.2f}x steady; first checkpoint {ours['first_checkpoint_s']:.1f} s "
            f"after start; service CPU {ours['service_cpu_s']:.1f} s "
            f"({ours['service_cpu_s'] / ours['wall_s']:.0%} of a core, "
            f"{ours['service_cpu_s'] / ours['events'] * 1e6:.1f} us/event), this script while "
            f"watching {ours['watcher_cpu_s']:.1f} s"
        )
    print(f"topics deleted: {', '.join(res['topics_deleted'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
