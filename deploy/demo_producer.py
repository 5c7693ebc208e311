"""Demo traffic for the compose deployment: synthetic model events into Kafka at a steady rate.

Runs from the streamdrift image (``python /opt/streamdrift/demo_producer.py``) and uses the
installed package's :func:`streamdrift.synthetic.synthetic_events`: every round generates a fresh
stream per model with a new seed (a known drift at half-way and 0.2% outliers each time), with
event times on the wall clock, and sends it keyed by model id. Loops until SIGTERM/SIGINT or
``--max-events``.

Every option has an environment default (``DEMO_*``), so compose configures it without a
command line::

    python deploy/demo_producer.py --bootstrap 127.0.0.1:9092 --rate 500 --max-events 10000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from itertools import count
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamdrift.synthetic import synthetic_events

_stop = False


def _on_signal(signum: int, _frame: object) -> None:
    global _stop
    _stop = True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=env("DEMO_BOOTSTRAP", "kafka:9092"),
                        help="Kafka bootstrap servers (DEMO_BOOTSTRAP)")
    parser.add_argument("--topic", default=env("DEMO_TOPIC", "model-events"),
                        help="input topic of the streamdrift config (DEMO_TOPIC)")
    parser.add_argument("--rate", type=float, default=float(env("DEMO_RATE", "200")),
                        help="events per second, all models together (DEMO_RATE)")
    parser.add_argument("--models", default=env("DEMO_MODELS", "fraud-v3,credit-v1"),
                        help="comma-separated model ids (DEMO_MODELS)")
    parser.add_argument("--events-per-round", type=int,
                        default=int(env("DEMO_EVENTS_PER_ROUND", "20000")),
                        help="events per model and seed; the drift is at half-way "
                        "(DEMO_EVENTS_PER_ROUND)")
    parser.add_argument("--seed", type=int, default=int(env("DEMO_SEED", "1")),
                        help="first seed; each round and model uses the next one (DEMO_SEED)")
    parser.add_argument("--max-events", type=int, default=int(env("DEMO_MAX_EVENTS", "0")),
                        help="stop after this many events; 0 = run until stopped "
                        "(DEMO_MAX_EVENTS)")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.rate <= 0 or args.events_per_round < 1 or not args.models:
        parser.error("--rate and --events-per-round must be positive, --models not empty")
    return args


def rounds(models: list[str], n: int, first_seed: int, rate: float) -> Iterator[dict[str, Any]]:
    """Events of every model interleaved, round after round, each round with new seeds."""
    seeds = count(first_seed)
    while True:
        start = time.time()
        # Each model's share of the rate, so event times follow the wall clock as they are sent.
        streams = []
        for model in models:
            seed = next(seeds)
            events, _truth = synthetic_events(n, seed=seed, model_id=model, start_ts=start,
                                              rate_per_s=rate / len(models))
            for i, event in enumerate(events):  # ids unique across rounds, not only within one
                event["event_id"] = f"{model}-s{seed}-{i}"
            streams.append(events)
        for i in range(n):
            for stream in streams:
                yield stream[i]


def connect(bootstrap: str, timeout_s: float = 300.0) -> KafkaProducer:
    """A producer, retrying while the brokers are not up yet (kafka-python 3 raises a
    KafkaTimeoutError after its own bootstrap timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=20,
                                 client_id="streamdrift-demo-producer")
        except KafkaError:
            if _stop or time.monotonic() > deadline:
                raise
            print(f"demo producer: waiting for Kafka at {bootstrap}", file=sys.stderr, flush=True)
            time.sleep(2.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    producer = connect(args.bootstrap)
    print(f"demo producer: {args.rate:g} events/s of {','.join(args.models)} into "
          f"{args.topic} at {args.bootstrap}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    sent = 0
    last_report = t0
    try:
        for event in rounds(args.models, args.events_per_round, args.seed, args.rate):
            if _stop or (args.max_events and sent >= args.max_events):
                break
            producer.send(args.topic, key=event["model_id"].encode(),
                          value=json.dumps(event, separators=(",", ":")).encode())
            sent += 1
            ahead = t0 + sent / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if time.monotonic() - last_report >= 30.0:
                last_report = time.monotonic()
                print(f"demo producer: {sent} events sent", file=sys.stderr, flush=True)
        producer.flush(timeout=60)
    except KafkaError as exc:
        print(f"demo producer: error: {exc!r}", file=sys.stderr)
        return 1
    finally:
        producer.close(timeout=10)
    print(f"demo producer: stopped after {sent} events", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
