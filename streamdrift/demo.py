"""``streamdrift demo``: the whole pipeline on a synthetic stream whose truth is known.

Locally (the default) it generates :func:`streamdrift.synthetic.demo_events` — a fraud model's
traffic with three drifts at known points, 0.2% injected outliers and a few malformed lines —,
runs it through the embedded pipeline of ``streamdrift replay`` (:func:`streamdrift.app.replay`,
the embedded default config, state in memory) and scores every alert against the truth
(:func:`score`). With ``kafka`` set it produces the same kind of stream into a topic at a given
rate instead (the docker-compose demo, load tests).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

import numpy as np
import orjson

from streamdrift.config import Config
from streamdrift.errors import StreamdriftError
from streamdrift.synthetic import Drift, Truth, demo_events, malformed_messages, truth_to_json

__all__ = [
    "MAX_DELAY",
    "MAX_FALSE_ALARMS",
    "DemoScore",
    "produce_to_kafka",
    "run_local",
    "score",
]

MAX_DELAY = 2_000
"""Tolerance: every injected drift must be detected within this many events of its start."""
MAX_FALSE_ALARMS = 2
"""Tolerance: drift alerts on features that did not (yet) drift, over the whole demo stream."""


# -- scoring -------------------------------------------------------------------------------------


@dataclass(slots=True)
class ScoredAlert:
    feature: str
    detector: str
    position: int  # index of the event in the generated stream
    severity: str
    verdict: str  # "detected", "repeat", "late", "false alarm"
    delay: int | None = None


@dataclass(slots=True)
class DemoScore:
    """Every drift alert classified against the truth, and the outliers' precision and recall."""

    truth: Truth
    alerts: list[ScoredAlert] = field(default_factory=list)
    detections: dict[int, list[ScoredAlert]] = field(default_factory=dict)  # drift index ->
    missed: list[Drift] = field(default_factory=list)
    false_alarms: list[ScoredAlert] = field(default_factory=list)
    repeats: int = 0
    outlier_alerts: int = 0
    outliers_flagged: int = 0
    outlier_positions: list[int] = field(default_factory=list)  # of the outlier alerts

    @property
    def outlier_precision(self) -> float | None:
        return self.outliers_flagged / self.outlier_alerts if self.outlier_alerts else None

    @property
    def outlier_recall(self) -> float | None:
        n = len(self.truth.outliers)
        return self.outliers_flagged / n if n else None

    def first_delay(self, i: int) -> int | None:
        hits = self.detections.get(i, [])
        return min(h.delay for h in hits if h.delay is not None) if hits else None

    def to_json(self) -> dict[str, Any]:
        return {
            "drifts": [
                {
                    "feature": d.feature,
                    "position": d.position,
                    "end": d.end,
                    "what": d.description,
                    "detected": i in self.detections,
                    "first_delay": self.first_delay(i),
                    "detections": [
                        {"detector": h.detector, "position": h.position, "delay": h.delay}
                        for h in self.detections.get(i, [])
                    ],
                }
                for i, d in enumerate(self.truth.drifts)
            ],
            "alerts": [
                {
                    "feature": a.feature,
                    "detector": a.detector,
                    "position": a.position,
                    "severity": a.severity,
                    "verdict": a.verdict,
                    "delay": a.delay,
                }
                for a in self.alerts
            ],
            "missed": [d.feature for d in self.missed],
            "false_alarms": len(self.false_alarms),
            "repeats": self.repeats,
            "outliers": {
                "injected": len(self.truth.outliers),
                "alerts": self.outlier_alerts,
                "flagged": self.outliers_flagged,
                "precision": self.outlier_precision,
                "recall": self.outlier_recall,
            },
            "tolerance": {"max_delay": MAX_DELAY, "max_false_alarms": MAX_FALSE_ALARMS},
        }


def score(
    alerts: Sequence[dict[str, Any]],
    truth: Truth,
    position_of: Callable[[int], int] = lambda offset: offset,
    max_delay: int = MAX_DELAY,
) -> DemoScore:
    """Classify alerts (parsed alert JSON) against ``truth``.

    A drift alert on a drifted feature at or after the drift's start is a *detection* if it is
    its detector's first one within ``max_delay`` events, *late* if its detector's first one
    comes after that, and otherwise a *repeat* (the drift persists and is re-announced after the
    cooldown). Any other drift alert is a *false alarm*. ``position_of`` maps an alert's
    ``source.offset`` (input line) to the event's index in the stream.

    >>> truth = Truth([Drift("amount", 100, "shift")], n_events=1000)
    >>> alerts = [{"type": "drift", "feature": f, "detector": d, "severity": "warning",
    ...            "source": {"offset": o}} for f, d, o in
    ...           [("age", "adwin", 50), ("amount", "psi", 180), ("amount", "psi", 900)]]
    >>> s = score(alerts, truth)
    >>> [(a.feature, a.verdict, a.delay) for a in s.alerts]
    [('age', 'false alarm', None), ('amount', 'detected', 80), ('amount', 'repeat', 800)]
    """
    result = DemoScore(truth)
    by_feature = {d.feature: i for i, d in enumerate(truth.drifts)}
    seen: set[tuple[str, str]] = set()
    outliers = set(truth.outliers)
    flagged: set[int] = set()
    for alert in alerts:
        pos = position_of(int(alert["source"]["offset"]))
        if alert["type"] == "outlier":
            result.outlier_alerts += 1
            result.outlier_positions.append(pos)
            if pos in outliers:
                flagged.add(pos)
            continue
        feature, detector = str(alert["feature"]), str(alert["detector"])
        scored = ScoredAlert(feature, detector, pos, str(alert["severity"]), "false alarm")
        i = by_feature.get(feature)
        if i is not None and pos >= truth.drifts[i].position:
            scored.delay = pos - truth.drifts[i].position
            if (feature, detector) in seen:
                scored.verdict = "repeat"
                result.repeats += 1
            elif scored.delay <= max_delay:
                scored.verdict = "detected"
                result.detections.setdefault(i, []).append(scored)
            else:
                scored.verdict = "late"
            seen.add((feature, detector))
        else:
            result.false_alarms.append(scored)
        result.alerts.append(scored)
    result.outliers_flagged = len(flagged)
    result.missed = [d for i, d in enumerate(truth.drifts) if i not in result.detections]
    return result


# -- local run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class LocalRun:
    """What :func:`run_local` did: the score, the run's numbers, the series for the plot."""

    score: DemoScore
    n_lines: int
    n_events: int
    seconds: float
    n_alerts: int
    dead_letters: dict[str, int]
    expected_dead_letters: dict[str, int]
    n_detectors: int
    events: list[dict[str, Any]]
    gauges: list[tuple[int, str, str, dict[str, float]]]
    raw_alerts: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.n_events,
            "lines": self.n_lines,
            "seconds": self.seconds,
            "events_per_s": self.n_lines / self.seconds if self.seconds else None,
            "alerts": self.n_alerts,
            "detectors": self.n_detectors,
            "dead_letters": self.dead_letters,
            "expected_dead_letters": self.expected_dead_letters,
            **self.score.to_json(),
            "truth": truth_to_json(self.score.truth),
        }


def demo_lines(
    n: int, seed: int, model_id: str = "fraud-v3"
) -> tuple[list[bytes], list[int], list[dict[str, Any]], Truth, dict[str, int]]:
    """The demo's input: JSON lines with a few malformed ones spread in.

    Returns the lines, for each line the index of its event (-1 for a malformed line), the
    events, the truth and the dead-letter reasons the malformed lines must get.
    """
    events, truth = demo_events(n, seed=seed, model_id=model_id)
    bad = malformed_messages()
    step = max(1, n // (len(bad) + 1))
    at = {step * (k + 1): raw_reason for k, raw_reason in enumerate(bad)}
    lines: list[bytes] = []
    event_of_line: list[int] = []
    expected: dict[str, int] = {}
    for i, event in enumerate(events):
        if i in at:
            raw, reason = at[i]
            lines.append(raw)
            event_of_line.append(-1)
            expected[reason] = expected.get(reason, 0) + 1
        lines.append(orjson.dumps(event))
        event_of_line.append(i)
    return lines, event_of_line, events, truth, expected


def run_local(
    config: Config,
    n: int,
    seed: int,
    *,
    progress: TextIO | None = None,
    collect_gauges: bool = False,
    alerts_out: Callable[[bytes], None] | None = None,
) -> LocalRun:
    """Generate the demo stream, run it through :func:`streamdrift.app.replay`, score it."""
    from streamdrift.app import replay

    lines, event_of_line, events, truth, expected = demo_lines(n, seed)
    raw_alerts: list[dict[str, Any]] = []
    dead: dict[str, int] = {}

    def on_alert(data: bytes) -> None:
        raw_alerts.append(orjson.loads(data))
        if alerts_out is not None:
            alerts_out(data)

    def on_dead_letter(data: bytes) -> None:
        reason = str(orjson.loads(data)["reason"])
        dead[reason] = dead.get(reason, 0) + 1

    gauges: list[tuple[int, str, str, dict[str, float]]] = []
    pending: list[tuple[str, str, dict[str, float]]] = []
    if collect_gauges:
        # Smaller batches give the plot one point per 500 events; alerts do not depend on how
        # the input is split into batches (the bank counts positions per model).
        kafka = config.kafka.model_copy(update={"max_poll_records": 500})
        config = config.model_copy(update={"kafka": kafka})

    def observer(model: str, feature: str, kind: str, values: dict[str, float]) -> None:
        pending.append((feature, kind, dict(values)))

    bar = _Progress(progress, len(lines))

    def on_batch(report: Any) -> None:
        for feature, kind, values in pending:
            gauges.append((report.n_records, feature, kind, values))
        pending.clear()
        bar.update(report.n_records, report.n_alerts)

    metrics = _gauge_recorder(observer) if collect_gauges else None
    report, bank = replay(
        config,
        lines,
        on_alert,
        on_dead_letter,
        metrics=metrics,
        on_batch=on_batch,
    )
    bar.done()
    result = score(raw_alerts, truth, lambda offset: event_of_line[offset])
    return LocalRun(
        score=result,
        n_lines=report.n_records,
        n_events=n,
        seconds=report.seconds,
        n_alerts=report.n_alerts,
        dead_letters=dead,
        expected_dead_letters=expected,
        n_detectors=sum(1 for _ in bank.detectors()),
        events=events,
        gauges=gauges,
        raw_alerts=raw_alerts,
    )


def _gauge_recorder(observer: Callable[[str, str, str, dict[str, float]], None]) -> Any:
    """A :class:`~streamdrift.metrics.Metrics` (private registry) that hands every detector's
    gauges to ``observer``, for the plot."""
    from streamdrift.metrics import Metrics

    class _Recorder(Metrics):
        def update_detector_gauges(
            self, model: str, feature: str, detector: str, gauges: Mapping[str, float]
        ) -> None:
            observer(model, feature, detector, dict(gauges))

    return _Recorder()


class _Progress:
    """A progress bar on a terminal; a line per quarter otherwise (logs, CI)."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream, self.total = stream, max(1, total)
        self.tty = bool(stream is not None and stream.isatty())
        self.started = time.perf_counter()
        self._quarter = 0

    def update(self, n: int, alerts: int) -> None:
        if self.stream is None:
            return
        rate = n / max(1e-9, time.perf_counter() - self.started)
        frac = n / self.total
        text = f"{n:>7,}/{self.total:,} events  {alerts:>4} alerts  {rate:>9,.0f} events/s"
        if self.tty:
            filled = int(30 * frac)
            print(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {text}", end="", file=self.stream)
            self.stream.flush()
        elif int(frac * 4) > self._quarter:
            self._quarter = int(frac * 4)
            print(f"  {text}", file=self.stream, flush=True)

    def done(self) -> None:
        if self.stream is not None and self.tty:
            print(file=self.stream, flush=True)


# -- the summary ------------------------------------------------------------------------------


def format_summary(run: LocalRun, config_name: str) -> str:
    """The readable end of ``streamdrift demo``."""
    s, truth = run.score, run.score.truth
    out: list[str] = []
    w = out.append
    n_num = 5
    w(
        f"streamdrift demo: {run.n_events:,} events of model fraud-v3 ({n_num} numeric + 2 "
        f"categorical features, a score)"
    )
    w(f"through the pipeline of `streamdrift replay`, {config_name}, state in memory")
    w("")
    w("  injected drift, and the first alert of each detector on that feature:")
    for i, d in enumerate(truth.drifts):
        where = f"at event {d.position:,}" if d.end is None else (
            f"from event {d.position:,} to {d.end:,}"
        )
        w(f"  {d.feature}: {d.description}, {where}")
        hits = s.detections.get(i, [])
        if not hits:
            w(f"      MISSED: no alert within {MAX_DELAY:,} events")
        for h in hits:
            w(
                f"      {h.detector:<16} alert at {h.position:>7,}   delay {h.delay:>6,} events"
                f"   {h.severity}"
            )
    late = [a for a in s.alerts if a.verdict == "late"]
    for a in late:
        w(f"  late: {a.feature} {a.detector} at {a.position:,} (delay {a.delay:,} events)")
    w("")
    ok_missed = "ok" if not s.missed else "NOT met"
    missed = ", ".join(d.feature for d in s.missed) or "none"
    w(
        f"  missed drifts: {missed} (tolerance: each detected within {MAX_DELAY:,} events: "
        f"{ok_missed})"
    )
    fa = ", ".join(f"{a.feature}/{a.detector} at {a.position:,}" for a in s.false_alarms)
    ok_fa = "ok" if len(s.false_alarms) <= MAX_FALSE_ALARMS else "NOT met"
    w(
        f"  false alarms: {len(s.false_alarms)}{' (' + fa + ')' if fa else ''} "
        f"(tolerance: <= {MAX_FALSE_ALARMS}: {ok_fa})"
    )
    if s.repeats:
        w(
            f"  repeats: {s.repeats} later alerts re-announce a drift that persists "
            f"(once per alerts.cooldown_events)"
        )
    if truth.outliers:
        p, r = s.outlier_precision, s.outlier_recall
        w(
            f"  outliers: {s.outliers_flagged} of {len(truth.outliers)} injected flagged "
            f"(recall {_pct(r)}); {s.outlier_alerts} outlier alerts (precision {_pct(p)})"
        )
        w("    the forest flags about its top 1% of scores (isolation_forest contamination 0.01)")
    got = ", ".join(f"{k} {v}" for k, v in sorted(run.dead_letters.items())) or "none"
    n_bad = sum(run.expected_dead_letters.values())
    ok_dead = (
        f"the {n_bad} malformed lines injected"
        if run.dead_letters == run.expected_dead_letters
        else f"UNEXPECTED ({n_bad} malformed lines injected)"
    )
    w(f"  dead letters: {sum(run.dead_letters.values()):,} lines rejected, {ok_dead}; by reason:")
    w(f"    {got}")
    if sum(run.dead_letters.values()) > run.n_lines // 2:
        w(
            "    most lines were rejected: the config's mapping must read the demo's event shape "
            "(model_id, event_id, ts, features.*, prediction)"
        )
    rate = run.n_lines / run.seconds if run.seconds else math.inf
    w(
        f"  throughput: {run.n_lines:,} lines in {run.seconds:.2f} s = {rate:,.0f} events/s "
        f"(decode, {run.n_detectors} detectors, alerts)"
    )
    return "\n".join(out)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def passed(run: LocalRun) -> bool:
    """The demo's own tolerances: nothing missed, few false alarms, dead letters as injected."""
    s = run.score
    return (
        not s.missed
        and len(s.false_alarms) <= MAX_FALSE_ALARMS
        and run.dead_letters == run.expected_dead_letters
    )


# -- the plot -----------------------------------------------------------------------------------

_DETECTOR_STYLE = {
    "adwin": ("#1f77b4", "v"),
    "page_hinkley": ("#ff7f0e", "^"),
    "psi": ("#2ca02c", "s"),
    "psi_categorical": ("#2ca02c", "s"),
}


def _matplotlib() -> Any:
    """The ``matplotlib`` module, or a one-line error naming the extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise StreamdriftError(
            "--plot needs matplotlib, which is not installed; install it with: "
            "pip install 'streamdrift[plot]'"
        ) from None
    return matplotlib


def plot(run: LocalRun, path: str) -> None:
    """Per feature: its values over time (left) and each detector's statistic relative to its
    threshold (right, 1 = alarm), with the true drift points and the alerts."""
    matplotlib = _matplotlib()
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter

    truth = run.score.truth
    drift_of = {d.feature: d for d in truth.drifts}
    names = ["amount", "age", "tx_per_day", "balance", "session_s", "country", "device"]
    features = [*names, "__prediction__"]
    fig, axes = plt.subplots(
        len(features) + 1,
        2,
        figsize=(14, 2.0 * (len(features) + 1)),
        sharex=True,
        gridspec_kw={"width_ratios": [1, 1.3]},
    )
    n = run.n_events
    x = np.arange(n)
    roll = 500
    for row, feature in enumerate(features):
        left, right = axes[row]
        if feature == "__prediction__":
            values = np.array([e["prediction"] for e in run.events], dtype=float)
        else:
            values = np.array([e["features"][feature] for e in run.events], dtype=object)
        if feature in ("country", "device"):
            cats = sorted(set(values.tolist()))
            for cat in cats:
                share = _rolling_mean((values == cat).astype(float), roll)
                left.plot(x, share, lw=1.2, label=cat)
            left.set_ylabel("share")
            left.set_ylim(0, 1.35 * float(np.nanmax(left.get_ylim()[1])))
            left.legend(loc="upper left", fontsize=7, ncol=len(cats), frameon=False)
        else:
            v = values.astype(float)
            mean = _rolling_mean(v, roll)
            q = np.quantile(v, [0.01, 0.99])
            left.scatter(x[::8], v[::8], s=1, color="#bbbbbb", rasterized=True)
            left.plot(x, mean, color="black", lw=1.2, label=f"mean of last {roll}")
            left.set_ylim(q[0] - 0.1 * (q[1] - q[0]), q[1] + 0.2 * (q[1] - q[0]))
            if row == 0:
                left.legend(loc="upper left", fontsize=7, frameon=False)
        title = "prediction score" if feature == "__prediction__" else feature
        drift = drift_of.get(feature)
        left.set_title(
            f"{title}: " + (drift.description if drift else "stationary (no drift injected)"),
            fontsize=9,
            loc="left",
            color="#b00000" if drift else "black",
        )
        # Right: statistic / threshold per detector with a continuous statistic.
        for kind in ("page_hinkley", "psi", "psi_categorical"):
            pts = [
                (pos, g.get("statistic", math.nan) / g["threshold"])
                for pos, f, k, g in run.gauges
                if f == feature and k == kind and g.get("threshold") and g["threshold"] > 0
            ]
            pts = [(p, r) for p, r in pts if math.isfinite(r)]
            if kind.startswith("psi"):
                pts = list(dict.fromkeys(pts))  # one point per evaluated window
            if pts:
                px, py = zip(*pts, strict=True)
                color = _DETECTOR_STYLE[kind][0]
                label = "PSI / threshold" if kind.startswith("psi") else "Page-Hinkley / threshold"
                right.step(px, py, where="post", color=color, lw=1.2, label=label)
        right.axhline(1.0, color="#d62728", lw=0.8, ls="--")
        right.set_yscale("symlog", linthresh=1.0)
        right.set_ylim(0, None)
        right.yaxis.set_major_locator(FixedLocator([0, 0.5, 1, 2, 5, 10, 20, 50]))
        right.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        right.set_ylabel("statistic / threshold")
        for a in run.score.alerts:
            if a.feature != feature:
                continue
            color, marker = _DETECTOR_STYLE.get(a.detector, ("grey", "o"))
            face = "none" if a.verdict == "false alarm" else color
            repeat = a.verdict == "repeat"
            if not repeat:
                for ax in (left, right):
                    ax.axvline(a.position, color=color, lw=0.8, alpha=0.7)
            right.scatter(
                [a.position], [1.0], marker=marker, s=18 if repeat else 60, facecolors=face,
                edgecolors=color, zorder=5, alpha=0.5 if repeat else 1.0,
            )
        for ax in (left, right):
            if drift is not None:
                end = drift.end if drift.end is not None else drift.position
                ax.axvspan(drift.position, max(end, drift.position + n // 400), color="#d62728",
                           alpha=0.25, lw=0)
                ax.axvline(drift.position, color="#d62728", lw=1.5, ls=":")
    # Legend for the right column (detectors, alerts, truth) on the first row.
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="#ff7f0e", lw=1.2, label="Page-Hinkley / threshold"),
        Line2D([], [], color="#2ca02c", lw=1.2, label="PSI / threshold (per window)"),
        Line2D([], [], color="#d62728", lw=0.8, ls="--", label="threshold (= 1)"),
        Line2D([], [], color="#d62728", lw=1.5, ls=":", label="true drift start"),
    ] + [
        Line2D([], [], color=c, marker=m, ls="", label=f"alert: {k}")
        for k, (c, m) in _DETECTOR_STYLE.items()
        if k != "psi_categorical"
    ] + [Line2D([], [], color="grey", marker="o", mfc="none", ls="", label="open = false alarm")]
    handles.append(
        Line2D([], [], color="#2ca02c", marker="s", ms=4, alpha=0.5, ls="",
               label="small = repeat of a persisting drift")
    )
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.975), fontsize=8,
               ncol=5, frameon=False)
    # Last row: outliers, injected vs flagged; the forest's scores against its threshold.
    left, right = axes[-1]
    flagged = [run.score.truth.outliers, run.score.outlier_positions]
    left.eventplot(flagged, lineoffsets=[1, 0], linelengths=0.8,
                   colors=["#d62728", "#9467bd"], linewidths=0.6)
    left.set_yticks([1, 0], ["injected", "flagged"])
    forest = [(pos, g) for pos, f, k, g in run.gauges if k == "isolation_forest"]
    if forest:
        fx = [p for p, _ in forest]
        for key, color, label in (
            ("score_p50", "#7f7f7f", "score median"),
            ("score_p99", "#9467bd", "score p99"),
            ("threshold", "#d62728", "threshold"),
        ):
            right.step(fx, [g.get(key, math.nan) for _, g in forest], where="post", color=color,
                       lw=1.2, ls="--" if key == "threshold" else "-", label=label)
        right.legend(loc="lower right", fontsize=7, ncol=3, frameon=False)
        right.set_ylabel("anomaly score")
        right.set_title("isolation forest: recent scores and the calibrated threshold",
                        fontsize=9, loc="left")
    for ax in (left, right):
        ax.set_xlabel("event")
    s = run.score
    left.set_title(
        f"outliers (isolation forest): {s.outliers_flagged}/{len(truth.outliers)} injected "
        f"flagged, {s.outlier_alerts} alerts",
        fontsize=9, loc="left",
    )
    fig.suptitle(
        f"streamdrift demo: {n:,} events; {len(s.missed)} drifts missed, "
        f"{len(s.false_alarms)} false alarms; left: the feature, right: each detector's "
        "statistic / its threshold",
        fontsize=12, y=0.995,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.965))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _rolling_mean(v: np.ndarray[Any, Any], k: int) -> np.ndarray[Any, Any]:
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = np.full(v.size, np.nan)
    if v.size >= k:
        out[k - 1 :] = (c[k:] - c[:-k]) / k  # NaN until a full window: no start-up spikes
    return out


# -- Kafka --------------------------------------------------------------------------------------


def _rounds(
    models: Sequence[str], per_model: int, first_seed: int, rate: float
) -> Iterator[dict[str, Any]]:
    """Events of every model interleaved; each round a new stream per model with a new seed."""
    seed = first_seed
    while True:
        start = time.time()
        streams = []
        for model in models:
            events, _ = demo_events(
                per_model,
                seed=seed,
                model_id=model,
                start_ts=start,
                rate_per_s=(rate / len(models)) if rate > 0 else 1000.0,
            )
            for i, event in enumerate(events):  # ids unique across rounds
                event["event_id"] = f"{model}-s{seed}-{i}"
            streams.append(events)
            seed += 1
        for i in range(per_model):
            for stream in streams:
                yield stream[i]


def produce_to_kafka(
    bootstrap: str,
    topic: str,
    *,
    rate: float,
    events: int,
    models: Sequence[str],
    seed: int,
    progress: TextIO | None = sys.stderr,
    connect_timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Produce demo traffic keyed by model id; ``events=0`` runs until SIGTERM/SIGINT.

    ``rate`` is events per second over all models (0 = as fast as possible). Each model's
    stream is a :func:`~streamdrift.synthetic.demo_events` scenario of ``events / len(models)``
    events (40,000 when running until stopped), so its drifts fall inside what is produced.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    stop = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    per_model = max(100, -(-events // len(models))) if events else 40_000
    deadline = time.monotonic() + connect_timeout_s
    while True:
        try:
            producer = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                acks="all",
                linger_ms=20,
                client_id="streamdrift-demo",
            )
            break
        except KafkaError as exc:
            if stop or time.monotonic() > deadline:
                raise StreamdriftError(
                    f"cannot reach Kafka at {bootstrap} ({exc.__class__.__name__}); check "
                    "--kafka (host:port of a broker) or start one: scripts/kafka.sh start"
                ) from exc
            if progress is not None:
                print(f"streamdrift demo: waiting for Kafka at {bootstrap}", file=progress,
                      flush=True)
            time.sleep(2.0)
    if progress is not None:
        what = f"{events:,} events" if events else "events until stopped"
        pace = f"{rate:g} events/s" if rate > 0 else "as fast as possible"
        print(f"streamdrift demo: producing {what} of {', '.join(models)} into {topic} at "
              f"{bootstrap}, {pace}", file=progress, flush=True)
    sent = 0
    t0 = time.monotonic()
    last = t0
    try:
        for event in _rounds(models, per_model, seed, rate):
            if stop or (events and sent >= events):
                break
            producer.send(topic, key=event["model_id"].encode(), value=orjson.dumps(event))
            sent += 1
            if rate > 0:
                ahead = t0 + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            now = time.monotonic()
            if progress is not None and now - last >= 5.0:
                last = now
                print(f"  {sent:,} events sent ({sent / (now - t0):,.0f} events/s)",
                      file=progress, flush=True)
        producer.flush(timeout=60)
    except KafkaError as exc:
        raise StreamdriftError(
            f"producing to {topic} at {bootstrap} failed: {exc!r}; check that the topic exists "
            "and the broker is reachable"
        ) from exc
    finally:
        producer.close(timeout=10)
        for s, handler in old.items():
            signal.signal(s, handler)
    seconds = time.monotonic() - t0
    return {
        "produced": sent,
        "topic": topic,
        "seconds": seconds,
        "events_per_s": sent / seconds if seconds else None,
        "models": list(models),
        "events_per_model_stream": per_model,
    }


# -- the command --------------------------------------------------------------------------------


def command(args: Any) -> int:
    """``streamdrift demo`` (arguments parsed in :mod:`streamdrift.cli`)."""
    import logging

    from streamdrift.commands import check_reference, config_from, setup_logging

    progress = None if args.quiet else sys.stderr
    if args.kafka is not None:
        if not args.topic:
            raise StreamdriftError("--kafka needs --topic: the topic to produce the stream to")
        if args.rate < 0:
            raise StreamdriftError(f"--rate must be >= 0 events/s, got {args.rate:g}")
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:
            raise StreamdriftError("--models needs at least one model id, e.g. --models fraud-v3")
        events = 40_000 if args.events is None else args.events
        if events < 0:
            raise StreamdriftError(f"--events must be >= 0 (0 = until stopped), got {events}")
        result = produce_to_kafka(
            args.kafka, args.topic, rate=args.rate, events=events, models=models,
            seed=args.seed, progress=progress,
        )
        if args.json:
            sys.stdout.write(orjson.dumps(result).decode() + "\n")
        elif progress is not None:
            rate = result["events_per_s"] or 0.0
            print(f"streamdrift demo: produced {result['produced']:,} events to {args.topic} in "
                  f"{result['seconds']:.1f} s ({rate:,.0f} events/s)", file=progress)
        return 0
    n = 40_000 if args.events is None else args.events
    if n < 1_000:
        raise StreamdriftError(
            f"--events {n} is too short for the demo: the detectors warm up on the first "
            "5,000 events; use --events 10000 or more"
        )
    config = config_from(args.config)
    check_reference(config, args.config)
    setup_logging(config.log_level)
    logging.getLogger("streamdrift").setLevel(logging.WARNING)  # no per-feature INFO lines
    if args.plot is not None:
        _matplotlib()  # before the run, not after it
    name = f"config {args.config}" if args.config else "embedded default config"
    if progress is not None:
        print(f"streamdrift demo: {n:,} synthetic events, seed {args.seed}, {name}",
              file=progress, flush=True)
    out = open(args.output, "wb") if args.output else None  # noqa: SIM115

    def write_alert(data: bytes) -> None:
        if out is not None:
            out.write(data + b"\n")

    try:
        run = run_local(
            config,
            n,
            args.seed,
            progress=progress,
            collect_gauges=args.plot is not None,
            alerts_out=write_alert,
        )
    finally:
        if out is not None:
            out.close()
    if args.plot is not None:
        plot(run, args.plot)
    if args.json:
        doc = run.to_json()
        doc["passed"] = passed(run)
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        print(format_summary(run, name))
        if args.output:
            print(f"  alerts: {args.output}")
        if args.plot:
            print(f"  plot: {args.plot}")
    return 0 if passed(run) else 1
