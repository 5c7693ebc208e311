"""State stores (in memory and real Redis) and the ordered checkpoint."""

from __future__ import annotations

from typing import Any

import pytest

from streamdrift.checkpoint import Checkpointer, Task
from streamdrift.errors import DeliveryError, FencedError, StateError
from streamdrift.kafka import Outbox
from streamdrift.state.base import TaskId
from streamdrift.state.memory import MemoryStore
from streamdrift.state.redis import RedisStore

TASK = TaskId("events", 3)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryStore()
    client, prefix = request.getfixturevalue("redis_factory")()
    return RedisStore("unused://", prefix, client=client)


def test_save_then_load_round_trips_state_offset_and_fence(store: Any) -> None:
    assert store.load(TASK) is None
    fence = store.acquire(TASK)
    store.save(TASK, fence, b"\x00state\xff", 120)
    snap = store.load(TASK)
    assert (snap.state, snap.offset, snap.fence) == (b"\x00state\xff", 120, fence)


def test_stale_fence_is_refused_and_does_not_overwrite(store: Any) -> None:
    old = store.acquire(TASK)
    store.save(TASK, old, b"old owner", 10)
    new = store.acquire(TASK)  # a rebalance gave the partition to another consumer
    assert new == old + 1
    with pytest.raises(FencedError, match="another consumer owns"):
        store.save(TASK, old, b"stale write", 50)
    store.save(TASK, new, b"new owner", 20)
    assert store.load(TASK).state == b"new owner"


def test_offsets_only_move_forward(store: Any) -> None:
    fence = store.acquire(TASK)
    store.save(TASK, fence, b"a", 100)
    with pytest.raises(StateError, match="only move forward"):
        store.save(TASK, fence, b"b", 99)
    assert store.load(TASK).offset == 100


def test_tasks_are_independent(store: Any) -> None:
    other = TaskId("events", 4)
    store.save(TASK, store.acquire(TASK), b"three", 1)
    assert store.load(other) is None
    assert store.acquire(other) == 1


@pytest.mark.redis
def test_redis_keys_share_a_cluster_hash_tag(redis_factory) -> None:
    client, prefix = redis_factory()
    store = RedisStore("unused://", prefix, client=client)
    store.save(TASK, store.acquire(TASK), b"x", 5)
    keys = sorted(k.decode() for k in client.scan_iter(match=f"*{prefix}*"))
    assert keys == [f"{{{prefix}:events:3}}:fence", f"{{{prefix}:events:3}}:task"]


@pytest.mark.redis
def test_corrupt_redis_snapshot_is_a_clear_state_error(redis_factory) -> None:
    client, prefix = redis_factory()
    store = RedisStore("unused://", prefix, client=client)
    client.hset(f"{{{prefix}:events:3}}:task", mapping={"state": b"x", "offset": b"not-a-number"})
    with pytest.raises(StateError, match="corrupt"):
        store.load(TASK)


class _Future:
    def __init__(self, ok: bool) -> None:
        self.is_done = True
        self._ok = ok
        self.exception = None if ok else RuntimeError("broker unavailable")

    def succeeded(self) -> bool:
        return self._ok

    def failed(self) -> bool:
        return not self._ok


class _Producer:
    """A producer whose broker acknowledges nothing until ``healthy`` is set (a unit-test stub)."""

    def __init__(self) -> None:
        self.healthy = False
        self.sent: list[bytes] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> _Future:
        if self.healthy:
            self.sent.append(value)
        return _Future(self.healthy)

    def flush(self, timeout: float) -> None:
        pass


class _Bank:
    def to_state(self) -> bytes:
        return b"bank"


def test_checkpoint_does_not_advance_past_unsent_alerts() -> None:
    store = MemoryStore()
    producer = _Producer()
    outbox = Outbox(producer, max_attempts=2, backoff_s=0.0)
    committed: list[dict[TaskId, int]] = []
    cp = Checkpointer(store, outbox, committed.append)
    task = Task(TASK, _Bank(), store.acquire(TASK), next_offset=500, dirty=True)  # type: ignore[arg-type]
    outbox.send("alerts", b"alert-1")
    with pytest.raises(DeliveryError, match="not acknowledged"):
        cp.checkpoint([task])
    assert store.load(TASK) is None and committed == [], "nothing saved or committed"
    assert outbox.pending == 1, "the alert is kept for the next attempt"

    producer.healthy = True
    outbox.reset_attempts()
    report = cp.checkpoint([task])
    assert producer.sent == [b"alert-1"]
    assert report.saved == [TASK] and store.load(TASK).offset == 500
    assert committed == [{TASK: 500}]


def test_fenced_checkpoint_marks_the_task_and_commits_nothing() -> None:
    store = MemoryStore()
    committed: list[dict[TaskId, int]] = []
    cp = Checkpointer(store, None, committed.append)
    task = Task(TASK, _Bank(), store.acquire(TASK), next_offset=10, dirty=True)  # type: ignore[arg-type]
    store.acquire(TASK)  # someone else took the partition
    report = cp.checkpoint([task])
    assert report.fenced == [TASK] and task.fenced
    assert committed == [] and store.load(TASK) is None
