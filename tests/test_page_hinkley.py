"""Page-Hinkley: river parity (river mode), sigma-mode quality, split invariance, state."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import drift

from streamdrift.detectors.page_hinkley import PageHinkley
from streamdrift.errors import StateError


def river_positions(values: np.ndarray, **params: Any) -> list[int]:
    detector = drift.PageHinkley(**params)
    out = []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected:
            out.append(i)
    return out


def shifted(seed: int, shift: float, n: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, n), rng.normal(shift, 1, n)])


def feed(detector: PageHinkley, values: np.ndarray, cuts: list[int]) -> list[Any]:
    signals, start = [], 0
    for cut in [*sorted(cuts), values.size]:
        result = detector.update(values[start:cut])
        signals += [
            (start + s.position, s.statistic, s.threshold, s.details) for s in result.signals
        ]
        start = cut
    return signals


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False)
    return out


# -- river mode: identical positions --------------------------------------------------------


@pytest.mark.parametrize("direction", ["both", "up", "down"])
def test_river_mode_positions_match_river(direction: str) -> None:
    mismatches, firings = [], 0
    for seed in range(30):
        for shift in (0.0, 0.5, 1.0, 2.0, -0.5, -1.0, -2.0):
            values = shifted(seed, shift)
            expected = river_positions(values, mode=direction)
            got = PageHinkley(mode="river", direction=direction).update(values).positions
            firings += len(expected)
            if got != expected:
                mismatches.append((seed, shift, got, expected))
    assert mismatches == []
    assert firings > 100  # the comparison is about real firings, not empty lists


@pytest.mark.parametrize(
    "params",
    [
        {"alpha": 1.0},
        {"alpha": 0.99, "threshold": 20.0},
        {"alpha": 0.5, "threshold": 3.0},  # tiny discount blocks
        {"delta": 0.1, "threshold": 10.0, "min_instances": 100},
        {"delta": 0.0, "min_instances": 1},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_river_mode_matches_river_with_other_params(params: dict[str, Any]) -> None:
    for seed in range(5):
        # offset and scale: the running mean must not lose precision on data far from 0
        values = 100.0 + 3.0 * shifted(seed, 1.0, 3000)
        expected = river_positions(values, **params)
        assert PageHinkley(mode="river", **params).update(values).positions == expected


def test_river_mode_matches_river_on_integer_data() -> None:
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.integers(0, 2, 3000), rng.integers(4, 8, 3000)]).astype(float)
    expected = river_positions(values)
    assert expected
    assert PageHinkley(mode="river").update(values).positions == expected


# -- sigma mode: quality ----------------------------------------------------------------------


def test_sigma_mode_stationary_streams_have_at_most_one_false_alarm() -> None:
    alarms = []
    for seed in range(10):
        values = np.random.default_rng(seed).normal(size=100_000)
        detector = PageHinkley()
        alarms.append(sum(len(detector.update(b).signals) for b in np.split(values, 10)))
    assert max(alarms) <= 1
    assert sum(alarms) <= 1


def test_sigma_mode_is_scale_free() -> None:
    values = shifted(3, 1.0)
    base = PageHinkley().update(values).positions
    assert base
    assert PageHinkley().update(40.0 + 1e-3 * values).positions == base


@pytest.mark.parametrize("shift", [1.0, -1.0])
def test_sigma_mode_one_sigma_shift_median_delay_is_at_most_100(shift: float) -> None:
    delays = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        values = np.concatenate([rng.normal(0, 1, 5000), rng.normal(shift, 1, 1000)])
        positions = PageHinkley().update(values).positions
        assert all(p >= 5000 for p in positions)
        delays.append(positions[0] - 5000 if positions else 10**6)
    assert np.median(delays) <= 100
    assert max(delays) < 100


def test_sigma_mode_does_not_fire_during_warmup_and_rewarms_after_a_firing() -> None:
    rng = np.random.default_rng(8)
    # a huge shift right after the warm-up, then the spread grows tenfold
    values = np.concatenate([rng.normal(0, 1, 600), rng.normal(50, 10, 3000)])
    detector = PageHinkley(warmup=200)
    positions = detector.update(values[:150]).positions
    assert positions == [] and np.isnan(detector.gauges()["sigma"])
    positions = [150 + p for p in detector.update(values[150:]).positions]
    # Values are winsorised at 4 sigma, so even a 50-sigma jump takes a few values to cross
    # 15 sigma (ceil(15 / (4 - 0.5)) = 5).
    assert 600 <= positions[0] <= 605
    # sigma is re-estimated on the new regime: no alarm storm from the wider spread
    assert len(positions) <= 2
    assert detector.gauges()["sigma"] == pytest.approx(10.0, rel=0.2)


def test_signal_details() -> None:
    values = shifted(0, -2.0)
    signal = PageHinkley().update(values).signals[0]
    d = signal.details
    assert d["direction"] == "down"
    assert signal.statistic > signal.threshold == pytest.approx(15.0 * d["sigma"])
    assert d["mean_before"] == pytest.approx(0.0, abs=0.1)
    assert d["mean_recent"] == pytest.approx(-2.0, abs=0.6)
    assert 0 < d["run_length"] <= signal.position - 2000 + 10
    json.dumps(d)


def test_pinned_positions_regression() -> None:
    rng = np.random.default_rng(2024)
    values = np.concatenate(
        [rng.normal(5, 1, 4000), rng.normal(5.5, 1, 4000), rng.normal(4, 3, 4000)]
    )
    assert PageHinkley().update(values).positions == [4145, 8009]
    assert PageHinkley(mode="river").update(values).positions == river_positions(values)


# -- batch / split invariance ---------------------------------------------------------------

MODES = [
    {},
    {"mode": "river"},
    {"alpha": 0.999, "direction": "up"},
    {"mode": "river", "alpha": 0.9},
]


@pytest.mark.parametrize("params", MODES, ids=lambda p: json.dumps(p))
def test_one_by_one_equals_batch_bit_for_bit(params: dict[str, Any]) -> None:
    values = 3.0 * shifted(2, 1.5, 1500)
    batch, single = PageHinkley(**params), PageHinkley(**params)
    expected = feed(batch, values, [])
    assert expected
    assert feed(single, values, list(range(1, values.size))) == expected
    assert single.to_state() == batch.to_state()


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(range(len(MODES))), st.lists(st.integers(0, 8000), max_size=12))
def test_any_split_gives_identical_signals_and_state(which: int, cuts: list[int]) -> None:
    params = MODES[which]
    values = np.concatenate([shifted(5, 1.0), shifted(6, -2.0)])
    a, b = PageHinkley(**params), PageHinkley(**params)
    assert feed(a, values, cuts) == feed(b, values, [])
    assert a.to_state() == b.to_state()


def test_nan_and_inf_are_skipped_and_counted() -> None:
    values = shifted(1, 2.0)
    expected = PageHinkley().update(values).positions
    dirty = np.insert(values, [0, 5, 5, 2100, 3000], [np.nan, np.inf, -np.inf, np.nan, np.nan])
    result = PageHinkley().update(dirty)
    assert result.n_invalid == 5
    clean_index = np.flatnonzero(np.isfinite(dirty))
    assert result.positions == [int(clean_index[p]) for p in expected]
    assert PageHinkley().update([np.nan]).n_invalid == 1
    assert not PageHinkley().update([])


# -- state ----------------------------------------------------------------------------------


@pytest.mark.parametrize("params", MODES, ids=lambda p: json.dumps(p))
@pytest.mark.parametrize("seed", range(3))
def test_state_roundtrip_mid_stream_gives_identical_later_signals(
    params: dict[str, Any], seed: int
) -> None:
    values = np.concatenate([shifted(seed, 1.0), shifted(seed + 10, -1.0)])
    reference = feed(PageHinkley(**params), values, [])
    for cut in (100, 300 + 700 * seed, 5000):  # in the warm-up, before and after firings
        first = PageHinkley(**params)
        head = feed(first, values[:cut], [])
        via_json = PageHinkley.from_state(json.loads(json.dumps(first.to_state())))
        restored = PageHinkley.from_state(roundtrip(first.to_state()))
        assert via_json.to_state() == restored.to_state() == first.to_state()
        tail = [(cut + p, *rest) for p, *rest in feed(restored, values[cut:], [])]
        assert head + tail == reference


def test_state_roundtrip_right_after_a_firing() -> None:
    values = shifted(0, 2.0, 3000)
    reference = PageHinkley(mode="river").update(values).positions
    cut = reference[0] + 1
    first = PageHinkley(mode="river")
    first.update(values[:cut])
    state = roundtrip(first.to_state())
    assert state["learned"]["pending_reset"] is True
    later = PageHinkley.from_state(state).update(values[cut:]).positions
    assert [cut + p for p in later] == reference[1:]


def _state(mutate: Any) -> dict[str, Any]:
    detector = PageHinkley()
    detector.update(shifted(0, 0.0, 200))  # 400 values: still warming up
    state = detector.to_state()
    mutate(state)
    return state


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.pop("learned"), "'learned' mappings"),
        (lambda s: s["learned"].pop("sum"), "'learned' must have the keys"),
        (lambda s: s["learned"].update(sum="1.0"), "'sum' must be a finite float"),
        (lambda s: s["learned"].update(sum=float("nan")), "'sum' must be a finite"),
        (lambda s: s["learned"].update(n=2.0), "'n' must be a finite int"),
        (lambda s: s["learned"].update(pending_reset=0), "'pending_reset' must be"),
        (lambda s: s["learned"].update(n=-1), "out of range"),
        (lambda s: s["learned"].update(sigma=1.0), "sigma does not match"),
        (lambda s: s["params"].pop("mode"), "params must have the keys"),
        (lambda s: s["params"].update(direction="sideways"), "invalid params"),
        (lambda s: s.update(kind="adwin"), "kind"),
        (lambda s: s.update(version=7), "version 7 is not supported"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_state_raises_state_error(mutate: Any, match: str) -> None:
    with pytest.raises(StateError, match=match):
        PageHinkley.from_state(_state(mutate))


# -- settings and gauges --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "fast"}, r"mode must be one of \('sigma', 'river'\), got 'fast'"),
        ({"direction": "left"}, r"direction must be one of \('up', 'down', 'both'\), got 'left'"),
        ({"threshold": 0}, "threshold must be a finite number > 0, got 0"),
        ({"threshold": float("inf")}, "threshold must be a finite number, got inf"),
        ({"delta": -1.0}, "delta must be a finite number >= 0, got -1.0"),
        ({"alpha": 1.5}, r"alpha must be a number in \(0, 1\], got 1.5"),
        ({"alpha": 0}, r"alpha must be a number in \(0, 1\], got 0"),
        ({"warmup": 1}, "warmup must be an integer >= 2, got 1"),
        ({"min_instances": 0}, "min_instances must be an integer >= 1, got 0"),
        ({"min_instances": 3.0}, "min_instances must be an integer >= 1, got 3.0"),
    ],
)
def test_invalid_settings_name_the_parameter_and_valid_values(
    kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        PageHinkley(**kwargs)


def test_mode_defaults() -> None:
    river = PageHinkley(mode="river")
    assert (river.threshold, river.delta, river.alpha) == (50.0, 0.005, 1 - 0.0001)
    sigma = PageHinkley()
    assert (sigma.threshold, sigma.delta, sigma.alpha, sigma.direction) == (15.0, 0.5, 1.0, "both")


def test_gauges() -> None:
    detector = PageHinkley()
    g = detector.gauges()
    assert set(g) == {"statistic", "threshold", "mean", "sigma", "n_detections"}
    values = np.random.default_rng(0).normal(3.0, 2.0, 5000)
    detector.update(values)
    g = detector.gauges()
    assert all(type(v) is float for v in g.values())
    assert g["sigma"] == pytest.approx(2.0, rel=0.1)
    assert g["threshold"] == 15.0 * g["sigma"]
    assert g["mean"] == pytest.approx(values.mean())
    assert 0.0 <= g["statistic"] < g["threshold"]


def test_sigma_mode_single_outliers_do_not_fire_but_a_shift_does() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, 20_000)
    values[rng.choice(np.arange(600, 20_000), 40, replace=False)] = 100.0  # isolated wild values
    assert PageHinkley().update(values).positions == []
    assert PageHinkley(clip=1e6).update(values).positions != [], "unclipped, they would fire"
    values[15_000:] += 1.0
    positions = PageHinkley().update(values).positions
    assert positions and 15_000 <= positions[0] < 15_100


def test_clip_is_a_sigma_mode_setting() -> None:
    with pytest.raises(ValueError, match="clip"):
        PageHinkley(mode="river", clip=3.0)
    with pytest.raises(ValueError, match="clip"):
        PageHinkley(clip=0.0)
