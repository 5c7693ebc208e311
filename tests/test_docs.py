"""The documentation stays true: README reference tables, schemas, example configs."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest

from streamdrift.alerts import Alert, alert_id
from streamdrift.events import DeadLetter

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "streamdrift" / "schemas"


def test_readme_configuration_reference_is_generated_from_the_config_models() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_reference.py")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    readme = (REPO / "README.md").read_text()
    assert out in readme, "README config reference is stale: run scripts/config_reference.py"


def test_alerts_validate_against_the_published_schema() -> None:
    schema = json.loads((SCHEMAS / "alert.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    alert = Alert(
        alert_id=alert_id("events", 2, 99, "fraud", "amount", "psi"),
        type="drift",
        model_id="fraud",
        feature="amount",
        detector="psi",
        statistic=0.31,
        threshold=0.12,
        severity="critical",
        event_time=1_767_225_600.0,
        detected_at=1_767_225_601.5,
        topic="events",
        partition=2,
        offset=99,
        details={"psi_per_bin": [0.1, 0.2]},
    )
    doc = orjson.loads(alert.to_json())
    jsonschema.validate(doc, schema)
    assert doc["event_time"] == "2026-01-01T00:00:00.000+00:00"
    bad = dict(doc, type="something")
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("schema accepted an unknown alert type")


def test_dead_letters_validate_against_the_published_schema() -> None:
    schema = json.loads((SCHEMAS / "dead-letter.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    letter = DeadLetter(b"{oops", "events", 0, 7, "invalid_json", "not JSON at byte 1", 0.0)
    jsonschema.validate(orjson.loads(letter.to_json()), schema)


def _block(text: str, lang: str, after: str) -> str:
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start : text.index("```", start)]


def test_readme_worked_example_config_maps_the_example_event() -> None:
    import yaml

    from streamdrift.config import parse_config
    from streamdrift.events import Decoder, RawRecord

    readme = (REPO / "README.md").read_text()
    event = _block(readme, "json", "## Attaching to your own topics")
    config = parse_config(
        yaml.safe_load(_block(readme, "yaml", "## Attaching to your own topics"))
    )
    batch = Decoder.from_config(config).decode_batch([RawRecord(event.encode(), "t", 0, 0)])
    assert batch.invalid == []
    cols = batch.per_model["fraud"]
    assert cols.numeric["amount"].tolist() == [12.5]
    assert cols.categorical["country"].tolist() == ["FR"]
    assert cols.categorical["first_sku"].tolist() == ["A1"]
    assert cols.prediction is not None and cols.prediction.tolist() == [0.91]
    assert cols.event_ids == ["r-81"]
    assert config.monitors_for("fraud-v3", "amount", "numeric").keys() == {"adwin", "psi"}


# -- the README's commands run (so that they cannot rot) and the command line's help -----------

_TAGGED = re.compile(r"<!-- readme-test: (repo|tmp) -->\n```bash\n(.*?)```", re.S)


def _readme_blocks() -> list[tuple[str, str]]:
    return _TAGGED.findall((REPO / "README.md").read_text())


def test_readme_set_up_is_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    setup = readme[readme.index("## Set up\n") : readme.index("\n## ", readme.index("## Set up"))]
    commands = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert [c.strip() for c in commands] == ["./scripts/demo", "./scripts/test"]
    for script in ("demo", "test"):
        path = REPO / "scripts" / script
        assert path.stat().st_mode & 0o111, f"scripts/{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert (REPO / image).is_file(), f"README shows {image}, which does not exist"
    # The first command is run below (tagged `repo`); scripts/test is the command running us.
    assert ("repo", "./scripts/demo\n") in _readme_blocks()
    # The demo output quoted in the README is what the demo prints (its text, not its timing).
    quoted = re.search(r"```text\n(streamdrift demo:.*?)```", setup, re.S)
    assert quoted is not None
    result = subprocess.run([sys.executable, "-m", "streamdrift", "demo", "--quiet"],
                            capture_output=True, text=True, timeout=120, check=True)
    def strip(text: str) -> list[str]:
        return [line for line in text.splitlines() if "throughput:" not in line]

    assert strip(quoted.group(1)) == strip(result.stdout), "README demo output is stale"


@pytest.mark.slow
def test_readme_tagged_commands_run(tmp_path: Path) -> None:
    blocks = _readme_blocks()
    assert len(blocks) >= 3, blocks
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    (tmp_path / "examples").symlink_to(REPO / "examples")
    for where, script in blocks:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO if where == "repo" else tmp_path,
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, f"README block failed:\n{script}\n{result.stderr}"
    # The blocks did what the README says they do.
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    psi = [a for a in alerts if a["detector"] == "psi"]
    assert psi and all(a["details"]["reference_size"] == 20_000 for a in psi), (
        "PSI compared with the 20,000 training rows, not with a 5,000-value warm-up")
    assert (tmp_path / "ref.json").exists() and (tmp_path / "bad.jsonl").read_text() == ""


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _subcommands(sub)
    return found


def test_every_command_has_a_description_and_examples() -> None:
    from streamdrift.cli import build_parser

    parsers = _subcommands(build_parser())
    assert {p.prog for p in parsers} >= {
        "streamdrift", "streamdrift run", "streamdrift replay", "streamdrift demo",
        "streamdrift reference", "streamdrift reference build", "streamdrift check-config"}
    for parser in parsers:
        text = parser.format_help()
        assert parser.description and len(parser.description) > 40, parser.prog
        assert "examples:" in text and f"  {parser.prog.split()[0]} " in text, parser.prog
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{parser.prog} {action.option_strings} has no help"


def test_cli_errors_are_one_line_with_the_fix(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streamdrift", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    usage = run("reference", "build", "--out", "x.json")
    assert usage.returncode == 2
    assert usage.stderr.splitlines() == [
        "streamdrift reference build: error: the following arguments are required: --input; "
        "see `streamdrift reference build --help`"]
    missing = run("replay", "--input", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
    assert "does not exist" in missing.stderr
    # An unexpected exception (a bug) is one line too, with the traceback behind --debug.
    code = ("import sys\nfrom streamdrift import cli\n"
            "def boom(args): raise RuntimeError('boom')\n"
            "cli._cmd_check_config = boom\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    bug = subprocess.run([sys.executable, "-c", code, "check-config", "x.yaml"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bug.returncode == 1 and len(bug.stderr.splitlines()) == 1, bug.stderr
    assert "internal error: RuntimeError: boom; rerun with `streamdrift --debug" in bug.stderr
    debug = subprocess.run([sys.executable, "-c", code, "--debug", "check-config", "x.yaml"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" in debug.stderr
