"""Wiring: the Kafka service (`streamdrift run`) and the embedded pipeline (`streamdrift replay`).

Both run the same stages — decode, detector bank, alert policy, ordered checkpoint — and differ
only in where records come from and where alerts go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition

from streamdrift.alerts import Alert
from streamdrift.bank import DetectorBank
from streamdrift.checkpoint import Checkpointer, Task
from streamdrift.config import Config
from streamdrift.errors import DeliveryError, FencedError, StateError, StoreError
from streamdrift.events import DecodedBatch, RawRecord
from streamdrift.kafka import Outbox, make_consumer, make_producer, to_raw
from streamdrift.metrics import Metrics
from streamdrift.state.base import StateStore, TaskId
from streamdrift.state.memory import MemoryStore

__all__ = ["ReplayReport", "Service", "make_store", "replay"]

log = logging.getLogger("streamdrift")


def make_store(config: Config) -> StateStore:
    """Redis when the config has a ``redis`` section, else in memory."""
    if config.redis is None:
        return MemoryStore()
    from streamdrift.state.redis import RedisStore

    return RedisStore(config.redis.url.get_secret_value(), config.redis.key_prefix)


def open_task(store: StateStore, config: Config, task_id: TaskId) -> tuple[Task, int | None]:
    """Take ownership of a task: new fence, bank and position from its last checkpoint."""
    fence = store.acquire(task_id)
    snap = store.load(task_id)
    if snap is None:
        return Task(task_id, DetectorBank(config, task_id), fence, None), None
    try:
        bank = DetectorBank.from_state(config, task_id, snap.state)
    except StateError as exc:
        # Never continue with a bank we cannot read; start this partition afresh from the saved
        # position and say so loudly.
        log.error("%s; starting %s with fresh detectors at offset %d", exc, task_id, snap.offset)
        bank = DetectorBank(config, task_id)
    task = Task(task_id, bank, fence, snap.offset, saved_offset=snap.offset)
    return task, snap.offset


def process_records(
    task: Task, records: list[RawRecord], metrics: Metrics | None
) -> tuple[DecodedBatch, list[Alert]]:
    """Decode and detect one batch of a task; advances the task's position."""
    started = time.perf_counter()
    decoded = task.bank.decoder.decode_batch(records)
    for model, feature, ftype in decoded.new_types:
        log.info("%s: model %r feature %r inferred as %s", task.id, model, feature, ftype)
    observer = metrics.update_detector_gauges if metrics is not None else None
    alerts = task.bank.process(decoded, observer=observer)
    task.next_offset = records[-1].offset + 1
    task.dirty = True
    if metrics is not None:
        now = time.time()
        metrics.record_batch(
            task.id.topic,
            len(records),
            decoded.n_decoded,
            decoded.invalid_by_reason,
            time.perf_counter() - started,
        )
        for cols in decoded.per_model.values():
            metrics.observe_latency(now, cols.event_times)
        for alert in alerts:
            metrics.record_alert(
                alert.type, alert.detector, alert.model_id, alert.feature or "", alert.detected_at
            )
    return decoded, alerts


# -- embedded mode ---------------------------------------------------------------------------


@dataclass
class ReplayReport:
    n_records: int = 0
    n_decoded: int = 0
    n_invalid: int = 0
    n_alerts: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: int = 0


def replay(
    config: Config,
    lines: Iterable[bytes],
    write_alert: Callable[[bytes], None],
    write_dead_letter: Callable[[bytes], None],
    *,
    topic: str | None = None,
    store: StateStore | None = None,
    metrics: Metrics | None = None,
    on_batch: Callable[[ReplayReport], None] | None = None,
) -> tuple[ReplayReport, DetectorBank]:
    """Run the pipeline over JSON lines; ``source.offset`` is the 0-based line number.

    With a store that holds a checkpoint for this input (Redis configured), lines before the
    saved position are skipped and the bank continues from its state.
    """
    task_id = TaskId(topic or config.kafka.input_topics[0], 0)
    store = store if store is not None else MemoryStore()
    task, resume = open_task(store, config, task_id)
    checkpointer = Checkpointer(store, outbox=None)
    report = ReplayReport()
    started = time.perf_counter()
    batch_size = config.kafka.max_poll_records
    every = config.checkpoint.every_events
    since = 0
    for chunk in _chunks(_numbered(lines), batch_size):
        records = [
            RawRecord(value, task_id.topic, 0, n) for n, value in chunk if n >= (resume or 0)
        ]
        report.skipped += len(chunk) - len(records)
        if not records:
            continue
        decoded, alerts = process_records(task, records, metrics)
        for letter in decoded.invalid:
            write_dead_letter(letter.to_json())
        for alert in alerts:
            write_alert(alert.to_json())
        report.n_records += len(records)
        report.n_decoded += decoded.n_decoded
        report.n_invalid += len(decoded.invalid)
        report.n_alerts += len(alerts)
        for reason, n in decoded.invalid_by_reason.items():
            report.invalid_by_reason[reason] = report.invalid_by_reason.get(reason, 0) + n
        since += len(records)
        if since >= every:
            checkpointer.checkpoint([task])
            since = 0
        if on_batch is not None:
            on_batch(report)
    checkpointer.checkpoint([task])
    report.seconds = time.perf_counter() - started
    return report, task.bank


def _numbered(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(lines):
        yield n, line.rstrip(b"\r\n")


def _chunks(items: Iterator[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_lines(stream: IO[bytes]) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.write(data + b"\n")

    return write


# -- Kafka mode ------------------------------------------------------------------------------


class Service:
    """The Kafka service: group consumer, banks per owned partition, ordered checkpoints."""

    def __init__(
        self,
        config: Config,
        *,
        store: StateStore | None = None,
        metrics: Metrics | None = None,
        consumer: Any = None,
        producer: Any = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.store = store if store is not None else make_store(config)
        self.consumer = consumer if consumer is not None else make_consumer(config)
        self.outbox = Outbox(producer if producer is not None else make_producer(config))
        self.checkpointer = Checkpointer(self.store, self.outbox, self._commit)
        self.tasks: dict[TaskId, Task] = {}
        self.stop_event = threading.Event()
        self.healthy = True
        self._ready_reason = "starting: no partitions assigned yet"
        self._paused = False
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._backoff = _Backoff()

    # -- readiness -----------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        return (self._ready_reason == "", self._ready_reason or "ready")

    def _set_ready(self, reason: str) -> None:
        if reason != self._ready_reason:
            if reason:
                log.warning("not ready: %s", reason)
            else:
                log.info("ready")
        self._ready_reason = reason
        if self.metrics is not None:
            self.metrics.set_ready(reason == "")

    # -- rebalance -----------------------------------------------------------------------------

    def _listener(self) -> Any:
        service = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                service._on_revoked([TaskId(tp.topic, tp.partition) for tp in revoked])

            def on_partitions_assigned(self, assigned: Any) -> None:
                service._on_assigned(list(assigned))

        return Listener()

    def _on_revoked(self, revoked: list[TaskId]) -> None:
        tasks = [self.tasks[t] for t in revoked if t in self.tasks]
        if tasks:
            try:
                self.checkpointer.checkpoint(tasks, force=False)
            except (DeliveryError, StoreError) as exc:
                # The next owner resumes from the last good checkpoint: alerts may repeat, with
                # the same ids; nothing is lost.
                log.error(
                    "checkpoint on revocation of %s failed: %s", [str(t) for t in revoked], exc
                )
        for t in revoked:
            self.tasks.pop(t, None)
            if self.metrics is not None:
                self.metrics.forget_partition(t.topic, t.partition)
        log.info("revoked %s", ", ".join(map(str, revoked)) or "nothing")
        self._owned_changed()

    def _on_assigned(self, assigned: list[Any]) -> None:
        for tp in assigned:
            task_id = TaskId(tp.topic, tp.partition)
            while True:
                try:
                    task, resume = open_task(self.store, self.config, task_id)
                    break
                except StoreError as exc:
                    self._store_error("load", exc)
                    if self.stop_event.wait(self._backoff.next()):
                        return
            self._backoff.reset()
            self.tasks[task_id] = task
            if resume is not None:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition), resume)
            log.info(
                "assigned %s (fence %d, %s)",
                task_id,
                task.fence,
                f"resuming at offset {resume}" if resume is not None else "no checkpoint yet",
            )
        self._owned_changed()

    def _owned_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.set_owned(len(self.tasks))
        self._set_ready("" if self.tasks else "no partitions assigned")

    # -- main loop -----------------------------------------------------------------------------

    def run(self, max_seconds: float | None = None) -> None:
        """Consume until :attr:`stop_event` is set (SIGTERM/SIGINT) or ``max_seconds`` passed."""
        k = self.config.kafka
        self.consumer.subscribe(topics=list(k.input_topics), listener=self._listener())
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._poll_once(k.poll_timeout_ms, k.max_poll_records)
                self._maybe_checkpoint()
        finally:
            self.shutdown()

    def _poll_once(self, timeout_ms: int, max_records: int) -> None:
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except Exception as exc:
            if self.metrics is not None:
                self.metrics.kafka_error("poll")
            log.warning("poll failed: %s; retrying", exc)
            self.stop_event.wait(self._backoff.next())
            return
        k = self.config.kafka
        for tp, records in polled.items():
            task = self.tasks.get(TaskId(tp.topic, tp.partition))
            if task is None or task.fenced or not records:
                continue
            decoded, alerts = process_records(task, to_raw(records), self.metrics)
            for letter in decoded.invalid:
                if k.dead_letter_topic is not None:
                    self.outbox.send(k.dead_letter_topic, letter.to_json(), letter.key)
                else:  # configured off: counted (events_invalid_total) and logged, not sent
                    log.warning(
                        "invalid event %s[%d]@%d: %s (%s)",
                        letter.topic,
                        letter.partition,
                        letter.offset,
                        letter.reason,
                        letter.detail,
                    )
                if self.metrics is not None:
                    self.metrics.record_dead_letter(letter.reason)
            for alert in alerts:
                self.outbox.send(k.alert_topic, alert.to_json(), alert.key)
            self._since_checkpoint += len(records)
        self._update_lag()

    def _update_lag(self) -> None:
        """Lag per owned partition from the high watermark the last fetch reported (no request)."""
        if self.metrics is None or not self.tasks:
            return
        for task_id, task in self.tasks.items():
            try:
                end = self.consumer.highwater(TopicPartition(task_id.topic, task_id.partition))
            except Exception:  # not assigned any more, or no fetch yet
                continue
            if end is not None and task.next_offset is not None:
                self.metrics.set_lag(
                    task_id.topic, task_id.partition, max(0, end - task.next_offset)
                )

    def _maybe_checkpoint(self, force: bool = False) -> bool:
        cp = self.config.checkpoint
        due = (
            force
            or self._paused
            or self._since_checkpoint >= cp.every_events
            or (time.monotonic() - self._last_checkpoint >= cp.every_seconds)
        )
        if not due:
            return True
        try:
            report = self.checkpointer.checkpoint(self.tasks.values(), force=force)
        except DeliveryError as exc:
            self._checkpoint_failed("kafka", "produce", exc)
            return False
        except StoreError as exc:
            self._checkpoint_failed("redis", "save", exc)
            return False
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._backoff.reset()
        if self._paused:
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False
            self._owned_changed()
        if report.fenced:
            for task_id in report.fenced:
                self.tasks.pop(task_id, None)
            self._owned_changed()
        if self.metrics is not None:
            result = "fenced" if report.fenced else "ok"
            self.metrics.record_checkpoint(report.seconds, report.nbytes, result)
        return True

    def _checkpoint_failed(self, system: str, op: str, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.record_checkpoint(0.0, 0, "failed")
            if system == "redis":
                self.metrics.redis_error(op)
            else:
                self.metrics.kafka_error(op)
        self._set_ready(f"checkpoint failed ({system}): {exc}")
        # Backpressure: stop reading until the checkpoint goes through, so that nothing piles up
        # behind an unavailable Redis or alert topic.
        if not self._paused:
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
        self.outbox.reset_attempts()
        self.stop_event.wait(self._backoff.next())

    def _store_error(self, op: str, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.redis_error(op)
        self._set_ready(f"state store unavailable: {exc}")

    def _commit(self, offsets: dict[TaskId, int]) -> None:
        try:
            self.consumer.commit(
                {
                    TopicPartition(t.topic, t.partition): OffsetAndMetadata(o, "", -1)
                    for t, o in offsets.items()
                }
            )
        except (
            Exception
        ) as exc:  # Redis holds the truth; a failed Kafka commit only affects lag tools
            if self.metrics is not None:
                self.metrics.kafka_error("commit")
            log.warning("committing offsets to Kafka failed: %s", exc)

    def shutdown(self) -> None:
        """Final checkpoint (retried briefly), then close the clients."""
        for _ in range(3):
            try:
                self.checkpointer.checkpoint(self.tasks.values(), force=False)
                break
            except (DeliveryError, StoreError, FencedError) as exc:
                log.error("final checkpoint failed: %s", exc)
                time.sleep(1.0)
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:
            log.warning("closing the consumer failed: %s", exc)
        self.outbox.close()
        self.store.close()
        self.healthy = False


class _Backoff:
    """Exponential backoff with a cap, for retries against Redis and Kafka."""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self.first, self.cap, self._current = first, cap, first

    def next(self) -> float:
        value = self._current
        self._current = min(self.cap, self._current * 2)
        return value

    def reset(self) -> None:
        self._current = self.first
