"""The documentation stays true: README reference tables, schemas, example configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson

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
    event = _block(readme, "json", "### Attaching to your own topics")
    config = parse_config(
        yaml.safe_load(_block(readme, "yaml", "### Attaching to your own topics"))
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
