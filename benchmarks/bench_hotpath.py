"""The service's hot path in-process: raw JSON bytes -> decode -> detector bank -> alert JSON.

    python -m benchmarks.bench_hotpath              # table (markdown)
    python -m benchmarks.bench_hotpath --json       # machine-readable
    python -m benchmarks.bench_hotpath --quick      # fewer events and repeats (smoke)
    python -m benchmarks.bench_hotpath --profile    # also cProfile ours once (top functions)

Events have the default shape ``{"model_id", "event_id", "ts", "features": {...}, "prediction"}``
with 10 numeric and 2 categorical features and a score; at half-way one numeric feature shifts by
1 sd and the categorical mix changes; 0.2% of the events are joint outliers. Ours runs
``process_records`` (``Decoder.decode_batch`` then ``DetectorBank.process``, as the service does)
on batches of 2,000 records (the default ``kafka.max_poll_records``) with the embedded default
config's monitors (ADWIN, Page-Hinkley, PSI per numeric feature; PSI per categorical feature and
the prediction; isolation forest 10 trees x h8 on the numeric vector), then ``alert.to_json()``.

Baseline, same run: the per-event loop a user would write: pydantic ``model_validate_json`` per
event, river ``drift.ADWIN`` and ``drift.PageHinkley`` per numeric feature, river
``anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=1000)`` (``score_one`` + ``learn_one``)
on the numeric vector, ``orjson.dumps`` of each alert. It does *less* than ours (no PSI, no
categorical or prediction monitoring, no cooldown policy). Floor: ``orjson.loads`` of every event,
nothing else. Everything runs in one thread.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
from typing import Any

import numpy as np
import orjson

from benchmarks._harness import Timing, emit_json, fmt_rate, machine, measure, print_table

BATCH = 2_000
TOPIC = "model-events"
MODEL = "fraud-v3"
NUMERIC = (
    "amount",
    "age",
    "tx_per_day",
    "balance",
    "session_s",
    "tenure_days",
    "n_items",
    "discount",
    "latency_ms",
    "distance_km",
)
CATEGORICAL = ("country", "device")
COUNTRIES = ("FR", "DE", "US", "GB", "ES", "IT")
DEVICES = ("ios", "android", "web")
TARGET_RATE = 100_000.0  # events/s on one core (issue)
TARGET_RATIO = 20.0  # x the per-event baseline (issue)


def make_events(n: int, seed: int = 0) -> list[bytes]:
    """``n`` raw JSON events (bytes), drift at half-way, 0.2% joint outliers."""
    rng = np.random.default_rng(seed)
    after = np.arange(n) >= n // 2
    cols = {
        "amount": rng.normal(50.0, 10.0, n) + np.where(after, 10.0, 0.0),
        "age": rng.normal(40.0, 12.0, n),
        "tx_per_day": rng.poisson(3.0, n).astype(np.float64),
        "balance": rng.lognormal(7.0, 0.5, n),
        "session_s": rng.gamma(2.0, 30.0, n),
        "tenure_days": rng.exponential(400.0, n),
        "n_items": rng.poisson(2.0, n).astype(np.float64) + 1.0,
        "discount": rng.beta(2.0, 8.0, n),
        "latency_ms": rng.lognormal(4.0, 0.3, n),
        "distance_km": rng.gamma(1.5, 8.0, n),
    }
    outliers = rng.choice(np.arange(min(2000, n // 2), n), size=max(1, n // 500), replace=False)
    cols["amount"][outliers] += rng.choice([-1, 1], len(outliers)) * 60.0
    cols["age"][outliers] = rng.uniform(95, 110, len(outliers))
    cols["session_s"][outliers] = rng.uniform(350, 500, len(outliers))
    p_before = [0.30, 0.20, 0.15, 0.15, 0.10, 0.10]
    p_after = [0.15, 0.10, 0.45, 0.10, 0.10, 0.10]
    country = np.where(after, rng.choice(6, n, p=p_after), rng.choice(6, n, p=p_before)).tolist()
    device = rng.choice(3, n, p=[0.4, 0.4, 0.2]).tolist()
    logit = 0.04 * (cols["amount"] - 50) + 0.02 * (cols["tx_per_day"] - 3)
    score = np.round(1.0 / (1.0 + np.exp(-logit)), 5).tolist()
    rounded = {k: np.round(v, 3).tolist() for k, v in cols.items()}
    ts = np.round(1_767_225_600.0 + np.arange(n) / 100.0, 3).tolist()
    dumps = orjson.dumps
    out = []
    for i in range(n):
        feats: dict[str, Any] = {k: rounded[k][i] for k in NUMERIC}
        feats["country"] = COUNTRIES[country[i]]
        feats["device"] = DEVICES[device[i]]
        out.append(
            dumps(
                {
                    "model_id": MODEL,
                    "event_id": f"{MODEL}-{i}",
                    "ts": ts[i],
                    "features": feats,
                    "prediction": score[i],
                }
            )
        )
    return out


# -- ours ------------------------------------------------------------------------------------


def make_ours(raw: list[bytes]) -> tuple[Any, Any, dict[str, int]]:
    """(setup, run, counts): a fresh task per run; run() pushes every batch through."""
    from streamdrift.app import process_records
    from streamdrift.bank import DetectorBank
    from streamdrift.checkpoint import Task
    from streamdrift.config import load_default_config
    from streamdrift.events import RawRecord
    from streamdrift.state.base import TaskId

    config = load_default_config(env={})
    assert config.kafka.max_poll_records == BATCH
    task_id = TaskId(TOPIC, 0)
    batches = [
        [
            RawRecord(v, TOPIC, 0, start + j, None, None)
            for j, v in enumerate(raw[start : start + BATCH])
        ]
        for start in range(0, len(raw), BATCH)
    ]
    holder: list[Any] = []
    counts = {"alerts": 0, "alert_bytes": 0, "decoded": 0, "invalid": 0}

    def setup() -> None:
        holder[:] = [Task(task_id, DetectorBank(config, task_id), 1, None)]

    def run() -> None:
        task = holder[0]
        n_alerts = n_bytes = n_decoded = n_invalid = 0
        for records in batches:
            decoded, alerts = process_records(task, records, None)
            n_decoded += decoded.n_decoded
            n_invalid += len(decoded.invalid)
            for alert in alerts:
                n_bytes += len(alert.to_json())
            n_alerts += len(alerts)
        counts.update(alerts=n_alerts, alert_bytes=n_bytes, decoded=n_decoded, invalid=n_invalid)

    return setup, run, counts


def detector_summary(raw: list[bytes]) -> str:
    """Which detectors the default config builds for this event shape (checked, not assumed)."""
    from streamdrift.bank import DetectorBank
    from streamdrift.config import load_default_config
    from streamdrift.events import RawRecord
    from streamdrift.state.base import TaskId

    config = load_default_config(env={})
    bank = DetectorBank(config, TaskId(TOPIC, 0))
    records = [RawRecord(v, TOPIC, 0, i) for i, v in enumerate(raw[:BATCH])]
    bank.process(bank.decoder.decode_batch(records))
    kinds: dict[str, int] = {}
    for _model, _feature, kind, _det in bank.detectors():
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))


# -- baseline --------------------------------------------------------------------------------


def make_baseline(raw: list[bytes], limits: dict[str, tuple[float, float]]) -> tuple[Any, Any]:
    from pydantic import BaseModel
    from river import anomaly, drift

    class Event(BaseModel):
        model_id: str
        event_id: str
        ts: float
        features: dict[str, float | str]
        prediction: float

    holder: list[Any] = []
    counts = {"alerts": 0}

    def setup() -> None:
        holder[:] = [
            {f: drift.ADWIN() for f in NUMERIC},
            {f: drift.PageHinkley() for f in NUMERIC},
            anomaly.HalfSpaceTrees(
                n_trees=10, height=8, window_size=1000, limits=dict(limits), seed=0
            ),
        ]

    def run() -> None:
        adwins, phs, hst = holder
        dumps = orjson.dumps
        n_alerts = 0
        for value in raw:
            event = Event.model_validate_json(value)
            feats = event.features
            x = {f: feats[f] for f in NUMERIC}
            for f, v in x.items():
                for kind, det in (("adwin", adwins[f]), ("page_hinkley", phs[f])):
                    det.update(v)
                    if det.drift_detected:
                        dumps(
                            {
                                "type": "drift",
                                "model_id": event.model_id,
                                "feature": f,
                                "detector": kind,
                                "event_id": event.event_id,
                                "event_time": event.ts,
                            }
                        )
                        n_alerts += 1
            score = hst.score_one(x)
            hst.learn_one(x)
            if score > 0.95:
                dumps(
                    {
                        "type": "outlier",
                        "model_id": event.model_id,
                        "score": score,
                        "event_id": event.event_id,
                        "values": x,
                    }
                )
                n_alerts += 1
        counts["alerts"] = n_alerts

    run.counts = counts  # type: ignore[attr-defined]
    return setup, run


def numeric_limits(raw: list[bytes]) -> dict[str, tuple[float, float]]:
    """Per-feature (min, max) of the first 2,000 events, as a river user would configure it."""
    docs = [orjson.loads(v)["features"] for v in raw[:BATCH]]
    return {f: (min(d[f] for d in docs), max(d[f] for d in docs)) for f in NUMERIC}


# -- floor -----------------------------------------------------------------------------------


def make_floor(raw: list[bytes]) -> Any:
    def run() -> None:
        loads = orjson.loads
        for value in raw:
            loads(value)

    return run


# -- report ----------------------------------------------------------------------------------


def profile_ours(raw: list[bytes], top: int = 25) -> str:
    setup, run, _ = make_ours(raw)
    setup()
    run()  # warm (first-batch construction outside the profile too)
    setup()
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def collect(
    quick: bool, repeats: int, events: int | None, baseline_events: int | None
) -> dict[str, Any]:
    n = events or (20_000 if quick else 200_000)
    n_base = baseline_events or (5_000 if quick else 20_000)
    raw = make_events(n)
    mean_bytes = sum(map(len, raw)) / len(raw)

    setup, run, counts = make_ours(raw)
    ours = measure(f"ours, batches of {BATCH}", n, run, repeats=repeats, unit="events", setup=setup)

    base_setup, base_run = make_baseline(raw[:n_base], numeric_limits(raw))
    baseline = measure(
        "pydantic + river per event",
        n_base,
        base_run,
        repeats=max(1, repeats - 1) if not quick else 1,
        warmup=0,
        unit="events",
        setup=base_setup,
    )
    floor = measure("orjson.loads per event", n, make_floor(raw), repeats=repeats, unit="events")
    return {
        "events": n,
        "baseline_events": n_base,
        "batch": BATCH,
        "event_bytes_mean": mean_bytes,
        "detectors": detector_summary(raw),
        "ours": ours,
        "ours_counts": dict(counts),
        "baseline": baseline,
        "baseline_counts": dict(base_run.counts),
        "floor": floor,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events", type=int, default=None, help="events for ours and the floor")
    parser.add_argument("--baseline-events", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="also cProfile ours once")
    args = parser.parse_args(argv)
    res = collect(args.quick, 2 if args.quick else args.repeats, args.events, args.baseline_events)
    ours: Timing = res["ours"]
    base: Timing = res["baseline"]
    floor: Timing = res["floor"]
    ratio_base = ours.rate / base.rate
    ratio_floor = ours.rate / floor.rate
    profile = profile_ours(make_events(res["events"])) if args.profile else None
    if args.json:
        emit_json(
            {
                "benchmark": "hotpath",
                **{k: v for k, v in res.items() if not isinstance(v, Timing)},
                "ours": ours.as_dict(),
                "baseline": base.as_dict(),
                "floor": floor.as_dict(),
                "ratio_ours_baseline": ratio_base,
                "ratio_ours_floor": ratio_floor,
                "target_rate": TARGET_RATE,
                "target_ratio": TARGET_RATIO,
                "meets_rate": ours.rate >= TARGET_RATE,
                "meets_ratio": ratio_base >= TARGET_RATIO,
                "profile": profile,
            }
        )
        return 0
    m = machine()
    v = m["versions"]
    print(
        f"{m['cpu']} ({m['cores']} cores), Python {m['python']}, numpy {v['numpy']}, "
        f"river {v['river']}, pydantic {v['pydantic']}, orjson {v['orjson']}\n"
        f"{res['events']:,} events ({res['event_bytes_mean']:.0f} bytes mean, 10 numeric + 2 "
        f"categorical + prediction), baseline on the first {res['baseline_events']:,}; "
        f"detectors per model: {res['detectors']}\n"
    )

    def cell(t: Timing) -> str:
        return f"{fmt_rate(t.rate)} ({fmt_rate(t.rate_min)}-{fmt_rate(t.rate_max)})"

    oc, bc = res["ours_counts"], res["baseline_counts"]
    rows = [
        [
            "ours: decode + bank + alert JSON",
            cell(ours),
            f"{ours.us_per_unit:.2f}",
            "1.0x",
            f"{oc['alerts']} alerts, {oc['invalid']} invalid",
        ],
        [
            "baseline: pydantic + river per event",
            cell(base),
            f"{base.us_per_unit:.2f}",
            f"{ratio_base:.1f}x",
            f"{bc['alerts']} alerts",
        ],
        [
            "floor: orjson.loads per event",
            cell(floor),
            f"{floor.us_per_unit:.2f}",
            f"{ratio_floor:.2f}x",
            "-",
        ],
    ]
    print_table(["case", "events/s (spread)", "us/event", "ours/this (rate)", "output"], rows)
    ok_rate = "met" if ours.rate >= TARGET_RATE else "NOT met"
    ok_ratio = "met" if ratio_base >= TARGET_RATIO else "NOT met"
    print(
        f"\ntargets: >= {fmt_rate(TARGET_RATE)} on one core: {fmt_rate(ours.rate)}, {ok_rate}; "
        f">= {TARGET_RATIO:.0f}x the per-event baseline: {ratio_base:.1f}x, {ok_ratio}"
    )
    if profile:
        print("\ncProfile of ours (one run; by cumulative, then by own time):\n")
        print(profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
