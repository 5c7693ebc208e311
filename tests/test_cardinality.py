"""Cardinality attacks (issue 8): floods of new model ids, feature names and categories stay within
``limits`` and ``metrics.max_series``; what is refused is counted and dead-lettered; the bank's
state and the metric series stop growing."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import orjson
from prometheus_client import CollectorRegistry, generate_latest

from streamdrift.bank import DetectorBank
from streamdrift.config import parse_config
from streamdrift.events import RawRecord
from streamdrift.metrics import Metrics
from streamdrift.state.base import TaskId

TASK = TaskId("t", 0)
LIMITS = {"max_models": 4, "max_features": 6, "max_categories": 5}


def make_bank(**limits: int) -> DetectorBank:
    config = parse_config(
        {
            "kafka": {"input_topics": ["t"]},
            "limits": {**LIMITS, **limits},
            "monitors": [
                {
                    "numeric": {"psi": {"window": 100, "reference_size": 200}, "adwin": {}},
                    "categorical": {"psi": {"window": 100, "reference_size": 200}},
                    "multivariate": None,
                }
            ],
        }
    )
    return DetectorBank(config, TASK)


class Flood:
    """Feeds batches of events from ``make(rng, i)`` through a bank with metrics attached."""

    def __init__(self, bank: DetectorBank, metrics: Metrics, seed: int = 1) -> None:
        self.bank, self.metrics = bank, metrics
        self.rng = random.Random(seed)
        self.offset = 0
        self.invalid: dict[str, int] = {}
        self.decoded = 0

    def run(self, make: Any, batches: int, size: int = 200) -> None:
        for _ in range(batches):
            records = []
            for _ in range(size):
                value = orjson.dumps(make(self.rng, self.offset))
                records.append(RawRecord(value, "t", 0, self.offset))
                self.offset += 1
            batch = self.bank.decoder.decode_batch(records)
            assert batch.n_decoded + len(batch.invalid) == size
            self.decoded += batch.n_decoded
            for reason, n in batch.invalid_by_reason.items():
                self.invalid[reason] = self.invalid.get(reason, 0) + n
            self.bank.process(batch, now=0.0, observer=self.metrics.update_detector_gauges)
            self.metrics.record_batch("t", size, batch.n_decoded, batch.invalid_by_reason, 0.01)
            for letter in batch.invalid:
                self.metrics.record_dead_letter(letter.reason)


def _metric(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _n_samples(registry: CollectorRegistry) -> int:
    text = generate_latest(registry).decode()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def new_model_each_time(rng: random.Random, i: int) -> dict[str, Any]:
    if i % 3:
        return {"model_id": f"flood-{rng.getrandbits(48):x}", "features": {"x": rng.random()}}
    return {"model_id": f"real-{i % 2}", "features": {"x": rng.random(), "y": rng.random()}}


def test_model_id_flood_is_bounded_counted_and_dead_lettered() -> None:
    bank = make_bank()
    metrics = Metrics()
    flood = Flood(bank, metrics)
    flood.run(new_model_each_time, 10)
    size_early, samples_early = len(bank.to_state()), _n_samples(metrics.registry)
    flood.run(new_model_each_time, 40)
    assert len(bank.models) == len(bank.decoder.feature_types) == 4  # limits.max_models
    refused = flood.invalid["too_many_models"]
    assert refused > 0.6 * flood.offset  # nearly every flooding event
    assert (
        _metric(metrics, "streamdrift_events_invalid_total", topic="t", reason="too_many_models")
        == refused
    )
    assert _metric(metrics, "streamdrift_dead_letters_total", reason="too_many_models") == refused
    # The admitted models keep being monitored; the state and the series stop growing.
    assert {"real-0", "real-1"} <= set(bank.models)
    assert len(bank.to_state()) < 1.5 * size_early
    assert _n_samples(metrics.registry) == samples_early


def new_feature_each_time(rng: random.Random, i: int) -> dict[str, Any]:
    features = {"x": rng.random(), f"f-{rng.getrandbits(48):x}": rng.random()}
    return {"model_id": f"m{i % 2}", "features": features}


def test_feature_name_flood_is_bounded_per_model() -> None:
    bank = make_bank()
    metrics = Metrics()
    flood = Flood(bank, metrics)
    flood.run(new_feature_each_time, 10)
    size_early, samples_early = len(bank.to_state()), _n_samples(metrics.registry)
    flood.run(new_feature_each_time, 40)
    for features in bank.decoder.feature_types.values():
        assert len([f for f in features if not f.startswith("__")]) <= 6  # limits.max_features
    refused = flood.invalid["too_many_features"]
    assert refused >= flood.offset - 2 * 6  # all but the first few that filled the slots
    assert _metric(metrics, "streamdrift_dead_letters_total", reason="too_many_features") == refused
    assert len(bank.to_state()) < 1.5 * size_early
    assert _n_samples(metrics.registry) == samples_early


def test_long_feature_names_are_dead_letters_not_state_keys() -> None:
    bank = make_bank(max_features=100)
    flood = Flood(bank, Metrics())
    flood.run(lambda rng, i: {"model_id": "m", "features": {"x": 1.0, "n" * (257 + i): 1}}, 2)
    assert flood.invalid == {"wrong_type": 400}
    flood.run(lambda rng, i: {"model_id": "m", "features": {"x": 1.0, "n" * 256: 1}}, 1)
    assert set(bank.decoder.feature_types["m"]) == {"x", "n" * 256}


def new_category_each_time(rng: random.Random, i: int) -> dict[str, Any]:
    return {"model_id": "m", "features": {"c": f"cat-{rng.getrandbits(48):x}", "x": rng.random()}}


def test_category_flood_is_pooled_and_the_state_stops_growing() -> None:
    """Past the reference (warm-up holds at most reference_size values), a categorical stream
    keeps max_categories categories + unseen + missing bins, whatever arrives."""
    bank = make_bank()
    flood = Flood(bank, Metrics())

    def category_state() -> int:
        (psi,) = [d for _, f, _, d in bank.detectors() if f == "c"]
        assert len(psi.to_state()["reference"]["categories"]) <= 5  # limits.max_categories
        return len(msgpack.packb(psi.to_state()))

    flood.run(new_category_each_time, 20)  # past warm-up and a full history ring
    size_early, psi_early = len(bank.to_state()), category_state()
    flood.run(new_category_each_time, 50)
    assert flood.decoded == flood.offset  # new categories are valid events, not dead letters
    assert category_state() <= psi_early + 8  # counters may gain a byte
    assert len(bank.to_state()) < 1.5 * size_early  # (ADWIN on x grows with log(n))


def test_metric_series_are_capped_by_max_series() -> None:
    """Many admitted models × features: detector series stop at max_series, the rest counted."""
    bank = make_bank(max_models=50, max_features=20)
    metrics = Metrics(max_series=30)
    flood = Flood(bank, metrics)

    def wide(rng: random.Random, i: int) -> dict[str, Any]:
        return {"model_id": f"m{i % 40}", "features": {f"f{j}": rng.random() for j in range(10)}}

    flood.run(wide, 5)
    samples = _n_samples(metrics.registry)
    flood.run(wide, 5)
    assert metrics.n_series == 30
    assert _metric(metrics, "streamdrift_metric_series_dropped_total") > 0
    assert _n_samples(metrics.registry) == samples


def test_max_series_is_a_config_key() -> None:
    config = parse_config({"kafka": {"input_topics": ["t"]}, "metrics": {"max_series": 123}})
    assert config.metrics.max_series == 123
    assert parse_config({"kafka": {"input_topics": ["t"]}}).metrics.max_series == 10_000
