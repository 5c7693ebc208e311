"""The bodies of ``streamdrift run`` and ``streamdrift replay`` (argument parsing is in cli.py)."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from streamdrift.config import Config, load_config, load_default_config

log = logging.getLogger("streamdrift")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python logs every reconnect at WARNING/ERROR; ours already say what matters.
    logging.getLogger("kafka").setLevel(
        logging.CRITICAL if level.upper() != "DEBUG" else logging.DEBUG
    )


def config_from(path: str | None) -> Config:
    return load_config(path) if path else load_default_config()


def check_reference(config: Config, source: str | None) -> None:
    """Startup: the reference profile the config names loads and matches it (or raise)."""
    if config.reference is not None:
        from streamdrift.reference import validate

        validate(config, source or "the embedded default config")


def run(config_path: str, max_seconds: float | None = None) -> int:
    """``streamdrift run``: the Kafka service until SIGTERM/SIGINT."""
    from streamdrift.app import Service
    from streamdrift.metrics import Metrics, MetricsServer

    config = load_config(config_path)
    check_reference(config, config_path)
    setup_logging(config.log_level)
    log.info("starting: %s", "; ".join(config.summary()))
    metrics = Metrics(max_series=config.metrics.max_series)
    service = Service(config, metrics=metrics)
    server = None
    if config.metrics.port:
        server = MetricsServer(
            metrics,
            config.metrics.host,
            config.metrics.port,
            health=lambda: service.healthy,
            ready=service.ready,
        )
        server.start()
        log.info("metrics on http://%s:%d/metrics", config.metrics.host, server.port)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the batch, checkpointing, leaving the group",
            signal.Signals(signum).name,
        )
        service.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        service.run(max_seconds=max_seconds)
    finally:
        if server is not None:
            server.stop()
    log.info("stopped")
    return 0


def replay(
    config_path: str | None,
    input_path: str,
    output_path: str | None,
    dead_letter_path: str | None,
    topic: str | None,
    quiet: bool = False,
) -> int:
    """``streamdrift replay``: the pipeline over a JSON-lines file or stdin."""
    from streamdrift.app import make_store, write_lines
    from streamdrift.app import replay as run_replay

    config = config_from(config_path)
    check_reference(config, config_path)
    setup_logging(config.log_level)
    store = make_store(config)
    with (
        _open_in(input_path) as src,
        _open_out(output_path, sys.stdout) as out,
        _open_out(dead_letter_path, sys.stderr) as bad,
    ):
        started = time.perf_counter()

        def progress(report: Any) -> None:
            # A live counter on a terminal only: in a log, \r-joined updates are one long line.
            if quiet or output_path is None or not sys.stderr.isatty():
                return
            rate = report.n_records / max(1e-9, time.perf_counter() - started)
            print(
                f"\r{report.n_records:,} events, {report.n_alerts} alerts, "
                f"{report.n_invalid} invalid ({rate:,.0f} events/s)",
                end="",
                file=sys.stderr,
                flush=True,
            )

        report, _ = run_replay(
            config,
            src,
            write_lines(out),
            write_lines(bad),
            topic=topic,
            store=store,
            on_batch=progress,
        )
    if not quiet:
        if output_path is not None and sys.stderr.isatty():
            print(file=sys.stderr)
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.invalid_by_reason.items()))
        print(
            f"replayed {report.n_records:,} events in {report.seconds:.2f} s "
            f"({report.n_records / max(report.seconds, 1e-9):,.0f} events/s): "
            f"{report.n_alerts} alerts, {report.n_invalid} dead letters"
            + (f" ({reasons})" if reasons else "")
            + (
                f", {report.skipped} lines skipped (already checkpointed)" if report.skipped else ""
            ),
            file=sys.stderr,
        )
    store.close()
    return 0


@contextlib.contextmanager
def _open_in(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
        return
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    with p.open("rb") as fh:
        yield fh


@contextlib.contextmanager
def _open_out(path: str | None, default: TextIO) -> Iterator[IO[bytes]]:
    if path is None or path == "-":
        default.flush()
        yield default.buffer
        default.buffer.flush()
        return
    with Path(path).open("wb") as fh:
        yield fh
