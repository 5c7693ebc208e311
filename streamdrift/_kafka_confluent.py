"""confluent-kafka (librdkafka) behind the interface the service uses from kafka-python.

Chosen with ``kafka.library: confluent-kafka`` (extra ``streamdrift[confluent]``). The service,
the outbox and the checkpoint are unchanged: :class:`ConfluentConsumer` and
:class:`ConfluentProducer` offer the handful of kafka-python calls they make (``subscribe`` with a
rebalance listener, ``poll``, ``seek``, ``pause``/``resume``, ``highwater``, ``commit``,
``committed``; ``send`` returning a future, ``flush``, ``close``) with the same meaning:

- The rebalance listener runs inside ``poll`` on the calling thread (librdkafka serves its
  callbacks there). Seeks made by the listener while partitions are being assigned become the
  starting offsets of the assignment; without one a partition starts at the group's committed
  offset, else at ``auto_offset_reset``, as with kafka-python.
- ``poll`` returns ``{TopicPartition: [RawRecord, ...]}`` (kafka-python's ``TopicPartition``), so
  the decoder gets its input without a second copy.
- A send's future is resolved by librdkafka's delivery report (served by ``poll(0)`` after each
  send and by ``flush``); its ``exception`` has ``retriable`` like kafka-python's errors.
- A client that cannot reach the brokers at start raises :class:`ConnectError`, as kafka-python
  does: the constructor asks for the cluster's metadata within ``bootstrap_timeout_ms``.

Settings are the same ``kafka.client`` keys (kafka-python names), translated to librdkafka
properties by :func:`librdkafka_settings`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import TopicPartition

from streamdrift.errors import ConfigError, ConnectError
from streamdrift.events import RawRecord

__all__ = ["ConfluentConsumer", "ConfluentProducer", "available", "librdkafka_settings"]

log = logging.getLogger(__name__)

# kafka-python name -> librdkafka property (values converted by _value).
_NAMES = {
    "bootstrap_servers": "bootstrap.servers",
    "group_id": "group.id",
    "client_id": "client.id",
    "enable_auto_commit": "enable.auto.commit",
    "auto_offset_reset": "auto.offset.reset",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "ssl_check_hostname": "ssl.endpoint.identification.algorithm",
    "client_rack": "client.rack",
    "request_timeout_ms": "socket.timeout.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "group_instance_id": "group.instance.id",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_max_bytes": "fetch.max.bytes",
    "isolation_level": "isolation.level",
    "check_crcs": "check.crcs",
    "acks": "acks",
    "compression_type": "compression.type",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "max_request_size": "message.max.bytes",
    "retries": "retries",
    "delivery_timeout_ms": "delivery.timeout.ms",
    "enable_idempotence": "enable.idempotence",
}
# Read by this module, not passed to librdkafka.
_OURS = frozenset(["max_poll_records", "bootstrap_timeout_ms"])
UNSUPPORTED = frozenset(["sasl_kerberos_domain_name"])
"""kafka.client keys with no librdkafka equivalent (``check-config`` names them)."""

_DEFAULT_BOOTSTRAP_TIMEOUT_MS = 10_000


def available() -> bool:
    """Whether the confluent-kafka package is installed."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def _require() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:
        raise ConfigError(
            "kafka.library is confluent-kafka but the package is not installed; "
            "install it with: pip install 'streamdrift[confluent]' (or set kafka.library: "
            "kafka-python)"
        ) from exc
    return confluent_kafka


def _value(name: str, value: Any) -> Any:
    if name == "bootstrap_servers":
        return ",".join(value) if not isinstance(value, str) else value
    if name == "ssl_check_hostname":
        return "https" if value else "none"
    if name == "acks":
        return str(value)
    return value


def librdkafka_settings(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """kafka-python keyword arguments as librdkafka properties (``None`` values left out).

    >>> librdkafka_settings({"bootstrap_servers": ["a:1", "b:2"], "ssl_check_hostname": False,
    ...                      "sasl_plain_username": "u", "max_poll_records": 500})
    {'bootstrap.servers': 'a:1,b:2', 'ssl.endpoint.identification.algorithm': 'none', \
'sasl.username': 'u'}
    """
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if value is None or name in _OURS:
            continue
        if name in UNSUPPORTED:
            raise ConfigError(
                f"kafka.client.{name} is not supported with kafka.library: "
                "confluent-kafka; remove it or use kafka-python"
            )
        prop = _NAMES.get(name)
        if prop is None:
            raise ConfigError(f"no librdkafka equivalent of the kafka-python setting {name!r}")
        out[prop] = _value(name, value)
    return out


class _ClientError(Exception):
    """A librdkafka error with kafka-python's ``retriable`` attribute."""

    def __init__(self, error: Any) -> None:
        super().__init__(error.str() if hasattr(error, "str") else str(error))
        self.retriable = bool(error.retriable()) if hasattr(error, "retriable") else False
        self.code = error.code() if hasattr(error, "code") else None


_AUTH = re.compile(r"SASL|[Aa]uthenticat")
_TLS = re.compile(r"SSL|certificate|handshake", re.IGNORECASE)


def _check_connect(client: Any, kwargs: Mapping[str, Any], role: str, seen: list[str]) -> None:
    """Ask for metadata; a failure is a :class:`ConnectError` naming the cause and what to check."""
    ck = _require()
    timeout_s = (kwargs.get("bootstrap_timeout_ms") or _DEFAULT_BOOTSTRAP_TIMEOUT_MS) / 1000
    try:
        client.list_topics(timeout=timeout_s)
        return
    except ck.KafkaException as exc:
        raw = str(exc)
    client.poll(0.2)  # serves the error callbacks queued meanwhile: they name the cause
    detail = next((e for e in reversed(seen) if _AUTH.search(e) or _TLS.search(e)), raw)
    servers = _value("bootstrap_servers", kwargs.get("bootstrap_servers", ""))
    protocol = kwargs.get("security_protocol") or "PLAINTEXT"
    who = ""
    if protocol.startswith("SASL"):
        user = kwargs.get("sasl_plain_username")
        who = f" as {user!r} (SASL {kwargs.get('sasl_mechanism') or 'PLAIN'})"
    if _AUTH.search(detail) and protocol.startswith("SASL"):
        cause = f"authentication refused: {detail}"
        fix = "check kafka.client.sasl_mechanism, sasl_plain_username and sasl_plain_password"
    elif _TLS.search(detail):
        cause = f"TLS failed: {detail}"
        fix = "check kafka.client.security_protocol, ssl_cafile and ssl_check_hostname"
    else:
        cause = detail
        fix = "check kafka.bootstrap_servers and kafka.client.security_protocol"
    raise ConnectError(
        f"Kafka {role} (confluent-kafka) cannot connect to {servers}{who} over {protocol}: "
        f"{cause}; {fix}"
    )


def _client_settings(kwargs: Mapping[str, Any], role: str, seen: list[str]) -> dict[str, Any]:
    settings = librdkafka_settings(kwargs)

    def on_error(error: Any) -> None:
        text = error.str() if hasattr(error, "str") else str(error)
        seen.append(text)
        del seen[:-10]
        log.warning("Kafka %s: %s", role, text)

    settings["error_cb"] = on_error
    settings["logger"] = logging.getLogger(f"streamdrift.librdkafka.{role}")
    return settings


def _create(factory: Any, settings: dict[str, Any]) -> Any:
    try:
        return factory(settings)
    except Exception as exc:  # KafkaException: an unknown property or a value out of range
        message = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise ConfigError(
            f"kafka.client settings refused by librdkafka: {message}; fix them in the config "
            "(kafka-python names, see the configuration reference)"
        ) from exc


class ConfluentConsumer:
    """A librdkafka consumer with the kafka-python calls the service makes."""

    def __init__(self, **kwargs: Any) -> None:
        ck = _require()
        self._ck = ck
        self._max_records = int(kwargs.get("max_poll_records") or 500)
        self._seen: list[str] = []
        settings = _client_settings(kwargs, "consumer", self._seen)
        settings.setdefault("enable.partition.eof", False)
        if "group.id" not in settings:  # kafka-python's group_id=None: an unsubscribed reader
            settings["group.id"] = "streamdrift-unsubscribed"
        self._c = _create(ck.Consumer, settings)
        self._topics: dict[str, str] = {}
        self._assigning: dict[tuple[str, int], int] | None = None
        try:
            _check_connect(self._c, kwargs, "consumer", self._seen)
        except ConnectError:
            self._c.close()
            raise

    # -- group membership --------------------------------------------------------------------

    def subscribe(self, topics: Iterable[str], listener: Any = None) -> None:
        ck = self._ck

        def on_assign(consumer: Any, partitions: list[Any]) -> None:
            start = {(p.topic, p.partition): ck.OFFSET_STORED for p in partitions}
            self._assigning = start
            try:
                if listener is not None:
                    listener.on_partitions_assigned(
                        [TopicPartition(p.topic, p.partition) for p in partitions]
                    )
            finally:
                self._assigning = None
            consumer.assign([ck.TopicPartition(t, p, o) for (t, p), o in start.items()])

        def on_revoke(consumer: Any, partitions: list[Any]) -> None:
            if listener is not None:
                listener.on_partitions_revoked(
                    [TopicPartition(p.topic, p.partition) for p in partitions]
                )
            consumer.unassign()

        self._c.subscribe(list(topics), on_assign=on_assign, on_revoke=on_revoke)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in self._c.assignment()}

    # -- reading -----------------------------------------------------------------------------

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        """Up to ``max_records`` records by partition, waiting at most ``timeout_ms``."""
        messages = self._c.consume(max_records or self._max_records, timeout_ms / 1000)
        out: dict[Any, list[Any]] = {}
        by_key: dict[tuple[str, int], list[Any]] = {}
        # RawRecord through tuple.__new__: the NamedTuple constructor was 4% of the service's
        # main thread in a py-spy profile (0.8 vs 0.34 us a record).
        make = tuple.__new__
        for m in messages:
            if m.error() is not None:
                error = m.error()
                if error.fatal():
                    raise _ClientError(error)
                log.warning("Kafka consumer: %s", error.str())
                continue
            topic, partition = m.topic(), m.partition()
            records = by_key.get((topic, partition))
            if records is None:
                records = by_key[(topic, partition)] = []
                out[TopicPartition(topic, partition)] = records
            ts_type, ts = m.timestamp()
            value = (m.value(), topic, partition, m.offset(), ts if ts_type else None, m.key())
            records.append(make(RawRecord, value))
        return out

    def seek(self, tp: Any, offset: int) -> None:
        if self._assigning is not None and (tp.topic, tp.partition) in self._assigning:
            self._assigning[(tp.topic, tp.partition)] = int(offset)
        else:
            self._c.seek(self._ck.TopicPartition(tp.topic, tp.partition, int(offset)))

    def seek_to_beginning(self, tp: Any) -> None:
        self.seek(tp, self._ck.OFFSET_BEGINNING)

    def highwater(self, tp: Any) -> int | None:
        """The partition's end offset as of the last fetch (no request)."""
        _low, high = self._c.get_watermark_offsets(
            self._ck.TopicPartition(tp.topic, tp.partition), cached=True
        )
        return None if high is None or high < 0 else int(high)

    def pause(self, *tps: Any) -> None:
        if tps:
            self._c.pause([self._ck.TopicPartition(tp.topic, tp.partition) for tp in tps])

    def resume(self, *tps: Any) -> None:
        if tps:
            self._c.resume([self._ck.TopicPartition(tp.topic, tp.partition) for tp in tps])

    # -- offsets -----------------------------------------------------------------------------

    def _offsets(self, offsets: Mapping[Any, Any]) -> list[Any]:
        return [
            self._ck.TopicPartition(tp.topic, tp.partition, int(getattr(om, "offset", om)))
            for tp, om in offsets.items()
        ]

    def commit(self, offsets: Mapping[Any, Any]) -> None:
        if offsets:
            self._c.commit(offsets=self._offsets(offsets), asynchronous=False)

    def commit_async(self, offsets: Mapping[Any, Any]) -> None:
        if offsets:
            self._c.commit(offsets=self._offsets(offsets), asynchronous=True)

    def committed(self, tp: Any, timeout_ms: int = 5000) -> int | None:
        """The group's committed offset of ``tp``, ``None`` if it has none."""
        (got,) = self._c.committed(
            [self._ck.TopicPartition(tp.topic, tp.partition)], timeout=timeout_ms / 1000
        )
        if got.error is not None:
            raise _ClientError(got.error)
        return None if got.offset < 0 else int(got.offset)

    def close(self, autocommit: bool = False) -> None:
        """Leave the group (the revocation callback runs) and close; never commits by itself."""
        self._c.close()


class _Delivery:
    """kafka-python's ``FutureRecordMetadata`` as far as the outbox reads it."""

    __slots__ = ("exception", "is_done")

    def __init__(self) -> None:
        self.is_done = False
        self.exception: Exception | None = None

    def __call__(self, error: Any, _message: Any) -> None:
        self.exception = None if error is None else _ClientError(error)
        self.is_done = True

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None


class ConfluentProducer:
    """A librdkafka producer with kafka-python's ``send``/``flush``/``close``."""

    def __init__(self, **kwargs: Any) -> None:
        ck = _require()
        self._seen: list[str] = []
        settings = _client_settings(kwargs, "producer", self._seen)
        self._p = _create(ck.Producer, settings)
        _check_connect(self._p, kwargs, "producer", self._seen)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> _Delivery:
        """Queue one message; raises ``BufferError`` or ``KafkaException`` if it cannot."""
        future = _Delivery()
        self._p.produce(topic, value=value, key=key, on_delivery=future)
        self._p.poll(0)  # serve delivery reports as they come
        return future

    def flush(self, timeout: float | None = None) -> None:
        self._p.flush(-1 if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> None:
        self._p.flush(10.0 if timeout is None else timeout)
