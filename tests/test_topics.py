"""Per-topic mappings: topics of different shapes feeding one model, and prediction drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from streamdrift.cli import main
from streamdrift.config import (
    PREDICTION,
    ConfigValidationError,
    load_config,
    load_default_config,
    parse_config,
)
from streamdrift.detectors import ADWIN, PSI, CategoricalPSI, PageHinkley
from streamdrift.events import Decoder, RawRecord
from streamdrift.metrics import Metrics
from streamdrift.state.memory import MemoryStore
from tests.label_streams import MODEL, make_streams, parse, run_in_process, topics_config
from tests.service_harness import (
    ServiceProcess,
    alerts_of,
    checkpointed_offsets,
    consume_all,
    end_offsets,
    load_banks,
    produce,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
TWO = ("features", "predictions", None)


# -- configuration -------------------------------------------------------------------------


def test_single_mapping_stays_the_default_for_every_topic() -> None:
    for cfg in (
        load_default_config(env={}),
        load_config(REPO / "deploy/streamdrift.yaml", env={}),
        parse_config({"kafka": {"input_topics": ["a", "b"]}}),
    ):
        for topic in cfg.kafka.input_topics:
            assert cfg.topic_mapping(topic) == cfg.mapping
            assert cfg.carries(topic) == ("features", "prediction")
        assert not cfg.labels_active and cfg.topics == {}


def test_worked_example_validates_and_says_what_each_topic_carries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", str(REPO / "examples/three-topics.yaml")]) == 0
    out = capsys.readouterr().out
    assert "topic churn-scores: carries prediction (own mapping)" in out
    assert "topic churn-outcomes: carries label (own mapping)" in out
    assert "error stream watched by adwin, ddm" in out
    cfg = load_config(REPO / "examples/three-topics.yaml", env={})
    assert cfg.carries("churn-features") == ("features",)
    assert cfg.labels_active


BASE: dict[str, Any] = {"kafka": {"input_topics": ["f", "p", "l"]}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"topics": {"pp": {}}},
            "topics.pp: not one of kafka.input_topics (did you mean 'p'?); add it there",
        ),
        (
            {"topics": {"l": {"carries": ["label"]}}},
            "mapping.label: topic 'l' carries label: set its path (or give topics.l its own "
            "mapping)",
        ),
        (
            {"topics": {"l": {"carries": ["label"], "mapping": {"label": "y", "event_id": None}}}},
            "topics.l.mapping.event_id: topic 'l' carries label without the prediction, so its "
            "labels are joined to predictions by event id: set the event id path (got None)",
        ),
        (
            {
                "mapping": {"event_id": None},
                "topics": {"l": {"carries": ["label"], "mapping": {"label": "y"}}},
            },
            "mapping.event_id: topic 'f' carries prediction and 'l' carries labels, which are "
            "joined by event id",
        ),
        (
            {"topics": {"p": {"carries": ["prediction"], "mapping": {"prediction": None}}}},
            "topics.p.mapping.prediction: topic 'p' carries prediction: set its path (got None)",
        ),
        (
            {
                "mapping": {"prediction": None},
                "topics": {"l": {"carries": ["label"], "mapping": {"label": "y"}}},
            },
            "topics.l: topic 'l' carries label but no input topic carries prediction",
        ),
        ({"topics": {"p": {"carries": []}}}, "topics.p.carries"),
        (
            {"topics": {"p": {"carries": ["scores"]}}},
            "topics.p.carries[0]: input should be 'features', 'prediction' or 'label'",
        ),
        ({"topics": {"p": {"carries": ["label", "label"]}}}, "carries lists a kind twice"),
        (
            {"labels": {"problem": "regression", "detectors": {"ddm": {}}}},
            "ddm watches a 0/1 error rate",
        ),
        ({"labels": {"detectors": {"ddn": {}}}}, "did you mean 'ddm'?"),
        ({"labels": {"ttl_seconds": 0}}, "labels.ttl_seconds"),
        (
            {
                "topics": {
                    "p": {"mapping": {"features": {"fields": {f"x{i}": "a" for i in range(9)}}}}
                },
                "limits": {"max_features": 5},
            },
            "topics.p.mapping.features.fields names 9 features but limits.max_features is 5",
        ),
    ],
)
def test_check_config_names_the_topic_problem(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigValidationError) as exc:
        parse_config({**BASE, **doc})
    assert message in str(exc.value)


def test_a_label_only_topic_dead_letters_events_without_label_or_id() -> None:
    cfg = parse(topics_config())
    decoder = Decoder.from_config(cfg, "labels")
    batch = decoder.decode_batch(
        [
            RawRecord(b'{"model": "m", "request_id": "a", "outcome": {"churned": 1}}', "l", 0, 0),
            RawRecord(b'{"model": "m", "request_id": "b", "outcome": {}}', "l", 0, 1),
            RawRecord(b'{"model": "m", "outcome": {"churned": false}}', "l", 0, 2),
        ]
    )  # fmt: skip
    assert batch.per_model["m"].event_ids == ["a"]
    assert [(d.offset, d.reason) for d in batch.invalid] == [
        (1, "missing_field"),
        (2, "missing_field"),
    ]
    assert "label at outcome.churned" in batch.invalid[0].detail
    assert "event id" in batch.invalid[1].detail


def test_each_topic_decodes_only_what_it_carries() -> None:
    cfg = parse(topics_config())
    s = make_streams(3, 1)
    feats = Decoder.from_config(cfg, "features").decode_batch(
        [RawRecord(v, "features", 0, i) for i, (_, v) in enumerate(s.features)]
    )
    preds = Decoder.from_config(cfg, "predictions").decode_batch(
        [RawRecord(v, "predictions", 0, i) for i, (_, v) in enumerate(s.predictions)]
    )
    f, p = feats.per_model[MODEL], preds.per_model[MODEL]
    assert sorted(f.numeric) == ["x1", "x2"] and list(f.categorical) == ["plan"]
    assert f.prediction is None and f.label is None
    assert list(p.numeric) == [PREDICTION] and not p.categorical and p.label is None
    assert p.event_ids == f.event_ids == ["r-0", "r-1", "r-2"]
    assert not feats.invalid and not preds.invalid


# -- prediction drift, in process ------------------------------------------------------------


def test_prediction_is_monitored_by_default_psi_adwin_on_a_score_psi_on_a_class() -> None:
    cfg = parse_config({"kafka": {"input_topics": ["t"]}})
    score = cfg.monitors_for(MODEL, PREDICTION, "numeric")
    assert sorted(score) == ["adwin", "page_hinkley", "psi"]
    assert cfg.monitors_for(MODEL, PREDICTION, "categorical") == {"psi": {"window": 1000}}
    # ... and the bank builds them for the prediction column of either type.
    from streamdrift.bank import DetectorBank
    from streamdrift.state.base import TaskId

    bank = DetectorBank(cfg, TaskId("t", 0))
    events = [
        {"model_id": "scorer", "features": {"x": 1.0}, "prediction": 0.3},
        {"model_id": "classifier", "features": {"x": 1.0}, "prediction": "cat"},
    ]
    records = [RawRecord(orjson.dumps(e), "t", 0, i) for i, e in enumerate(events)]
    bank.process(bank.decoder.decode_batch(records))
    on_prediction = [(m, type(d)) for m, f, _, d in bank.detectors() if f == PREDICTION]
    scorer = {cls for m, cls in on_prediction if m == "scorer"}
    assert scorer == {ADWIN, PageHinkley, PSI}
    assert [cls for m, cls in on_prediction if m == "classifier"] == [CategoricalPSI]


def test_two_topics_of_different_shapes_feed_one_models_monitors_and_a_score_shift_alerts() -> None:
    cfg = parse(topics_config(TWO))
    s = make_streams(8000, 3, score_shift_at=4000)
    metrics = Metrics(CollectorRegistry())
    run = run_in_process(
        cfg, {"features": s.features, "predictions": s.predictions}, MemoryStore(), metrics
    )
    fbank, pbank = run.tasks["features"].bank, run.tasks["predictions"].bank
    assert fbank.models == pbank.models == [MODEL]
    assert {f for _, f, _, _ in fbank.detectors()} == {"x1", "x2", "plan", None}
    assert {f for _, f, _, _ in pbank.detectors()} == {PREDICTION}
    drift = [a for a in run.alerts if a.type == "drift"]
    assert drift, "the score shifted: its drift must alert"
    assert {a.feature for a in drift} == {PREDICTION}, [(a.feature, a.detector) for a in drift]
    assert {a.topic for a in drift} == {"predictions"} and {a.model_id for a in drift} == {MODEL}
    assert {a.detector for a in drift} >= {"psi", "adwin"}
    assert min(a.offset for a in drift) >= 4000
    value = metrics.registry.get_sample_value(
        "streamdrift_alerts_total",
        {"type": "drift", "detector": "psi", "model": MODEL, "feature": PREDICTION},
    )
    assert value is not None and value >= 1


# -- the service, real Kafka and Redis -------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_service_features_and_predictions_topics_feed_the_same_model(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, topic_factory, redis_factory
) -> None:
    features, predictions = topic_factory(prefix="sd-feat"), topic_factory(prefix="sd-pred")
    _, prefix = redis_factory()
    doc = topics_config((features, predictions, None))
    doc["kafka"].update(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{features}-g",
        alert_topic=f"{features}-alerts",
        dead_letter_topic=f"{features}-dlq",
        poll_timeout_ms=200,
        client={"session_timeout_ms": 10000, "heartbeat_interval_ms": 1000},
    )
    doc.update(
        redis={"url": redis_url, "key_prefix": prefix},
        metrics={"port": 0},
        checkpoint={"every_events": 2000, "every_seconds": 1.0},
    )
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(doc))
    s = make_streams(8000, 3, score_shift_at=4000)
    produce(kafka_bootstrap, features, [v for _, v in s.features])
    produce(kafka_bootstrap, predictions, [v for _, v in s.predictions])
    svc = ServiceProcess(path, tmp_path / "svc.log").start()
    try:
        for topic in (features, predictions):
            ends = end_offsets(kafka_bootstrap, topic, 1)
            wait_until(
                lambda t=topic, e=ends: checkpointed_offsets(redis_url, prefix, t, 1) == e,
                120,
                f"{topic} checkpointed to the end",
            )
    finally:
        svc.stop()
    assert "Traceback" not in svc.log_text()
    cfg = load_config(path, env={})
    (fbank,), (pbank,) = load_banks(cfg, features, 1), load_banks(cfg, predictions, 1)
    assert fbank.models == pbank.models == [MODEL]
    assert fbank.counters.n_events == pbank.counters.n_events == 8000
    assert {f for _, f, _, _ in pbank.detectors()} == {PREDICTION}
    alerts = alerts_of(consume_all(kafka_bootstrap, f"{features}-alerts"))
    drift = [a for a in alerts if a["type"] == "drift"]
    assert drift and {a["feature"] for a in drift} == {PREDICTION}
    assert {a["source"]["topic"] for a in drift} == {predictions}
    assert {a["model_id"] for a in drift} == {MODEL}
    assert not list(consume_all(kafka_bootstrap, f"{features}-dlq", idle_s=1.0))


def _block(text: str, lang: str, after: str) -> str:
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start : text.index("```", start)]


def test_readme_example_maps_its_three_events_of_three_shapes() -> None:
    readme = (REPO / "README.md").read_text()
    head = "### Several topics for one model"
    lines = _block(readme, "json", head).strip().splitlines()
    cfg = parse_config(yaml.safe_load(_block(readme, "yaml", head)))
    assert cfg.labels_active
    decoded = {}
    for topic, line in zip(cfg.kafka.input_topics, lines, strict=True):
        batch = Decoder.from_config(cfg, topic).decode_batch(
            [RawRecord(line.encode(), topic, 0, 0)]
        )
        assert not batch.invalid, (topic, batch.invalid)
        decoded[topic] = batch.per_model["churn"]
        assert decoded[topic].event_ids == ["r-81"]
    f, p, o = decoded["churn-features"], decoded["churn-scores"], decoded["churn-outcomes"]
    assert sorted(f.numeric) == ["spend", "tenure"] and list(f.categorical) == ["plan"]
    assert p.prediction is not None and p.prediction.tolist() == [0.83] and not f.prediction
    assert o.label is not None and o.label.tolist() == [1.0]
    assert o.event_times[0] - p.event_times[0] > 28 * 86400
    # The worked example's complete file says the same.
    full = load_config(REPO / "examples/three-topics.yaml", env={})
    for topic in cfg.kafka.input_topics:
        assert full.topic_mapping(topic) == cfg.topic_mapping(topic)
        assert full.carries(topic) == cfg.carries(topic)


def test_a_class_prediction_drifts_as_a_categorical() -> None:
    import random

    doc = topics_config(TWO)
    doc["topics"]["predictions"]["mapping"]["prediction"] = "out.cls"
    cfg = parse(doc)
    rng = random.Random(4)
    s = make_streams(6000, 4)
    preds = []
    for i, (t, value) in enumerate(s.predictions):
        p = orjson.loads(value)
        weights = (0.7, 0.2, 0.1) if i < 3000 else (0.45, 0.35, 0.2)
        p["out"] = {"cls": rng.choices(["stay", "churn", "upgrade"], weights)[0]}
        preds.append((t, orjson.dumps(p)))
    run = run_in_process(cfg, {"features": s.features, "predictions": preds}, MemoryStore())
    drift = [a for a in run.alerts if a.type == "drift"]
    assert drift and {(a.feature, a.detector) for a in drift} == {(PREDICTION, "psi")}
    assert min(a.offset for a in drift) >= 3000
    kinds = {type(d) for _, f, _, d in run.tasks["predictions"].bank.detectors()}
    assert kinds == {CategoricalPSI}
