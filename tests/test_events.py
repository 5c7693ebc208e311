"""Batch decoding: paths, columns, every dead-letter reason, type inference and its state."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdrift.config import LABEL, PREDICTION, LimitsConfig, MappingConfig, parse_config
from streamdrift.errors import StateError
from streamdrift.events import REASONS, DeadLetter, DecodedBatch, Decoder, RawRecord
from streamdrift.paths import compile_path, format_path, parse_path


def make_decoder(
    mapping: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    max_message_bytes: int = 1 << 20,
) -> Decoder:
    return Decoder(
        MappingConfig.model_validate(mapping or {}),
        LimitsConfig.model_validate(limits or {}),
        max_message_bytes,
    )


def records(*values: Any, start: int = 0) -> list[RawRecord]:
    out = []
    for i, value in enumerate(values):
        raw = value if isinstance(value, bytes | None) else orjson.dumps(value)
        out.append(RawRecord(raw, "events", 3, start + i, 1_767_225_600_000 + i, b"k"))
    return out


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "model_id": "m",
        "event_id": "e",
        "ts": 1_767_225_600.0,
        "features": {"x": 1.5, "c": "FR"},
        "prediction": 0.5,
    }
    doc.update(overrides)
    return doc


def reasons(batch: DecodedBatch) -> list[tuple[int, str]]:
    return [(letter.offset, letter.reason) for letter in batch.invalid]


# -- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("a", ("a",)),
        ("a.b", ("a", "b")),
        ("payload.features[0].value", ("payload", "features", 0, "value")),
        ("a[-1][2]", ("a", -1, 2)),
        ('["key.with.dots"].x', ("key.with.dots", "x")),
        ("a['it''s'].b".replace("''", "\\'"), ("a", "it's", "b")),
        ('a["q\\"uote"]', ("a", 'q"uote')),
        ("meta.model-name:v1", ("meta", "model-name:v1")),
    ],
)
def test_parse_path(path: str, steps: tuple[Any, ...]) -> None:
    assert parse_path(path) == steps
    assert parse_path(format_path(steps)) == steps


@pytest.mark.parametrize("path", ["", ".a", "a.", "a..b", "a[", "a[x]", "a b", "a[0]b", '["x"'])
def test_parse_path_rejects(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        parse_path(path)


def test_compiled_getters() -> None:
    doc = {"p": {"f": [{"v": 1}, {"v": 2}], "s": "text", "n": None}, "k.d": 3}
    assert compile_path("p.f[1].v")(doc) == 2
    assert compile_path("p.f[-1].v")(doc) == 2
    assert compile_path('["k.d"]')(doc) == 3
    for missing in ("p.f[5].v", "p.s[0]", "p.s.x", "p.n.x", "p.f.v", "q", "p.f[0].w"):
        assert compile_path(missing)(doc) is None, missing


def test_mapped_nested_paths_decode() -> None:
    decoder = make_decoder(
        {
            "model_id": "meta.model.name",
            "event_id": "meta.request_id",
            "event_time": "meta.timestamp",
            "features": {
                "fields": {
                    "amount": "request.body.amount",
                    "country": "request.body.geo.country",
                    "ip": 'request.body.geo["ip.v4"]',
                }
            },
            "prediction": "response.outputs[0].score",
        }
    )
    doc = {
        "meta": {
            "model": {"name": "fraud"},
            "request_id": "r1",
            "timestamp": "2026-01-01T00:00:00Z",
        },
        "request": {"body": {"amount": 12.5, "geo": {"country": "FR", "ip.v4": "192.0.2.1"}}},
        "response": {"outputs": [{"score": 0.9}]},
    }
    batch = decoder.decode_batch(records(doc))
    cols = batch.per_model["fraud"]
    assert cols.numeric["amount"].tolist() == [12.5]
    assert cols.categorical["country"].tolist() == ["FR"]
    assert cols.categorical["ip"].tolist() == ["192.0.2.1"]
    assert cols.numeric[PREDICTION].tolist() == [0.9]
    assert cols.event_ids == ["r1"]
    assert cols.event_times.tolist() == [1_767_225_600.0]


# -- columns -------------------------------------------------------------------------------------


def test_columns_per_model_keep_batch_order() -> None:
    batch = make_decoder().decode_batch(
        records(
            event(model_id="a", event_id="1", features={"x": 1, "c": "FR"}),
            event(model_id="b", event_id="2", features={"x": 2, "c": "DE"}),
            event(model_id="a", event_id="3", features={"x": True, "c": None}),
            start=100,
        )
    )
    assert list(batch.per_model) == ["a", "b"]
    a = batch.per_model["a"]
    assert a.offsets.dtype == np.int64 and a.offsets.tolist() == [100, 102]
    assert a.positions.tolist() == [0, 2]
    assert a.numeric["x"].tolist() == [1.0, 1.0]
    assert a.categorical["c"].tolist() == ["FR", None]
    assert a.event_ids == ["1", "3"]
    assert a.types == {"x": "numeric", "c": "categorical", PREDICTION: "numeric"}
    assert a.missing_counts() == {"c": 1}
    assert batch.n_decoded == 3 and batch.n_records == 3 and batch.invalid == []


def test_missing_features_become_nan_or_none() -> None:
    decoder = make_decoder()
    batch = decoder.decode_batch(
        records(event(features={"x": 1.0, "c": "FR"}), event(features={}), event(features={"y": 2}))
    )
    cols = batch.per_model["m"]
    assert cols.numeric["x"][0] == 1.0 and math.isnan(cols.numeric["x"][1])
    assert cols.categorical["c"].tolist() == ["FR", None, None]
    assert np.isnan(cols.numeric["y"][:2]).all() and cols.numeric["y"][2] == 2.0
    # a known feature absent from a later batch still gets its (all-missing) column
    later = decoder.decode_batch(records(event(features={"y": 3})))
    assert set(later.per_model["m"].numeric) == {"x", "y", PREDICTION}


def test_categorical_prediction_and_label_column() -> None:
    decoder = make_decoder({"label": "label"})
    batch = decoder.decode_batch(
        records(event(prediction="fraud", label=1), event(prediction=None, label=0))
    )
    cols = batch.per_model["m"]
    assert cols.categorical[PREDICTION].tolist() == ["fraud", None]
    assert cols.prediction is cols.categorical[PREDICTION]
    assert cols.label is not None and cols.label.tolist() == [1.0, 0.0]
    assert decoder.feature_types["m"][LABEL] == "numeric"


def test_numeric_matrix_for_the_multivariate_detector() -> None:
    batch = make_decoder().decode_batch(
        records(event(features={"b": 2, "a": 1}), event(features={"a": 3, "b": 4}))
    )
    cols = batch.per_model["m"]
    assert cols.numeric_matrix().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert cols.numeric_matrix(["b"]).tolist() == [[2.0], [4.0]]


def test_constant_model_id() -> None:
    batch = make_decoder({"model_id": {"constant": "fraud-v3"}}).decode_batch(
        records({"features": {"x": 1}})
    )
    assert list(batch.per_model) == ["fraud-v3"]


def test_integer_model_and_event_ids_become_strings() -> None:
    batch = make_decoder().decode_batch(records(event(model_id=7, event_id=42)))
    assert batch.per_model["7"].event_ids == ["42"]


# -- event time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1_767_225_600, 1_767_225_600.0),
        (1_767_225_600.25, 1_767_225_600.25),
        (1_767_225_600_250, 1_767_225_600.25),  # milliseconds, auto-detected above 1e11
        ("2026-01-01T00:00:00Z", 1_767_225_600.0),
        ("2026-01-01T01:00:00.5+01:00", 1_767_225_600.5),
        ("2026-01-01T00:00:00", 1_767_225_600.0),  # naive = UTC
        ("2026-01-01", 1_767_225_600.0),
    ],
)
def test_event_time_formats(ts: Any, expected: float) -> None:
    batch = make_decoder().decode_batch(records(event(ts=ts)))
    assert batch.per_model["m"].event_times.tolist() == [pytest.approx(expected)]


def test_event_time_fallback_to_record_timestamp_or_nan() -> None:
    doc = event()
    del doc["ts"]
    batch = make_decoder().decode_batch(records(doc))
    assert batch.per_model["m"].event_times.tolist() == [1_767_225_600.0]
    batch = make_decoder({"event_time_fallback": "none"}).decode_batch(records(doc))
    assert math.isnan(batch.per_model["m"].event_times[0])
    batch = make_decoder({"event_time": None}).decode_batch(records(event()))
    assert batch.per_model["m"].event_times.tolist() == [1_767_225_600.0]


@pytest.mark.parametrize("ts", ["yesterday", True, [1], {"s": 1}])
def test_bad_event_time_is_wrong_type(ts: Any) -> None:
    batch = make_decoder().decode_batch(records(event(ts=ts)))
    (letter,) = batch.invalid
    assert letter.reason == "wrong_type" and "event time at ts" in letter.detail


# -- every dead-letter reason --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (None, "empty", "no value"),
        (b"", "empty", "no value"),
        (b"{not json", "invalid_json", "not valid JSON"),
        (b'{"a": NaN}', "invalid_json", "not valid JSON"),
        (b'{"model_id": "m", "features": {"x": 1e400}}', "non_finite", "out of range"),
        (b"[1, 2]", "not_an_object", "expected a JSON object, got a list"),
        (b'"text"', "not_an_object", "got string"),
        (b"null", "not_an_object", "got null"),
        ({"features": {"x": 1}}, "missing_field", "model id missing at path 'model_id'"),
        ({"model_id": "", "features": {}}, "missing_field", "is empty"),
        ({"model_id": "m"}, "missing_field", "features object missing at path 'features'"),
        ({"model_id": ["m"], "features": {}}, "wrong_type", "model id at path 'model_id'"),
        ({"model_id": "m" * 300, "features": {}}, "wrong_type", "longer than 256"),
        ({"model_id": "m", "features": [1, 2]}, "wrong_type", "expected an object of name"),
        (
            {"model_id": "m", "features": {PREDICTION: 1}},
            "wrong_type",
            "'__prediction__' is reserved",
        ),
        ({"model_id": "m", "event_id": {"a": 1}, "features": {}}, "wrong_type", "event id at"),
    ],
)
def test_dead_letter_reasons(value: Any, reason: str, detail: str) -> None:
    batch = make_decoder().decode_batch(records(value))
    (letter,) = batch.invalid
    assert (letter.reason, letter.topic, letter.partition, letter.offset) == (
        reason,
        "events",
        3,
        0,
    )
    assert detail in letter.detail
    assert letter.reason in REASONS
    assert batch.per_model == {} and batch.invalid_by_reason == {reason: 1}


def test_feature_type_mismatch_names_feature_and_path() -> None:
    decoder = make_decoder()
    batch = decoder.decode_batch(
        records(
            event(features={"x": 1.0, "c": "FR"}),
            event(features={"x": "1.0", "c": "FR"}),  # numeric feature gets a string
            event(features={"x": 2.0, "c": 3}),  # categorical feature gets a number
            event(features={"x": [1], "c": "FR"}),
        )
    )
    assert reasons(batch) == [(1, "wrong_type"), (2, "wrong_type"), (3, "wrong_type")]
    details = [letter.detail for letter in batch.invalid]
    assert details[0] == "feature 'x' at features.x: expected a number, got string '1.0'"
    assert details[1] == "feature 'c' at features.c: expected a string (categorical), got number 3"
    assert details[2] == "feature 'x' at features.x: expected a number, got a list"
    cols = batch.per_model["m"]
    assert cols.offsets.tolist() == [0] and cols.numeric["x"].tolist() == [1.0]
    assert len(cols.event_ids) == len(cols.categorical["c"]) == len(cols.event_times) == 1


def test_declared_types_win_over_inference() -> None:
    decoder = make_decoder({"feature_types": {"code": "categorical", "n": "numeric"}})
    batch = decoder.decode_batch(records(event(features={"code": 5411, "n": 1})))
    (letter,) = batch.invalid
    assert letter.reason == "wrong_type" and "feature 'code'" in letter.detail
    # (the model is known from this event on: types come from its first values, valid or not)
    assert decoder.feature_types["m"]["code"] == "categorical"
    assert "code" not in decoder.inferred_types["m"] and "n" not in decoder.inferred_types["m"]


def test_missing_features_refused_when_not_allowed() -> None:
    decoder = make_decoder(
        {"features": {"fields": {"amount": "body.amount"}}, "allow_missing_features": False}
    )
    batch = decoder.decode_batch(
        records(event(body={"amount": 1}), event(body={}), event(body={"amount": None}))
    )
    assert reasons(batch) == [(1, "missing_field"), (2, "missing_field")]
    assert batch.invalid[0].detail == "feature 'amount' at body.amount is missing or null"


def test_oversized_records_are_cut_in_the_dead_letter() -> None:
    big = orjson.dumps(event(features={"x": 1, "pad": "p" * 100_000}))
    batch = make_decoder(max_message_bytes=50_000).decode_batch(records(event(), big))
    (letter,) = batch.invalid
    assert letter.reason == "oversized" and letter.offset == 1
    assert f"message of {len(big)} bytes is over kafka.max_message_bytes=50000" in letter.detail
    assert letter.value is not None and len(letter.value) == 65_536
    assert batch.n_decoded == 1


def test_too_many_models() -> None:
    decoder = make_decoder(limits={"max_models": 2})
    first = decoder.decode_batch(records(event(model_id="a"), event(model_id="b")))
    assert set(first.per_model) == {"a", "b"}
    batch = decoder.decode_batch(
        records(event(model_id="a"), event(model_id="c"), event(model_id="b"), start=10)
    )
    assert reasons(batch) == [(11, "too_many_models")]
    assert "limits.max_models=2" in batch.invalid[0].detail


def test_refused_events_do_not_use_up_model_slots() -> None:
    decoder = make_decoder(limits={"max_models": 1})
    decoder.decode_batch(records({"model_id": "junk", "features": 5}))
    batch = decoder.decode_batch(records(event(model_id="real")))
    assert list(batch.per_model) == ["real"]


def test_too_many_features() -> None:
    decoder = make_decoder(limits={"max_features": 3})
    batch = decoder.decode_batch(
        records(
            event(features={"a": 1, "b": 2}),
            event(features={"a": 1, "c": 3}),
            event(features={"a": 1, "d": 4, "e": 5}),  # would make 5
            event(features={"a": 1}),
        )
    )
    assert reasons(batch) == [(2, "too_many_features")]
    assert "limits.max_features=3" in batch.invalid[0].detail
    assert set(batch.per_model["m"].numeric) == {"a", "b", "c", PREDICTION}
    later = decoder.decode_batch(records(event(features={"z": 1})))
    assert reasons(later) == [(0, "too_many_features")]


# -- dead-letter document ------------------------------------------------------------------------


def test_dead_letter_document() -> None:
    letter = DeadLetter(b"{bad", "events", 3, 17, "invalid_json", "not valid JSON", 1_767_225_600.5)
    doc = orjson.loads(letter.to_json())
    assert doc == {
        "reason": "invalid_json",
        "detail": "not valid JSON",
        "source": {"topic": "events", "partition": 3, "offset": 17},
        "received_at": "2026-01-01T00:00:00.500Z",
        "original_b64": base64.b64encode(b"{bad").decode(),
        "original_utf8": "{bad",
    }
    binary = orjson.loads(DeadLetter(b"\xff\x00", "t", 0, 1, "invalid_json", "x").to_json())
    assert (
        binary["original_utf8"] is None and base64.b64decode(binary["original_b64"]) == b"\xff\x00"
    )
    tombstone = orjson.loads(DeadLetter(None, "t", 0, 1, "empty", "x").to_json())
    assert tombstone["original_b64"] is None and tombstone["original_utf8"] is None


def test_dead_letters_keep_the_record_key() -> None:
    (letter,) = make_decoder().decode_batch(records(b"nope")).invalid
    assert letter.key == b"k"


# -- inferred types and their state --------------------------------------------------------------


def test_inferred_types_are_stable_and_reported_once() -> None:
    decoder = make_decoder()
    first = decoder.decode_batch(records(event(features={"x": 1, "c": "FR", "flag": True})))
    assert sorted(first.new_types) == [
        ("m", PREDICTION, "numeric"),
        ("m", "c", "categorical"),
        ("m", "flag", "numeric"),
        ("m", "x", "numeric"),
    ]
    assert decoder.inferred_types == {
        "m": {"x": "numeric", "c": "categorical", "flag": "numeric", PREDICTION: "numeric"}
    }
    second = decoder.decode_batch(records(event(features={"x": "now a string", "c": "DE"})))
    assert second.new_types == [] and reasons(second) == [(0, "wrong_type")]


def test_types_state_round_trip() -> None:
    decoder = make_decoder()
    decoder.decode_batch(records(event(features={"x": 1, "c": "FR"})))
    state = orjson.loads(orjson.dumps(decoder.types_state()))  # plain data
    restored = make_decoder()
    restored.load_types_state(state)
    assert restored.feature_types == decoder.feature_types
    batch = restored.decode_batch(records(event(features={"x": "FR", "c": "FR"})))
    assert reasons(batch) == [(0, "wrong_type")]


@pytest.mark.parametrize(
    "state",
    [
        None,
        {"kind": "decoder_types", "version": 99, "models": {}},
        {"kind": "other", "version": 1, "models": {}},
        {"kind": "decoder_types", "version": 1, "models": {"m": {"x": "text"}}},
        {"kind": "decoder_types", "version": 1},
    ],
)
def test_bad_types_state_raises_state_error(state: Any) -> None:
    with pytest.raises(StateError):
        make_decoder().load_types_state(state)


def test_decoder_from_config() -> None:
    config = parse_config({"kafka": {"input_topics": ["t"], "max_message_bytes": 10}})
    batch = Decoder.from_config(config).decode_batch(records(event()))
    assert reasons(batch) == [(0, "oversized")]


# -- properties ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
feature_values = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-1e6, 1e6)
    | st.text(max_size=3)
    | st.lists(st.integers(-5, 5), max_size=1)
)
events = st.fixed_dictionaries(
    {},
    optional={
        "model_id": st.sampled_from(["a", "b", "c", ""]) | st.integers(0, 3) | json_values,
        "event_id": st.text(max_size=4) | json_values,
        "ts": st.floats(0, 2e12) | st.sampled_from(["2026-01-01T00:00:00Z", "bad"]) | json_values,
        "features": st.dictionaries(st.sampled_from(["x", "y", "c", "d"]), feature_values)
        | json_values,
        "prediction": feature_values,
    },
)
raw_values = st.one_of(
    st.none(),
    st.binary(max_size=40),
    json_values.map(orjson.dumps),
    events.map(orjson.dumps),
    st.sampled_from(
        [
            b'{"model_id": "a", "features": {"x": 123456789012345678901234567890}}',
            b'{"model_id": "a", "features": {"x": -1e400}}',
            b'{"model_id": "a", "features": {"x": 1}} trailing',
            b"\xef\xbb\xbf{}",
            b" \n ",
        ]
    ),
)


def check_conservation(decoder: Decoder, values: list[bytes | None]) -> None:
    batch = decoder.decode_batch(records(*[v if v is not None else None for v in values]))
    seen = [int(p) for cols in batch.per_model.values() for p in cols.positions]
    seen += [letter.offset for letter in batch.invalid]
    assert sorted(seen) == list(range(len(values)))
    assert batch.n_decoded + len(batch.invalid) == len(values)
    assert set(batch.invalid_by_reason) <= set(REASONS)
    for cols in batch.per_model.values():
        n = len(cols)
        assert n > 0 and len(cols.positions) == len(cols.event_times) == len(cols.event_ids) == n
        assert all(len(col) == n for col in (*cols.numeric.values(), *cols.categorical.values()))
        assert all(col.dtype == np.float64 for col in cols.numeric.values())
        assert all(np.isinf(col).sum() == 0 for col in cols.numeric.values())
        assert all(v is None or isinstance(v, str) for c in cols.categorical.values() for v in c)
    for letter in batch.invalid:
        orjson.loads(letter.to_json())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_values, max_size=30))
def test_any_input_is_decoded_or_dead_lettered(values: list[bytes | None]) -> None:
    check_conservation(make_decoder(limits={"max_models": 3, "max_features": 3}), values)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(events.map(orjson.dumps), max_size=15), min_size=1, max_size=4))
def test_consecutive_batches_conserve_records(batches: list[list[bytes]]) -> None:
    decoder = make_decoder({"allow_missing_features": False}, {"max_models": 2, "max_features": 2})
    for values in batches:
        check_conservation(decoder, list(values))
