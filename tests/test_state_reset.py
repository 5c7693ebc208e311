"""Detecting a lost or unreadable task state, and the ``state_reset`` it produces (fast tests).

The service-level behaviour against real, restarted servers is in tests/test_faults.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from streamdrift.app import open_task, replay
from streamdrift.checkpoint import Checkpointer, _fault_point
from streamdrift.config import parse_config
from streamdrift.errors import FencedError, StateLostError
from streamdrift.state.base import TaskId
from streamdrift.state.memory import MemoryStore
from streamdrift.state.redis import RedisStore
from streamdrift.synthetic import synthetic_events

TASK = TaskId("events", 1)
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "streamdrift/schemas/alert.schema.json").read_text()
)


def _config(**checkpoint: Any):
    return parse_config({"kafka": {"input_topics": ["events"]}, "checkpoint": checkpoint})


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryStore()
    client, prefix = request.getfixturevalue("redis_factory")()
    store = RedisStore("unused://", prefix, client=client)
    store.client = client  # for the tests that play "Redis lost its data"
    store.prefix = prefix
    return store


def _forget_everything(store: Any) -> None:
    """What a Redis restarted without persistence (or FLUSHALL) does to the task's keys."""
    if isinstance(store, MemoryStore):
        store.clear()
    else:
        store.client.delete(*store.client.keys(f"{{{store.prefix}:*"))


def test_a_save_after_the_store_forgot_everything_is_state_lost(store: Any) -> None:
    fence = store.acquire(TASK)
    store.save(TASK, fence, b"a", 100)
    _forget_everything(store)
    with pytest.raises(StateLostError, match="lost the state"):
        store.save(TASK, fence, b"b", 200, previous=100)
    assert store.load(TASK) is None, "nothing written next to nothing"


def test_a_fence_gone_backwards_is_state_lost_not_fenced(store: Any) -> None:
    """Redis restarted from an older snapshot: the counter is below ours."""
    old = store.acquire(TASK)
    store.save(TASK, old, b"a", 100)
    _forget_everything(store)
    store.acquire(TASK)  # fence 1 again (a new owner elsewhere would get this)
    mine = old + 5
    with pytest.raises(StateLostError):
        store.save(TASK, mine, b"b", 200, previous=100)


def test_a_vanished_checkpoint_under_our_fence_is_state_lost(store: Any) -> None:
    fence = store.acquire(TASK)
    store.save(TASK, fence, b"a", 100)
    if isinstance(store, MemoryStore):
        store._snapshots.clear()
    else:
        store.client.delete(f"{{{store.prefix}:events:1}}:task")  # evicted or deleted
    with pytest.raises(StateLostError, match="100"):
        store.save(TASK, fence, b"b", 200, previous=100)


def test_a_newer_owner_is_still_fenced(store: Any) -> None:
    old = store.acquire(TASK)
    store.save(TASK, old, b"a", 100)
    store.acquire(TASK)
    with pytest.raises(FencedError):
        store.save(TASK, old, b"b", 200, previous=100)


def test_our_own_save_whose_reply_was_lost_is_not_a_loss(store: Any) -> None:
    """The stored offset is ahead of what we think we saved: our write went through."""
    fence = store.acquire(TASK)
    store.save(TASK, fence, b"a", 100)
    store.save(TASK, fence, b"b", 150, previous=100)  # the reply never reached us
    store.save(TASK, fence, b"c", 200, previous=100)
    assert store.load(TASK).offset == 200


def test_checkpointer_reports_a_lost_task_and_does_not_save_it(store: Any) -> None:
    config = _config()
    task, _ = open_task(store, config, TASK)
    task.next_offset, task.dirty = 10, True
    cp = Checkpointer(store, outbox=None)
    assert cp.checkpoint([task]).saved == [TASK]
    _forget_everything(store)
    task.next_offset, task.dirty = 20, True
    report = cp.checkpoint([task])
    assert report.lost == [TASK] and not report.saved and task.lost
    assert store.load(TASK) is None


def test_open_task_without_checkpoint_but_with_a_committed_offset_resets() -> None:
    store = MemoryStore()
    task, resume = open_task(store, _config(), TASK, committed=lambda: 700)
    assert task.reset is not None and resume == 700 and task.next_offset == 700
    assert (task.reset.reason, task.reset.recovery, task.reset.lost_offset) == (
        "state_lost",
        "rewarm",
        700,
    )
    task, resume = open_task(store, _config(on_state_loss="rebuild"), TASK, committed=lambda: 700)
    assert task.reset is not None and task.reset.recovery == "rebuild"
    assert resume is None and task.reset.resume_offset is None  # from the earliest offset


def test_open_task_of_a_new_partition_is_no_reset() -> None:
    task, resume = open_task(MemoryStore(), _config(), TASK, committed=lambda: None)
    assert task.reset is None and resume is None


def test_open_task_with_a_corrupt_checkpoint_resets_and_discards_it() -> None:
    store = MemoryStore()
    store.save(TASK, store.acquire(TASK), b"\xc1 not msgpack", 1200)
    task, resume = open_task(store, _config(), TASK)
    assert task.reset is not None and task.reset.reason == "state_corrupt"
    assert resume == 1200 and task.reset.lost_offset == 1200
    assert store.load(TASK) is None, "the unreadable document is gone"
    # and the next save, at an offset anywhere, goes through
    store.save(TASK, task.fence, b"fresh", 1300, previous=task.saved_offset)


@pytest.mark.redis
def test_open_task_with_an_unparseable_redis_hash_resets(redis_factory) -> None:
    client, prefix = redis_factory()
    store = RedisStore("unused://", prefix, client=client)
    client.hset(f"{{{prefix}:events:1}}:task", mapping={"state": b"x", "offset": b"NaN?"})
    task, resume = open_task(store, _config(), TASK, committed=lambda: 42)
    assert task.reset is not None and task.reset.reason == "state_corrupt"
    assert resume == 42  # the saved offset is unreadable: the committed one
    store.save(TASK, task.fence, b"fresh", 50)  # the broken hash no longer blocks saves


def test_state_reset_alert_is_schema_valid_and_stable() -> None:
    task, _ = open_task(MemoryStore(), _config(), TASK, committed=lambda: 700)
    assert task.reset is not None
    a, b = task.reset.alert(now=1.0).to_dict(), task.reset.alert(now=2.0).to_dict()
    jsonschema.validate(a, SCHEMA)
    assert a["alert_id"] == b["alert_id"], "found again after a crash: the same id"
    assert a["type"] == "state_reset" and a["detector"] is None and a["feature"] is None
    assert a["source"] == {"topic": "events", "partition": 1, "offset": 700}
    assert a["details"]["reason"] == "state_lost" and a["severity"] == "critical"


def test_replay_over_a_corrupt_checkpoint_emits_state_reset() -> None:
    store = MemoryStore()
    task_id = TaskId("events", 0)
    store.save(task_id, store.acquire(task_id), b"garbage", 5)
    events, _ = synthetic_events(50, seed=1, drift_at=None, outlier_rate=0.0)
    alerts: list[bytes] = []
    report, bank = replay(
        _config(), [orjson.dumps(e) for e in events], alerts.append, lambda _: None, store=store
    )
    resets = [orjson.loads(a) for a in alerts if orjson.loads(a)["type"] == "state_reset"]
    assert len(resets) == 1 and resets[0]["details"]["reason"] == "state_corrupt"
    assert report.skipped == 5 and bank.counters.n_events == 45  # rewarm at the saved offset


def test_fault_hook_is_inert_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SD_FAULT_CHECKPOINT", raising=False)
    assert _fault_point() is None
    monkeypatch.setenv("SD_FAULT_CHECKPOINT", "after_redis:3")
    assert _fault_point() == ("after_redis", 3)
    monkeypatch.setenv("SD_FAULT_CHECKPOINT", "after_flush")
    assert _fault_point() == ("after_flush", 1)
    monkeypatch.setenv("SD_FAULT_CHECKPOINT", "before_lunch")
    with pytest.raises(ValueError, match="SD_FAULT_CHECKPOINT"):
        _fault_point()


def test_state_resets_are_counted_by_reason_and_recovery() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from streamdrift.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    text = generate_latest(registry).decode()
    zero = 'streamdrift_state_resets_total{reason="state_corrupt",recovery="rebuild"} 0.0'
    assert zero in text, "the series exist at zero"
    metrics.record_state_reset("state_lost", "restored")
    metrics.record_state_reset("state_lost", "restored")
    text = generate_latest(registry).decode()
    assert 'streamdrift_state_resets_total{reason="state_lost",recovery="restored"} 2.0' in text
