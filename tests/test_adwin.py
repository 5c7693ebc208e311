"""ADWIN: parity with river.drift.ADWIN, batch/split invariance, state, validation, quality."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import drift

from streamdrift.detectors.adwin import ADWIN
from streamdrift.errors import StateError


def river_positions(values: np.ndarray, **params: Any) -> list[int]:
    detector = drift.ADWIN(**params)
    out = []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected:
            out.append(i)
    return out


def shifting(seed: int, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, n), rng.normal(1, 1, n), rng.normal(-0.5, 2, n)])


def feed(detector: ADWIN, values: np.ndarray, cuts: list[int]) -> list[Any]:
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


@pytest.mark.parametrize("seed", range(8))
def test_positions_match_river_with_default_params(seed: int) -> None:
    values = shifting(seed)
    assert ADWIN().update(values).positions == river_positions(values)


@pytest.mark.parametrize(
    "params",
    [
        {"delta": 0.05},
        {"clock": 1},
        {"max_buckets": 2, "min_window_length": 10},
        {"grace_period": 200, "delta": 0.0001},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_positions_match_river_with_other_params(params: dict[str, Any]) -> None:
    values = shifting(11, 1500)
    expected = river_positions(values, **params)
    assert expected, "the stream should make river fire"
    assert ADWIN(**params).update(values).positions == expected


def test_signal_reports_the_cut_that_fired() -> None:
    values = shifting(0)
    signals = ADWIN().update(values).signals
    assert [s.position for s in signals] == [3039, 6015]
    for s in signals:
        d = s.details
        assert s.statistic > s.threshold > 0
        assert s.statistic == pytest.approx(abs(d["mean_before"] - d["mean_after"]))
        assert d["width_before"] + d["width_after"] == d["window_width"]
        json.dumps(d)  # JSON-serialisable, plain types
        assert all(isinstance(v, int | float) for v in d.values())
    assert signals[0].details["mean_before"] == pytest.approx(0.0, abs=0.1)
    assert signals[1].details["mean_before"] == pytest.approx(1.0, abs=0.1)


def test_pinned_positions_regression() -> None:
    rng = np.random.default_rng(2024)
    values = np.concatenate(
        [rng.normal(5, 1, 4000), rng.normal(5.5, 1, 4000), rng.normal(4, 3, 4000)]
    )
    assert ADWIN().update(values).positions == [4095, 8031]


def test_one_by_one_equals_batch() -> None:
    values = shifting(3, 1000)
    batch = feed(ADWIN(), values, [])
    single = feed(ADWIN(), values, list(range(1, values.size)))
    assert batch == single
    assert len(batch) >= 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6000), max_size=12))
def test_any_split_gives_identical_signals(cuts: list[int]) -> None:
    values = shifting(5, 2000)
    assert feed(ADWIN(), values, cuts) == feed(ADWIN(), values, [])


def test_nan_and_inf_are_skipped_and_counted() -> None:
    values = shifting(1, 1500)
    expected = ADWIN().update(values).positions
    dirty = np.insert(values, [0, 10, 10, 2000, 3000], [np.nan, np.inf, -np.inf, np.nan, np.nan])
    result = ADWIN().update(dirty)
    assert result.n_invalid == 5
    clean_index = np.flatnonzero(np.isfinite(dirty))
    assert result.positions == [int(clean_index[p]) for p in expected]
    assert ADWIN().update([np.nan, np.nan]).n_invalid == 2
    assert not ADWIN().update([])


@pytest.mark.parametrize("seed", range(4))
def test_state_roundtrip_mid_stream_gives_identical_later_signals(seed: int) -> None:
    values = shifting(seed)
    reference = feed(ADWIN(), values, [])
    cut = 2500 + 1000 * seed
    first = ADWIN()
    head = feed(first, values[:cut], [])
    restored = ADWIN.from_state(roundtrip(first.to_state()))
    tail = [(cut + p, *rest) for p, *rest in feed(restored, values[cut:], [])]
    assert head + tail == reference
    assert restored.gauges()["n_detections"] == len(reference)


def test_state_roundtrip_right_after_a_firing_keeps_the_pending_reset() -> None:
    values = shifting(0)
    reference = ADWIN().update(values).positions
    cut = reference[0] + 1
    first = ADWIN()
    first.update(values[:cut])
    state = roundtrip(first.to_state())
    assert state["pending_reset"] is True
    later = ADWIN.from_state(state).update(values[cut:]).positions
    assert [cut + p for p in later] == reference[1:]


def test_state_is_plain_data() -> None:
    detector = ADWIN(delta=0.01)
    detector.update(shifting(0, 500))
    state = detector.to_state()
    assert state["kind"] == "adwin" and state["version"] == 1
    assert isinstance(state["window"], bytes)
    json.dumps({k: v for k, v in state.items() if k != "window"})
    assert ADWIN.from_state(state).to_state() == state


def _corrupt(mutate: Any) -> dict[str, Any]:
    detector = ADWIN()
    detector.update(shifting(0, 700))
    state = detector.to_state()
    mutate(state)
    return state


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.pop("window"), "missing 'window'"),
        (lambda s: s.pop("pending_reset"), "missing 'pending_reset'"),
        (lambda s: s.update(window="abc"), "'window' must be bytes"),
        (lambda s: s.update(pending_reset=1), "'pending_reset' must be bool"),
        (lambda s: s.update(n_detections=True), "'n_detections' must be int"),
        (lambda s: s.update(n_detections=-1), "n_detections must be >= 0"),
        (lambda s: s["params"].pop("clock"), "exactly the keys"),
        (lambda s: s["params"].update(delta=2.0), "invalid params"),
        (lambda s: s.update(window=s["window"][:-9]), "corrupt"),
        (lambda s: s.update(window=s["window"][:100]), "corrupt"),
        (lambda s: s.update(window=b""), "corrupt"),
        (lambda s: s.update(window=s["window"] + b"\x00"), "trailing"),
        (lambda s: s.update(window=b"\xff" * len(s["window"])), "corrupt"),
        (lambda s: s["params"].update(clock=16), "settings differ"),
        (lambda s: s.update(kind="page_hinkley"), "kind"),
        (lambda s: s.update(version=2), "version 2 is not supported"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_state_raises_state_error(mutate: Any, match: str) -> None:
    with pytest.raises(StateError, match=match):
        ADWIN.from_state(_corrupt(mutate))


def test_every_truncation_and_bit_flip_is_refused_or_harmless() -> None:
    # Whatever the bytes, the core must never panic: either StateError or a working detector.
    good = _corrupt(lambda s: None)
    window = good["window"]
    for cut in range(0, len(window), 7):
        with pytest.raises(StateError):
            ADWIN.from_state({**good, "window": window[:cut]})
    rng = np.random.default_rng(0)
    for _ in range(200):
        blob = bytearray(window)
        blob[int(rng.integers(len(blob)))] ^= 1 << int(rng.integers(8))
        try:
            detector = ADWIN.from_state({**good, "window": bytes(blob)})
        except StateError:
            continue
        detector.update(shifting(1, 300))
        detector.gauges()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delta": 0}, r"delta must be a number in the open interval \(0, 1\), got 0"),
        ({"delta": 1.5}, "delta .* got 1.5"),
        ({"delta": "0.1"}, "delta"),
        ({"clock": 0}, r"clock must be an integer in \[1, 2147483647\], got 0"),
        ({"clock": 2.0}, "clock .* got 2.0"),
        ({"max_buckets": 0}, "max_buckets .* got 0"),
        ({"min_window_length": True}, "min_window_length .* got True"),
        ({"grace_period": -1}, r"grace_period must be an integer in \[0, "),
    ],
)
def test_invalid_settings_name_the_parameter_and_valid_range(
    kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ADWIN(**kwargs)


def test_gauges_track_the_window() -> None:
    detector = ADWIN()
    assert detector.gauges() == {"width": 0.0, "mean": 0.0, "variance": 0.0, "n_detections": 0.0}
    values = np.random.default_rng(0).normal(3.0, 2.0, 5000)
    detector.update(values)
    g = detector.gauges()
    assert g["width"] == 5000.0
    assert g["mean"] == pytest.approx(values.mean())
    assert g["variance"] == pytest.approx(values.var(), rel=1e-9)
    assert all(type(v) is float for v in g.values())


def test_instances_do_not_share_state() -> None:
    a, b = ADWIN(), ADWIN()
    a.update(shifting(0))
    assert b.gauges()["width"] == 0.0 and b.n_detections == 0


# -- quality with river's defaults (measured figures are in the module notes) ----------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stationary_stream_has_at_most_one_false_alarm(seed: int) -> None:
    values = np.random.default_rng(seed).normal(size=100_000)
    detector = ADWIN()
    alarms = sum(
        len(detector.update(values[i : i + 10_000]).signals) for i in range(0, 100_000, 10_000)
    )
    assert alarms <= 1


def test_one_sigma_shift_median_delay_is_at_most_100() -> None:
    delays = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        values = np.concatenate([rng.normal(0, 1, 5000), rng.normal(1, 1, 1000)])
        late = [p for p in ADWIN().update(values).positions if p >= 5000]
        delays.append(late[0] - 5000 if late else 10**6)
    assert np.median(delays) <= 100
    assert max(delays) < 200
