"""In-process state store for the embedded mode (replay, demo) and tests."""

from __future__ import annotations

import threading
import time

from streamdrift.errors import FencedError, StateError
from streamdrift.state.base import Snapshot, TaskId


class MemoryStore:
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

    def save(self, task: TaskId, fence: int, state: bytes, offset: int) -> None:
        with self._lock:
            current = self._fences.get(task, 0)
            if fence != current:
                raise FencedError(
                    f"checkpoint of {task} refused: fence {fence} is stale (current {current}); "
                    "another consumer owns this partition now"
                )
            previous = self._snapshots.get(task)
            if previous is not None and offset < previous.offset:
                raise StateError(
                    f"checkpoint of {task} refused: offset {offset} is behind the saved "
                    f"{previous.offset}; offsets only move forward"
                )
            self._snapshots[task] = Snapshot(state, offset, fence, time.time())

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass
