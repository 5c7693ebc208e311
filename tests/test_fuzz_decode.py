"""Hostile input against decoding and mapping (issue 8): property-based, fixed budget, no database.

Properties, for several mappings (features object, named fields with nested and quoted paths,
constant model id, strict missing fields, a label):

* ``decode_batch`` never raises, whatever the bytes;
* accounting: every input record is exactly once either decoded or a dead letter with a reason
  from :data:`~streamdrift.events.REASONS` (``n_in == n_decoded + n_invalid``);
* a dead letter carries the original bytes (oversized ones: their first 64 KiB) and validates
  against ``streamdrift/schemas/dead-letter.schema.json``;
* nothing is dropped silently: every non-null mapped value of a decoded event is in its column;
* the decoder's memory stays bounded under a flood of hostile batches.

Regression inputs found by ``scripts/fuzz_decode.py`` (atheris) are pinned at the end.
"""

from __future__ import annotations

import base64
import json
import math
import tracemalloc
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdrift.config import LABEL, PREDICTION, parse_config
from streamdrift.events import OVERSIZED_KEEP_BYTES, REASONS, Decoder, RawRecord
from streamdrift.paths import compile_path, format_path, parse_path

REPO = Path(__file__).resolve().parents[1]
DEAD_LETTER_SCHEMA = json.loads(
    (REPO / "streamdrift" / "schemas" / "dead-letter.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(
    DEAD_LETTER_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
MAX_BYTES = 4096
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAPPINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "fields": {
        "model_id": "meta.model",
        "event_id": "meta['id']",
        "event_time": "meta.at",
        "features": {
            "fields": {
                "amount": "body.amount",
                "country": 'body["geo.country"]',
                "first": "body.items[0].v",
                "last": "body.items[-1].v",
            }
        },
        "prediction": "out[0].score",
        "label": "truth",
        "feature_types": {"country": "categorical"},
    },
    "constant_strict": {
        "model_id": {"constant": "m-const"},
        "event_time": None,
        "event_time_fallback": "none",
        "allow_missing_features": False,
        "prediction_type": "categorical",
    },
}


def dumps(doc: Any) -> bytes:
    """JSON of any Python value, big integers included (orjson refuses those)."""
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def decoder_for(name: str, **limits: int) -> Decoder:
    config = parse_config(
        {
            "kafka": {"input_topics": ["t"], "max_message_bytes": MAX_BYTES},
            "mapping": MAPPINGS[name],
            "limits": {"max_models": 4, "max_features": 6, **limits},
        }
    )
    return Decoder.from_config(config)


# -- generators of hostile input -------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # arbitrary size: 2**80 and beyond
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "\x00", "\u202e", "😀" * 3, "2026-01-01T00:00:00Z", "x" * 300])
)
json_docs = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=16,
)
keys = st.sampled_from(
    ["model_id", "features", "prediction", "ts", "event_id", "x", "c", "__label__"]
)
feature_objects = st.dictionaries(
    st.sampled_from(["x", "y", "c", "d", "e", "f", "g", "h", "", PREDICTION, LABEL, "é"]),
    scalars | json_docs,
    max_size=8,
)
default_events = st.fixed_dictionaries(
    {},
    optional={
        "model_id": st.sampled_from(["a", "b", "c", "d", "e", "f", ""]) | st.integers() | json_docs,
        "event_id": st.text(max_size=6) | st.integers() | json_docs,
        "ts": st.floats(allow_nan=False, allow_infinity=False)
        | st.integers()
        | st.sampled_from(["2026-01-01T00:00:00Z", "2026-13-01", "9" * 40, ""])
        | json_docs,
        "features": feature_objects | json_docs,
        "prediction": scalars | json_docs,
    },
)
fields_events = st.fixed_dictionaries(
    {},
    optional={
        "meta": st.fixed_dictionaries(
            {},
            optional={
                "model": st.sampled_from(["a", "b"]) | json_docs,
                "id": json_docs,
                "at": json_docs,
            },
        )
        | json_docs,
        "body": st.fixed_dictionaries(
            {},
            optional={
                "amount": scalars,
                "geo.country": scalars,
                "items": st.lists(st.fixed_dictionaries({}, optional={"v": scalars}), max_size=3)
                | json_docs,
            },
        )
        | json_docs,
        "out": st.lists(st.fixed_dictionaries({}, optional={"score": scalars}), max_size=2),
        "truth": scalars | json_docs,
    },
)


def _raw_text_hostile(draw: Any) -> bytes:
    """JSON-ish text no encoder produces: literals, duplicates, huge numbers, deep nesting."""
    kind = draw(st.integers(0, 9))
    key = draw(keys)
    if kind == 0:
        lit = draw(
            st.sampled_from(
                [
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "1e400",
                    "-1e400",
                    "1e-400",
                    str(2**80),
                    str(-(2**200)),
                    "0x10",
                    "01",
                    "+1",
                    ".5",
                    "1.",
                ]
            )
        )
        return f'{{"model_id": "a", "features": {{"x": {lit}}}, "ts": {lit}}}'.encode()
    if kind == 1:  # duplicate keys: the last one wins in orjson; must still be accounted for
        return (
            b'{"model_id": "a", "model_id": 7, "features": {"x": 1},'
            b' "features": {"x": "s", "x": 2}}'
        )
    if kind == 2:
        depth = draw(st.integers(1, 3000))
        return b'{"model_id": "a", "features": {"x": ' + b"[" * depth + b"]" * depth + b"}}"
    if kind == 3:
        depth = draw(st.integers(1, 2000))
        return (b'{"a":' * depth) + b"1" + (b"}" * depth)
    if kind == 4:  # lone surrogates, escaped and raw
        return draw(
            st.sampled_from(
                [
                    b'{"model_id": "\\ud800", "features": {"x": 1}}',
                    b'{"model_id": "a", "features": {"\\udfff": 1}}',
                    b'{"model_id": "a", "features": {"c": "\xed\xa0\x80"}}',
                    b'{"model_id": "a\\u0000b", "features": {"x": 1}}',
                ]
            )
        )
    if kind == 5:  # big strings: near and over the message limit
        n = draw(st.sampled_from([MAX_BYTES - 40, MAX_BYTES, MAX_BYTES + 1, 10 * MAX_BYTES]))
        return b'{"model_id": "a", "features": {"c": "' + b"z" * n + b'"}}'
    if kind == 6:
        return dumps({key: draw(json_docs)})
    if kind == 7:  # truncated valid event
        full = dumps(draw(default_events))
        return full[: draw(st.integers(0, len(full)))]
    if kind == 8:
        return draw(
            st.sampled_from(
                [
                    b"",
                    b" ",
                    b"\xef\xbb\xbf{}",
                    b"null",
                    b"[]",
                    b'"s"',
                    b"1",
                    b"{}",
                    b'{"model_id": "a"} {}',
                    b"\x00" * 8,
                ]
            )
        )
    return draw(st.binary(max_size=64))


@st.composite
def raw_values(draw: Any, events: Any) -> bytes | None:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return None
    if choice in (1, 2):
        return dumps(draw(events))
    if choice == 3:
        # A big but in-limit number of features and a huge name.
        feats = {f"f{i}": i for i in range(draw(st.integers(0, 40)))}
        feats["n" * draw(st.integers(1, 600))] = 1.0
        return orjson.dumps({"model_id": draw(st.sampled_from(["a", "z"])), "features": feats})
    return _raw_text_hostile(draw)


def batches(events: Any) -> Any:
    return st.lists(raw_values(events), max_size=25)


# -- the properties --------------------------------------------------------------------------


def check_batch(decoder: Decoder, values: list[bytes | None], start: int = 0) -> Any:
    recs = [
        RawRecord(v, "t", 2, start + i, 1_767_225_600_000 + i, b"k") for i, v in enumerate(values)
    ]
    batch = decoder.decode_batch(recs)  # must never raise
    # Accounting: each record exactly once, decoded or invalid.
    decoded_pos = [int(p) for cols in batch.per_model.values() for p in cols.positions]
    invalid_pos = [letter.offset - start for letter in batch.invalid]
    assert sorted(decoded_pos + invalid_pos) == list(range(len(values)))
    assert batch.n_records == len(values) == batch.n_decoded + len(batch.invalid)
    assert sum(batch.invalid_by_reason.values()) == len(batch.invalid)
    for letter in batch.invalid:
        assert letter.reason in REASONS and letter.detail
        original = values[letter.offset - start]
        if letter.reason == "oversized":
            assert original is not None and len(original) > MAX_BYTES
            assert letter.value == original[:OVERSIZED_KEEP_BYTES]
        else:
            assert letter.value == original
        doc = orjson.loads(letter.to_json())
        VALIDATOR.validate(doc)
        b64 = doc["original_b64"]
        assert (None if b64 is None else base64.b64decode(b64)) == letter.value
    for model, cols in batch.per_model.items():
        assert isinstance(model, str) and 0 < len(model) <= 256
        n = len(cols)
        assert n > 0
        for col in cols.numeric.values():
            assert col.dtype == np.float64 and len(col) == n and not np.isinf(col).any()
        for col in cols.categorical.values():
            assert len(col) == n and all(v is None or isinstance(v, str) for v in col)
        assert set(cols.types) >= set(cols.numeric) | set(cols.categorical)
    return batch


def check_nothing_silently_dropped(values: list[bytes | None], batch: Any) -> None:
    """Default mapping: each non-null feature value of a decoded event is in its column."""
    for cols in batch.per_model.values():
        for row, pos in enumerate(cols.positions.tolist()):
            doc = orjson.loads(values[pos])  # type: ignore[arg-type]
            for name, value in doc["features"].items():
                if value is None:
                    continue
                if name in cols.numeric:
                    got = cols.numeric[name][row]
                    assert got == float(value) or (math.isnan(got) and value is None)
                else:
                    assert name in cols.categorical, (name, value)
                    assert cols.categorical[name][row] == value
            prediction = doc.get("prediction")
            if prediction is not None:
                column = cols.prediction
                assert column is not None, prediction
                assert column[row] == (
                    prediction if isinstance(prediction, str) else float(prediction)
                )


@FUZZ
@given(batches(default_events))
def test_default_mapping_never_raises_and_accounts_for_every_record(
    values: list[bytes | None],
) -> None:
    batch = check_batch(decoder_for("default"), values)
    check_nothing_silently_dropped(values, batch)


@FUZZ
@given(batches(fields_events))
def test_nested_field_mapping_never_raises_and_accounts(values: list[bytes | None]) -> None:
    check_batch(decoder_for("fields"), values)


@FUZZ
@given(batches(default_events))
def test_constant_model_strict_mapping_never_raises_and_accounts(
    values: list[bytes | None],
) -> None:
    check_batch(decoder_for("constant_strict"), values)


@FUZZ
@given(st.lists(batches(default_events), min_size=2, max_size=5))
def test_state_across_batches_stays_within_limits(many: list[list[bytes | None]]) -> None:
    """Learned types survive between batches and never exceed the configured cardinality."""
    decoder = decoder_for("default", max_models=2, max_features=3)
    start = 0
    for values in many:
        check_batch(decoder, values, start)
        start += len(values)
        types = decoder.feature_types
        assert len(types) <= 2
        assert all(
            len([f for f in feats if f not in (PREDICTION, LABEL)]) <= 3 for feats in types.values()
        )
    restored = decoder_for("default", max_models=2, max_features=3)
    restored.load_types_state(orjson.loads(orjson.dumps(decoder.types_state())))
    assert restored.feature_types == decoder.feature_types


# -- mapping paths -----------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=40))
def test_parse_path_accepts_or_raises_value_error_only(text: str) -> None:
    try:
        steps = parse_path(text)
    except ValueError as exc:
        assert "path" in str(exc)
        return
    assert steps and parse_path(format_path(steps)) == steps


@FUZZ
@given(
    st.lists(st.text(max_size=10) | st.integers(-5, 5), min_size=1, max_size=6),
    json_docs,
)
def test_compiled_getter_never_raises_on_any_document(steps: list[Any], doc: Any) -> None:
    """Any step (odd keys, quotes, backslashes, dots) round-trips and the getter only reads."""
    spelled = format_path(tuple(steps))
    assert parse_path(spelled) == tuple(steps)
    getter = compile_path(spelled)
    expected: Any = doc
    for step in steps:
        ok = (isinstance(step, int) and type(expected) is list) or (
            isinstance(step, str) and type(expected) is dict
        )
        try:
            expected = expected[step] if ok else None
        except (KeyError, IndexError):
            expected = None
        if expected is None:
            break
    assert getter(doc) == expected


def test_path_text_never_reaches_generated_code() -> None:
    """Keys that look like Python are data: the getter reads them and runs nothing."""
    hostile = "__import__('os').system('false')"
    path = format_path((hostile, "x'); import os; ('", 0))
    getter = compile_path(path)
    assert getter({hostile: {"x'); import os; ('": [42]}}) == 42
    assert getter({}) is None


# -- memory --------------------------------------------------------------------------------------


def test_decoder_memory_stays_bounded_under_a_hostile_flood() -> None:
    """Batches of oversized, deep, wide and garbage messages: no growth beyond the limits."""
    decoder = decoder_for("default", max_models=3, max_features=4)
    big = b'{"model_id": "a", "features": {"c": "' + b"z" * (20 * MAX_BYTES) + b'"}}'
    deep = b'{"model_id": "a", "features": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"

    def flood(i: int) -> list[bytes | None]:
        out: list[bytes | None] = [big, deep, None, b"\xff" * 100]
        out += [orjson.dumps({"model_id": f"m{i}-{j}", "features": {"x": j}}) for j in range(20)]
        out += [orjson.dumps({"model_id": "a", "features": {f"f{i}-{j}": j for j in range(10)}})]
        out += [
            orjson.dumps({"model_id": "a", "features": {"c": f"cat-{i}-{j}"}}) for j in range(20)
        ]
        return out

    for i in range(20):  # warm up caches and the first admitted models/features
        decoder.decode_batch([RawRecord(v, "t", 0, i) for v in flood(i)])
    tracemalloc.start()
    try:
        first, _ = tracemalloc.get_traced_memory()
        for i in range(20, 220):
            batch = decoder.decode_batch([RawRecord(v, "t", 0, i) for v in flood(i)])
            assert len(batch.invalid) >= 4
            del batch
        now, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(decoder.feature_types) <= 3
    assert now - first < 256 * 1024, f"decoder memory grew by {now - first} bytes"


# -- regressions found by fuzzing (scripts/fuzz_decode.py) and by the properties above -------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # A feature whose value is a list or an object has no type: it used to vanish silently
        # (the event was accepted without it); now the event is a dead letter.
        (b'{"model_id": "a", "features": {"x": [1, 2]}}', "wrong_type"),
        (b'{"model_id": "a", "features": {"x": {"nested": 1}}}', "wrong_type"),
        (b'{"model_id": "a", "features": {"x": 1}, "prediction": {"score": 0.5}}', "wrong_type"),
        (b'{"model_id": "a", "features": {"x": 1e400}}', "non_finite"),
        # Finite but too large: squared in ADWIN's and Page-Hinkley's variances they overflowed
        # to inf and the saved state could not be read back (atheris, crash-d324c1e4).
        (b'{"model_id": "a", "features": {"x": 1e201}}', "non_finite"),
        (b'{"model_id": "a", "features": {"x": -1.7e308}}', "non_finite"),
        (b'{"model_id": "a", "features": {"x": 1}, "prediction": 1e101}', "non_finite"),
        (b'{"model_id": "a", "features": {"x": NaN}}', "invalid_json"),
        (
            b'{"model_id": "a", "features": {"x": ' + b"[" * 2000 + b"]" * 2000 + b"}}",
            "invalid_json",
        ),
        (b'{"model_id": "\\ud800", "features": {"x": 1}}', "invalid_json"),
    ],
)
def test_regression_hostile_values(value: bytes, reason: str) -> None:
    batch = check_batch(decoder_for("default"), [value])
    assert [letter.reason for letter in batch.invalid] == [reason], batch.invalid


def test_regression_type_less_value_after_type_is_known() -> None:
    decoder = decoder_for("default")
    check_batch(decoder, [b'{"model_id": "a", "features": {"x": 1}}'])
    batch = check_batch(decoder, [b'{"model_id": "a", "features": {"x": [1]}}'], start=1)
    assert [letter.reason for letter in batch.invalid] == ["wrong_type"]


def test_huge_integer_is_a_number_not_a_crash() -> None:
    value = (
        orjson.dumps({"model_id": "a", "features": {"x": 1}})[:-2]
        + b', "y": '
        + str(2**80).encode()
        + b"}}"
    )
    batch = check_batch(decoder_for("default"), [value])
    if batch.per_model:
        assert batch.per_model["a"].numeric["y"][0] == float(2**80)
    else:
        assert [letter.reason for letter in batch.invalid] in (["non_finite"], ["invalid_json"])


def test_regression_bank_state_after_only_incomplete_rows_round_trips() -> None:
    """Found by scripts/fuzz_decode.py (atheris, crash-7f8524c5): a model whose first events all
    missed a numeric feature left the isolation forest with an empty warm-up chunk, saved as a
    zero-length buffer that from_state refused. After a restart the whole bank would have been
    reported corrupt and reset."""
    from streamdrift.bank import DetectorBank
    from streamdrift.state.base import TaskId

    config = parse_config(
        {
            "kafka": {"input_topics": ["t"]},
            "monitors": [{"multivariate": {"isolation_forest": {"window": 8}}}],
        }
    )
    bank = DetectorBank(config, TaskId("t", 0))
    values = [
        b'{"model_id": "b", "features": {"x": 0e199}}',
        b'{"model_id": "b", "features": {"*": 1, "\'": true, "z": null}}',
    ]
    for _ in range(2):
        bank.process(
            bank.decoder.decode_batch([RawRecord(v, "t", 0, i) for i, v in enumerate(values)])
        )
    restored = DetectorBank.from_state(config, TaskId("t", 0), bank.to_state())
    assert restored.to_state() == bank.to_state()


def test_regression_largest_accepted_numbers_keep_the_state_readable() -> None:
    """At the accepted bound (±1e100) every detector's state still round-trips."""
    from streamdrift.bank import DetectorBank
    from streamdrift.state.base import TaskId

    config = parse_config(
        {
            "kafka": {"input_topics": ["t"]},
            "monitors": [{"numeric": {"page_hinkley": {"min_instances": 2}}}],
        }
    )
    bank = DetectorBank(config, TaskId("t", 0))
    values = [
        orjson.dumps({"model_id": "a", "features": {"x": v, "y": -v}, "prediction": v})
        for v in [0.0, 1e100, -1e100, 1.0] * 50
    ]
    batch = bank.decoder.decode_batch([RawRecord(v, "t", 0, i) for i, v in enumerate(values)])
    assert batch.invalid == [] and batch.n_decoded == 200
    bank.process(batch)
    restored = DetectorBank.from_state(config, TaskId("t", 0), bank.to_state())
    assert restored.to_state() == bank.to_state()


@FUZZ
@given(batches(default_events), st.lists(st.integers(1, 25), max_size=6))
def test_dead_letters_do_not_depend_on_how_the_stream_is_split(
    values: list[bytes | None], cuts: list[int]
) -> None:
    """The same records give the same dead letters and columns in one batch or in several (the
    service's polls split the stream anywhere). Found by tests/test_hostile_service.py: a
    reserved feature name was refused only until the prediction's type was learned."""

    def run(sizes: list[int]) -> tuple[dict[int, tuple[str, str]], dict[int, Any]]:
        decoder = decoder_for("default", max_models=2, max_features=3)
        letters: dict[int, tuple[str, str]] = {}
        rows: dict[int, Any] = {}
        start = 0
        for size in [*sizes, len(values)]:
            chunk = values[start : start + size]
            if chunk:
                batch = check_batch(decoder, chunk, start)
                letters.update((x.offset, (x.reason, x.detail)) for x in batch.invalid)
                for model, cols in batch.per_model.items():
                    for row, pos in enumerate(cols.positions.tolist()):
                        num = {k: repr(v[row]) for k, v in cols.numeric.items()}
                        cat = {k: v[row] for k, v in cols.categorical.items()}
                        rows[start + pos] = (model, num, cat)
            start += size
        return letters, rows

    assert run(cuts) == run([])


def test_regression_reserved_feature_name_after_the_prediction_type_is_known() -> None:
    decoder = decoder_for("default")
    check_batch(decoder, [b'{"model_id": "a", "features": {"x": 1}, "prediction": 0.5}'])
    batch = check_batch(decoder, [b'{"model_id": "a", "features": {"__prediction__": 1}}'], 1)
    assert [letter.reason for letter in batch.invalid] == ["wrong_type"]


def test_regression_strict_mapped_field_is_missing_from_the_first_event_on() -> None:
    """A mapped field exists from the start: with allow_missing_features false an event without
    it is a dead letter even before the field's type is known (features discovered among the
    keys of a features object start at their first usable value instead)."""
    decoder = Decoder.from_config(
        parse_config(
            {
                "kafka": {"input_topics": ["t"]},
                "mapping": {
                    "features": {"fields": {"amount": "body.amount"}},
                    "allow_missing_features": False,
                },
            }
        )
    )
    batch = check_batch(
        decoder, [b'{"model_id": "a", "body": {}}', b'{"model_id": "a", "body": {"amount": 1}}']
    )
    assert [(x.offset, x.reason) for x in batch.invalid] == [(0, "missing_field")]
    strict = decoder_for("constant_strict")
    batch = check_batch(strict, [b'{"features": {"y": 1}}', b'{"features": {"x": 2, "y": 3}}'])
    assert batch.invalid == [] and batch.n_decoded == 2  # x did not exist yet at the first event
    batch = check_batch(strict, [b'{"features": {"y": 4}}'], start=2)
    assert [(x.offset, x.reason) for x in batch.invalid] == [(2, "missing_field")]


@pytest.mark.parametrize("mapping", ["default", "constant_strict"])
def test_regression_list_before_the_first_usable_value_is_split_independent(mapping: str) -> None:
    """atheris crash-10ca6587: a list before the value that decides a feature's type was
    reported against the later-decided type in one batch, but as untyped when split."""
    model = b'"model_id": "a", ' if mapping == "default" else b""
    values: list[bytes | None] = [
        b"{" + model + b'"features": {"x": [1]}}',
        b"{" + model + b'"features": {"x": "s", "y": 1}}',
    ]
    one = check_batch(decoder_for(mapping), values)
    split = decoder_for(mapping)
    parts = [check_batch(split, values[:1]), check_batch(split, values[1:], start=1)]
    details = [(x.offset, x.reason, x.detail) for x in one.invalid]
    assert details == [(x.offset, x.reason, x.detail) for b in parts for x in b.invalid]
    assert details[0][2].endswith("expected a number or a string, got a list")
