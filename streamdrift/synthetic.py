"""A synthetic model stream with known drift points and outliers (demo, tests, benchmarks).

The stream imitates a fraud model's traffic: numeric features of different shapes, two
categorical features and a prediction score. What changes, where, is returned as the *truth*, so
a run's alerts can be scored against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

__all__ = ["Drift", "Truth", "demo_events", "malformed_messages", "synthetic_events"]

NUMERIC = ("amount", "age", "tx_per_day", "balance", "session_s")
CATEGORICAL = ("country", "device")
COUNTRIES = ("FR", "DE", "US", "GB", "ES", "IT")
DEVICES = ("ios", "android", "web")


@dataclass(frozen=True, slots=True)
class Drift:
    feature: str
    position: int  # index of the first drifted event
    description: str
    end: int | None = None  # gradual drift: index where the new distribution is fully reached


@dataclass(slots=True)
class Truth:
    drifts: list[Drift] = field(default_factory=list)
    outliers: list[int] = field(default_factory=list)
    n_events: int = 0

    @property
    def drifted_features(self) -> set[str]:
        return {d.feature for d in self.drifts}


def synthetic_events(
    n: int = 20_000,
    *,
    seed: int = 7,
    model_id: str = "fraud-v3",
    drift_at: float | None = 0.5,
    outlier_rate: float = 0.002,
    start_ts: float = 1_767_225_600.0,
    rate_per_s: float = 100.0,
) -> tuple[list[dict[str, Any]], Truth]:
    """Events as dicts, in our demo shape, plus the truth about what was injected.

    With ``drift_at`` set, at ``int(n * drift_at)`` the mean of ``amount`` shifts by one standard
    deviation and the ``country`` mix changes (US from 15% to 45%); the other features stay put.
    ``outlier_rate`` of the events get values far outside the joint distribution on three features.

    >>> events, truth = synthetic_events(1000, seed=1)
    >>> len(events), sorted(truth.drifted_features), events[0]["model_id"]
    (1000, ['__prediction__', 'amount', 'country'], 'fraud-v3')
    """
    rng = np.random.default_rng(seed)
    change = int(n * drift_at) if drift_at is not None else n
    after = np.arange(n) >= change
    amount = rng.normal(50.0, 10.0, n) + np.where(after, 10.0, 0.0)
    age = rng.normal(40.0, 12.0, n)
    tx = rng.poisson(3.0, n).astype(np.float64)
    balance = rng.lognormal(7.0, 0.5, n)
    session = rng.gamma(2.0, 30.0, n)
    p_before = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
    p_after = np.array([0.15, 0.10, 0.45, 0.10, 0.10, 0.10])
    country = np.where(
        after,
        rng.choice(len(COUNTRIES), n, p=p_after),
        rng.choice(len(COUNTRIES), n, p=p_before),
    )
    device = rng.choice(len(DEVICES), n, p=[0.4, 0.4, 0.2])
    truth = Truth(n_events=n)
    if drift_at is not None:
        truth.drifts = [
            Drift("amount", change, "mean +1 sd (50 -> 60)"),
            Drift("country", change, "US share 15% -> 45%"),
            # The score depends on amount, so the model's output drifts with it.
            Drift("__prediction__", change, "follows amount"),
        ]
    n_out = round(n * outlier_rate)
    if n_out:
        # Outliers only where a reference exists (after the first 2,000 events).
        lo = min(2000, n // 2)
        positions = np.sort(rng.choice(np.arange(lo, n), size=n_out, replace=False))
        # Jointly far out (5-7 sd on three features at once), as a fraud ring or a broken client
        # looks; each value alone stays within what the univariate drift detectors tolerate.
        amount[positions] += rng.choice([-1, 1], n_out) * rng.uniform(5, 7, n_out) * 10.0
        age[positions] = rng.uniform(95, 110, n_out)
        session[positions] = rng.uniform(350, 500, n_out)
        truth.outliers = positions.tolist()
    logit = 0.04 * (amount - 50) + 0.02 * (tx - 3) - 0.01 * (age - 40)
    score = 1.0 / (1.0 + np.exp(-logit))
    columns = (amount, age, tx, balance, session, country, device, score)
    return _assemble(model_id, start_ts, rate_per_s, columns), truth


def demo_events(
    n: int = 40_000,
    *,
    seed: int = 7,
    model_id: str = "fraud-v3",
    outlier_rate: float = 0.002,
    start_ts: float = 1_767_225_600.0,
    rate_per_s: float = 100.0,
) -> tuple[list[dict[str, Any]], Truth]:
    """The ``streamdrift demo`` stream: three drifts at known points, outliers, a score.

    Same event shape and features as :func:`synthetic_events`, with the drifts spread out so
    each can be told apart:

    * at 30% ``amount``'s mean moves by +1 sd (sudden), and the score with it;
    * at 50% the ``country`` mix changes (US share 15% -> 45%, sudden);
    * from 70% to 75% ``age`` moves by +1 sd, linearly (gradual).

    ``balance``, ``tx_per_day``, ``session_s`` and ``device`` never change: an alert on them is
    a false alarm. ``outlier_rate`` of the events (after the first 2,000) are jointly far out on
    ``amount``, ``age`` and ``session_s``.

    >>> events, truth = demo_events(10_000, seed=3)
    >>> [(d.feature, d.position, d.end) for d in truth.drifts]  # doctest: +NORMALIZE_WHITESPACE
    [('amount', 3000, None), ('__prediction__', 3000, None), ('country', 5000, None),
     ('age', 7000, 7500)]
    >>> len(truth.outliers), events[0]["features"]["country"] in COUNTRIES
    (20, True)
    """
    if n < 100:
        raise ValueError(f"the demo stream needs at least 100 events, got {n}")
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    at_amount, at_country = int(n * 0.3), int(n * 0.5)
    age_from, age_to = int(n * 0.7), int(n * 0.75)
    amount = rng.normal(50.0, 10.0, n) + np.where(idx >= at_amount, 10.0, 0.0)
    ramp = np.clip((idx - age_from) / max(1, age_to - age_from), 0.0, 1.0)
    age = rng.normal(40.0, 12.0, n) + 12.0 * ramp
    tx = rng.poisson(3.0, n).astype(np.float64)
    balance = rng.lognormal(7.0, 0.5, n)
    session = rng.gamma(2.0, 30.0, n)
    p_before = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
    p_after = np.array([0.15, 0.10, 0.45, 0.10, 0.10, 0.10])
    country = np.where(
        idx >= at_country,
        rng.choice(len(COUNTRIES), n, p=p_after),
        rng.choice(len(COUNTRIES), n, p=p_before),
    )
    device = rng.choice(len(DEVICES), n, p=[0.4, 0.4, 0.2])
    truth = Truth(
        drifts=[
            Drift("amount", at_amount, "mean +1 sd (50 -> 60), sudden"),
            Drift("__prediction__", at_amount, "the score follows amount"),
            Drift("country", at_country, "US share 15% -> 45%, sudden"),
            Drift("age", age_from, "mean +1 sd (40 -> 52), gradual", end=age_to),
        ],
        n_events=n,
    )
    n_out = round(n * outlier_rate)
    if n_out:
        lo = min(2000, n // 2)
        positions = np.sort(rng.choice(np.arange(lo, n), size=n_out, replace=False))
        amount[positions] += rng.choice([-1, 1], n_out) * rng.uniform(5, 7, n_out) * 10.0
        age[positions] = rng.uniform(95, 110, n_out) + 12.0 * ramp[positions]
        session[positions] = rng.uniform(350, 500, n_out)
        truth.outliers = positions.tolist()
    # The score ignores age, so only the amount drift moves it.
    logit = 0.04 * (amount - 50) + 0.02 * (tx - 3)
    score = 1.0 / (1.0 + np.exp(-logit))
    columns = (amount, age, tx, balance, session, country, device, score)
    return _assemble(model_id, start_ts, rate_per_s, columns), truth



def _assemble(
    model_id: str, start_ts: float, rate_per_s: float, columns: tuple[np.ndarray, ...]
) -> list[dict[str, Any]]:
    """The events as the demo's producers write them, from the generated columns."""
    amount, age, tx, balance, session, country, device, score = columns
    return [
        {
            "model_id": model_id,
            "event_id": f"{model_id}-{i}",
            "ts": round(start_ts + i / rate_per_s, 3),
            "features": {
                "amount": round(float(amount[i]), 4),
                "age": round(float(age[i]), 2),
                "tx_per_day": float(tx[i]),
                "balance": round(float(balance[i]), 2),
                "session_s": round(float(session[i]), 2),
                "country": COUNTRIES[int(country[i])],
                "device": DEVICES[int(device[i])],
            },
            "prediction": round(float(score[i]), 5),
        }
        for i in range(len(amount))
    ]

def truth_to_json(truth: Truth) -> dict[str, Any]:
    """The truth as a plain document (``--truth`` files, ``streamdrift demo --json``)."""
    return {
        "n_events": truth.n_events,
        "drifts": [
            {"feature": d.feature, "position": d.position, "end": d.end, "what": d.description}
            for d in truth.drifts
        ],
        "outliers": truth.outliers,
    }


def malformed_messages() -> list[tuple[bytes, str]]:
    """Broken messages with the dead-letter reason each must get (with the default mapping)."""
    return [
        (b"{not json", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'{"event_id": "x", "features": {"amount": 1.0}}', "missing_field"),
        (b'{"model_id": "fraud-v3", "features": {"amount": "lots"}}', "wrong_type"),
        (b'{"model_id": "fraud-v3", "features": {"amount": 1e999}}', "non_finite"),
        (b"", "empty"),
    ]


def encode(events: list[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        yield orjson.dumps(event)


def main(argv: list[str] | None = None) -> int:
    """``python -m streamdrift.synthetic``: write the synthetic stream as JSON lines to stdout."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m streamdrift.synthetic",
        description="Synthetic model traffic with a drift at half-way and 0.2%% outliers.",
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--truth", default=None, help="also write the injected truth (JSON) here")
    parser.add_argument(
        "--no-drift",
        action="store_true",
        help="no drift and no outliers: training data for `streamdrift reference build`",
    )
    args = parser.parse_args(argv)
    if args.no_drift:
        events, truth = synthetic_events(args.events, seed=args.seed, drift_at=None,
                                         outlier_rate=0.0)
    else:
        events, truth = synthetic_events(args.events, seed=args.seed)
    out = sys.stdout.buffer
    for line in encode(events):
        out.write(line + b"\n")
    if args.truth:
        with open(args.truth, "wb") as fh:
            fh.write(
                orjson.dumps(
                    {
                        "n_events": truth.n_events,
                        "drifts": [
                            {"feature": d.feature, "position": d.position, "what": d.description}
                            for d in truth.drifts
                        ],
                        "outliers": truth.outliers,
                    }
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
