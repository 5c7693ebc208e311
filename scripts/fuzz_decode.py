"""Coverage-guided fuzzing (atheris/libFuzzer) of decoding, mapping and the detector bank.

One fuzz input is split into a batch of records (and a choice of mapping); the harness checks
the decoder's contract and raises on any violation, which libFuzzer reports as a crash and saves
as ``crash-*`` in the working directory:

* ``decode_batch`` never raises; every record is decoded or a dead letter with a known reason;
* dead letters carry the original bytes and serialise to JSON;
* the decoded batch goes through a real :class:`~streamdrift.bank.DetectorBank` (small windows so
  that reference/warm-up code runs) and its state round-trips through ``to_state``/``from_state``;
* the outcome (dead letters with their reasons, decoded records per model) is the same when the
  records come in one batch or split in two.

Usage (atheris: ``.venv/bin/pip install atheris``)::

    .venv/bin/python scripts/fuzz_decode.py --seed-corpus DIR/corpus   # seeds + DIR/json.dict
    .venv/bin/python scripts/fuzz_decode.py -max_total_time=600 -rss_limit_mb=1024 \\
        -max_len=8192 -dict=DIR/json.dict DIR/corpus

A crash input found this way becomes a regression test in ``tests/test_fuzz_decode.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["streamdrift"]):
    import orjson

    from streamdrift.bank import DetectorBank
    from streamdrift.config import parse_config
    from streamdrift.events import OVERSIZED_KEEP_BYTES, REASONS, Decoder, RawRecord
    from streamdrift.state.base import TaskId

MAX_BYTES = 2048
_MONITORS = [
    {
        "numeric": {"adwin": {}, "page_hinkley": {"min_instances": 5}, "psi": {"window": 16}},
        "categorical": {"psi": {"window": 16}},
        "multivariate": {"isolation_forest": {"n_trees": 2, "height": 3, "window": 8}},
    }
]
_MAPPINGS: list[dict[str, Any]] = [
    {},
    {
        "model_id": "meta.model",
        "event_id": "meta['id']",
        "event_time": "meta.at",
        "features": {"fields": {"a": "body.a", "b": 'body["b.c"]', "c": "body.items[-1]"}},
        "prediction": "out[0]",
        "label": "truth",
    },
    {"model_id": {"constant": "m"}, "allow_missing_features": False, "event_time": None},
]
CONFIGS = [
    parse_config(
        {
            "kafka": {"input_topics": ["t"], "max_message_bytes": MAX_BYTES},
            "mapping": mapping,
            "limits": {"max_models": 3, "max_features": 4, "max_categories": 4},
            "monitors": _MONITORS,
            "alerts": {"cooldown_events": 0},
        }
    )
    for mapping in _MAPPINGS
]
SPLIT_CONFIGS = [
    parse_config(
        {
            "kafka": {"input_topics": ["t"], "max_message_bytes": MAX_BYTES},
            "mapping": mapping,
            "limits": {"max_models": 3, "max_features": 64},
        }
    )
    for mapping in _MAPPINGS
]
TASK = TaskId("t", 0)
SEP = b"\n\x1e"  # record separator inside one fuzz input


class ContractViolation(AssertionError):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise ContractViolation(what)


def one_input(data: bytes) -> None:
    if not data:
        return
    config = CONFIGS[data[0] % len(CONFIGS)]
    values: list[bytes | None] = [None if v == b"\x00" else v for v in data[1:].split(SEP)]
    records = [RawRecord(v, "t", 0, i, 1_767_225_600_000 + i, None) for i, v in enumerate(values)]
    bank = DetectorBank(config, TASK)
    for _ in range(2):  # twice: the second pass sees learned types and warmed detectors
        batch = bank.decoder.decode_batch(records)
        positions = sorted(
            [int(p) for cols in batch.per_model.values() for p in cols.positions]
            + [letter.offset for letter in batch.invalid]
        )
        check(positions == list(range(len(records))), f"records not accounted for: {positions}")
        for letter in batch.invalid:
            check(letter.reason in REASONS, f"unknown reason {letter.reason!r}")
            original = values[letter.offset]
            expected = (
                original[:OVERSIZED_KEEP_BYTES]
                if letter.reason == "oversized" and original is not None
                else original
            )
            check(letter.value == expected, "dead letter lost the original bytes")
            orjson.loads(letter.to_json())
        bank.process(batch, now=0.0)
    restored = DetectorBank.from_state(config, TASK, bank.to_state())
    check(restored.to_state() == bank.to_state(), "bank state does not round-trip")
    # Batch boundaries must not matter: the same records split in two give the same outcome.
    cut = data[-1] % (len(records) + 1)
    # (with room for features: at limits.max_features, events whose new features are only nulls
    # or lists still count against the budget of their batch; a known limitation)
    split_config = SPLIT_CONFIGS[data[0] % len(SPLIT_CONFIGS)]
    whole, halves = Decoder.from_config(split_config), Decoder.from_config(split_config)
    one = whole.decode_batch(records)
    parts = [halves.decode_batch(part) for part in (records[:cut], records[cut:]) if part]
    check(
        _outcome([one]) == _outcome(parts),
        f"outcome depends on the batch split at {cut}",
    )


def _outcome(batches: list[Any]) -> tuple[list[tuple[int, str, str]], list[tuple[str, int]]]:
    letters = sorted((x.offset, x.reason, x.detail) for b in batches for x in b.invalid)
    rows = sorted((m, int(o)) for b in batches for m, c in b.per_model.items() for o in c.offsets)
    return letters, rows


SEEDS: list[bytes] = [
    b'\x00{"model_id": "a", "ts": 1767225600, "features": {"x": 1.5, "c": "FR", "y": 2},'
    b' "prediction": 0.3}',
    b'\x00{"model_id": "a", "features": {"x": 1e400}}\n\x1e{"model_id": "b", "features": '
    b'{"x": "s"}}\n\x1e\x00\n\x1e[1]\n\x1e{"model_id": 12345678901234567890123, "features": {}}',
    b'\x01{"meta": {"model": "m", "id": 7, "at": "2026-01-01T00:00:00Z"}, "body": {"a": 1, '
    b'"b.c": "x", "items": [1, 2.5]}, "out": [0.9], "truth": 1}',
    b'\x02{"features": {"x": 1, "y": true, "z": null}, "prediction": "cat"}\n\x1e'
    b'{"features": {"x": NaN}}\n\x1e{"features": {"x": [1]}}',
    b"\x00" + b'{"model_id": "a", "features": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}",
    b'\x00{"model_id": "a", "model_id": "b", "features": {"x": 1, "x": "dup"}}',
    b'\x00{"model_id": "\\ud800", "features": {"\\u0000": 1}}\n\x1e\xff\xfe\xfd',
]


DICTIONARY = [  # libFuzzer -dict entries (written next to the corpus as json.dict)
    r'"{"',
    r'"}"',
    r'"["',
    r'"]"',
    r'":"',
    r'","',
    r'"\""',
    r'"null"',
    r'"true"',
    r'"false"',
    r'"NaN"',
    r'"Infinity"',
    r'"1e400"',
    r'"-0"',
    r'"1e-400"',
    r'"12345678901234567890123"',
    r'"\\u0000"',
    r'"\\ud800"',
    r'"\\udc00"',
    r'"\x0a\x1e"',
    r'"\"model_id\""',
    r'"\"features\""',
    r'"\"prediction\""',
    r'"\"ts\""',
    r'"\"event_id\""',
    r'"\"meta\""',
    r'"\"model\""',
    r'"\"body\""',
    r'"\"items\""',
    r'"\"out\""',
    r'"\"truth\""',
    r'"\"__prediction__\""',
    r'"\"2026-01-01T00:00:00Z\""',
]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed-corpus":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(SEEDS):
            (out / f"seed-{i}").write_bytes(seed)
        (out.parent / "json.dict").write_text("".join(f"{tok}\n" for tok in DICTIONARY))
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
