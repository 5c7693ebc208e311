"""In-process state store for the embedded mode (replay, demo) and tests."""

from __future__ import annotations

import threading
import time

from streamdrift.errors import FencedError, StateError, StateLostError
from streamdrift.state.base import Snapshot, TaskId
from streamdrift.state.joins import MemoryJoins


class MemoryStore(MemoryJoins):
    """Same semantics as the Redis store (fencing, forward-only offsets), kept in a dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fences: dict[TaskId, int] = {}
        self._snapshots: dict[TaskId, Snapshot] = {}

    def acquire(self, task: TaskId) -> int:
        with self._lock:
            fence = self._fences.get(task, 0) + 1
            self._fences[task] = fence
            return fence

    def load(self, task: TaskId) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(task)

    def save(
        self, task: TaskId, fence: int, state: bytes, offset: int, previous: int | None = None
    ) -> None:
        with self._lock:
            current = self._fences.get(task)
            if current is None or current < fence:
                raise StateLostError(f"the store lost the state of {task}: fence {current}")
            if fence != current:
                raise FencedError(
                    f"checkpoint of {task} refused: fence {fence} is stale (current {current}); "
                    "another consumer owns this partition now"
                )
            stored = self._snapshots.get(task)
            if previous is not None and (stored is None or stored.offset < previous):
                raise StateLostError(
                    f"the store lost the state of {task}: its checkpoint at {previous} is gone"
                )
            if stored is not None and offset < stored.offset:
                raise StateError(
                    f"checkpoint of {task} refused: offset {offset} is behind the saved "
                    f"{stored.offset}; offsets only move forward"
                )
            self._snapshots[task] = Snapshot(state, offset, fence, time.time())

    def discard(self, task: TaskId, fence: int) -> None:
        with self._lock:
            if self._fences.get(task) != fence:
                raise FencedError(f"delete of {task} refused: fence {fence} is stale")
            self._snapshots.pop(task, None)

    def clear(self) -> None:
        """Forget everything, as a Redis restarted without persistence would (for tests)."""
        with self._lock:
            self._fences.clear()
            self._snapshots.clear()

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass
