"""The join buffer of delayed labels: predictions waiting for their label, by model and event id.

Predictions are written at the checkpoint of the task that read them (before its state and
offset: a crash in between makes the replay write the same values again, keyed by event id, so
the order is equivalent to one atomic write). A label *claims* its prediction: the claim is the
label's position (``topic:partition:offset``), so the label's replay after a crash finds its own
claim and joins again, while a second label for the same event id finds another's claim and is a
duplicate. Expiry is in event time: a prediction older than the newest one of its model by more
than the TTL, or beyond the per-model cap, is evicted and its id kept (bounded) so that a later
label is known to be *late* rather than unknown.

:class:`MemoryJoins` holds the buffer in process (replay, tests); ``RedisJoins`` in Redis with one
Lua script per call, keys hash-tagged by model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, cast

__all__ = [
    "DUPLICATE",
    "EXPIRED",
    "JOINED",
    "MISSING",
    "JoinStats",
    "JoinStore",
    "MemoryJoins",
    "Remembered",
    "joins_of",
]

MISSING: Final = 0
"""No prediction with that id (yet)."""
JOINED: Final = 1
"""Found, and claimed by this label (now, or before a crash: the same claim)."""
DUPLICATE: Final = 2
"""Found, but another label claimed it first."""
EXPIRED: Final = 3
"""Its prediction was evicted (TTL or cap) before this label came: a late label."""

Entry = tuple[str, bytes, float]
"""(event id, packed prediction, event time) of a prediction to remember."""


@dataclass(frozen=True, slots=True)
class Remembered:
    """What one :meth:`JoinStore.remember` call did for a model."""

    added: int
    expired_ttl: int
    """Evicted by the TTL without ever getting a label."""
    evicted_cap: int
    """Evicted by the size cap without ever getting a label."""
    size: int
    """Predictions in the model's buffer afterwards."""


@dataclass(frozen=True, slots=True)
class JoinStats:
    """Per model, over the buffer's life: predictions remembered, labelled, expired unlabelled."""

    remembered: int = 0
    labelled: int = 0
    expired: int = 0

    @property
    def coverage(self) -> float:
        """Share of remembered predictions that got a label (NaN before the first)."""
        return self.labelled / self.remembered if self.remembered else float("nan")


class JoinStore(Protocol):
    """Implemented by :class:`MemoryJoins` (and so ``MemoryStore``) and ``RedisJoins``."""

    def remember(self, model: str, entries: Sequence[Entry], ttl: float, cap: int) -> Remembered:
        """Add predictions (idempotent by event id), then evict by TTL and cap."""
        ...

    def claim(
        self, model: str, requests: Sequence[tuple[str, str]]
    ) -> tuple[list[tuple[int, bytes]], float]:
        """For each (event id, claim): status (:data:`JOINED`, ...) and the packed prediction
        (empty unless found); and the event time of the model's newest prediction (-inf: none)."""
        ...

    def join_stats(self, model: str) -> JoinStats: ...


def joins_of(store: object) -> JoinStore:
    """``store`` as a :class:`JoinStore` (both shipped stores are); ``TypeError`` otherwise."""
    if not all(hasattr(store, m) for m in ("remember", "claim", "join_stats")):
        raise TypeError(f"{type(store).__name__} does not hold a join buffer (labels need one)")
    return cast(JoinStore, store)


@dataclass(slots=True)
class _ModelBuffer:
    preds: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)
    expired: dict[str, float] = field(default_factory=dict)
    max_time: float = float("-inf")
    stats: list[int] = field(default_factory=lambda: [0, 0, 0])


class MemoryJoins:
    """The join buffer in a dict, with exactly the semantics of the Redis scripts."""

    # No __init__: mixed into MemoryStore, whose constructor does not know about joins.
    _join_lock = threading.Lock()

    @property
    def _buffers(self) -> dict[str, _ModelBuffer]:
        buffers: dict[str, _ModelBuffer] | None = self.__dict__.get("_join_buffers")
        if buffers is None:
            buffers = self.__dict__["_join_buffers"] = {}
        return buffers

    def remember(self, model: str, entries: Sequence[Entry], ttl: float, cap: int) -> Remembered:
        with self._join_lock:
            buf = self._buffers.setdefault(model, _ModelBuffer())
            buf.max_time = max([buf.max_time, *(t for _, _, t in entries)])
            cutoff = buf.max_time - ttl
            added = 0
            for event_id, value, t in entries:
                if t >= cutoff and event_id not in buf.expired:
                    added += event_id not in buf.preds
                    buf.preds[event_id] = (value, t)
            buf.stats[0] += added
            old = [i for i, (_, t) in buf.preds.items() if t < cutoff]
            n_ttl = self._evict(buf, old)
            over = len(buf.preds) - cap
            n_cap = 0
            if over > 0:
                order = sorted(buf.preds, key=lambda i: (buf.preds[i][1], i))
                n_cap = self._evict(buf, order[:over])
            # Late labels are recognised for another TTL, and for at most `cap` ids.
            for i in [i for i, t in buf.expired.items() if t < cutoff - ttl]:
                del buf.expired[i]
            if len(buf.expired) > cap:
                for i in sorted(buf.expired, key=lambda i: (buf.expired[i], i))[
                    : len(buf.expired) - cap
                ]:
                    del buf.expired[i]
            return Remembered(added, n_ttl, n_cap, len(buf.preds))

    @staticmethod
    def _evict(buf: _ModelBuffer, ids: list[str]) -> int:
        unlabelled = 0
        for i in ids:
            _, t = buf.preds.pop(i)
            unlabelled += buf.claims.pop(i, None) is None
            buf.expired[i] = t
        buf.stats[2] += unlabelled
        return unlabelled

    def claim(
        self, model: str, requests: Sequence[tuple[str, str]]
    ) -> tuple[list[tuple[int, bytes]], float]:
        with self._join_lock:
            buf = self._buffers.setdefault(model, _ModelBuffer())
            out: list[tuple[int, bytes]] = []
            for event_id, claim in requests:
                found = buf.preds.get(event_id)
                if found is not None:
                    previous = buf.claims.get(event_id)
                    if previous is None:
                        buf.claims[event_id] = claim
                        buf.stats[1] += 1
                    out.append((JOINED if previous in (None, claim) else DUPLICATE, found[0]))
                elif event_id in buf.expired:
                    out.append((EXPIRED, b""))
                else:
                    out.append((MISSING, b""))
            return out, buf.max_time

    def join_stats(self, model: str) -> JoinStats:
        with self._join_lock:
            buf = self._buffers.get(model)
            return JoinStats(*buf.stats) if buf is not None else JoinStats()

    def claimed_ids(self, model: str) -> dict[str, str]:
        """Event id -> claim of the predictions that got a label (tests, introspection)."""
        with self._join_lock:
            buf = self._buffers.get(model)
            return dict(buf.claims) if buf is not None else {}

    def buffered(self, model: str) -> int:
        with self._join_lock:
            buf = self._buffers.get(model)
            return len(buf.preds) if buf is not None else 0
