"""The checkpoint, in its one order:

1. flush the outbox — every alert and dead letter of the covered events is acknowledged by
   Kafka, or :class:`DeliveryError` is raised and nothing below happens;
2. per task, one atomic Redis write of (bank state, next offset), checked against the task's
   fencing token — a consumer that lost the partition gets :class:`FencedError` instead of
   overwriting the new owner's state;
3. commit the same offsets to Kafka (for the usual lag tools; the truth is in Redis).

Offsets only move forward; that is asserted here and by the stores.

Test-only fault hook: with ``SD_FAULT_CHECKPOINT=after_flush|after_redis|after_commit`` (optionally
``:N``, the N-th checkpoint that saves something; default 1) the process kills itself with SIGKILL
at that point, so tests can crash it between the steps. Inert unless that variable is set.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamdrift.errors import FencedError, StateLostError
from streamdrift.state.base import StateStore, TaskId
from streamdrift.state.joins import Remembered, joins_of

if TYPE_CHECKING:
    from streamdrift.bank import DetectorBank
    from streamdrift.kafka import Outbox
    from streamdrift.resets import StateReset

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
    lost: str | None = None  # why the store lost this task's checkpoint (StateLostError)
    reset: StateReset | None = None  # set when the task started afresh (see streamdrift.resets)


@dataclass(slots=True)
class CheckpointReport:
    saved: list[TaskId] = field(default_factory=list)
    fenced: list[TaskId] = field(default_factory=list)
    lost: list[TaskId] = field(default_factory=list)
    remembered: list[tuple[str, Remembered]] = field(default_factory=list)
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
        self._fault = _fault_point()
        self._n_working = 0

    def checkpoint(self, tasks: Iterable[Task], *, force: bool = False) -> CheckpointReport:
        started = time.perf_counter()
        report = CheckpointReport()
        todo = [
            t for t in tasks if not t.fenced and t.next_offset is not None and (t.dirty or force)
        ]
        if todo:
            self._n_working += 1
        # 1. Alerts and dead letters first: raises DeliveryError, leaving state and offsets alone.
        if self.outbox is not None:
            self.outbox.flush()
        self._maybe_die("after_flush", todo)
        # 2. State and position, atomically per task, fenced.
        offsets: dict[TaskId, int] = {}
        for task in todo:
            assert task.next_offset is not None
            if task.saved_offset is not None and task.next_offset < task.saved_offset:
                raise AssertionError(
                    f"{task.id}: next offset {task.next_offset} is behind the checkpointed "
                    f"{task.saved_offset}"
                )
            labels = getattr(task.bank, "labels", None)
            if labels is not None and labels.n_to_remember:
                # Predictions waiting for labels, before the state: idempotent by event id, so
                # a crash in between only makes the replay write the same values again.
                report.remembered += labels.flush(joins_of(self.store))
            state = task.bank.to_state()
            try:
                self.store.save(
                    task.id, task.fence, state, task.next_offset, previous=task.saved_offset
                )
            except FencedError as exc:
                log.warning("%s", exc)
                task.fenced = True
                report.fenced.append(task.id)
                continue
            except StateLostError as exc:
                log.error("%s", exc)
                task.lost = str(exc)
                report.lost.append(task.id)
                continue
            task.saved_offset = task.next_offset
            task.dirty = False
            report.saved.append(task.id)
            report.nbytes += len(state)
            offsets[task.id] = task.next_offset
        self._maybe_die("after_redis", todo)
        # 3. Kafka offsets, after Redis.
        if offsets and self.commit is not None:
            self.commit(offsets)
        self._maybe_die("after_commit", todo)
        report.seconds = time.perf_counter() - started
        return report

    def _maybe_die(self, point: str, todo: list[Task]) -> None:
        if self._fault is not None and todo and self._fault == (point, self._n_working):
            log.critical("SD_FAULT_CHECKPOINT: SIGKILL %s of checkpoint %d", point, self._n_working)
            os.kill(os.getpid(), signal.SIGKILL)


_FAULT_POINTS = ("after_flush", "after_redis", "after_commit")


def _fault_point() -> tuple[str, int] | None:
    """The test-only fault hook's (point, n) from ``SD_FAULT_CHECKPOINT``, or ``None``."""
    raw = os.environ.get("SD_FAULT_CHECKPOINT", "")
    if not raw:
        return None
    point, _, n = raw.partition(":")
    if point not in _FAULT_POINTS or not (n or "1").isdigit():
        raise ValueError(f"SD_FAULT_CHECKPOINT={raw!r}: expected one of {_FAULT_POINTS}[:N]")
    return point, int(n or "1")
