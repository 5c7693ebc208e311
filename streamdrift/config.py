"""The one frozen settings tree: a YAML file plus ``STREAMDRIFT_*`` environment overrides.

Load it once at the entry point with :func:`load_config` and pass the sub-configs down. Every key
is documented by its ``Field(description=...)``; ``examples/`` and ``deploy/`` hold complete files.

Environment overrides are ``STREAMDRIFT_<SECTION>__<KEY>`` (double underscore = one level down,
names are lower-cased), e.g. ``STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS=a:9092,b:9092`` or
``STREAMDRIFT_REDIS__URL``. ``<NAME>_FILE`` reads the value from a file (Docker/Kubernetes
secrets). Values are YAML scalars; string keys take the text as is; lists are comma-separated.
``STREAMDRIFT_CONFIG`` is not an override: entry points may use it for the file path.

>>> cfg = parse_config({"kafka": {"input_topics": ["model-events"]}})
>>> cfg.kafka.bootstrap_servers, cfg.redis is None, cfg.mapping.features.path
(['127.0.0.1:9092'], True, 'features')
>>> sorted(cfg.monitors_for("fraud", "amount", "numeric"))
['adwin', 'page_hinkley', 'psi']
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from streamdrift._config_kafka import KafkaClientConfig, Section
from streamdrift._config_models import (
    CARRIES,
    DETECTOR_KINDS,
    LABEL,
    PREDICTION,
    RESERVED_FEATURES,
    AlertsConfig,
    Carried,
    CheckpointConfig,
    FeaturesConfig,
    FeatureType,
    KafkaConfig,
    LabelsConfig,
    LimitsConfig,
    MappingConfig,
    MetricsConfig,
    MonitorRule,
    RedisConfig,
    SourceConfig,
    TopicConfig,
    mask_url,
)
from streamdrift._config_reference import ReferenceConfig
from streamdrift._config_support import apply_env, format_errors, read_yaml
from streamdrift.errors import ConfigError

__all__ = [
    "CARRIES",
    "DEFAULT_CONFIG_PATH",
    "DETECTOR_KINDS",
    "LABEL",
    "PREDICTION",
    "RESERVED_FEATURES",
    "AlertsConfig",
    "Carried",
    "CheckpointConfig",
    "Config",
    "ConfigValidationError",
    "FeatureType",
    "FeaturesConfig",
    "KafkaClientConfig",
    "KafkaConfig",
    "LabelsConfig",
    "LimitsConfig",
    "MappingConfig",
    "MetricsConfig",
    "MonitorRule",
    "RedisConfig",
    "SourceConfig",
    "TopicConfig",
    "load_config",
    "load_default_config",
    "mask_url",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path(str(resources.files("streamdrift") / "configs" / "default.yaml"))

DetectorParams = dict[str, dict[str, Any]]

# ADWIN runs with delta = 2e-4 rather than river's 2e-3: a service watches every feature for
# months, and on skewed features with occasional outliers river's default measured ~0.5 false
# alarms per 12,000 values (20 seeds of the synthetic stream: 11 of 15 false alarms from outliers);
# 2e-4 cut that fourfold and delayed a 1-sd shift's detection by < 10% (47 vs 47 values median).
_DEFAULTS: dict[str, DetectorParams] = {
    "numeric": {"adwin": {"delta": 0.0002}, "page_hinkley": {}, "psi": {"window": 1000}},
    "categorical": {"psi": {"window": 1000}},
    "multivariate": {"isolation_forest": {"n_trees": 10, "height": 8, "window": 1000}},
}


# DDM is the test made for a 0/1 error rate, but with river's defaults (warm_start=30, d=3) it
# measured 55 false alarms on 50 x 26,000 stationary errors (p = 0.15): p_min from a few dozen
# values is too optimistic. warm_start=500, d=4 measured 0 (2 at p = 0.05) at about twice
# ADWIN's delay; ADWIN (delta 0.002) had 0 and the shortest delays, so it runs beside DDM.
_ERROR_DEFAULTS: dict[str, DetectorParams] = {
    "classification": {
        "adwin": {"delta": 0.002},
        "ddm": {"warm_start": 500, "drift_threshold": 4.0},
    },
    "regression": {"adwin": {"delta": 0.002}},
}


def topic_problems(config: Config) -> list[tuple[tuple[str, ...], str]]:
    """(key path, problem) for what is inconsistent between ``kafka.input_topics``, ``topics``
    and ``labels``."""
    import difflib

    problems: list[tuple[tuple[str, ...], str]] = []
    inputs = list(config.kafka.input_topics)
    for name in config.topics:
        if name not in inputs:
            close = difflib.get_close_matches(name, inputs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                (
                    ("topics", name),
                    f"not one of kafka.input_topics{hint}; add it there or remove it",
                )
            )
    if problems:
        return problems
    label_topics = [t for t in inputs if "label" in config.carries(t)]
    prediction_topics = [t for t in inputs if "prediction" in config.carries(t)]
    for topic in inputs:
        carries, mapping = config.carries(topic), config.topic_mapping(topic)
        own = topic in config.topics and config.topics[topic].mapping is not None
        where: tuple[str, ...] = ("topics", topic, "mapping") if own else ("mapping",)
        hint = "" if own or len(inputs) == 1 else f" (or give topics.{topic} its own mapping)"
        if "prediction" in carries and not mapping.prediction:
            problems.append(
                ((*where, "prediction"), f"topic {topic!r} carries prediction: set its path{hint}")
            )
        if "label" in carries and not mapping.label:
            problems.append(
                ((*where, "label"), f"topic {topic!r} carries label: set its path{hint}")
            )
        if "label" in carries and "prediction" not in carries and not mapping.event_id:
            problems.append(
                (
                    (*where, "event_id"),
                    f"topic {topic!r} carries label without the prediction, so its labels are "
                    "joined to predictions by event id: set the event id path",
                )
            )
        others = [t for t in label_topics if t != topic]
        if "prediction" in carries and others and not mapping.event_id:
            problems.append(
                (
                    (*where, "event_id"),
                    f"topic {topic!r} carries prediction and {others[0]!r} carries labels, which "
                    "are joined by event id: set the event id path",
                )
            )
    if label_topics and not prediction_topics:
        problems.append(
            (
                ("topics", label_topics[0]),
                f"topic {label_topics[0]!r} carries label but no input topic carries "
                "prediction: labels have nothing to be joined to",
            )
        )
    return problems


class ConfigValidationError(ConfigError):
    """The configuration does not validate; ``problems`` holds one line per error."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        n = len(problems)
        header = f"invalid configuration {source}: {n} problem{'s' if n != 1 else ''}"
        fix = f"fix the keys above in {source} or the environment variables named"
        super().__init__("\n".join([header, *(f"  {p}" for p in problems), fix]))


class Config(Section):
    """The whole streamdrift configuration (one frozen tree)."""

    kafka: KafkaConfig = Field(description="Where events come from and alerts go to.")
    redis: RedisConfig | None = Field(
        default=None,
        description="Redis holding detector state and offsets; absent or null = keep state in "
        "memory (embedded mode, e.g. replay; nothing survives a restart).",
    )
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="How often state and offsets are saved."
    )
    mapping: MappingConfig = Field(
        default_factory=MappingConfig, description="Where each field is inside the events."
    )
    topics: dict[str, TopicConfig] = Field(
        default_factory=dict,
        description="Per input topic (a name from kafka.input_topics): its own mapping and what "
        "it carries; topics not listed use `mapping`.",
    )
    labels: LabelsConfig = Field(
        default_factory=LabelsConfig,
        description="Joining delayed labels to predictions (active when a topic carries label).",
    )
    monitors: list[MonitorRule] = Field(
        default_factory=list,
        description="Which detectors run on which model/feature. Every stream starts from the "
        "defaults (numeric: adwin, page_hinkley, psi; categorical: psi; multivariate: "
        "isolation_forest); each matching rule then changes them, in order.",
    )
    reference: ReferenceConfig | None = Field(
        default=None,
        description="Reference profile from training data (`streamdrift reference build`); PSI "
        "and the isolation forest start from it instead of a warm-up. null = warm up.",
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert policy.")
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="Cardinality limits protecting memory."
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Prometheus /metrics endpoint."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Log level (case-insensitive)."
    )

    _monitor_cache: dict[tuple[str, str, str], DetectorParams] = PrivateAttr(default_factory=dict)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fields_within_limits(self) -> Config:
        for where, mapping in self._mappings():
            fields = mapping.features.fields
            if fields is not None and len(fields) > self.limits.max_features:
                raise ValueError(
                    f"{where}.features.fields names {len(fields)} features but "
                    f"limits.max_features is {self.limits.max_features}; raise the limit or map "
                    "fewer features"
                )
        return self

    @model_validator(mode="after")
    def _topics_consistent(self) -> Config:
        problems = topic_problems(self)
        if problems:  # one error per problem, each at its key path
            raise ValidationError.from_exception_data(
                "Config",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("topics", "{problem}", {"problem": text}),
                        loc=loc,
                        # a path left unset shows as "(got None)"; a whole topic shows nothing
                        input=None if loc[-1] in ("prediction", "label", "event_id") else {},
                    )
                    for loc, text in problems
                ],
            )
        return self

    def _mappings(self) -> list[tuple[str, MappingConfig]]:
        out = [("mapping", self.mapping)]
        out += [(f"topics.{n}.mapping", t.mapping) for n, t in self.topics.items() if t.mapping]
        return out

    def topic_mapping(self, topic: str) -> MappingConfig:
        """The field mapping of ``topic`` (its own, or the top-level ``mapping``)."""
        own = self.topics.get(topic)
        return own.mapping if own is not None and own.mapping is not None else self.mapping

    def carries(self, topic: str) -> tuple[Carried, ...]:
        """What ``topic``'s events carry, in the order of :data:`CARRIES`.

        >>> cfg = parse_config({"kafka": {"input_topics": ["f", "p"]},
        ...     "topics": {"p": {"carries": ["prediction"]}}})
        >>> cfg.carries("f"), cfg.carries("p")
        (('features', 'prediction'), ('prediction',))
        """
        own = self.topics.get(topic)
        if own is not None and own.carries is not None:
            return tuple(c for c in CARRIES if c in own.carries)
        mapping = self.topic_mapping(topic)
        found: list[Carried] = ["features"]
        if mapping.prediction:
            found.append("prediction")
        if mapping.label:
            found.append("label")
        return tuple(found)

    @property
    def labels_active(self) -> bool:
        """Whether some input topic carries labels (the join and the error streams run)."""
        return any("label" in self.carries(t) for t in self.kafka.input_topics)

    def error_detectors(self) -> DetectorParams:
        """Detector kind -> kwargs for each model's error stream (``labels.detectors``)."""
        base = "classification" if self.labels.problem == "classification" else "regression"
        result = {k: dict(v) for k, v in _ERROR_DEFAULTS[base].items()}
        for kind, params in (self.labels.detectors or {}).items():
            if params is False:
                result.pop(kind, None)
            else:
                result[kind] = dict(params)
        return result

    def monitors_for(
        self, model_id: str, feature: str, feature_type: FeatureType
    ) -> DetectorParams:
        """Detector kind -> constructor kwargs for one (model, feature) stream.

        Call it once when a stream is first seen (results are cached); the prediction is the
        feature :data:`PREDICTION`. Rules whose ``models`` and ``features`` globs both match are
        applied in order over the defaults: a kind given params replaces that kind's params,
        ``false`` removes it, a section set to ``null`` removes them all.

        >>> cfg = parse_config({"kafka": {"input_topics": ["t"]}, "monitors": [
        ...     {"features": ["id_*"], "numeric": None},
        ...     {"models": ["fraud*"], "numeric": {"psi": {"window": 500}, "adwin": False}}]})
        >>> cfg.monitors_for("fraud-v3", "amount", "numeric")
        {'page_hinkley': {}, 'psi': {'window': 500}}
        >>> cfg.monitors_for("fraud-v3", "id_user", "numeric")
        {'psi': {'window': 500}}
        """
        key = (model_id, feature, feature_type)
        cached = self._monitor_cache.get(key)
        if cached is None:
            cached = self._resolve(model_id, feature, feature_type)
            self._monitor_cache[key] = cached
        return {kind: dict(params) for kind, params in cached.items()}

    def multivariate_for(self, model_id: str) -> DetectorParams:
        """Multivariate detector kind -> kwargs for ``model_id`` (rules matching the model only;
        their ``features`` globs do not restrict it).

        >>> parse_config({"kafka": {"input_topics": ["t"]}}).multivariate_for("m")
        {'isolation_forest': {'n_trees': 10, 'height': 8, 'window': 1000}}
        """
        return self.monitors_for(model_id, "", "multivariate")  # type: ignore[arg-type]

    def _resolve(self, model_id: str, feature: str, section: str) -> DetectorParams:
        result: DetectorParams = {k: dict(v) for k, v in _DEFAULTS[section].items()}
        include_prediction = True
        for rule in self.monitors:
            if not any(fnmatch.fnmatchcase(model_id, p) for p in rule.models):
                continue
            if section != "multivariate" and not any(
                fnmatch.fnmatchcase(feature, p) for p in rule.features
            ):
                continue
            if "include_prediction" in rule.model_fields_set:
                include_prediction = rule.include_prediction
            if section not in rule.model_fields_set:
                continue
            spec: dict[str, Any] | None = getattr(rule, section)
            if spec is None:
                result = {}
                continue
            for kind, params in spec.items():
                if params is False:
                    result.pop(kind, None)
                else:
                    result[kind] = dict(params)
        if feature == PREDICTION and not include_prediction:
            return {}
        return result

    def masked(self) -> dict[str, Any]:
        """The configuration as plain JSON-able data with every secret masked (for logs)."""
        return self.model_dump(mode="json")

    def summary(self) -> list[str]:
        """A few human lines describing what this configuration will do."""
        k, m = self.kafka, self.mapping
        state = (
            f"redis {mask_url(self.redis.url.get_secret_value())} (key prefix "
            f"{self.redis.key_prefix!r})"
            if self.redis
            else "in memory (no redis configured)"
        )
        if m.features.fields is not None:
            feats = f"{len(m.features.fields)} named: " + ", ".join(m.features.fields)
        else:
            feats = f"every key of the object at {m.features.path!r}"
        declared = ", ".join(f"{n}={t}" for n, t in m.feature_types.items()) or "none"
        metrics = (
            f"http://{self.metrics.host}:{self.metrics.port}/metrics"
            if self.metrics.port
            else "disabled"
        )
        rules = [
            f"models {','.join(r.models)} / features {','.join(r.features)}" for r in self.monitors
        ]
        return [
            f"kafka: brokers {','.join(k.bootstrap_servers)}, group {k.group_id!r}",
            f"topics: in {', '.join(k.input_topics)}; alerts -> {k.alert_topic}; "
            f"dead letters -> {k.dead_letter_topic or '(disabled)'}",
            f"state: {state}",
            f"model id: {m.model_id.describe()}",
            f"features: {feats}; declared types: {declared}; others inferred from first value",
            f"prediction: {m.prediction or '(not mapped)'}; label: {m.label or '(not mapped)'}",
            *(
                f"topic {t}: carries {', '.join(self.carries(t))}"
                + (" (own mapping)" if t in self.topics and self.topics[t].mapping else "")
                for t in k.input_topics
                if t in self.topics
            ),
            *(
                [
                    f"labels: {self.labels.problem}, joined by event id within "
                    f"{self.labels.ttl_seconds:,.0f} s, error stream watched by "
                    + ", ".join(self.error_detectors())
                ]
                if self.labels_active
                else []
            ),
            f"monitors: defaults + {len(rules)} rule(s)"
            + (": " + "; ".join(rules) if rules else ""),
            f"metrics: {metrics}",
        ]


def parse_config(
    data: Mapping[str, Any] | None,
    env: Mapping[str, str] | None = None,
    source: str = "(mapping)",
) -> Config:
    """Validate ``data`` (the parsed YAML document) with the ``env`` overrides applied.

    ``env=None`` means no overrides: this function never reads ``os.environ``. Raises
    :class:`ConfigValidationError` listing every problem as ``key.path: expected (got X)``.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigValidationError(
            source, [f"(top level): expected a mapping of sections, got {type(data).__name__}"]
        )
    merged, origins = apply_env(dict(data), env or {}, Config)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigValidationError(source, format_errors(exc, Config, origins)) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Load the YAML file at ``path``, apply ``env`` overrides (``None`` = ``os.environ``)."""
    data = read_yaml(Path(path))
    return parse_config(data, os.environ if env is None else env, source=str(path))


def load_default_config(env: Mapping[str, str] | None = None) -> Config:
    """The embedded default configuration (demo event shape, in-memory state)."""
    return load_config(DEFAULT_CONFIG_PATH, env)
