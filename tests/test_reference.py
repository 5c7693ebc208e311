"""``streamdrift reference build``: profiles from training data, used by the detector bank.

Round trip: a profile built from a training file and used by ``replay`` gives PSI alerts on a
drifted file (in the first window: no warm-up) and none on a file drawn from the training
distribution; csv, jsonl and parquet give the same profile; mismatches between profile and config
are clear errors at check-config and at startup; ``--to-redis`` with the real Redis.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streamdrift.bank import DetectorBank
from streamdrift.config import parse_config
from streamdrift.detectors import PSI
from streamdrift.reference import Reference, build_reference, read_rows
from streamdrift.state.base import TaskId
from streamdrift.synthetic import synthetic_events
from tests.conftest import unique_name

FEATURES = ("amount", "age", "tx_per_day", "balance", "session_s", "country", "device")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamdrift", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def write_csv(path: Path, events: list[dict[str, Any]], model_column: bool = True) -> Path:
    cols = [*(["model_id"] if model_column else []), "event_id", "ts",
            *(f"features.{k}" for k in FEATURES), "prediction"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for e in events:
            w.writerow([*([e["model_id"]] if model_column else []), e["event_id"], e["ts"],
                        *(e["features"][k] for k in FEATURES), e["prediction"]])
    return path


def write_config(path: Path, ref: Path | None = None, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "kafka": {"input_topics": ["model-events"]},
        # PSI alone, so that every drift alert in these tests is a PSI alert.
        "monitors": [{"numeric": {"adwin": False, "page_hinkley": False}}],
        "log_level": "WARNING",
    }
    if ref is not None:
        doc["reference"] = {"path": str(ref)}
    doc.update(extra)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reference")
    train, _ = synthetic_events(20_000, seed=11, drift_at=None, outlier_rate=0.0)
    same, _ = synthetic_events(10_000, seed=12, drift_at=None, outlier_rate=0.0)
    drifted, _ = synthetic_events(10_000, seed=13, drift_at=0.0, outlier_rate=0.0)
    return {
        "train_csv": write_csv(d / "train.csv", train),
        "train_csv_nomodel": write_csv(d / "train-nomodel.csv", train, model_column=False),
        "train_jsonl": write_jsonl(d / "train.jsonl", train),
        "same": write_jsonl(d / "same.jsonl", same),
        "drifted": write_jsonl(d / "drifted.jsonl", drifted),
        "dir": d,
    }


def replay_drift_alerts(config: Path, events: Path, out: Path) -> list[tuple[str, str, int]]:
    result = cli("replay", "--config", str(config), "--input", str(events), "--output",
                 str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    return sorted((a["feature"], a["detector"], a["source"]["offset"]) for a in alerts
                  if a["type"] == "drift")


def test_round_trip_csv_profile_alerts_on_drift_only(data: dict[str, Path],
                                                     tmp_path: Path) -> None:
    ref = tmp_path / "ref.json"
    config = write_config(tmp_path / "c.yaml", ref)
    built = cli("reference", "build", "--config", str(config), "--input",
                str(data["train_csv"]), "--out", str(ref))
    assert built.returncode == 0, built.stderr
    assert "20,000 rows (0 rejected)" in built.stderr
    doc = json.loads(ref.read_text())
    assert doc["kind"] == "streamdrift-reference" and doc["version"] == 1
    feats = doc["models"]["fraud-v3"]["features"]
    assert set(feats) == {*FEATURES, "__prediction__"}
    assert feats["country"]["type"] == "categorical" and feats["amount"]["type"] == "numeric"
    assert sum(feats["amount"]["psi"]["profile"]["counts"]) == 20_000
    assert doc["models"]["fraud-v3"]["isolation_forest"]["features"] == sorted(
        ["age", "amount", "balance", "session_s", "tx_per_day"])
    check = cli("check-config", str(config))
    assert check.returncode == 0, check.stderr
    assert f"reference profile: {ref} (models: fraud-v3), matches the config" in check.stdout

    assert replay_drift_alerts(config, data["same"], tmp_path / "a1.jsonl") == []
    drift = replay_drift_alerts(config, data["drifted"], tmp_path / "a2.jsonl")
    # The drifted features, from the first window on (offset 999): no 5,000-event warm-up.
    assert {f for f, _, _ in drift} == {"amount", "country", "__prediction__"}
    assert all(d == "psi" for _, d, _ in drift)
    assert min(o for _, _, o in drift) == 999

    # Without the profile the same file gives no alert before the warm-up is over (and then
    # compares with the drifted data itself).
    plain = write_config(tmp_path / "plain.yaml")
    assert all(o >= 5_999 for *_, o in
               replay_drift_alerts(plain, data["drifted"], tmp_path / "a3.jsonl"))


def test_csv_jsonl_and_parquet_give_the_same_profile(data: dict[str, Path],
                                                     tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = parse_config({"kafka": {"input_topics": ["t"]}})
    from_csv, _ = build_reference(config, read_rows(data["train_csv"], config), source="x")
    from_jsonl, _ = build_reference(config, read_rows(data["train_jsonl"]), source="x")
    events = [json.loads(line) for line in data["train_jsonl"].read_text().splitlines()]
    table = pa.Table.from_pylist(events)  # nested struct columns
    pq.write_table(table, tmp_path / "train.parquet")
    from_parquet, _ = build_reference(config, read_rows(tmp_path / "train.parquet"),
                                      source="x")
    assert from_csv["models"] == from_jsonl["models"] == from_parquet["models"]
    # --model for data without a model column.
    nomodel, _ = build_reference(config, read_rows(data["train_csv_nomodel"], config),
                                 source="x", model="fraud-v3")
    assert nomodel["models"] == from_csv["models"]


def test_bank_starts_psi_and_the_forest_from_the_profile(data: dict[str, Path]) -> None:
    config = parse_config({"kafka": {"input_topics": ["t"]}})
    doc, _ = build_reference(config, read_rows(data["train_jsonl"]), source="train.jsonl")
    ref = Reference.from_document(doc, "test")
    params = config.monitors_for("fraud-v3", "amount", "numeric")["psi"]
    kwargs = ref.psi_kwargs("fraud-v3", "amount", "numeric", params)
    assert kwargs["reference"] == doc["models"]["fraud-v3"]["features"]["amount"]["psi"]["profile"]
    assert PSI(**kwargs).reference_profile is not None  # no warm-up
    # A type the profile does not have, or other bins: warm up instead (and log why).
    assert "reference" not in ref.psi_kwargs("fraud-v3", "amount", "categorical", {})
    assert "reference" not in ref.psi_kwargs("fraud-v3", "amount", "numeric", {"bins": 20})
    assert "reference" not in ref.psi_kwargs("other-model", "amount", "numeric", params)

    # Through the bank, with the config pointing at the profile file.
    path = data["dir"] / "bank-ref.json"
    path.write_bytes(orjson.dumps(doc))
    config = parse_config({"kafka": {"input_topics": ["t"]}, "reference": {"path": str(path)}})
    from streamdrift.events import RawRecord

    bank = DetectorBank(config, TaskId("t", 0))
    lines = data["same"].read_bytes().splitlines()[:50]
    bank.process(bank.decoder.decode_batch([RawRecord(v, "t", 0, i) for i, v in
                                            enumerate(lines)]))
    dets = {(f, k): d for _, f, k, d in bank.detectors()}
    amount = dets[("amount", "psi")]
    assert isinstance(amount, PSI) and amount.reference_profile is not None
    assert dets[("country", "psi")].reference_profile is not None  # type: ignore[attr-defined]
    forest = dets[(None, "isolation_forest")]
    limits = doc["models"]["fraud-v3"]["isolation_forest"]
    assert forest.limits == list(zip(limits["mins"], limits["maxs"], strict=True))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"mapping": {"feature_types": {"tx_per_day": "categorical"}}},
         "fraud-v3/tx_per_day was profiled as numeric, mapping.feature_types makes it "
         "categorical"),
        ({"monitors": [{"numeric": {"adwin": False, "page_hinkley": False,
                                    "psi": {"bins": 20}}}]},
         "profiled with psi bins 10, the config's psi uses bins 20"),
        ({"mapping": {"features": {"fields": {"amount": "features.amount",
                                              "iban_country": "features.iban"}}}},
         "model 'fraud-v3' has no feature 'iban_country', which the config maps"),
    ],
    ids=["type-changed", "other-bins", "feature-missing"],
)
def test_mismatches_are_clear_errors_at_check_config_and_startup(
    data: dict[str, Path], tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    ref = tmp_path / "ref.json"
    config = parse_config(yaml.safe_load(write_config(tmp_path / "good.yaml").read_text()))
    doc, _ = build_reference(config, read_rows(data["train_jsonl"]), source="train.jsonl")
    ref.write_bytes(orjson.dumps(doc))
    bad = write_config(tmp_path / "bad.yaml", ref, **extra)
    for args in (["check-config", str(bad)],
                 ["replay", "--config", str(bad), "--input", str(data["same"]), "--quiet"]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_unusable_profiles_are_one_line_with_the_fix(data: dict[str, Path],
                                                      tmp_path: Path) -> None:
    missing = write_config(tmp_path / "m.yaml", tmp_path / "nope.json")
    result = cli("check-config", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"streamdrift: error: reference.path {tmp_path / 'nope.json'}: cannot read it (No such "
        "file or directory); build it with `streamdrift reference build --config ... --input "
        f"TRAIN --out {tmp_path / 'nope.json'}`"
    ]
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    result = cli("check-config", str(write_config(tmp_path / "j.yaml", junk)))
    assert result.returncode == 2
    assert "is not a streamdrift reference profile; rebuild it with `streamdrift reference " \
        "build`" in result.stderr
    result = cli("reference", "build", "--input", str(tmp_path / "train.xlsx"), "--out",
                 str(tmp_path / "r.json"))
    assert result.returncode == 1
    assert "does not exist" in result.stderr and len(result.stderr.splitlines()) == 1
    # Rows the mapping cannot read: the error says how the columns must be named.
    flat = tmp_path / "flat.csv"
    flat.write_text("amount,country\n1.0,FR\n")
    result = cli("reference", "build", "--input", str(flat), "--out", str(tmp_path / "r.json"))
    assert result.returncode == 1
    assert "no row could be mapped" in result.stderr and "--model" in result.stderr


def test_parquet_without_pyarrow_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    code = (
        "import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
        "from streamdrift.cli import main\n"
        f"sys.exit(main(['reference', 'build', '--input', {str(tmp_path / 't.parquet')!r}, "
        f"'--out', {str(tmp_path / 'r.json')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "streamdrift: error: reading parquet needs pyarrow, which is not installed; install it "
        "with: pip install 'streamdrift[parquet]' (or convert the file to csv/jsonl)"
    )


@pytest.mark.slow
@pytest.mark.redis
def test_to_redis_round_trip_with_the_real_redis(data: dict[str, Path], tmp_path: Path,
                                                 redis_url: str) -> None:
    import redis

    prefix = unique_name("sd-ref")
    key = f"{prefix}:reference"
    client = redis.Redis.from_url(redis_url)
    try:
        build_cfg = write_config(tmp_path / "b.yaml",
                                 redis={"url": redis_url, "key_prefix": prefix})
        built = cli("reference", "build", "--config", str(build_cfg), "--input",
                    str(data["train_csv"]), "--out", str(tmp_path / "ref.json"), "--to-redis")
        assert built.returncode == 0, built.stderr
        assert f"loaded into Redis key {key!r}" in built.stderr
        stored = client.get(key)
        assert stored is not None and stored == (tmp_path / "ref.json").read_bytes()
        config = tmp_path / "r.yaml"
        config.write_text(build_cfg.read_text() + f"reference: {{redis_key: '{key}'}}\n")
        assert cli("check-config", str(config)).returncode == 0
        drift = replay_drift_alerts(config, data["drifted"], tmp_path / "a.jsonl")
        assert min(o for *_, o in drift) == 999
        client.delete(key)
        result = cli("check-config", str(config))
        assert result.returncode == 2
        assert f"reference.redis_key {key!r} does not exist in Redis" in result.stderr
    finally:
        for k in client.scan_iter(match=f"*{prefix}*"):
            client.delete(k)


def test_training_profile_equals_what_the_warm_up_would_have_built() -> None:
    # `reference build` uses PSI.profile_from_values / CategoricalPSI.profile_from_values; a
    # stream that warmed up on the same values must hold the same reference.
    import numpy as np

    from streamdrift.detectors import CategoricalPSI

    rng = np.random.default_rng(5)
    values = np.round(rng.lognormal(3.0, 1.0, 5_000), 1)
    values[::97] = np.nan
    warmed = PSI(reference_size=5_000)
    warmed.update(values)
    built = PSI.profile_from_values(values)
    assert warmed.reference_profile is not None
    assert warmed.reference_profile["edges"] == built["edges"]
    assert warmed.reference_profile["counts"] == built["counts"]
    assert warmed.reference_profile["missing"] == built["missing"]
    cats = rng.choice(["a", "b", "c", "d"], 5_000, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    cats[::50] = None
    cat_warmed = CategoricalPSI(reference_size=5_000, max_categories=3)
    cat_warmed.update(cats)
    assert cat_warmed.reference_profile == CategoricalPSI.profile_from_values(
        cats, max_categories=3)
