"""Checks every detector passes, whatever it computes (ids read ``detector:check``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import pytest

from streamdrift.detectors import (
    ADWIN,
    DDM,
    KINDS,
    PSI,
    CategoricalPSI,
    HalfSpaceTrees,
    PageHinkley,
    detector_from_state,
)
from streamdrift.errors import StateError


@dataclass(frozen=True)
class Spec:
    make: Callable[[], Any]
    stream: Callable[[int], np.ndarray]  # seed -> values with a change in the middle
    bad_params: dict[str, Any]
    nan_is_missing: bool = False  # PSI counts NaN in its missing bin instead of skipping it


def _shift(seed: int, n: int = 6000, size: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    x[n // 2 :] += size
    return x


def _categories(seed: int, n: int = 6000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cats = np.array(["a", "b", "c", "d"], dtype=object)
    first = rng.choice(cats, n // 2, p=[0.4, 0.3, 0.2, 0.1])
    second = rng.choice(cats, n - n // 2, p=[0.1, 0.2, 0.3, 0.4])
    return np.concatenate([first, second])


def _errors(seed: int, n: int = 6000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.where(np.arange(n) < n // 2, 0.1, 0.3)
    return (rng.random(n) < p).astype(np.float64)


def _vectors(seed: int, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 4))
    idx = rng.choice(np.arange(600, n), 30, replace=False)
    x[idx] += 8.0
    return x


SPECS: dict[str, Spec] = {
    "adwin": Spec(ADWIN, _shift, {"delta": 2.0}),
    "page_hinkley": Spec(PageHinkley, _shift, {"mode": "sideways"}),
    "psi": Spec(
        lambda: PSI(window=300, reference_size=1000),
        lambda s: _shift(s, size=0.7),
        {"bins": 0},
        nan_is_missing=True,
    ),
    "psi_categorical": Spec(
        lambda: CategoricalPSI(window=300, reference_size=1000),
        _categories,
        {"window": 0},
        nan_is_missing=True,
    ),
    "ddm": Spec(DDM, _errors, {"drift_threshold": 1.0}),
    "isolation_forest": Spec(
        lambda: HalfSpaceTrees(n_trees=5, height=6, window=250, seed=3),
        _vectors,
        {"height": 0},
    ),
}
SEEDS = (1, 2, 3)


def cases(check: str, names: list[str] | None = None) -> Any:
    names = list(SPECS) if names is None else names
    return pytest.mark.parametrize("name", names, ids=[f"{name}:{check}" for name in names])


def positions(det: Any, values: np.ndarray, splits: list[int] | None = None) -> list[int]:
    out: list[int] = []
    bounds = [0, *(splits or []), len(values)]
    for lo, hi in itertools.pairwise(bounds):
        out.extend(lo + p for p in det.update(values[lo:hi]).positions)
    return out


def test_every_kind_is_registered() -> None:
    assert set(KINDS) == set(SPECS)


@cases("fires_on_the_change")
def test_fires_on_the_change(name: str) -> None:
    spec = SPECS[name]
    for seed in SEEDS:
        assert positions(spec.make(), spec.stream(seed)), f"{name} never fired (seed {seed})"


@cases("batch_equals_one_by_one")
def test_batch_equals_one_by_one_and_any_split(name: str) -> None:
    spec = SPECS[name]
    for seed in SEEDS:
        values = spec.stream(seed)
        whole = positions(spec.make(), values)
        one = spec.make()
        singles = [i for i in range(len(values)) if one.update(values[i : i + 1]).positions]
        rng = np.random.default_rng(seed)
        splits = sorted(rng.choice(np.arange(1, len(values)), 25, replace=False).tolist())
        assert whole == singles == positions(spec.make(), values, splits)


@cases("state_round_trip_mid_stream")
def test_state_round_trip_mid_stream_gives_identical_later_detections(name: str) -> None:
    spec = SPECS[name]
    for seed in SEEDS:
        values = spec.stream(seed)
        for cut in (len(values) // 3, len(values) // 2 + 7):
            straight = spec.make()
            positions(straight, values[:cut])
            want = positions(straight, values[cut:])
            first = spec.make()
            positions(first, values[:cut])
            blob = msgpack.packb(first.to_state(), use_bin_type=True)
            restored = detector_from_state(msgpack.unpackb(blob, raw=False))
            assert type(restored) is type(first)
            assert positions(restored, values[cut:]) == want
            assert restored.to_state() == straight.to_state()


@cases("state_is_plain_data")
def test_state_is_versioned_plain_data(name: str) -> None:
    det = SPECS[name].make()
    positions(det, SPECS[name].stream(1))
    state = det.to_state()
    assert state["kind"] == det.kind and state["version"] == det.state_version

    def plain(x: Any) -> bool:
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list | tuple):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, bool | int | float | str | bytes)

    assert plain(state)
    if not any(isinstance(v, bytes) for v in _leaves(state)):
        json.dumps(state)  # no byte strings: JSON works too


def _leaves(x: Any) -> list[Any]:
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in _leaves(v)]
    if isinstance(x, list | tuple):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x]


@cases("bad_state_is_a_state_error")
def test_bad_state_is_a_clear_state_error(name: str) -> None:
    det = SPECS[name].make()
    positions(det, SPECS[name].stream(1)[:500])
    state = det.to_state()
    cls = type(det)
    with pytest.raises(StateError):
        cls.from_state({**state, "version": 999})
    with pytest.raises(StateError):
        cls.from_state({**state, "kind": "something-else"})
    truncated = {k: v for k, v in state.items() if k in ("kind", "version")}
    with pytest.raises(StateError):
        cls.from_state(truncated)
    with pytest.raises(StateError):
        cls.from_state("not a document")  # type: ignore[arg-type]


# Categorical input has no infinities; its missing values are tested in test_psi.
@cases("inf_is_counted_not_fed", [n for n in SPECS if n != "psi_categorical"])
def test_non_finite_values_are_counted_and_never_fed(name: str) -> None:
    spec = SPECS[name]
    values = spec.stream(2)
    clean = positions(spec.make(), values)
    bad = np.arange(5, len(values), 97)
    dirty_values = np.insert(values, bad, np.inf, axis=0)
    det = spec.make()
    result_positions: list[int] = []
    n_invalid = 0
    for lo in range(0, len(dirty_values), 1000):
        r = det.update(dirty_values[lo : lo + 1000])
        n_invalid += r.n_invalid
        result_positions.extend(lo + p for p in r.positions)
    # Map positions in the dirty stream back to the clean one.
    is_bad = np.zeros(len(dirty_values), dtype=bool)
    is_bad[bad + np.arange(len(bad))] = True
    clean_index = np.cumsum(~is_bad) - 1
    assert [int(clean_index[p]) for p in result_positions] == clean
    assert n_invalid == len(bad)
    if not spec.nan_is_missing and values.ndim == 1:
        nan_values = np.insert(values, bad, np.nan)
        r = spec.make().update(nan_values)
        assert r.n_invalid == len(bad)


@cases("instances_share_nothing")
def test_default_params_not_shared_between_instances(name: str) -> None:
    spec = SPECS[name]
    a, b = spec.make(), spec.make()
    before = b.to_state()
    positions(a, spec.stream(1))
    assert b.to_state() == before


@cases("bad_params_raise")
def test_bad_params_raise_value_error_naming_the_parameter(name: str) -> None:
    spec = SPECS[name]
    ((param, value),) = spec.bad_params.items()
    cls = type(spec.make())
    with pytest.raises(ValueError, match=param):
        cls(**{param: value})
