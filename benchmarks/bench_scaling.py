"""Scaling: cost per event and memory as features and models grow; state and checkpoint at scale.

    python -m benchmarks.bench_scaling              # table (markdown), ~3 minutes
    python -m benchmarks.bench_scaling --json       # machine-readable
    python -m benchmarks.bench_scaling --quick      # small sizes (smoke, ~15 s)

Every configuration runs in its own subprocess, so that its memory figures start from a fresh
interpreter. In it: the embedded default config (``streamdrift/configs/default.yaml``, default
monitors: ADWIN, Page-Hinkley and PSI per numeric feature and the prediction, isolation forest
10 trees x h8 on the numeric vector) with ``limits.max_models`` raised to the number of models,
one :class:`~streamdrift.bank.DetectorBank`, events ``{"model_id", "event_id", "ts",
"features": {f00: ..., ...}, "prediction"}`` with F numeric features.

Memory
    The bank is filled to ``k`` events per model (model by model, in batches of 2,000 records
    through ``Decoder.decode_batch`` + ``DetectorBank.process``; raw events are generated per
    batch so that they do not count) and the resident set size is read after ``gc.collect()``
    and ``malloc_trim(0)``: "RSS delta" is RSS then minus RSS before the bank existed. It counts
    everything the bank holds, including ADWIN's Rust windows. Memory depends on where the
    detectors are in their life, so several ``k`` are measured: until 5,000 values a PSI holds
    its warm-up values (the reference to be); from 1,000 rows the forest's trees exist.
Cost per event
    Then ``T`` further events, each from a model drawn uniformly at random (models interleaved as
    on a shared partition), in batches of 2,000 records: raw JSON bytes -> ``decode_batch`` ->
    ``process``. One untimed warm-up pass, then ``repeats`` timed passes, each on fresh events;
    median and min-max of microseconds per event.
Checkpoint (largest configuration)
    ``DetectorBank.to_state()`` (bytes and seconds), ``DetectorBank.from_state()`` (seconds),
    and ``RedisStore.save`` of that document to the real Redis (``SD_TEST_REDIS``, ``--redis`` or
    ``scripts/redis.sh env``; keys under a fresh prefix, deleted afterwards), medians of 3.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import orjson

from benchmarks._harness import emit_json, machine, print_table

REPO = Path(__file__).resolve().parent.parent
BATCH = 2_000
TOPIC = "bench-scaling"
TARGET_BYTES = 1 << 30  # 10,000 models x 10 features under 1 GB (issue)
TARGET_CHECKPOINT_S = 1.0

# (axis, models, features, stages = events per model at which memory is read, checkpoint)
FULL: list[tuple[str, int, int, list[int], bool]] = [
    ("features", 1, 1, [6_000], False),
    ("features", 1, 10, [6_000], False),
    ("features", 1, 100, [6_000], False),
    ("models", 1, 10, [100, 6_000], False),
    ("models", 100, 10, [100, 1_000, 4_900, 6_000], True),  # checkpoint at each k
    ("models", 10_000, 10, [100], True),
]
QUICK: list[tuple[str, int, int, list[int], bool]] = [
    ("features", 1, 1, [1_000], False),
    ("features", 1, 10, [1_000], False),
    ("models", 1, 10, [50], False),
    ("models", 200, 10, [50], True),
]


# -- one configuration (in a subprocess) ------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def settled_rss() -> int:
    """RSS after the garbage is collected and freed heap pages are handed back to the OS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: RSS as it is
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


class Events:
    """Raw JSON events of ``models`` models with ``features`` numeric features, made on demand."""

    def __init__(self, models: int, features: int, seed: int) -> None:
        self.names = [f"f{i:02d}" for i in range(features)]
        self.models = [f"model-{m:05d}" for m in range(models)]
        self.rng = np.random.default_rng(seed)
        self.offset = 0
        # Per-model location and scale, so that models differ as real ones do.
        self.loc = self.rng.normal(0.0, 5.0, (models, features))
        self.scale = self.rng.uniform(0.5, 3.0, (models, features))

    def make(self, model_index: np.ndarray) -> list[Any]:
        from streamdrift.events import RawRecord

        n = model_index.size
        values = self.rng.standard_normal((n, len(self.names)))
        values = np.round(values * self.scale[model_index] + self.loc[model_index], 3).tolist()
        score = np.round(self.rng.uniform(0.0, 1.0, n), 4).tolist()
        names, models, dumps = self.names, self.models, orjson.dumps
        out = []
        for i in range(n):
            m, off = models[model_index[i]], self.offset + i
            doc = {
                "model_id": m,
                "event_id": f"e-{off}",
                "ts": 1_767_225_600.0 + off / 100.0,
                "features": dict(zip(names, values[i], strict=True)),
                "prediction": score[i],
            }
            out.append(RawRecord(dumps(doc), TOPIC, 0, off, None, None))
        self.offset += n
        return out

    def grouped(self, per_model: int) -> Any:
        """Batches of ``per_model`` events for every model, model after model."""
        index = np.repeat(np.arange(len(self.models)), per_model)
        for start in range(0, index.size, BATCH):
            yield self.make(index[start : start + BATCH])

    def interleaved(self, n: int) -> list[list[Any]]:
        index = self.rng.integers(0, len(self.models), n)
        return [self.make(index[s : s + BATCH]) for s in range(0, n, BATCH)]


def make_config(models: int) -> Any:
    import yaml

    from streamdrift.config import DEFAULT_CONFIG_PATH, parse_config

    data = yaml.safe_load(Path(DEFAULT_CONFIG_PATH).read_text())
    data["limits"] = {**data.get("limits", {}), "max_models": max(models, 1)}
    return parse_config(data, {}, source=str(DEFAULT_CONFIG_PATH))


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    from streamdrift.bank import DetectorBank
    from streamdrift.state.base import TaskId

    models, features, stages = spec["models"], spec["features"], spec["stages"]
    config = make_config(models)
    task = TaskId(TOPIC, 0)
    events = Events(models, features, seed=spec.get("seed", 0))
    # Take every detector of one throwaway model through the same life first, so that lazy
    # imports, numpy's first calls and allocator arenas are in the baseline, not the bank.
    scratch = DetectorBank(config, TaskId("scratch", 0))
    for records in Events(1, features, 99).grouped(stages[-1]):
        scratch.process(scratch.decoder.decode_batch(records))
        del records
    scratch.to_state()
    del scratch
    # One model is below the allocator's granularity (RSS moves by MiBs): trace its heap too.
    trace = models == 1
    rss0 = settled_rss()
    if trace:
        tracemalloc.start()
    bank = DetectorBank(config, task)
    memory: list[dict[str, Any]] = []
    checkpoints: list[dict[str, Any]] = []
    done, fill_s, peak_processing = 0, 0.0, 0
    for k in stages:
        start = time.perf_counter()
        for records in events.grouped(k - done):
            bank.process(bank.decoder.decode_batch(records))
            del records  # the input is not the bank's memory
        fill_s += time.perf_counter() - start
        done = k
        delta = settled_rss() - rss0
        point = {"events_per_model": k, "rss_delta": delta, "per_model": delta / models}
        if trace:
            point["traced"] = tracemalloc.get_traced_memory()[0]
        memory.append(point)
        # A checkpoint's transient memory stays in the heap: measured after the memory reading,
        # and only at the last stage unless this process measures checkpoints alone.
        if spec.get("checkpoint") and (spec.get("checkpoint_every_stage") or k == stages[-1]):
            peak_processing = peak_processing or peak_rss()
            checkpoint = measure_checkpoint(bank, config, task, spec.get("redis"))
            checkpoints.append({"events_per_model": k, **checkpoint})
    if trace:
        tracemalloc.stop()
    peak_processing = peak_processing or peak_rss()
    n_detectors = sum(1 for _ in bank.detectors())

    timed = spec["timed_events"]
    seconds = []
    for i in range(spec["repeats"] + 1 if timed else 0):
        batches = events.interleaved(timed)
        start = time.perf_counter()
        for records in batches:
            bank.process(bank.decoder.decode_batch(records))
        elapsed = time.perf_counter() - start
        if i:  # the first pass is the warm-up
            seconds.append(elapsed)
    us = [s / timed * 1e6 for s in seconds] or [math.nan]
    out: dict[str, Any] = {
        **spec,
        "detectors": n_detectors,
        "memory": memory,
        "fill_seconds": fill_s,
        "us_per_event": statistics.median(us),
        "us_per_event_min": min(us),
        "us_per_event_max": max(us),
        "events_per_s": 1e6 / statistics.median(us),
    }
    if checkpoints:
        out["checkpoints"] = checkpoints
        out["checkpoint"] = checkpoints[-1]
    out["peak_rss_before_checkpoint"] = peak_processing
    out["peak_rss"] = peak_rss()
    return out


def run_footprint(spec: dict[str, Any]) -> dict[str, Any]:
    """RSS per detector instance of each default kind after ``k`` values (batches of 2,000),
    with the parameters the bank would give it: what a model's memory is made of."""
    from streamdrift.detectors import MULTIVARIATE, NUMERIC

    config = make_config(1)
    k, counts = spec["k"], spec["instances"]
    rng = np.random.default_rng(0)
    kinds = {
        **{
            kind: (NUMERIC[kind], p) for kind, p in config.monitors_for("m", "f", "numeric").items()
        },
        **{kind: (MULTIVARIATE[kind], p) for kind, p in config.multivariate_for("m").items()},
    }
    out: dict[str, Any] = {"axis": "footprint", "k": k, "kinds": {}}
    for kind, (cls, params) in kinds.items():
        multi = kind in MULTIVARIATE
        values = rng.normal(size=(k, 10) if multi else k)
        cls(**params).update(values)  # first calls (lazy imports, numpy caches) before the baseline
        n = counts["isolation_forest" if multi else "univariate"]
        rss0 = settled_rss()
        detectors = []
        for _ in range(n):
            det = cls(**params)
            for start in range(0, k, BATCH):
                det.update(values[start : start + BATCH])
            detectors.append(det)
        per = (settled_rss() - rss0) / n
        state = len(msgpack.packb(detectors[0].to_state(), use_bin_type=True))
        out["kinds"][kind] = {"instances": n, "rss_per_instance": per, "state_bytes": state}
        del detectors
    return out


def median_time(fn: Any, n: int = 3) -> tuple[float, Any]:
    """Median of ``n`` timed calls (one when a call takes over 5 s), and the last result."""
    times, result = [], None
    for i in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if i == 0 and times[0] > 5.0:
            break
    return statistics.median(times), result


def measure_checkpoint(bank: Any, config: Any, task: Any, redis_url: str | None) -> dict[str, Any]:
    from streamdrift.bank import DetectorBank

    to_s, state = median_time(bank.to_state)
    start = time.perf_counter()
    restored = DetectorBank.from_state(config, task, state)
    from_times = [time.perf_counter() - start]
    assert restored.to_state() == state, "from_state(to_state()) must give the same state"
    del restored  # one restored bank alive at a time
    if from_times[0] <= 5.0:
        for _ in range(2):
            start = time.perf_counter()
            DetectorBank.from_state(config, task, state)
            from_times.append(time.perf_counter() - start)
    from_s = statistics.median(from_times)
    out: dict[str, Any] = {"state_bytes": len(state), "to_state_s": to_s, "from_state_s": from_s}
    if redis_url:
        import redis

        from streamdrift.state.redis import RedisStore

        prefix = f"bench-scaling-{uuid.uuid4().hex[:8]}"
        store = RedisStore(redis_url, prefix)
        try:
            fence = store.acquire(task)
            offsets = iter(range(10**6))
            save_s, _ = median_time(lambda: store.save(task, fence, state, next(offsets)))
            snapshot = store.load(task)
            assert snapshot is not None and snapshot.state == state
        finally:
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{{{prefix}:*"))
            if keys:
                client.delete(*keys)
            client.close()
            store.close()
        out["redis_save_s"] = save_s
        out["checkpoint_s"] = to_s + save_s
    return out


# -- the matrix ----------------------------------------------------------------------------------


def redis_address(given: str | None) -> str | None:
    if given:
        return given
    if os.environ.get("SD_TEST_REDIS"):
        return os.environ["SD_TEST_REDIS"]
    out = subprocess.run(
        [str(REPO / "scripts" / "redis.sh"), "env"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        if line.startswith("REDIS_URL="):
            return line.split("=", 1)[1].strip()
    return None


def run_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scaling", "--one", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"configuration {spec} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_matrix(quick: bool, repeats: int, redis_url: str | None) -> list[dict[str, Any]]:
    instances = {"univariate": 200, "isolation_forest": 20} if quick else None
    results = [
        run_subprocess(
            {
                "axis": "footprint",
                "k": 1_000 if quick else 6_000,
                "instances": instances or {"univariate": 2_000, "isolation_forest": 200},
            }
        )
    ]
    for axis, models, features, stages, checkpoint in QUICK if quick else FULL:
        spec = {
            "axis": axis,
            "models": models,
            "features": features,
            "stages": stages,
            "timed_events": 2_000 if quick else 20_000,
            "repeats": repeats,
            "checkpoint": checkpoint,
            "redis": redis_url if checkpoint else None,
        }
        result = run_subprocess(spec)
        if checkpoint and len(stages) > 1:  # checkpoints at every stage, in a process of their own
            alone = run_subprocess({**spec, "checkpoint_every_stage": True, "timed_events": 0})
            result["checkpoints"] = alone["checkpoints"]
        results.append(result)
    return results


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def kib(n: float) -> str:
    return f"{n / 2**10:,.1f} KiB"


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-model footprints, the 10,000-model projection and the targets."""
    by = {(r["models"], r["features"]): r for r in results if r["axis"] == "models"}
    largest = max((r for r in results if r["axis"] == "models"), key=lambda r: r["models"])
    out: dict[str, Any] = {"largest_models": largest["models"]}
    lifecycle = by.get((100, 10))
    if lifecycle is not None:
        peak = max(m["per_model"] for m in lifecycle["memory"])
        steady = lifecycle["memory"][-1]["per_model"]
        out.update(
            per_model_peak=peak,
            per_model_steady=steady,
            projected_10k_peak=peak * 10_000,
            projected_10k_steady=steady * 10_000,
        )
        ckpt = lifecycle.get("checkpoint")
        if ckpt:
            out["state_per_model_steady"] = ckpt["state_bytes"] / 100
            out["projected_10k_state_steady"] = ckpt["state_bytes"] * 100
    ckpt = largest.get("checkpoint") or {}
    out["largest_rss_delta"] = largest["memory"][-1]["rss_delta"]
    out["largest_checkpoint_s"] = ckpt.get("checkpoint_s")
    if largest["models"] >= 10_000:
        out["meets_memory_measured"] = out["largest_rss_delta"] < TARGET_BYTES
        if "projected_10k_steady" in out:
            out["meets_memory_steady"] = out["projected_10k_steady"] < TARGET_BYTES
        if ckpt.get("checkpoint_s") is not None:
            out["meets_checkpoint_measured"] = ckpt["checkpoint_s"] < TARGET_CHECKPOINT_S
    return out


def print_report(results: list[dict[str, Any]], info: dict[str, Any]) -> None:
    m = machine()
    v = m["versions"]
    print(
        f"{m['cpu']} ({m['cores']} cores), Python {m['python']}, numpy {v['numpy']}, "
        f"msgpack via streamdrift {v['streamdrift']}, redis-py {v['redis']}\n"
        "default monitors; RSS delta of a fresh process after k events per model (one model: "
        "the bank's traced heap too); us/event: decode + process of further events from "
        "random models, batches of 2,000, median (min-max); peak RSS before the checkpoint "
        "measurements\n"
    )
    rows = []
    for r in results:
        if r["axis"] == "footprint":
            continue
        for i, x in enumerate(r["memory"]):
            last = i == len(r["memory"]) - 1
            heap = f" (heap {kib(x['traced'])})" if "traced" in x else ""
            rows.append(
                [
                    r["axis"],
                    f"{r['models']:,}",
                    r["features"],
                    f"{r['detectors']:,}",
                    f"{x['events_per_model']:,}",
                    mib(x["rss_delta"]) + heap,
                    kib(x["per_model"]),
                    f"{r['us_per_event']:.1f} ({r['us_per_event_min']:.1f}-"
                    f"{r['us_per_event_max']:.1f})"
                    if last
                    else "",
                    f"{r['events_per_s'] / 1e3:.1f} k/s" if last else "",
                    mib(r["peak_rss_before_checkpoint"]) if last else "",
                ]
            )
    print_table(
        [
            "axis",
            "models",
            "features",
            "detectors",
            "k/model",
            "RSS delta",
            "per model",
            "us/event",
            "events/s",
            "peak RSS",
        ],
        rows,
    )
    ck = [(r, c) for r in results for c in r.get("checkpoints", [])]
    if ck:
        print()
        print_table(
            ["models", "k/model", "state", "to_state", "from_state", "Redis save", "checkpoint"],
            [
                [
                    f"{r['models']:,}",
                    f"{c['events_per_model']:,}",
                    mib(c["state_bytes"]),
                    f"{c['to_state_s']:.3f} s",
                    f"{c['from_state_s']:.3f} s",
                    f"{c['redis_save_s']:.3f} s" if "redis_save_s" in c else "-",
                    f"{c['checkpoint_s']:.3f} s" if "checkpoint_s" in c else "-",
                ]
                for r, c in ck
            ],
        )
    footprint = next((r for r in results if r["axis"] == "footprint"), None)
    if footprint is not None:
        print(f"\nper detector after {footprint['k']:,} values (RSS of N instances / N):\n")
        fp_rows, total = [], 0.0
        for kind, f in footprint["kinds"].items():
            per_model = 1 if kind == "isolation_forest" else 11  # 10 features + the prediction
            total += per_model * f["rss_per_instance"]
            fp_rows.append(
                [
                    kind,
                    f"{f['instances']:,}",
                    kib(f["rss_per_instance"]),
                    f"{per_model} x = {kib(per_model * f['rss_per_instance'])}",
                    kib(f["state_bytes"]),
                ]
            )
        fp_rows.append(["sum per model", "", "", kib(total), ""])
        print_table(["kind", "N", "RSS each", "per model (10 features)", "state each"], fp_rows)
    if "per_model_steady" in info:
        print(
            f"\nper model (100 models x 10 features): peak {kib(info['per_model_peak'])} "
            f"(PSI warm-ups nearly full), steady {kib(info['per_model_steady'])}; "
            f"x 10,000 models: peak {mib(info['projected_10k_peak'])}, steady "
            f"{mib(info['projected_10k_steady'])}"
            + (
                f"; steady state document x 10,000: {mib(info['projected_10k_state_steady'])}"
                if "projected_10k_state_steady" in info
                else ""
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes (default 3)")
    parser.add_argument("--redis", default=None, help="default: SD_TEST_REDIS, scripts/redis.sh")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(run_footprint(spec) if spec.get("axis") == "footprint" else run_one(spec)))
        return 0
    repeats = args.repeats or (2 if args.quick else 3)
    results = run_matrix(args.quick, repeats, redis_address(args.redis))
    info = summary(results)
    if args.json:
        emit_json(
            {
                "benchmark": "scaling",
                "quick": args.quick,
                "batch": BATCH,
                "results": results,
                "summary": info,
                "target_bytes": TARGET_BYTES,
                "target_checkpoint_s": TARGET_CHECKPOINT_S,
            }
        )
    else:
        print_report(results, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
