"""Kafka plumbing: consumer and producer from the config, and an outbox that never drops a message.

The outbox keeps every alert and dead letter it was given until the broker acknowledged it.
``flush()`` raises :class:`DeliveryError` while anything is unacknowledged, and the checkpoint
calls it first: no checkpoint can cover events whose alerts were not delivered.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from streamdrift.config import Config
from streamdrift.errors import ConnectError, DeliveryError
from streamdrift.events import RawRecord

__all__ = ["Outbox", "client_description", "make_consumer", "make_producer", "to_raw"]

log = logging.getLogger(__name__)


def client_description(config: Config) -> str:
    """The Kafka client in use and its version, for the start-up log line."""
    if config.kafka.library == "confluent-kafka":
        import confluent_kafka

        return (
            f"confluent-kafka {confluent_kafka.__version__} "
            f"(librdkafka {confluent_kafka.libversion()[0]})"
        )
    import kafka

    return f"kafka-python {kafka.__version__}"


def make_consumer(config: Config, **overrides: Any) -> Any:
    """A group consumer with manual commits (offsets follow our checkpoints).

    kafka-python's ``KafkaConsumer``, or with ``kafka.library: confluent-kafka`` a librdkafka
    consumer offering the same calls (:mod:`streamdrift._kafka_confluent`).
    """
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
    if k.library == "confluent-kafka":
        from streamdrift._kafka_confluent import ConfluentConsumer

        return ConfluentConsumer(**kwargs)
    return _connect(KafkaConsumer, kwargs, "consumer")


def make_producer(config: Config, **overrides: Any) -> Any:
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
    if k.library == "confluent-kafka":
        from streamdrift._kafka_confluent import ConfluentProducer

        return ConfluentProducer(**kwargs)
    return _connect(KafkaProducer, kwargs, "producer")


class _ConnectProblems(logging.Handler):
    """What kafka-python logs while bootstrapping: it raises only "Unable to bootstrap" and logs
    the cause (authentication refused, TLS handshake failed) on the way."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.auth: str | None = None
        self.tls: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not our business
            return
        found = _AUTH_FAILED.search(message)
        if found:
            self.auth = found.group(0).rstrip(").")
        elif self.tls is None and _TLS_FAILED.search(message):
            self.tls = message[-300:]


_AUTH_FAILED = re.compile(r"(Authentication failed|SaslAuthenticationFailed)[^\n]*")
_TLS_FAILED = re.compile(r"SSL|CERTIFICATE|certificate|handshake", re.IGNORECASE)


def _connect(factory: Any, kwargs: dict[str, Any], role: str) -> Any:
    """``factory(**kwargs)``; a failure to connect becomes a :class:`ConnectError` naming the
    cause and the keys to check (never the secrets)."""
    problems = _ConnectProblems()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(problems)
    try:
        return factory(**kwargs)
    except KafkaError as exc:
        servers = ",".join(kwargs["bootstrap_servers"])
        protocol = kwargs.get("security_protocol", "PLAINTEXT")
        who = ""
        if protocol.startswith("SASL"):
            user = kwargs.get("sasl_plain_username")
            who = f" as {user!r} (SASL {kwargs.get('sasl_mechanism', 'PLAIN')})"
        if problems.auth:
            cause = f"authentication refused: {problems.auth}"
            fix = (
                "check kafka.client.sasl_mechanism, sasl_plain_username and sasl_plain_password "
                "(or STREAMDRIFT_KAFKA__CLIENT__SASL_PLAIN_PASSWORD[_FILE])"
            )
        elif problems.tls:
            cause = f"TLS failed: {problems.tls}"
            fix = "check kafka.client.security_protocol, ssl_cafile and ssl_check_hostname"
        elif who:  # brokers often just close the socket after a failed SASL exchange
            cause = (
                "the broker closed the connection during authentication (wrong user, password "
                "or mechanism, or not a SASL listener)"
            )
            fix = (
                "check kafka.client.sasl_mechanism, sasl_plain_username, sasl_plain_password "
                "and security_protocol"
            )
        else:
            cause = str(exc)
            fix = "check kafka.bootstrap_servers and kafka.client.security_protocol"
        raise ConnectError(
            f"Kafka {role} cannot connect to {servers}{who} over {protocol}: {cause}; {fix}"
        ) from exc
    finally:
        kafka_log.removeHandler(problems)


def to_raw(records: list[Any]) -> list[RawRecord]:
    """kafka-python ``ConsumerRecord``s as decoder input (``RawRecord``s are passed through)."""
    if records and type(records[0]) is RawRecord:
        return records
    make = tuple.__new__  # half the cost of the NamedTuple constructor
    return [
        make(RawRecord, (r.value, r.topic, r.partition, r.offset, r.timestamp, r.key))
        for r in records
    ]


@dataclass(slots=True)
class _Pending:
    topic: str
    key: bytes | None
    value: bytes
    future: Any = None
    attempts: int = 0


class Outbox:
    """Sends messages and keeps them until the broker acknowledged them."""

    def __init__(
        self,
        producer: Any,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        renew: Callable[[], Any] | None = None,
    ) -> None:
        self.producer = producer
        # Makes a new producer: kafka-python's (idempotent) producer turns a non-retriable error
        # (message too large, topic authorization) into a fatal state and fails every later
        # send, so retrying with it would never succeed once the cause is fixed.
        self.renew = renew
        self.n_renewed = 0
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
            if self.renew is not None and _fatal(failed):
                self._renew_producer()
            for item in failed:
                if item.future is None or item.future.is_done:
                    self._send(item)

    def _renew_producer(self) -> None:
        assert self.renew is not None
        log.warning("the producer hit a non-retriable error; replacing it before retrying")
        try:
            new = self.renew()
        except Exception as exc:  # broker unreachable right now: keep trying with the old one
            log.warning("making a new producer failed: %s", exc)
            return
        old, self.producer = self.producer, new
        self.n_renewed += 1
        try:
            old.close(timeout=1.0)
        except Exception as exc:
            log.warning("closing the failed producer: %s", exc)

    def reset_attempts(self) -> None:
        for item in self._pending:
            item.attempts = 0

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self.producer.close(timeout=timeout_s)
        except Exception as exc:
            log.warning("closing the producer failed: %s", exc)


def _fatal(items: list[_Pending]) -> bool:
    """Whether a send failed with an error that retrying on the same producer cannot fix."""
    return any(
        item.future is not None
        and item.future.is_done
        and item.future.failed()
        and not getattr(item.future.exception, "retriable", False)
        for item in items
    )


def _first_error(items: list[_Pending]) -> str:
    for item in items:
        fut = item.future
        if fut is not None and fut.is_done and fut.failed():
            return repr(fut.exception)
    return "no acknowledgement"
