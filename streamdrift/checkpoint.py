"""The checkpoint, in its one order:

1. flush the outbox — every alert and dead letter of the covered events is acknowledged by
   Kafka, or :class:`DeliveryError` is raised and nothing below happens;
2. per task, one atomic Redis write of (bank state, next offset), checked against the task's
   fencing token — a consumer that lost the partition gets :class:`FencedError` instead of
   overwriting the new owner's state;
3. commit the same offsets to Kafka (for the usual lag tools; the truth is in Redis).

Offsets only move forward; that is asserted here and by the stores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamdrift.errors import FencedError
from streamdrift.state.base import StateStore, TaskId

if TYPE_CHECKING:
    from streamdrift.bank import DetectorBank
    from streamdrift.kafka import Outbox

__all__ = ["CheckpointReport", "Checkpointer", "Task"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Task:
    """One owned input partition: its bank, its fence, and where it is."""

    id: TaskId
    bank: DetectorBank
    fence: int
    next_offset: int | None  # None until the first record (then we know where we are)
    saved_offset: int | None = None
    dirty: bool = False
    fenced: bool = False


@dataclass(slots=True)
class CheckpointReport:
    saved: list[TaskId] = field(default_factory=list)
    fenced: list[TaskId] = field(default_factory=list)
    nbytes: int = 0
    seconds: float = 0.0


class Checkpointer:
    """Runs the ordered checkpoint over a set of tasks."""

    def __init__(
        self,
        store: StateStore,
        outbox: Outbox | None,
        commit: Callable[[dict[TaskId, int]], None] | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.commit = commit

    def checkpoint(self, tasks: Iterable[Task], *, force: bool = False) -> CheckpointReport:
        started = time.perf_counter()
        report = CheckpointReport()
        todo = [
            t for t in tasks if not t.fenced and t.next_offset is not None and (t.dirty or force)
        ]
        # 1. Alerts and dead letters first: raises DeliveryError, leaving state and offsets alone.
        if self.outbox is not None:
            self.outbox.flush()
        # 2. State and position, atomically per task, fenced.
        offsets: dict[TaskId, int] = {}
        for task in todo:
            assert task.next_offset is not None
            if task.saved_offset is not None and task.next_offset < task.saved_offset:
                raise AssertionError(
                    f"{task.id}: next offset {task.next_offset} is behind the checkpointed "
                    f"{task.saved_offset}"
                )
            state = task.bank.to_state()
            try:
                self.store.save(task.id, task.fence, state, task.next_offset)
            except FencedError as exc:
                log.warning("%s", exc)
                task.fenced = True
                report.fenced.append(task.id)
                continue
            task.saved_offset = task.next_offset
            task.dirty = False
            report.saved.append(task.id)
            report.nbytes += len(state)
            offsets[task.id] = task.next_offset
        # 3. Kafka offsets, after Redis.
        if offsets and self.commit is not None:
            self.commit(offsets)
        report.seconds = time.perf_counter() - started
        return report
