"""State resets: a task's checkpoint was lost or cannot be read; say so loudly and recover.

Detection:

* at assignment (:func:`streamdrift.app.open_task`): the store has no checkpoint of the partition
  although the consumer group has a committed offset for it (offsets are committed only after a
  Redis checkpoint, so there was one and it is gone: Redis restarted empty, keys deleted or
  evicted, a changed ``redis.key_prefix``); or the checkpoint is corrupt, truncated or of an
  unknown version;
* while the task is owned: the fenced save finds the fence counter gone or gone backwards, or the
  task's last checkpoint missing (:class:`~streamdrift.errors.StateLostError`).

Recovery:

* ``restored`` — detected while owning the task: the running bank is complete up to its position,
  so it is written back under a new fence. Nothing is lost.
* ``rewarm`` (``checkpoint.on_state_loss``, the default) — at assignment: fresh detectors from
  the last known position (the saved offset of an unreadable checkpoint, or the committed offset);
  they learn a new reference from there. Nothing is counted twice; what came before is forgotten.
* ``rebuild`` — at assignment: fresh detectors, read again from the earliest offset Kafka still
  has. With the whole history retained the result equals an uninterrupted run; alerts of the
  re-read events are produced again, with their original ids.

Every reset produces one ``state_reset`` alert (before the checkpoint that covers it) and counts
``streamdrift_state_resets_total{reason, recovery}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from streamdrift.alerts import Alert, alert_id
from streamdrift.state.base import TaskId

__all__ = ["RECOVERIES", "RESET_REASONS", "StateReset"]

RESET_REASONS: Final = ("state_lost", "state_corrupt")
RECOVERIES: Final = ("restored", "rebuild", "rewarm")
ALL_MODELS: Final = "*"
"""``model_id`` of a state_reset alert: it concerns every model of the partition."""


@dataclass(frozen=True, slots=True)
class StateReset:
    """What happened to one task's state, and how processing continues."""

    task: TaskId
    reason: str  # one of RESET_REASONS
    detail: str
    recovery: str  # one of RECOVERIES
    lost_offset: int | None  # position of the lost or unreadable checkpoint, when known
    resume_offset: int | None  # where processing continues; None: the earliest offset available

    def alert(self, now: float | None = None) -> Alert:
        """The ``state_reset`` alert; its id is the same each time this reset is found again."""
        offset = self.lost_offset if self.lost_offset is not None else self.resume_offset or 0
        severity = "warning" if self.recovery == "restored" else "critical"
        return Alert(
            alert_id=alert_id(
                self.task.topic,
                self.task.partition,
                offset,
                ALL_MODELS,
                f"{self.reason}/{self.recovery}",
                "state_reset",
            ),
            type="state_reset",
            model_id=ALL_MODELS,
            feature=None,
            detector="",  # no detector: published as null
            statistic=float("nan"),
            threshold=float("nan"),
            severity=severity,
            event_time=None,
            detected_at=time.time() if now is None else now,
            topic=self.task.topic,
            partition=self.task.partition,
            offset=offset,
            details={
                "reason": self.reason,
                "detail": self.detail,
                "recovery": self.recovery,
                "lost_offset": self.lost_offset,
                "resume_offset": self.resume_offset,
            },
        )

    def describe(self) -> str:
        where = (
            "from the earliest offset available"
            if self.resume_offset is None
            else f"at offset {self.resume_offset}"
        )
        if self.recovery == "restored":
            return f"{self.task}: {self.detail}; state written back from memory"
        return f"{self.task}: {self.detail}; {self.recovery} with fresh detectors {where}"
