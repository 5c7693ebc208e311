"""Compact detector memory and the small-batch paths (thousands of models on one partition).

With 10,000 models a bank holds 340,000 detectors and each batch gives a model a few values, so
(1) per-detector memory must be arrays, not lists of Python floats, and (2) a detector's cost
per call must not be dozens of numpy calls. The small-batch paths must give exactly the floats
the vectorised ones give: every test here compares them bit for bit (states included).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamdrift.detectors import PSI, CategoricalPSI, PageHinkley
from streamdrift.detectors.base import all_finite, finite_part
from streamdrift.detectors.psi import _bin_index


def _feed(detector: object, values: np.ndarray, step: int) -> list[tuple[int, float, str]]:
    out = []
    for start in range(0, values.size, step):
        result = detector.update(values[start : start + step])  # type: ignore[attr-defined]
        out += [(start + s.position, s.statistic, json.dumps(s.details)) for s in result.signals]
    return out


def _stream(seed: int, n: int = 12_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(10.0, 2.0, n)
    values[n // 2 :] += 3.0  # a shift, so that the detectors fire
    values[rng.choice(n, n // 100, replace=False)] = np.nan  # missing values
    return values


def test_psi_warm_up_is_a_float64_buffer_bounded_by_the_reference_size() -> None:
    det = PSI(reference_size=5_000)
    for start in range(0, 4_990, 7):  # small batches: the buffer grows, never past 5,000
        det.update(np.arange(start, min(start + 7, 4_990), dtype=np.float64))
        buffer = det._warm_values
        assert isinstance(buffer, np.ndarray) and buffer.dtype == np.float64
        assert det._warm_len <= buffer.size <= det.reference_size
    assert det._warm_values.nbytes <= 8 * 5_000  # a list of floats would be ~32 bytes a value
    assert det.to_state()["warmup"]["values"] == [float(v) for v in range(4_990)]
    det.update(np.arange(4_990, 5_000, dtype=np.float64))
    assert det.reference_profile is not None and det._warm_values.size == 0


def test_psi_warm_up_state_round_trips_and_empty_batches_are_harmless() -> None:
    values = _stream(0, 3_000)
    det = PSI(reference_size=5_000)
    det.update(values[:1_234])
    det.update(values[:0])
    restored = PSI.from_state(json.loads(json.dumps(det.to_state())))
    assert restored.to_state() == det.to_state()
    assert _feed(restored, values[1_234:], 500) == _feed(det, values[1_234:], 500)
    assert restored.to_state() == det.to_state()


@pytest.mark.parametrize("step", [1, 3, 16, 17, 999])
def test_psi_small_batches_give_the_same_signals_and_state(step: int) -> None:
    values = _stream(1)
    whole, pieces = PSI(window=500), PSI(window=500)
    expected = _feed(whole, values, values.size)
    assert expected
    assert _feed(pieces, values, step) == expected
    assert pieces.to_state() == whole.to_state()


def test_psi_history_ring_keeps_the_last_windows_in_order() -> None:
    det = PSI(window=100, reference_size=500, history=4)
    det.update(_stream(2, 2_000))
    windows = det.windows
    assert [w["end"] for w in windows] == [1_599, 1_699, 1_799, 1_899, 1_999][-4:]
    assert det.last_psi == windows[-1]["psi"] == det.gauges()["psi"]
    assert det.to_state()["history"] == [[w["end"], w["psi"], w["fired"]] for w in windows]


def test_categorical_psi_small_batches_give_the_same_state() -> None:
    rng = np.random.default_rng(3)
    values = np.empty(9_000, dtype=object)
    values[:] = rng.choice(["a", "b", "c", "d"], 9_000, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    values[6_000:] = rng.choice(["a", "e"], 3_000).tolist()
    whole, pieces = CategoricalPSI(), CategoricalPSI()
    expected = _feed(whole, values, values.size)
    assert expected and _feed(pieces, values, 5) == expected
    assert pieces.to_state() == whole.to_state()


@pytest.mark.parametrize("n", [2, 100, 4_095, 4_096, 10_000])
def test_bin_index_matches_searchsorted_on_both_paths(n: int) -> None:
    rng = np.random.default_rng(n)
    edges = np.unique(np.round(rng.normal(size=9), 1))
    values = np.round(rng.normal(size=n), 1)  # ties with the edges included
    assert (_bin_index(edges, values) == np.searchsorted(edges, values)).all()


@pytest.mark.parametrize(
    "params",
    [{}, {"clip": 100.0}, {"direction": "down"}, {"mode": "river", "alpha": 1.0}],
    ids=["sigma", "wide_clip", "down", "river_alpha_1"],
)
@pytest.mark.parametrize("step", [1, 2, 16, 17])
def test_page_hinkley_small_batches_are_bit_for_bit(params: dict[str, object], step: int) -> None:
    values = _stream(4) * (-1.0 if params.get("direction") == "down" else 1.0)
    whole, pieces = PageHinkley(**params), PageHinkley(**params)  # type: ignore[arg-type]
    expected = _feed(whole, values, values.size)
    assert expected
    assert _feed(pieces, values, step) == expected
    assert pieces.to_state() == whole.to_state()
    assert pieces.gauges() == whole.gauges()


@pytest.mark.parametrize("n", [0, 1, 16, 17, 100])
def test_all_finite_and_finite_part_on_both_paths(n: int) -> None:
    clean = np.linspace(-1.0, 1.0, n)
    assert all_finite(clean) and finite_part(clean)[1] is None
    for bad in (np.nan, np.inf, -np.inf):
        if n:
            dirty = clean.copy()
            dirty[n // 2] = bad
            assert not all_finite(dirty)
            kept, where = finite_part(dirty)
            assert where is not None and kept.size == n - 1 and n // 2 not in where.tolist()
