"""Kafka plumbing: consumer and producer from the config, and an outbox that never drops a message.

The outbox keeps every alert and dead letter it was given until the broker acknowledged it.
``flush()`` raises :class:`DeliveryError` while anything is unacknowledged, and the checkpoint
calls it first: no checkpoint can cover events whose alerts were not delivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from streamdrift.config import Config
from streamdrift.errors import DeliveryError
from streamdrift.events import RawRecord

__all__ = ["Outbox", "make_consumer", "make_producer", "to_raw"]

log = logging.getLogger(__name__)


def make_consumer(config: Config, **overrides: Any) -> KafkaConsumer:
    """A group consumer with manual commits (offsets follow our checkpoints)."""
    k = config.kafka
    kwargs: dict[str, Any] = {
        "bootstrap_servers": list(k.bootstrap_servers),
        "group_id": k.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": k.max_poll_records,
        # Larger than any message we accept, so an oversized one is read (then dead-lettered)
        # instead of blocking the partition.
        "max_partition_fetch_bytes": max(1 << 20, k.max_message_bytes + 1024),
        "client_id": "streamdrift",
    }
    kwargs.update(k.client.kwargs("consumer"))
    kwargs.update(overrides)
    return KafkaConsumer(**kwargs)


def make_producer(config: Config, **overrides: Any) -> KafkaProducer:
    """The producer for alerts and dead letters: acks=all, retried by the client and the outbox."""
    k = config.kafka
    kwargs: dict[str, Any] = {
        "bootstrap_servers": list(k.bootstrap_servers),
        "acks": "all",
        "linger_ms": 5,
        "retries": 5,
        "client_id": "streamdrift",
        # Dead letters carry the original bytes (up to max_message_bytes) plus an envelope.
        "max_request_size": max(1 << 20, 2 * k.max_message_bytes + 65536),
    }
    kwargs.update(k.client.kwargs("producer"))
    kwargs.update(overrides)
    return KafkaProducer(**kwargs)


def to_raw(records: Iterable[Any]) -> list[RawRecord]:
    """kafka-python ``ConsumerRecord``s as decoder input."""
    return [RawRecord(r.value, r.topic, r.partition, r.offset, r.timestamp, r.key) for r in records]


@dataclass(slots=True)
class _Pending:
    topic: str
    key: bytes | None
    value: bytes
    future: Any = None
    attempts: int = 0


class Outbox:
    """Sends messages and keeps them until the broker acknowledged them."""

    def __init__(self, producer: Any, *, max_attempts: int = 5, backoff_s: float = 0.5) -> None:
        self.producer = producer
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._pending: list[_Pending] = []
        self.n_sent = 0

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        item = _Pending(topic, key, value)
        self._pending.append(item)
        self._send(item)

    def send_many(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        for key, value in messages:
            self.send(topic, value, key)

    def _send(self, item: _Pending) -> None:
        item.attempts += 1
        try:
            item.future = self.producer.send(item.topic, key=item.key, value=item.value)
        except Exception as exc:  # buffer full, broker gone, ...: retried by flush()
            log.warning("producing to %s failed (attempt %d): %s", item.topic, item.attempts, exc)
            item.future = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every pending message is acknowledged, retrying failures with backoff.

        Raises :class:`DeliveryError` (keeping the failed messages for the next call) when some
        are still unacknowledged after ``max_attempts`` sends or ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while self._pending:
            try:
                self.producer.flush(timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                log.warning("producer flush failed: %s", exc)
            failed: list[_Pending] = []
            for item in self._pending:
                fut = item.future
                if fut is not None and fut.is_done and fut.succeeded():
                    self.n_sent += 1
                    continue
                failed.append(item)
            self._pending = failed
            if not failed:
                return
            if time.monotonic() >= deadline or all(i.attempts >= self.max_attempts for i in failed):
                reason = _first_error(failed)
                raise DeliveryError(
                    f"{len(failed)} message(s) to {sorted({i.topic for i in failed})} not "
                    f"acknowledged by Kafka ({reason}); they are kept and retried, and no "
                    "checkpoint advances past them"
                )
            time.sleep(self.backoff_s)
            for item in failed:
                if item.future is None or item.future.is_done:
                    self._send(item)

    def reset_attempts(self) -> None:
        for item in self._pending:
            item.attempts = 0

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self.producer.close(timeout=timeout_s)
        except Exception as exc:
            log.warning("closing the producer failed: %s", exc)


def _first_error(items: list[_Pending]) -> str:
    for item in items:
        fut = item.future
        if fut is not None and fut.is_done and fut.failed():
            return repr(fut.exception)
    return "no acknowledgement"
