"""Wiring: the Kafka service (`streamdrift run`) and the embedded pipeline (`streamdrift replay`).

Both run the same stages — decode, detector bank, alert policy, ordered checkpoint — and differ
only in where records come from and where alerts go.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition

from streamdrift.alerts import Alert
from streamdrift.bank import DetectorBank
from streamdrift.checkpoint import Checkpointer, CheckpointReport, Task
from streamdrift.config import Config
from streamdrift.errors import DeliveryError, FencedError, StateError, StoreError
from streamdrift.events import DecodedBatch, RawRecord
from streamdrift.kafka import Outbox, client_description, make_consumer, make_producer, to_raw
from streamdrift.metrics import Metrics
from streamdrift.resets import StateReset
from streamdrift.state.base import Snapshot, StateStore, TaskId
from streamdrift.state.joins import joins_of
from streamdrift.state.memory import MemoryStore

__all__ = ["ReplayReport", "Service", "make_store", "replay"]

log = logging.getLogger("streamdrift")

_COMMITTED_TIMEOUT_MS = 5000
"""How long one read of a committed offset (on partition assignment) may wait."""


def make_store(config: Config) -> StateStore:
    """Redis when the config has a ``redis`` section, else in memory."""
    if config.redis is None:
        return MemoryStore()
    from streamdrift.state.redis import RedisStore

    store = RedisStore(config.redis.url.get_secret_value(), config.redis.key_prefix)
    store.verify()  # refused credentials or TLS: a clear error now, not retries forever
    return store


def open_task(
    store: StateStore,
    config: Config,
    task_id: TaskId,
    *,
    committed: Callable[[], int | None] | None = None,
) -> tuple[Task, int | None]:
    """Take ownership of a task: new fence, bank and position from its last checkpoint.

    Returns the task and the offset to seek to (``None``: no checkpoint, or a rebuild from the
    earliest offset). ``committed`` gives the consumer group's committed offset of the partition:
    one without a checkpoint in the store means the store lost it. A lost or unreadable checkpoint
    is never used nor silently replaced: the task starts with fresh detectors as
    ``checkpoint.on_state_loss`` says and carries the :class:`StateReset` in ``task.reset``
    (see :mod:`streamdrift.resets`).
    """
    fence = store.acquire(task_id)
    snap: Snapshot | None = None
    try:
        snap = store.load(task_id)
        if snap is not None:
            bank = DetectorBank.from_state(config, task_id, snap.state)
            return Task(task_id, bank, fence, snap.offset, saved_offset=snap.offset), snap.offset
    except StateError as exc:
        reason, detail = "state_corrupt", str(exc)
        lost_at = snap.offset if snap is not None else None
        store.discard(task_id, fence)  # saves are forward-only and check the stored offset
    else:
        known = committed() if committed is not None else None
        if known is None:
            return Task(task_id, DetectorBank(config, task_id), fence, None), None
        reason, lost_at = "state_lost", known
        detail = (
            f"no checkpoint of {task_id} in the state store, but the consumer group committed "
            f"offset {known} (committed only after a checkpoint): the store lost it"
        )
    recovery = config.checkpoint.on_state_loss
    resume = None
    if recovery == "rewarm":
        resume = lost_at if lost_at is not None else committed() if committed is not None else None
    reset = StateReset(task_id, reason, detail, recovery, lost_at, resume)
    log.error("state reset: %s", reset.describe())
    return Task(task_id, DetectorBank(config, task_id), fence, resume, reset=reset), resume


def process_records(
    task: Task,
    records: list[RawRecord],
    metrics: Metrics | None,
    store: StateStore | None = None,
) -> tuple[DecodedBatch, list[Alert]]:
    """Decode and detect one batch of a task; advances the task's position.

    With ``store`` the batch's labels are joined to their predictions (``streamdrift.labels``).
    """
    started = time.perf_counter()
    decoded = task.bank.decoder.decode_batch(records)
    for model, feature, ftype in decoded.new_types:
        log.info("%s: model %r feature %r inferred as %s", task.id, model, feature, ftype)
    observer = metrics.update_detector_gauges if metrics is not None else None
    alerts = task.bank.process(decoded, observer=observer)
    if task.bank.labels is not None and store is not None:
        alerts += join_labels(task, store, metrics, decoded)
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


def join_labels(
    task: Task, store: StateStore, metrics: Metrics | None, batch: DecodedBatch | None = None
) -> list[Alert]:
    """Join ``batch``'s labels, or (no batch) retry the task's waiting labels; the alerts."""
    joiner = task.bank.labels
    if joiner is None or (batch is None and not joiner.n_pending):
        return []
    joins = joins_of(store)
    if batch is None:
        alerts, report = joiner.retry(joins, time.time())
        task.dirty = task.dirty or bool(report.outcomes)
    else:
        alerts, report = joiner.process(batch, joins, time.time())
    if metrics is not None:
        metrics.record_join(task.id, report, joins)
        for alert in alerts:
            metrics.record_alert(
                alert.type, alert.detector, alert.model_id, alert.feature or "", alert.detected_at
            )
    return alerts


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
    if task.reset is not None:
        write_alert(task.reset.alert().to_json())
        if metrics is not None:
            metrics.record_state_reset(task.reset.reason, task.reset.recovery)
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
        decoded, alerts = process_records(task, records, metrics, store)
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
            _record_remembered(metrics, checkpointer.checkpoint([task]))
            since = 0
        if on_batch is not None:
            on_batch(report)
    _record_remembered(metrics, checkpointer.checkpoint([task]))
    if task.bank.labels is not None and task.bank.labels.n_pending:
        # Labels read before their prediction (same input, not yet checkpointed): once more.
        for alert in join_labels(task, store, metrics):
            write_alert(alert.to_json())
            report.n_alerts += 1
        _record_remembered(metrics, checkpointer.checkpoint([task]))
    report.seconds = time.perf_counter() - started
    return report, task.bank


def _record_remembered(metrics: Metrics | None, report: CheckpointReport) -> None:
    if metrics is not None:
        for model, result in report.remembered:
            metrics.record_remembered(model, result)


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
        self.outbox = (
            Outbox(producer)
            if producer is not None
            else Outbox(make_producer(config), renew=functools.partial(make_producer, config))
        )
        self.checkpointer = Checkpointer(self.store, self.outbox, self._commit)
        self.tasks: dict[TaskId, Task] = {}
        self.stop_event = threading.Event()
        self.healthy = True
        self._ready_reason = "starting: no partitions assigned yet"
        self._paused = False
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._backoff = _Backoff()
        self._offsets_reader: Any = None
        self._in_listener = False
        self._last_label_retry = 0.0

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
                service._in_listener = True
                try:
                    service._on_revoked([TaskId(tp.topic, tp.partition) for tp in revoked])
                finally:
                    service._in_listener = False

            def on_partitions_assigned(self, assigned: Any) -> None:
                service._on_assigned(list(assigned))

        return Listener()

    def _on_revoked(self, revoked: list[TaskId]) -> None:
        tasks = [self.tasks[t] for t in revoked if t in self.tasks]
        if tasks:
            try:
                self._checkpoint(tasks, force=False)
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
                    committed = functools.partial(self._committed, tp)
                    task, resume = open_task(self.store, self.config, task_id, committed=committed)
                    break
                except StoreError as exc:
                    self._store_error("load", exc)
                    if self.stop_event.wait(self._backoff.next()):
                        return
                except FencedError as exc:  # taken over already; the rebalance will revoke it
                    log.warning("%s", exc)
                    task = None
                    break
            self._backoff.reset()
            if task is None:
                continue
            self.tasks[task_id] = task
            if resume is not None:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition), resume)
            if task.reset is not None:
                self._emit_reset(task.reset)
                if resume is None:  # rebuild: from the earliest offset Kafka still has
                    self.consumer.seek_to_beginning(TopicPartition(tp.topic, tp.partition))
            log.info(
                "assigned %s (fence %d, %s)",
                task_id,
                task.fence,
                f"resuming at offset {resume}" if resume is not None else "no checkpoint yet",
            )
        self._owned_changed()

    def _committed(self, tp: Any) -> int | None:
        """The group's committed offset of ``tp`` (retried: a lost state must not go unnoticed).

        Asked through a second, unsubscribed consumer of the same group: the rebalance listener
        runs on the group consumer's IO thread, which cannot block on its own requests.
        """
        while True:
            try:
                reader = self._offsets_reader_consumer()
                # Bounded: an unbounded wait here would hold the rebalance with no word in the log.
                committed = reader.committed(
                    TopicPartition(tp.topic, tp.partition), timeout_ms=_COMMITTED_TIMEOUT_MS
                )
                return None if committed is None else int(committed)
            except Exception as exc:
                if self.metrics is not None:
                    self.metrics.kafka_error("commit")
                log.warning("reading the committed offset of %s failed: %s", tp, exc)
                if self.stop_event.wait(self._backoff.next()):
                    return None

    def _offsets_reader_consumer(self) -> Any:
        if self._offsets_reader is None:
            self._offsets_reader = make_consumer(self.config, client_id="streamdrift-offsets")
        return self._offsets_reader

    def _emit_reset(self, reset: StateReset) -> None:
        """The ``state_reset`` alert goes out before any checkpoint of the reset task."""
        alert = reset.alert()
        self.outbox.send(self.config.kafka.alert_topic, alert.to_json(), alert.key)
        if self.metrics is not None:
            self.metrics.record_state_reset(reset.reason, reset.recovery)

    def _checkpoint(self, tasks: Iterable[Task], *, force: bool = False) -> CheckpointReport:
        """The ordered checkpoint; a task whose checkpoint the store lost is written back.

        Only an owner can find that out mid-stream (its fenced save sees the fence or its last
        checkpoint gone), and its bank is complete up to its position: it takes a new fence,
        announces a ``state_reset`` (recovery ``restored``) and saves again at once.
        """
        todo = list(tasks)
        report = self.checkpointer.checkpoint(todo, force=force)
        lost = [t for t in todo if t.id in report.lost]
        if not lost:
            return report
        for task in lost:
            fence = self.store.acquire(task.id)
            why, at = task.lost or "", task.next_offset
            reset = StateReset(task.id, "state_lost", why, "restored", task.saved_offset, at)
            log.error("state reset: %s", reset.describe())
            self._emit_reset(reset)
            task.fence, task.saved_offset, task.lost, task.dirty = fence, None, None, True
        again = self.checkpointer.checkpoint(lost, force=True)
        report.saved += again.saved
        report.fenced += again.fenced
        report.lost = again.lost
        report.remembered += again.remembered
        report.nbytes += again.nbytes
        report.seconds += again.seconds
        return report

    def _owned_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.set_owned(len(self.tasks))
        self._set_ready("" if self.tasks else "no partitions assigned")

    # -- main loop -----------------------------------------------------------------------------

    def run(self, max_seconds: float | None = None) -> None:
        """Consume until :attr:`stop_event` is set (SIGTERM/SIGINT) or ``max_seconds`` passed."""
        k = self.config.kafka
        # Made here, not inside the rebalance listener (the group consumer's IO thread).
        self._offsets_reader_consumer()
        log.info("consuming %s with %s", ", ".join(k.input_topics), client_description(self.config))
        self.consumer.subscribe(topics=list(k.input_topics), listener=self._listener())
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._poll_once(k.poll_timeout_ms, k.max_poll_records)
                self._retry_labels()
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
            decoded, alerts = process_records(task, to_raw(records), self.metrics, self.store)
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

    def _retry_labels(self) -> None:
        """Every ``labels.retry_seconds``: waiting labels look for their prediction again."""
        now = time.monotonic()
        if now - self._last_label_retry < self.config.labels.retry_seconds:
            return
        self._last_label_retry = now
        for task in list(self.tasks.values()):
            if task.fenced or task.bank.labels is None:
                continue
            for alert in join_labels(task, self.store, self.metrics):
                self.outbox.send(self.config.kafka.alert_topic, alert.to_json(), alert.key)

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
            report = self._checkpoint(self.tasks.values(), force=force)
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
        _record_remembered(self.metrics, report)
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
            tps = {
                TopicPartition(t.topic, t.partition): OffsetAndMetadata(o, "", -1)
                for t, o in offsets.items()
            }
            if self._in_listener:
                # The revocation checkpoint runs on the consumer's IO thread, where a blocking
                # commit is refused: send it without waiting (it precedes the rejoin).
                self.consumer.commit_async(tps)
            else:
                self.consumer.commit(tps)
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
                self._checkpoint(self.tasks.values(), force=False)
                break
            except (DeliveryError, StoreError, FencedError) as exc:
                log.error("final checkpoint failed: %s", exc)
                time.sleep(1.0)
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:
            log.warning("closing the consumer failed: %s", exc)
        if self._offsets_reader is not None:
            try:
                self._offsets_reader.close(autocommit=False)
            except Exception as exc:
                log.warning("closing the offsets reader failed: %s", exc)
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
