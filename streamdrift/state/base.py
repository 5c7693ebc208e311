"""The state-store contract: one atomic, fenced write of (bank state, next offset) per task.

A *task* is one input topic-partition. The store keeps, per task:

* ``state``: the serialized detector bank (bytes, a versioned msgpack document),
* ``offset``: the next input offset to read, saved in the same atomic write as ``state``,
* ``fence``: a token incremented each time a consumer takes the partition. A save carries the
  token its writer acquired; the store refuses it (:class:`FencedError`) when the token has moved
  on, so a consumer that lost the partition cannot overwrite the new owner's state.

Offsets only move forward: a save with an offset below the stored one is refused too.

A save also says where the writer's last checkpoint was (``previous``). When the store no longer
has it — the fence counter is gone or went backwards, or that checkpoint vanished (Redis restarted
empty or from an older snapshot, keys deleted or evicted) — the save raises
:class:`~streamdrift.errors.StateLostError` instead of quietly writing next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol


class TaskId(NamedTuple):
    """One input topic-partition."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a checkpoint saved for a task."""

    state: bytes
    offset: int
    fence: int
    saved_at: float


class StateStore(Protocol):
    """Implemented by :class:`~streamdrift.state.memory.MemoryStore` and ``RedisStore``."""

    def acquire(self, task: TaskId) -> int:
        """Take ownership of ``task``: increment and return its fencing token."""
        ...

    def load(self, task: TaskId) -> Snapshot | None:
        """The last checkpoint of ``task``, or ``None`` if it never had one."""
        ...

    def save(
        self, task: TaskId, fence: int, state: bytes, offset: int, previous: int | None = None
    ) -> None:
        """Atomically save state and next offset; raise ``FencedError`` if ``fence`` is stale.

        ``previous`` is the offset of the writer's last checkpoint of ``task`` (the one it loaded
        or saved), ``None`` if it had none; ``StateLostError`` if the store lost it.
        """
        ...

    def discard(self, task: TaskId, fence: int) -> None:
        """Delete the checkpoint of ``task`` (it was unreadable); ``FencedError`` if not owned."""
        ...

    def ping(self) -> bool:
        """Whether the store is reachable."""
        ...

    def close(self) -> None: ...
