"""The settings tree: defaults, validation messages, environment overrides, monitor rules, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamdrift.cli import main
from streamdrift.config import (
    DEFAULT_CONFIG_PATH,
    PREDICTION,
    Config,
    ConfigValidationError,
    load_config,
    load_default_config,
    parse_config,
)
from streamdrift.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
MINIMAL: dict[str, Any] = {"kafka": {"bootstrap_servers": "k:9092", "input_topics": ["events"]}}


def problems(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigValidationError) as info:
        parse_config(data, env)
    return list(info.value.problems)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streamdrift.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- shipped files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [DEFAULT_CONFIG_PATH, REPO / "deploy/streamdrift.yaml", REPO / "examples/nested-events.yaml"],
    ids=lambda p: Path(p).name,
)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path, env={})
    assert config.kafka.input_topics
    assert config.summary()


def test_deploy_config_points_at_compose_services() -> None:
    config = load_config(REPO / "deploy/streamdrift.yaml", env={})
    assert config.kafka.bootstrap_servers == ["kafka:9092"]
    assert config.redis is not None
    assert config.redis.url.get_secret_value() == "redis://redis:6379/0"


def test_default_config_is_in_memory_with_demo_shape() -> None:
    config = load_default_config(env={})
    assert config.redis is None
    assert config.mapping.model_id.path == "model_id"
    assert config.mapping.features.path == "features"
    assert config.mapping.event_time == "ts"


# -- defaults and shapes -------------------------------------------------------------------------


def test_minimal_config_gets_documented_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.kafka.group_id == "streamdrift"
    assert config.kafka.alert_topic == "streamdrift-alerts"
    assert config.kafka.max_message_bytes == 1_048_576
    assert config.checkpoint.every_events == 50_000
    assert config.alerts.cooldown_events == 5000
    assert config.limits.max_models == 1000
    assert config.metrics.port == 9108
    assert config.redis is None
    assert config.mapping.allow_missing_features is True


def test_every_field_is_documented() -> None:
    def walk(model: type[Any], seen: set[type[Any]]) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
        for sub in model.__pydantic_fields__.values():
            ann = sub.annotation
            for candidate in (ann, *getattr(ann, "__args__", ())):
                model_type = isinstance(candidate, type) and hasattr(candidate, "model_fields")
                if model_type and candidate not in seen:
                    seen.add(candidate)
                    missing += walk(candidate, seen)
        return missing

    assert walk(Config, set()) == []


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(ValidationError):
        config.kafka.group_id = "other"  # type: ignore[misc]


def test_bootstrap_servers_and_topics_accept_comma_strings() -> None:
    config = parse_config({"kafka": {"bootstrap_servers": "a:1, b:2", "input_topics": "x,y"}})
    assert config.kafka.bootstrap_servers == ["a:1", "b:2"]
    assert config.kafka.input_topics == ["x", "y"]


def test_model_id_constant_and_feature_fields() -> None:
    config = parse_config(
        {
            **MINIMAL,
            "mapping": {
                "model_id": {"constant": "fraud-v3"},
                "features": {"fields": {"amount": "body.amount", "country": "body.geo.country"}},
                "feature_types": {"country": "categorical"},
            },
        }
    )
    assert config.mapping.model_id.constant == "fraud-v3"
    assert config.mapping.features.fields == {
        "amount": "body.amount",
        "country": "body.geo.country",
    }


def test_client_settings_split_by_role_with_secrets_revealed() -> None:
    config = parse_config(
        {
            "kafka": {
                **MINIMAL["kafka"],
                "client": {"sasl_plain_password": "pw", "acks": "all", "session_timeout_ms": 9000},
            }
        }
    )
    assert config.kafka.client.kwargs("consumer") == {
        "sasl_plain_password": "pw",
        "session_timeout_ms": 9000,
    }
    assert config.kafka.client.kwargs("producer") == {"sasl_plain_password": "pw", "acks": "all"}


# -- secrets -------------------------------------------------------------------------------------


def test_secrets_are_masked_in_dumps_and_reprs() -> None:
    config = parse_config(
        {
            "kafka": {
                **MINIMAL["kafka"],
                "client": {"sasl_plain_password": "hunter2", "ssl_password": "keypw"},
            },
            "redis": {"url": "redis://user:s3cret@redis:6379/0"},
        }
    )
    dumped = str(config.masked()) + repr(config) + "\n".join(config.summary())
    for secret in ("hunter2", "keypw", "s3cret"):
        assert secret not in dumped
    assert config.masked()["redis"]["url"] == "redis://user:***@redis:6379/0"
    assert config.redis is not None and "s3cret" in config.redis.url.get_secret_value()


def test_secret_values_are_not_echoed_in_errors() -> None:
    lines = problems({**MINIMAL, "redis": {"url": "http://user:s3cret@x"}})
    assert lines == ["redis.url: expected a redis://, rediss:// or unix:// URL (got <secret>)"]


# -- validation messages -------------------------------------------------------------------------


def test_missing_kafka_section_names_the_key() -> None:
    assert problems({}) == [
        "kafka: required key is missing (Where events come from and alerts go to.)"
    ]


def test_every_error_is_listed_with_its_key_path() -> None:
    lines = problems(
        {
            "kafka": {"input_topics": ["ok", "bad topic"], "max_poll_records": 0},
            "limits": {"max_models": "many"},
            "log_level": "loud",
        }
    )
    assert len(lines) == 4
    assert lines[0].startswith("kafka.input_topics[1]: expected a Kafka topic name")
    assert lines[0].endswith("(got 'bad topic')")
    assert lines[1] == "kafka.max_poll_records: input should be greater than or equal to 1 (got 0)"
    assert lines[2].startswith("limits.max_models: input should be a valid integer")
    assert lines[3].startswith("log_level: input should be 'DEBUG', 'INFO'")


def test_empty_input_topics_rejected() -> None:
    (line,) = problems({"kafka": {"input_topics": []}})
    assert line.startswith("kafka.input_topics: list should have at least 1 item")


def test_unknown_keys_suggest_the_closest_name() -> None:
    lines = problems({"kafka": {"input_topics": ["t"], "bootstrap_server": "x:1"}, "mappin": {}})
    assert lines[0].startswith(
        "kafka.bootstrap_server: unknown key; did you mean 'bootstrap_servers'?"
    )
    assert lines[1].startswith("mappin: unknown key; did you mean 'mapping'?")


def test_unknown_client_setting_lists_the_allowed_ones() -> None:
    (line,) = problems({"kafka": {**MINIMAL["kafka"], "client": {"enable_auto_commit": True}}})
    assert line.startswith("kafka.client.enable_auto_commit: unknown key;")
    assert "security_protocol" in line and "sasl_plain_password" in line


def test_invalid_paths_and_mapping_shapes() -> None:
    lines = problems(
        {
            **MINIMAL,
            "mapping": {
                "model_id": 3,
                "features": {"path": "a..b", "fields": {"x": "y"}},
                "event_time": "ts[",
            },
        }
    )
    assert lines[0] == "mapping.model_id: expected a path string or {constant: VALUE} (got 3)"
    assert any(line.startswith("mapping.event_time: invalid path 'ts['") for line in lines)
    assert any(line.startswith("mapping.features.path: invalid path 'a..b'") for line in lines)


def test_features_need_exactly_one_of_path_or_fields() -> None:
    (line,) = problems({**MINIMAL, "mapping": {"features": {"path": "f", "fields": {"a": "b"}}}})
    assert (
        line == "mapping.features: give exactly one of 'path' (an object of features) or 'fields'"
    )


def test_feature_types_must_name_declared_fields() -> None:
    (line,) = problems(
        {
            **MINIMAL,
            "mapping": {
                "features": {"fields": {"amount": "a"}},
                "feature_types": {"amont": "numeric"},
            },
        }
    )
    assert "'amont', not in features.fields (did you mean 'amount'?)" in line


def test_reserved_feature_names_rejected() -> None:
    (line,) = problems({**MINIMAL, "mapping": {"feature_types": {PREDICTION: "numeric"}}})
    assert "reserved" in line


def test_alert_topic_cannot_be_an_input_topic() -> None:
    (line,) = problems({"kafka": {"input_topics": ["a", "b"], "alert_topic": "b"}})
    assert line.startswith("kafka: alert_topic 'b' is also an input topic")


def test_unknown_detector_kind_suggests_and_lists() -> None:
    (line,) = problems({**MINIMAL, "monitors": [{"numeric": {"adwn": {}}}]})
    assert line == (
        "monitors[0].numeric: unknown numeric detector 'adwn'; did you mean 'adwin'? "
        "allowed: adwin, page_hinkley, psi"
    )


def test_too_many_fields_for_the_feature_limit() -> None:
    (line,) = problems(
        {
            **MINIMAL,
            "mapping": {"features": {"fields": {"a": "a", "b": "b"}}},
            "limits": {"max_features": 1},
        }
    )
    assert "limits.max_features is 1" in line


# -- files ---------------------------------------------------------------------------------------


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; pass the path of a YAML config"):
        load_config(tmp_path / "nope.yaml", env={})


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid YAML at line 3"):
        load_config(write(tmp_path, "kafka:\n  input_topics: [a\nlog_level: INFO\n"), env={})


def test_duplicate_yaml_keys_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  input_topics: [a]\n  input_topics: [b]\n")
    with pytest.raises(ConfigError, match="duplicate key 'input_topics'"):
        load_config(path, env={})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigValidationError, match="expected a mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


# -- environment overrides -----------------------------------------------------------------------


def test_env_overrides_nested_keys_with_typed_values() -> None:
    config = parse_config(
        MINIMAL,
        env={
            "STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS": "a:9092,b:9092",
            "STREAMDRIFT_KAFKA__INPUT_TOPICS": "x, y",
            "STREAMDRIFT_KAFKA__MAX_POLL_RECORDS": "500",
            "STREAMDRIFT_KAFKA__DEAD_LETTER_TOPIC": "",
            "STREAMDRIFT_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": "12345",
            "STREAMDRIFT_REDIS__URL": "rediss://:pw@r:6380/1",
            "STREAMDRIFT_MAPPING__ALLOW_MISSING_FEATURES": "false",
            "STREAMDRIFT_LOG_LEVEL": "debug",
            "STREAMDRIFT_CONFIG": "/ignored/by/the/loader.yaml",
            "OTHER_VARIABLE": "ignored",
        },
    )
    assert config.kafka.bootstrap_servers == ["a:9092", "b:9092"]
    assert config.kafka.input_topics == ["x", "y"]
    assert config.kafka.max_poll_records == 500
    assert config.kafka.dead_letter_topic is None
    secret = config.kafka.client.sasl_plain_password
    assert secret is not None and secret.get_secret_value() == "12345"  # stays a string
    assert config.redis is not None and config.redis.url.get_secret_value().startswith("rediss")
    assert config.mapping.allow_missing_features is False
    assert config.log_level == "DEBUG"


def test_env_file_variant_reads_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "redis_url"
    secret.write_text("redis://:from-file@redis:6379/0\n", encoding="utf-8")
    config = parse_config(MINIMAL, env={"STREAMDRIFT_REDIS__URL_FILE": str(secret)})
    assert config.redis is not None
    assert config.redis.url.get_secret_value() == "redis://:from-file@redis:6379/0"


def test_env_file_variant_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        parse_config(MINIMAL, env={"STREAMDRIFT_REDIS__URL_FILE": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="not both"):
        parse_config(
            MINIMAL,
            env={"STREAMDRIFT_REDIS__URL": "redis://x", "STREAMDRIFT_REDIS__URL_FILE": "/x"},
        )


def test_env_errors_name_the_variable() -> None:
    lines = problems(
        MINIMAL, env={"STREAMDRIFT_METRICS__PORT": "http", "STREAMDRIFT_KAFKA__GROUPID": "g"}
    )
    assert lines[0].startswith("kafka.groupid: unknown key; did you mean 'group_id'?")
    assert lines[0].endswith("[set by STREAMDRIFT_KAFKA__GROUPID]")
    assert lines[1].endswith("(got 'http') [set by STREAMDRIFT_METRICS__PORT]")


def test_env_cannot_reach_into_lists() -> None:
    with pytest.raises(ConfigError, match="not a mapping; set it in the file instead"):
        parse_config({**MINIMAL, "monitors": []}, env={"STREAMDRIFT_MONITORS__MODELS": "x"})


def test_load_config_env_is_injected_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "kafka:\n  input_topics: [a]\n")
    monkeypatch.setenv("STREAMDRIFT_KAFKA__GROUP_ID", "from-os-environ")
    assert load_config(path, env={}).kafka.group_id == "streamdrift"
    assert load_config(path).kafka.group_id == "from-os-environ"  # None = the real environment
    assert parse_config({"kafka": {"input_topics": ["a"]}}).kafka.group_id == "streamdrift"


# -- monitor rules -------------------------------------------------------------------------------


def test_default_monitors() -> None:
    config = parse_config(MINIMAL)
    assert config.monitors_for("m", "x", "numeric") == {
        "adwin": {"delta": 0.0002},
        "page_hinkley": {},
        "psi": {"window": 1000},
    }
    assert config.monitors_for("m", "c", "categorical") == {"psi": {"window": 1000}}
    assert config.monitors_for("m", PREDICTION, "numeric") == config.monitors_for(
        "m", "x", "numeric"
    )
    assert config.multivariate_for("m") == {
        "isolation_forest": {"n_trees": 10, "height": 8, "window": 1000}
    }


def test_rules_apply_in_order_over_the_defaults() -> None:
    config = parse_config(
        {
            **MINIMAL,
            "monitors": [
                {"models": ["fraud*"], "numeric": {"psi": {"window": 50}, "adwin": False}},
                {"features": ["id_*"], "numeric": None, "categorical": None},
                {"models": ["fraud-v3"], "features": ["amount"], "numeric": {"adwin": None}},
                {"models": ["quiet"], "multivariate": None, "include_prediction": False},
            ],
        }
    )
    assert config.monitors_for("fraud-v2", "amount", "numeric") == {
        "page_hinkley": {},
        "psi": {"window": 50},
    }
    assert config.monitors_for("fraud-v3", "amount", "numeric") == {
        "page_hinkley": {},
        "psi": {"window": 50},
        "adwin": {},
    }
    assert config.monitors_for("fraud-v2", "id_user", "numeric") == {}
    assert config.monitors_for("other", "amount", "categorical") == {"psi": {"window": 1000}}
    assert config.multivariate_for("quiet") == {}
    assert config.monitors_for("quiet", PREDICTION, "numeric") == {}
    assert config.monitors_for("quiet", "x", "numeric") != {}


def test_resolved_monitors_are_cached_but_callers_get_copies() -> None:
    config = parse_config(MINIMAL)
    first = config.monitors_for("m", "x", "numeric")
    first["psi"]["window"] = 1
    assert config.monitors_for("m", "x", "numeric")["psi"] == {"window": 1000}


# -- check-config --------------------------------------------------------------------------------


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO / "examples/nested-events.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ")
    assert "fraud-inference-log" in out and "4 named: amount, items, country, ip" in out


def test_check_config_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "kafka:\n  input_topics: []\n  bootstrap_server: x\nlog_level: loud\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"{path}: kafka.input_topics: list should have at least 1 item after validation, "
        "not 0 (got [])"
    )
    assert err[1].startswith(f"{path}: kafka.bootstrap_server: unknown key; did you mean")
    assert err[2].startswith(f"{path}: log_level:")
    assert err[3].startswith("streamdrift: error: 3 problems")
    assert "Traceback" not in "\n".join(err)


def test_check_config_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "none.yaml")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("streamdrift: error: config file") and "not found" in line


def test_check_config_debug_shows_the_exception(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        main(["--debug", "check-config", str(tmp_path / "none.yaml")])


def test_dev_stack_variables_are_not_config_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  input_topics: [t]\n")
    env = {"STREAMDRIFT_RUN_DIR": "/tmp/x", "STREAMDRIFT_CACHE_DIR": "/tmp/y"}
    assert load_config(path, env=env).kafka.input_topics == ["t"]
