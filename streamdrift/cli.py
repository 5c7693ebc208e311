"""The ``streamdrift`` command: ``run``, ``replay`` and ``check-config``.

Errors are one line saying what is wrong and how to fix it; ``--debug`` shows the traceback.
Exit codes: 0 success, 2 invalid configuration or usage, 1 any other error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from streamdrift import __version__
from streamdrift.config import ConfigValidationError, load_config
from streamdrift.errors import ConfigError, StreamdriftError

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID_CONFIG = 2


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions to the terminal; keeps text with line breaks (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line with the fix (argparse's default prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_INVALID_CONFIG,
            f"{self.prog}: error: {message}; see `{self.prog} --help`\n",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    parser = _Parser(
        prog="streamdrift",
        description="Drift and outlier monitoring for ML model traffic on Kafka: incremental "
        "detectors (ADWIN, Page-Hinkley, PSI, a streaming isolation forest) per model and "
        "feature, state in Redis, alerts and dead letters to Kafka topics. `demo` and "
        "`replay` run the same pipeline without Kafka or Redis.",
        epilog="examples:\n"
        "  streamdrift demo                                   # see it work, nothing else needed\n"
        "  streamdrift check-config my.yaml                   # validate a configuration\n"
        "  streamdrift run --config my.yaml                   # the Kafka service\n"
        "  streamdrift replay --input events.jsonl            # the pipeline over a file\n"
        "  streamdrift reference build --config my.yaml --input train.csv --out ref.json\n"
        "\n"
        "`streamdrift COMMAND --help` describes each command. Exit codes: 0 ok, 1 error, "
        "2 invalid configuration or usage.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"streamdrift {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when something fails"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # -- run, replay ----------------------------------------------------------------------------
    run = commands.add_parser(
        "run",
        help="consume Kafka, keep state in Redis, publish alerts (until SIGTERM/SIGINT)",
        description="Join the consumer group, run the detectors per owned partition, produce "
        "alerts and dead letters, checkpoint state and offsets to Redis. SIGTERM/SIGINT: finish "
        "the batch, checkpoint, leave the group. Serves /metrics, /healthz and /readyz on "
        "metrics.host:port.",
        epilog="examples:\n"
        "  streamdrift run --config my.yaml\n"
        "  STREAMDRIFT_REDIS__URL=redis://redis:6379/0 streamdrift run --config my.yaml\n"
        "  streamdrift --debug run --config my.yaml          # tracebacks on errors",
        formatter_class=_Formatter,
    )
    run.add_argument("--config", required=True, help="YAML configuration file")
    run.add_argument(
        "--max-seconds", type=float, default=None, help="stop by itself after this long (tests)"
    )
    run.set_defaults(handler=_cmd_run)

    replay = commands.add_parser(
        "replay",
        help="run the same pipeline over a JSON-lines file or stdin (embedded mode)",
        description="No Kafka needed: state in memory (or in Redis if the config has a redis "
        "section: it then resumes after the last checkpointed line), alerts as JSON lines; "
        "source.offset is the 0-based line number. Progress and a summary go to stderr.",
        epilog="examples:\n"
        "  cat events.jsonl | streamdrift replay                  # embedded default config\n"
        "  streamdrift replay --config my.yaml --input events.jsonl --output alerts.jsonl \\\n"
        "      --dead-letter bad.jsonl\n"
        "  python -m streamdrift.synthetic --events 20000 | streamdrift replay --quiet",
        formatter_class=_Formatter,
    )
    replay.add_argument(
        "--config", default=None, help="YAML configuration (default: the embedded default)"
    )
    replay.add_argument("--input", default="-", help="JSON-lines file of events ('-' = stdin)")
    replay.add_argument("--output", default=None, help="alerts file (default: stdout)")
    replay.add_argument(
        "--dead-letter", default=None, help="dead-letter file for rejected lines (default: stderr)"
    )
    replay.add_argument(
        "--topic",
        default=None,
        help="topic name to put in alerts' source (default: the config's first input topic)",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    replay.set_defaults(handler=_cmd_replay)

    # -- demo ----------------------------------------------------------------------------------
    demo = commands.add_parser(
        "demo",
        help="see it work in seconds: a synthetic stream with known drifts through the pipeline",
        description="Generate a synthetic fraud-model stream (5 numeric and 2 categorical "
        "features and a score) with three drifts at known points, 0.2% injected outliers and "
        "a few malformed lines, run it through the embedded pipeline of `streamdrift replay` "
        "(the embedded default config, state in memory; no Kafka, no Redis) and print each "
        "alert next to the injected truth: missed drifts, false alarms, outlier precision and "
        "recall, throughput. Exit code 0 when the stated tolerances are met, 1 otherwise. "
        "With --kafka it produces such a stream into a topic instead.",
        epilog="examples:\n"
        "  streamdrift demo\n"
        "  streamdrift demo --plot demo.png        # needs: pip install 'streamdrift[plot]'\n"
        "  streamdrift demo --events 100000 --json > summary.json\n"
        "  streamdrift demo --kafka 127.0.0.1:9092 --topic model-events --rate 500 "
        "--events 20000\n"
        "  streamdrift demo --kafka kafka:9092 --topic model-events --events 0   # until stopped",
        formatter_class=_Formatter,
    )
    demo.add_argument(
        "--events",
        type=int,
        default=None,
        help="events to generate (default 40,000); with --kafka: events to produce in total, "
        "0 = until SIGTERM/SIGINT (default 40,000)",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the stream (default 7)")
    demo.add_argument(
        "--config",
        default=None,
        help="YAML configuration to run instead of the embedded default (its mapping must "
        "read the demo's event shape: model_id, features.*, prediction)",
    )
    demo.add_argument("--plot", metavar="FILE.png", default=None,
                      help="also draw each feature, the detectors' statistics against their "
                      "thresholds, the alerts and the true drift points into this PNG")
    demo.add_argument("--output", metavar="ALERTS.jsonl", default=None,
                      help="also write the alerts as JSON lines to this file")
    demo.add_argument("--json", action="store_true",
                      help="print the summary as one JSON document on stdout instead of text")
    demo.add_argument("--quiet", action="store_true", help="no progress on stderr")
    kafka_group = demo.add_argument_group("producing into Kafka instead")
    kafka_group.add_argument("--kafka", metavar="BOOTSTRAP", default=None,
                             help="produce the stream to these brokers (host:port[,host:port])")
    kafka_group.add_argument("--topic", default=None, help="topic to produce to (with --kafka)")
    kafka_group.add_argument("--rate", type=float, default=1000.0,
                             help="events per second over all models, 0 = as fast as possible "
                             "(default 1000)")
    kafka_group.add_argument("--models", default="fraud-v3",
                             help="comma-separated model ids, interleaved (default fraud-v3)")
    demo.set_defaults(handler=_cmd_demo)

    # -- reference -----------------------------------------------------------------------------
    reference = commands.add_parser(
        "reference",
        help="build the reference profile PSI and the isolation forest start from",
        description="Reference profiles from training data: PSI compares each window with the "
        "training distribution instead of the stream's first 5,000 values.",
        epilog="examples:\n"
        "  streamdrift reference build --config my.yaml --input train.csv --out ref.json\n"
        "  streamdrift reference build --help",
        formatter_class=_Formatter,
    )
    ref_commands = reference.add_subparsers(dest="reference_command", required=True,
                                            metavar="SUBCOMMAND")
    build = ref_commands.add_parser(
        "build",
        help="profile training data (csv, jsonl, parquet) into a reference document",
        description="Map every row of the training data with the config's mapping (the "
        "service's decoder: paths, types, missing values) and write, per model, the PSI "
        "histogram of every feature and the prediction (the config's PSI bins and "
        "max_categories) and the isolation forest's workspace limits, as one versioned JSON "
        "document. CSV and Parquet column names are the events' dotted paths "
        "(features.amount); CSV numbers are parsed, empty cells are missing. Then set "
        "`reference: {path: REF}` (or `{redis_key: KEY}` with --to-redis) in the config; "
        "check-config and startup report any mismatch between profile and config.",
        epilog="examples:\n"
        "  streamdrift reference build --config my.yaml --input train.csv --out ref.json\n"
        "  streamdrift reference build --config my.yaml --input train.jsonl --out ref.json "
        "--model fraud-v3\n"
        "  streamdrift reference build --config my.yaml --input train.parquet --out ref.json "
        "--to-redis\n"
        "  # parquet needs: pip install 'streamdrift[parquet]'",
        formatter_class=_Formatter,
    )
    build.add_argument("--config", default=None,
                       help="YAML configuration whose mapping and monitors the profile is for "
                       "(default: the embedded default)")
    build.add_argument("--input", required=True, metavar="TRAIN",
                       help="training data: .csv, .jsonl or .parquet")
    build.add_argument("--out", required=True, metavar="REF.json", help="profile file to write")
    build.add_argument("--model", default=None,
                       help="model id of every row (when the data has no model column)")
    build.add_argument("--to-redis", action="store_true",
                       help="also store the profile in the config's Redis (key: --redis-key)")
    build.add_argument("--redis-key", default=None,
                       help="Redis key for --to-redis (default: <redis.key_prefix>:reference)")
    build.set_defaults(handler=_cmd_reference_build)

    # -- check-config ----------------------------------------------------------------------------
    check = commands.add_parser(
        "check-config",
        help="validate a configuration file (with STREAMDRIFT_* overrides)",
        description="Validate the file with the STREAMDRIFT_* environment overrides applied "
        "and, when it names a reference profile, the profile against it; print OK and what the "
        "configuration will do, or every problem by key path (exit code 2).",
        epilog="examples:\n"
        "  streamdrift check-config my.yaml\n"
        "  STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS=b1:9092,b2:9092 streamdrift check-config my.yaml",
        formatter_class=_Formatter,
    )
    check.add_argument("config", type=Path, help="YAML configuration file")
    check.set_defaults(handler=_cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamdrift`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except BrokenPipeError:
        # The reader went away (`streamdrift replay | head`): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except ConfigValidationError as exc:
        if args.debug:
            raise
        _print_problems(exc)
        return EXIT_INVALID_CONFIG
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"streamdrift: error: {exc}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    except (StreamdriftError, OSError) as exc:
        if args.debug:
            raise
        print(f"streamdrift: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: still one line, the traceback with --debug
        if args.debug:
            raise
        print(
            f"streamdrift: internal error: {exc.__class__.__name__}: {exc}; rerun with "
            "`streamdrift --debug ...` for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _print_problems(exc: ConfigValidationError) -> None:
    for problem in exc.problems:
        print(f"{exc.source}: {problem}", file=sys.stderr)
    count = len(exc.problems)
    print(
        f"streamdrift: error: {count} problem{'s' if count != 1 else ''} in {exc.source}; "
        "fix the keys named above (or the STREAMDRIFT_* variables in brackets)",
        file=sys.stderr,
    )


# -- check-config --------------------------------------------------------------------------------


def _cmd_check_config(args: argparse.Namespace) -> int:
    """Print ``OK`` and what the configuration will do; raise on the first unusable input."""
    config = load_config(args.config)  # the entry point: the real environment applies
    reference = None
    if config.reference is not None:
        from streamdrift.reference import reference_for, validate

        validate(config, str(args.config))
        reference = reference_for(config)
    print(f"OK {args.config}")
    for line in config.summary():
        print(f"  {line}")
    if reference is not None:
        models = ", ".join(sorted(reference.models))
        print(f"  reference profile: {reference.source} (models: {models}), matches the config")
    return EXIT_OK


# -- run, replay --------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from streamdrift import commands

    return commands.run(args.config, max_seconds=args.max_seconds)


def _cmd_replay(args: argparse.Namespace) -> int:
    from streamdrift import commands

    return commands.replay(
        args.config, args.input, args.output, args.dead_letter, args.topic, quiet=args.quiet
    )


def _cmd_reference_build(args: argparse.Namespace) -> int:
    from streamdrift import reference

    return reference.command_build(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from streamdrift import demo

    return demo.command(args)


if __name__ == "__main__":
    sys.exit(main())
