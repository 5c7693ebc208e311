"""Corrupt state from Redis (issue 8): truncated, bit-flipped, wrong types, unknown versions and
hostile msgpack give a clear :class:`StateError` — never a crash, a memory bomb or code execution.

Recovery path (``app.open_task``): a bank that cannot be read is replaced by fresh detectors at
the saved offset (and reported). A state that *is* accepted must be usable: it processes events
and serialises again. The process runs under an address-space limit here, so that a state asking
for gigabytes fails this test instead of the machine.
"""

from __future__ import annotations

import math
import re
import resource
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdrift.app import open_task
from streamdrift.bank import DetectorBank
from streamdrift.config import Config, parse_config
from streamdrift.detectors import detector_from_state
from streamdrift.errors import StateError
from streamdrift.events import RawRecord
from streamdrift.state.base import TaskId
from streamdrift.state.memory import MemoryStore
from streamdrift.synthetic import synthetic_events

PACKAGE = Path(__file__).resolve().parents[1] / "streamdrift"
TASK = TaskId("events", 0)
MUTATE = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _config() -> Config:
    return parse_config(
        {
            "kafka": {"input_topics": ["events"]},
            "monitors": [
                {
                    "numeric": {
                        "adwin": {"delta": 0.002},
                        "page_hinkley": {},
                        "psi": {"window": 200},
                    },
                    "categorical": {"psi": {"window": 200}},
                    "multivariate": {
                        "isolation_forest": {"n_trees": 3, "height": 4, "window": 100}
                    },
                }
            ],
            "alerts": {"cooldown_events": 10},
        }
    )


CONFIG = _config()
EVENTS = [orjson.dumps(e) for e in synthetic_events(1500, seed=5, drift_at=0.6)[0]]


def _records(start: int, n: int) -> list[RawRecord]:
    return [RawRecord(EVENTS[i], TASK.topic, 0, i) for i in range(start, start + n)]


def _real_state() -> bytes:
    bank = DetectorBank(CONFIG, TASK)
    for start in range(0, 1200, 300):
        bank.process(bank.decoder.decode_batch(_records(start, 300)), now=0.0)
    kinds = {det.kind for *_, det in bank.detectors()}
    assert {"adwin", "page_hinkley", "psi", "psi_categorical", "isolation_forest"} <= kinds
    return bank.to_state()


STATE = _real_state()
DOC = msgpack.unpackb(STATE, raw=False, strict_map_key=False)


@pytest.fixture(scope="module", autouse=True)
def _address_space_limit() -> Iterator[None]:
    """Cap this process's address space ~3 GiB above its current size for these tests."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * resource.getpagesize()
    limit = current + (3 << 30)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def assert_usable_or_state_error(data: bytes) -> DetectorBank | None:
    """Restoring either raises StateError or gives a bank that works and serialises."""
    try:
        bank = DetectorBank.from_state(CONFIG, TASK, data)
    except StateError as exc:
        assert str(exc)
        return None
    bank.process(bank.decoder.decode_batch(_records(1200, 300)), now=0.0)
    DetectorBank.from_state(CONFIG, TASK, bank.to_state())
    return bank


# -- byte-level corruption -------------------------------------------------------------------


def test_the_real_state_round_trips() -> None:
    bank = assert_usable_or_state_error(STATE)
    assert bank is not None


@MUTATE
@given(st.integers(0, len(STATE) - 1))
def test_truncated_state_is_a_state_error(cut: int) -> None:
    with pytest.raises(StateError):
        DetectorBank.from_state(CONFIG, TASK, STATE[:cut])


@MUTATE
@given(
    st.lists(st.tuples(st.integers(0, len(STATE) - 1), st.integers(1, 255)), min_size=1, max_size=8)
)
def test_flipped_bytes_give_a_state_error_or_a_usable_bank(flips: list[tuple[int, int]]) -> None:
    data = bytearray(STATE)
    for pos, mask in flips:
        data[pos] ^= mask
    assert_usable_or_state_error(bytes(data))


@MUTATE
@given(st.integers(0, len(STATE)), st.binary(min_size=1, max_size=16))
def test_inserted_bytes_give_a_state_error_or_a_usable_bank(pos: int, junk: bytes) -> None:
    assert_usable_or_state_error(STATE[:pos] + junk + STATE[pos:])


# -- structural corruption: every field, every wrong type ------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:6]):  # long lists: their first items stand for the rest
            out += _paths(value, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    head, rest = path[0], path[1:]
    if not rest and delete:
        del copy[head]
    else:
        copy[head] = _replace(copy[head], rest, value, delete)
    return copy


BANK_PATHS = _paths(DOC)
HOSTILE = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1,
        7,
        2**31,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        0.5,
        -0.0,
        math.nan,
        math.inf,
        -math.inf,
        1e308,
        "",
        "x",
        "adwin",
        "\x00",
        b"",
        b"\x00" * 7,
        b"\xff" * 64,
        [],
        [1, 2, 3],
        [[]],
        {},
        {"kind": "adwin", "version": 1},
        {"kind": "bank", "version": 2},
        {1: 2},
    ]
)


@MUTATE
@given(st.sampled_from(BANK_PATHS), HOSTILE, st.booleans())
def test_any_field_of_the_bank_with_a_wrong_value(
    path: tuple[Any, ...], value: Any, delete: bool
) -> None:
    doc = _replace(DOC, path, value, delete=delete and bool(path))
    assert_usable_or_state_error(msgpack.packb(doc, use_bin_type=True))


DETECTOR_STATES = [s[3] for s in DOC["streams"]] + [m[3] for m in DOC["multi"]]
DETECTOR_PATHS = [(i, p) for i, state in enumerate(DETECTOR_STATES) for p in _paths(state)]


@MUTATE
@given(st.sampled_from(DETECTOR_PATHS), HOSTILE, st.booleans())
def test_each_detector_from_state_with_a_wrong_value(
    where: tuple[int, tuple[Any, ...]], value: Any, delete: bool
) -> None:
    i, path = where
    state = _replace(DETECTOR_STATES[i], path, value, delete=delete and bool(path))
    try:
        det = detector_from_state(state)
    except StateError:
        return
    values = np.linspace(-3.0, 3.0, 50)
    if det.kind == "psi_categorical":
        det.update(np.array(["FR", "DE", None] * 10, dtype=object))
    elif det.kind == "isolation_forest":
        n = getattr(det, "_n_features", None) or 3
        det.update(np.tile(values[:, None], (1, n)))
    else:
        det.update(values)
    type(det).from_state(det.to_state())


@pytest.mark.parametrize("kind", sorted({s["kind"] for s in DETECTOR_STATES}))
def test_unknown_versions_and_kinds_are_refused(kind: str) -> None:
    state = next(s for s in DETECTOR_STATES if s["kind"] == kind)
    for version in (0, 2, 999, "1", None, 1.0000001):
        with pytest.raises(StateError, match="version"):
            detector_from_state({**state, "version": version})
    with pytest.raises(StateError, match="unknown detector kind"):
        detector_from_state({**state, "kind": kind + "-v9"})


def test_unknown_bank_version_is_refused_with_a_clear_message() -> None:
    for version in (0, 2, "1", None):
        data = msgpack.packb({**DOC, "version": version}, use_bin_type=True)
        with pytest.raises(StateError, match="version"):
            DetectorBank.from_state(CONFIG, TASK, data)


# -- hostile msgpack ---------------------------------------------------------------------------

HOSTILE_MSGPACK = {
    "array32 claiming 4G items": b"\xdd\xff\xff\xff\xff",
    "map32 claiming 4G pairs": b"\xdf\xff\xff\xff\xff",
    "bin32 claiming 4 GiB": b"\xc6\xff\xff\xff\xff" + b"x" * 16,
    "str32 claiming 4 GiB": b"\xdb\xff\xff\xff\xff" + b"x" * 16,
    "ext32 claiming 4 GiB": b"\xc9\xff\xff\xff\xff\x01",
    "nested arrays 100k deep": b"\x91" * 100_000 + b"\xc0",
    "nested maps 100k deep": b"\x81\xa1k" * 100_000 + b"\xc0",
    "ext type": msgpack.packb(msgpack.ExtType(42, b"\x00" * 8)),
    "timestamp ext": b"\xd6\xff" + struct.pack(">I", 1),
    "bank with an ext inside": msgpack.packb(
        {**DOC, "counters": msgpack.ExtType(1, b"x")}, use_bin_type=True
    ),
    "bank with non-string keys": msgpack.packb(
        {**DOC, "model_seen": {1: 2, b"b": 3, (1, 2): 4}}, use_bin_type=True
    ),
    "trailing data": STATE + b"\x00",
    "two documents": STATE + STATE,
    "empty": b"",
    "nil": b"\xc0",
    "a list": msgpack.packb([DOC]),
    "JSON instead of msgpack": b'{"kind": "bank", "version": 1}',
    "pickle": b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00"
    b"\x8c\x02os\x94\x8c\x06system\x94\x93\x94.",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_MSGPACK))
def test_hostile_msgpack_is_a_state_error(name: str) -> None:
    with pytest.raises(StateError):
        DetectorBank.from_state(CONFIG, TASK, HOSTILE_MSGPACK[name])


def _hst_doc() -> dict[str, Any]:
    return next(m[3] for m in DOC["multi"] if m[3]["kind"] == "isolation_forest")


@pytest.mark.parametrize(
    "settings_patch",
    [
        {"n_trees": 2**40},  # arange(n_trees) alone would be 8 TiB
        {"n_trees": 5000, "height": 20},  # 5000 trees of 2M nodes: ~80 GiB if allocated first
        {"calibration": 2**40},
        {"height": 60},
        {"window": 2**62},
    ],
)
def test_settings_that_ask_for_huge_memory_are_refused(settings_patch: dict[str, Any]) -> None:
    doc = _hst_doc()
    hostile = {**doc, "settings": {**doc["settings"], **settings_patch}}
    with pytest.raises(StateError):
        detector_from_state(hostile)
    multi = [[m[0], m[1], m[2], hostile if m[3] is doc else m[3]] for m in DOC["multi"]]
    data = msgpack.packb({**DOC, "multi": multi}, use_bin_type=True)
    with pytest.raises(StateError):
        DetectorBank.from_state(CONFIG, TASK, data)


def test_stream_of_the_wrong_type_for_its_feature_is_refused() -> None:
    """A categorical detector on a numeric feature would crash the first batch: refused."""
    streams = [list(s) for s in DOC["streams"]]
    cat = next(s for s in streams if s[3]["kind"] == "psi_categorical")
    num = next(s for s in streams if s[3]["kind"] == "psi" and s[1] != cat[1])
    num[3], cat[3] = cat[3], num[3]
    data = msgpack.packb({**DOC, "streams": streams}, use_bin_type=True)
    with pytest.raises(StateError):
        DetectorBank.from_state(CONFIG, TASK, data)


def test_multivariate_detector_with_the_wrong_width_is_refused() -> None:
    multi = [[m[0], m[1], m[2][:-1], m[3]] for m in DOC["multi"]]
    data = msgpack.packb({**DOC, "multi": multi}, use_bin_type=True)
    with pytest.raises(StateError):
        DetectorBank.from_state(CONFIG, TASK, data)


# -- recovery path -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [STATE[: len(STATE) // 2], b"\xdd\xff\xff\xff\xff", b"junk"])
def test_open_task_recovers_with_fresh_detectors(data: bytes) -> None:
    """Recovery (``app.open_task``): fresh detectors instead of the unreadable bank; never a
    crash. Where it resumes and the alert it raises follow ``checkpoint.on_state_loss``."""
    store = MemoryStore()
    fence = store.acquire(TASK)
    store.save(TASK, fence, data, 1200)
    task, _resume = open_task(store, CONFIG, TASK)
    assert task.bank.models == [] and list(task.bank.detectors()) == []
    task.bank.process(task.bank.decoder.decode_batch(_records(1200, 300)), now=0.0)
    assert task.bank.counters.n_events == 300


# -- no code execution anywhere ------------------------------------------------------------------

_FORBIDDEN = re.compile(
    r"^\s*(import|from)\s+(pickle|cPickle|_pickle|marshal|shelve|dill|cloudpickle|joblib)\b"
    r"|\b(pickle|marshal|shelve|dill|cloudpickle)\.\w+\("
    r"|(?<![\w.])(eval|compile|__import__)\("
    r"|\byaml\.(load|unsafe_load|full_load)\("
    r"|\bnp\.load\(|allow_pickle\s*=\s*True"
    r"|\bexec\(",
    re.MULTILINE,
)
# The one reviewed use: paths.compile_path generates straight-line getters from a fixed template;
# the user's path steps go into the namespace as values (k0, k1, ...), never into the code text
# (tests/test_fuzz_decode.py::test_path_text_never_reaches_generated_code).
# And yaml.load with the config reader's loader, a SafeLoader subclass (checked below).
_ALLOWED = {
    ("paths.py", 'exec("\\n".join(lines), namespace)'),
    ("_config_support.py", "return yaml.load(text, Loader=_StrictLoader)"),
}


def test_no_pickle_marshal_eval_or_unsafe_yaml_in_the_package() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for match in _FORBIDDEN.finditer(text):
            line = text[text.rfind("\n", 0, match.start()) + 1 : text.find("\n", match.end())]
            if (path.name, line.strip()) in _ALLOWED:
                continue
            found.append(f"{path.relative_to(PACKAGE)}: {line.strip()}")
    assert not found, "unsafe deserialisation or code execution:\n" + "\n".join(found)
    import yaml

    from streamdrift import _config_support

    assert issubclass(_config_support._StrictLoader, yaml.SafeLoader)


def test_the_forbidden_pattern_catches_what_it_should() -> None:
    for bad in [
        "import pickle",
        "x = pickle.loads(b)",
        "eval(s)",
        "yaml.load(f)",
        "np.load(p, allow_pickle=True)",
        "from marshal import loads",
        "exec(code)",
    ]:
        assert _FORBIDDEN.search(bad), bad
    for fine in ["yaml.safe_load(f)", "self.evaluate(x)", "orjson.loads(b)", "msgpack.unpackb(b)"]:
        assert not _FORBIDDEN.search(fine), fine


def _leaf(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


INT_PATHS = [
    p for p in BANK_PATHS if isinstance(_leaf(DOC, p), int) and not isinstance(_leaf(DOC, p), bool)
]


@pytest.mark.parametrize("value", [2**64 - 1, 2**63, 2**62])
def test_huge_counts_are_refused_not_saved_into_an_overflow(value: int) -> None:
    # A count near msgpack's 64-bit limit restored, then counted on, made the next checkpoint
    # fail with OverflowError (hypothesis found n_seen = 2**64 - 1): every one must be refused.
    for path in INT_PATHS:
        doc = _replace(DOC, path, value)
        try:
            assert_usable_or_state_error(msgpack.packb(doc, use_bin_type=True))
        except Exception as exc:  # report which path
            raise AssertionError(f"{path} = {value}: {exc!r}") from exc
