"""The ``streamdrift`` command: ``run``, ``replay`` and ``check-config``.

Errors are one line saying what is wrong and how to fix it; ``--debug`` shows the traceback.
Exit codes: 0 success, 2 invalid configuration or usage, 1 any other error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from streamdrift import __version__
from streamdrift.config import ConfigValidationError, load_config
from streamdrift.errors import ConfigError, StreamdriftError

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="streamdrift",
        description="Drift and outlier monitoring for ML model traffic on Kafka.",
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
        "alerts and dead letters, checkpoint state and offsets to Redis.",
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
        "section), alerts as JSON lines; source.offset is the 0-based line number.",
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

    # -- check-config ----------------------------------------------------------------------------
    check = commands.add_parser(
        "check-config", help="validate a configuration file (with STREAMDRIFT_* overrides)"
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
    print(f"OK {args.config}")
    for line in config.summary():
        print(f"  {line}")
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


if __name__ == "__main__":
    sys.exit(main())
