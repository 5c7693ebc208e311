"""HalfSpaceTrees: contract checks, a reference implementation, state, and quality on Shuttle."""

from __future__ import annotations

import gzip
import math
import random
import re
import warnings
from importlib import resources
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.detectors.isolation_forest import HalfSpaceTrees
from streamdrift.errors import StateError

SMALL = {"n_trees": 4, "height": 5, "window": 20, "calibration": 40, "contamination": 0.05}


def _stream(n: int, seed: int, f: int = 3, bad: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, f))
    x[rng.random(n) < 0.02] *= 6.0  # some outliers
    x[rng.random(n) < bad, rng.integers(f)] = np.nan
    x[rng.random(n) < bad / 2, 0] = np.inf
    return x


def _feed(det: HalfSpaceTrees, x: np.ndarray, cuts: list[int]) -> tuple[list[Any], np.ndarray]:
    """Feed ``x`` split at ``cuts``; return (position, statistic, details) and all scores."""
    out, scores, start = [], [], 0
    for end in [*cuts, len(x)]:
        res = det.update(x[start:end])
        out += [(s.position + start, s.statistic, s.threshold, s.details) for s in res.signals]
        scores.append(det.last_scores)
        start = end
    return out, np.concatenate(scores)


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_trees": 0}, "n_trees must be an integer in [1, 10000]"),
        ({"height": 0}, "height must be an integer in"),
        ({"window": 2.5}, "window must be an integer"),
        ({"threshold": 1.5}, "threshold must be in (0, 1]"),
        ({"contamination": 0.0}, "contamination must be in (0, 0.5)"),
        ({"size_limit": -1}, "size_limit must be a number > 0"),
        ({"calibration": 0}, "calibration must be an integer in [1, 10000000]"),
        ({"seed": -1}, "seed must be an integer"),
        ({"limits": [(1.0, 0.0)]}, "limits[0] must be a finite (lo, hi) with lo < hi"),
        ({"limits": {"mins": [0.0]}}, "needs exactly 'mins' and 'maxs'"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_settings_name_the_valid_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        HalfSpaceTrees(**kwargs)


def test_limits_forms_are_equivalent_and_seed_decides_the_trees() -> None:
    a = HalfSpaceTrees(limits={"mins": [0, -1], "maxs": [1, 1]}, seed=3)
    b = HalfSpaceTrees(limits=[(0, 1), (-1, 1)], seed=3)
    c = HalfSpaceTrees(limits=[(0, 1), (-1, 1)], seed=4)
    assert a.to_state()["trees"] == b.to_state()["trees"]
    assert a.to_state()["trees"] != c.to_state()["trees"]


def test_wrong_feature_count_is_refused() -> None:
    det = HalfSpaceTrees(limits=[(0, 1)] * 3)
    with pytest.raises(ValueError, match="expected rows of 3 features"):
        det.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        det.update(np.zeros(3))


# -- reference implementation --------------------------------------------------------------


def _reference_scores(det: HalfSpaceTrees, x: np.ndarray) -> list[float]:
    """Event-by-event HST on the detector's own trees: pure Python, the paper's rules."""
    t, nn, h, w = det.n_trees, 2 ** (det.height + 1) - 1, det.height, det.window
    dim, val = det._dim.reshape(t, nn), det._value.reshape(t, nn)
    r = [[0] * nn for _ in range(t)]
    lm = [[0] * nn for _ in range(t)]
    out, count, has_ref = [], 0, False
    for row in x:
        paths = []
        for k in range(t):
            node, path = 0, [0]
            for _ in range(h):
                node = 2 * node + 1 + int(row[dim[k, node]] >= val[k, node])
                path.append(node)
            paths.append(path)
        if has_ref:
            total = 0.0
            for k, path in enumerate(paths):
                depth = next((d for d, n in enumerate(path) if r[k][n] < 0.1 * w), h)
                total += r[k][path[depth]] * 2.0**depth
            out.append(1.0 - total / (t * w * 2**h))
        else:
            out.append(math.nan)
        for k, path in enumerate(paths):
            for n in path:
                lm[k][n] += 1
        count += 1
        if count == w:
            r, lm, count, has_ref = lm, [[0] * nn for _ in range(t)], 0, True
    return out


def test_scores_match_an_event_by_event_reference() -> None:
    x = np.random.default_rng(0).random((150, 2))
    det = HalfSpaceTrees(n_trees=3, height=4, window=25, limits=[(0, 1), (0, 1)], seed=1)
    expected = _reference_scores(det, x)
    det.update(x)
    np.testing.assert_allclose(det.last_scores, expected, rtol=0, atol=1e-12)


def test_narrow_dtypes_hold_every_feature_index_and_mass() -> None:
    # The forest is most of a model's memory: 1-byte split dimensions and 2-byte masses by default.
    small = HalfSpaceTrees(n_trees=10, height=8, limits=[(0, 1)] * 10)
    assert small._dim.dtype == np.int8 and small._r.dtype == small._l.dtype == np.uint16
    assert small._dim.nbytes + small._r.nbytes + small._l.nbytes == 5 * 10 * 511
    # Split dimensions are int8 up to 128 features: 200 need int16, and routing stays exact.
    x = np.random.default_rng(4).random((80, 200))
    det = HalfSpaceTrees(n_trees=3, height=6, window=20, limits=[(0, 1)] * 200, seed=2)
    assert det._dim.dtype == np.int16 and int(det._dim.max()) >= 128
    expected = _reference_scores(det, x)
    det.update(x)
    np.testing.assert_allclose(det.last_scores, expected, rtol=0, atol=1e-12)
    # Masses are uint16 up to a 65,535-event window: a larger window needs uint32 at the root.
    big = HalfSpaceTrees(n_trees=2, height=3, window=70_000, limits=[(0, 1)] * 2, seed=3)
    big.update(np.random.default_rng(5).random((70_001, 2)))
    assert big._r.dtype == np.uint32 and (big._r.reshape(2, -1)[:, 0] == 70_000).all()
    restored = HalfSpaceTrees.from_state(msgpack.unpackb(msgpack.packb(big.to_state())))
    assert (restored._r == big._r).all() and restored.to_state() == big.to_state()


def test_learned_workspace_matches_configured_one_built_from_the_warm_up() -> None:
    x = _stream(300, 1, bad=0.0)
    learned = HalfSpaceTrees(**SMALL, seed=5)
    learned.update(x)
    lo, hi = x[:20].min(axis=0), x[:20].max(axis=0)
    configured = HalfSpaceTrees(**SMALL, limits=list(zip(lo, hi, strict=True)), seed=5)
    configured.update(x)
    assert learned.to_state()["trees"] == configured.to_state()["trees"]
    np.testing.assert_array_equal(learned.last_scores, configured.last_scores)


# -- batch equivalence, invalid values -----------------------------------------------------


@pytest.mark.parametrize("limits", [None, [(-3.0, 3.0)] * 3], ids=["learned", "configured"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_split_gives_the_same_result(limits: Any, data: st.DataObject) -> None:
    x = _stream(400, data.draw(st.integers(0, 5)))
    cuts = sorted(data.draw(st.lists(st.integers(0, 400), max_size=6)))
    whole, whole_scores = _feed(HalfSpaceTrees(**SMALL, limits=limits, seed=2), x, [])
    split, split_scores = _feed(HalfSpaceTrees(**SMALL, limits=limits, seed=2), x, cuts)
    assert split == whole
    np.testing.assert_array_equal(split_scores, whole_scores)


def test_one_by_one_equals_batch_and_fires() -> None:
    x = _stream(600, 3)
    whole, scores = _feed(HalfSpaceTrees(**SMALL, seed=1), x, [])
    single, single_scores = _feed(HalfSpaceTrees(**SMALL, seed=1), x, list(range(1, 600)))
    assert single == whole and len(whole) > 5
    np.testing.assert_array_equal(single_scores, scores)


def test_invalid_rows_are_skipped_counted_and_keep_their_positions() -> None:
    x = _stream(400, 4, bad=0.0)
    dirty = np.insert(
        x,
        [50, 200, 200, 399],
        [[np.nan, 0, 0], [0, np.inf, 0], [-np.inf] * 3, [0, 0, np.nan]],
        axis=0,
    )
    clean = HalfSpaceTrees(**SMALL, seed=0)
    res_clean = clean.update(x)
    det = HalfSpaceTrees(**SMALL, seed=0)
    res = det.update(dirty)
    assert res.n_invalid == 4
    keep = np.isfinite(dirty).all(axis=1)
    np.testing.assert_array_equal(det.last_scores[keep], clean.last_scores)
    assert np.isnan(det.last_scores[~keep]).all()
    where = np.flatnonzero(keep)
    assert res.positions == [int(where[p]) for p in res_clean.positions]


def test_warm_up_has_no_scores_and_decisions_wait_for_calibration() -> None:
    det = HalfSpaceTrees(**SMALL, seed=0)
    x = _stream(200, 5, bad=0.0)
    res = det.update(x)
    assert np.isnan(det.last_scores[:20]).all() and not np.isnan(det.last_scores[20:]).any()
    assert min(res.positions) >= 20 + 40  # window + calibration
    assert ((det.last_scores[20:] >= 0) & (det.last_scores[20:] <= 1)).all()


def test_signal_details_name_the_feature_that_isolates() -> None:
    rng = random.Random(1)
    rows = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(3_000)]
    rows[2_500] = [4.0, 0.0, 4.0, 0.0]
    det = HalfSpaceTrees(contamination=0.001, calibration=1_000, seed=2)
    res = det.update(rows)
    (signal,) = [s for s in res.signals if s.position == 2_500]
    assert [f["feature"] for f in signal.details["features"]] == [2, 0]
    assert signal.details["values"] == rows[2_500]
    assert signal.statistic == signal.details["score"] > signal.threshold
    assert 0 < sum(f["weight"] for f in signal.details["features"]) <= 1


def test_pinned_positions() -> None:
    det = HalfSpaceTrees(**SMALL, seed=7)
    assert det.update(_stream(500, 7)).positions == [
        71, 83, 135, 136, 151, 164, 214, 221, 227, 230, 292, 300,
        303, 306, 324, 347, 430, 443, 451, 453, 475, 489,
    ]  # fmt: skip


def test_gauges() -> None:
    det = HalfSpaceTrees(**SMALL, seed=0)
    assert math.isnan(det.gauges()["score_p50"])
    res = det.update(_stream(333, 0))
    g = det.gauges()
    assert set(g) == {
        "outlier_rate",
        "score_p50",
        "score_p99",
        "threshold",
        "window_position",
        "n_detections",
    }
    assert g["score_p50"] <= g["score_p99"] <= 1 and 0 <= g["outlier_rate"] <= 1
    assert g["window_position"] == (333 - res.n_invalid) % 20
    assert all(isinstance(v, float) for v in g.values())


# -- state ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cut", [7, 20, 33, 140, 287])
@pytest.mark.parametrize("limits", [None, [(-3.0, 3.0)] * 3], ids=["learned", "configured"])
def test_state_round_trip_mid_stream(seed: int, cut: int, limits: Any) -> None:
    x = _stream(500, seed)
    det = HalfSpaceTrees(**SMALL, limits=limits, seed=seed)
    det.update(x[:cut])
    doc = msgpack.unpackb(msgpack.packb(det.to_state()), raw=False)
    restored = HalfSpaceTrees.from_state(doc)
    assert restored.to_state() == det.to_state()
    out_b, scores_b = _feed(restored, x[cut:], [50])
    out_a, scores_a = _feed(det, x[cut:], [50])
    assert out_a == out_b
    np.testing.assert_array_equal(scores_a, scores_b)
    assert restored.to_state() == det.to_state()


def test_state_round_trip_gives_identical_later_detections() -> None:
    for seed in (0, 1, 2, 3):
        x = _stream(800, seed)
        det = HalfSpaceTrees(**SMALL, seed=seed)
        det.update(x[:301])
        restored = HalfSpaceTrees.from_state(msgpack.unpackb(msgpack.packb(det.to_state())))
        out_a, scores_a = _feed(det, x[301:], [100])
        out_b, scores_b = _feed(restored, x[301:], [100])
        assert out_a == out_b and len(out_a) > 0
        np.testing.assert_array_equal(scores_a, scores_b)
        assert det.gauges() == restored.gauges()


def _corrupt(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = msgpack.unpackb(msgpack.packb(doc))
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    elif callable(value):
        node[last] = value(node[last])
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("kind", "psi"),
        ("version", 99),
        ("settings.window", -1),
        ("trees.split_dim", lambda b: b[:-3]),
        ("trees.split_value", lambda b: b[:-8]),
        ("trees.split_dim", lambda b: b"\xff" * len(b)),
        ("masses.reference.count", lambda b: b[:-4]),
        ("masses.latest.count", lambda b: b"\x01" + b[1:]),
        ("masses.in_window", 25),
        ("calibration.scores", lambda b: b"\x00" * 7),
        ("n_seen", KeyError),
        ("masses", KeyError),
        ("trees", None),
    ],
    ids=lambda v: str(v)[:24],
)
def test_invalid_state_raises_state_error(path: str, value: Any) -> None:
    det = HalfSpaceTrees(**SMALL, seed=0)
    det.update(_stream(130, 0))
    with pytest.raises(StateError):
        HalfSpaceTrees.from_state(_corrupt(det.to_state(), path, value))


def test_state_before_any_data_and_mid_warm_up() -> None:
    fresh = HalfSpaceTrees(**SMALL, seed=9)
    assert HalfSpaceTrees.from_state(fresh.to_state()).to_state() == fresh.to_state()
    with pytest.raises(StateError):
        HalfSpaceTrees.from_state("not a doc")  # type: ignore[arg-type]


# -- quality -------------------------------------------------------------------------------


def _shuttle() -> tuple[np.ndarray, np.ndarray]:
    path = resources.files("river.datasets") / "shuttle.csv.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt") as fh:
        data = np.loadtxt(fh, delimiter=",", skiprows=1)
    return data[:, :-1], data[:, -1].astype(int)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by average ranks (ties count half)."""
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n1 = int(y.sum())
    n0 = y.size - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_shuttle_auc_side_by_side_with_river() -> None:
    """Full Shuttle stream (49,097 rows) in order, 25 trees x height 8, window 250, seeds 0-2.

    25 trees, not river's default 10: with 10 trees both detectors swing between about 0.90 and
    0.99 from seed to seed (16 seeds: ours 0.959 mean, river 0.964), so a three-seed mean would
    test the seeds. With 25 (6 seeds): ours 0.977 mean (0.951-0.986), river 0.969 (0.961-0.976).

    Protocol: every event is scored, then learned (river: ``score_one`` then ``learn_one``, on a
    ``MinMaxScaler`` as river's docs recommend; ours learns its limits from the first window).
    First-window events have no score in either (river returns 0; our NaN counts as 0).
    """
    from river import anomaly, preprocessing

    x, y = _shuttle()
    names = [f"f{i}" for i in range(x.shape[1])]
    rows = [dict(zip(names, r, strict=True)) for r in x.tolist()]
    ours, theirs = [], []
    for seed in (0, 1, 2):
        det = HalfSpaceTrees(n_trees=25, height=8, window=250, seed=seed)
        det.update(x)
        ours.append(_auc(y, np.nan_to_num(det.last_scores, nan=0.0)))
        model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=25, height=8, window_size=250, seed=seed
        )
        scores = []
        with warnings.catch_warnings():  # river's scaler divides 0/0 on constant features
            warnings.simplefilter("ignore", RuntimeWarning)
            for r in rows:
                scores.append(model.score_one(r))
                model.learn_one(r)
        theirs.append(_auc(y, np.array(scores)))
    print(f"Shuttle ROC AUC ours {np.round(ours, 4)} river {np.round(theirs, 4)}")
    assert np.mean(ours) >= 0.97
    assert np.mean(ours) >= np.mean(theirs)
