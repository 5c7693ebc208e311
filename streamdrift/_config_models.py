"""The sections of the settings tree; import them from :mod:`streamdrift.config`."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from streamdrift._config_kafka import KafkaClientConfig, Section
from streamdrift.paths import parse_path

FeatureType = Literal["numeric", "categorical"]

PREDICTION = "__prediction__"
"""Column name of the prediction among a model's features (numeric or categorical)."""
LABEL = "__label__"
"""Name under which the label's type is remembered; the label itself is ``ModelColumns.label``."""
RESERVED_FEATURES = frozenset({PREDICTION, LABEL})

DETECTOR_KINDS: dict[str, tuple[str, ...]] = {
    "numeric": ("adwin", "page_hinkley", "psi"),
    "categorical": ("psi",),
    "multivariate": ("isolation_forest",),
    "error": ("adwin", "page_hinkley", "ddm"),
}

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SERVER = re.compile(r"\[?[A-Za-z0-9._:-]+\]?(:\d{1,5})?")


def _check_topic(name: str) -> str:
    if not _TOPIC.fullmatch(name) or name in (".", ".."):
        raise ValueError("expected a Kafka topic name: 1-249 of letters, digits, '.', '_', '-'")
    return name


def _check_path(path: str) -> str:
    parse_path(path)
    return path


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``.

    >>> mask_url("rediss://user:s3cret@redis:6380/0")
    'rediss://user:***@redis:6380/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


TopicName = Annotated[str, AfterValidator(_check_topic)]
PathStr = Annotated[str, AfterValidator(_check_path)]


class KafkaConfig(Section):
    """Kafka connection, topics and polling."""

    bootstrap_servers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        min_length=1,
        description="Brokers as host:port; a list or one comma-separated string.",
    )
    group_id: str = Field(default="streamdrift", min_length=1, description="Consumer group id.")
    input_topics: list[TopicName] = Field(
        min_length=1, description="Topics of model events to monitor (required)."
    )
    alert_topic: TopicName = Field(
        default="streamdrift-alerts", description="Where alerts are produced."
    )
    dead_letter_topic: TopicName | None = Field(
        default="streamdrift-dead-letter",
        description="Where undecodable events go with the reason; null = count and log only.",
    )
    library: Literal["kafka-python", "confluent-kafka"] = Field(
        default="kafka-python",
        description="Kafka client: kafka-python (pure Python, the default) or confluent-kafka "
        "(librdkafka; extra `streamdrift[confluent]`, about half the CPU per event end to end).",
    )
    client: KafkaClientConfig = Field(
        default_factory=KafkaClientConfig,
        description="Passthrough kafka-python settings (security, timeouts, ...), allow-listed.",
    )
    max_poll_records: int = Field(
        default=2000, ge=1, description="Records per poll = decode batch size."
    )
    poll_timeout_ms: int = Field(
        default=500, ge=0, description="How long one poll waits for records."
    )
    max_message_bytes: int = Field(
        default=1_048_576, ge=1, description="Larger messages go to the dead letter as 'oversized'."
    )

    @field_validator("bootstrap_servers", "input_topics", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, servers: list[str]) -> list[str]:
        for server in servers:
            if not _SERVER.fullmatch(server):
                raise ValueError(f"expected host:port for each broker, got {server!r}")
        return servers

    @model_validator(mode="after")
    def _topics_distinct(self) -> KafkaConfig:
        if len(set(self.input_topics)) != len(self.input_topics):
            raise ValueError("input_topics lists a topic twice")
        for key in ("alert_topic", "dead_letter_topic"):
            if getattr(self, key) in self.input_topics:
                raise ValueError(
                    f"{key} {getattr(self, key)!r} is also an input topic; streamdrift would "
                    "read its own output: use a different topic"
                )
        if self.library == "confluent-kafka":
            from streamdrift._kafka_confluent import UNSUPPORTED, available

            for name in sorted(UNSUPPORTED):
                if getattr(self.client, name) is not None:
                    raise ValueError(
                        f"client.{name} has no librdkafka equivalent; remove it or use "
                        "library: kafka-python"
                    )
            if not available():
                raise ValueError(
                    "library confluent-kafka is not installed: pip install "
                    "'streamdrift[confluent]', or use library: kafka-python"
                )
        return self


class RedisConfig(Section):
    """Redis holding detector state, offsets and fencing tokens."""

    url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="redis://, rediss:// (TLS) or unix:// URL; secret (may hold a password).",
    )
    key_prefix: str = Field(
        default="streamdrift",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every key; separates deployments sharing a Redis.",
    )

    @field_validator("url")
    @classmethod
    def _check_scheme(cls, url: SecretStr) -> SecretStr:
        scheme = urlsplit(url.get_secret_value()).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return url

    @field_serializer("url", when_used="json")
    def _mask(self, url: SecretStr) -> str:
        return mask_url(url.get_secret_value())


class CheckpointConfig(Section):
    """When state and offsets are saved (whichever comes first; also on shutdown/revocation)."""

    every_events: int = Field(
        default=50_000, ge=1, description="Checkpoint after this many events."
    )
    every_seconds: float = Field(
        default=5.0, gt=0, description="Checkpoint after this many seconds."
    )
    on_state_loss: Literal["rewarm", "rebuild"] = Field(
        default="rewarm",
        description=(
            "When a partition's checkpoint is found lost or unreadable at assignment: `rewarm` "
            "starts fresh detectors at the last known offset; `rebuild` re-reads the partition "
            "from the earliest offset Kafka has (alerts of re-read events are sent again, same "
            "ids). Either way a `state_reset` alert is sent."
        ),
    )


class SourceConfig(Section):
    """A value taken from a path in the event, or a constant (write a bare string for a path)."""

    path: PathStr | None = Field(default=None, description="Dotted path into the event.")
    constant: str | None = Field(
        default=None, min_length=1, description="Use this value for every event."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"path": value}
        if not isinstance(value, dict):
            raise ValueError("expected a path string or {constant: VALUE}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceConfig:
        if (self.path is None) == (self.constant is None):
            raise ValueError("give exactly one of 'path' or 'constant'")
        return self

    def describe(self) -> str:
        return f"constant {self.constant!r}" if self.constant is not None else repr(self.path)


class FeaturesConfig(Section):
    """Where the features are: one object of name -> value, or explicitly named paths."""

    path: PathStr | None = Field(
        default=None, description="Path of an object whose keys are features."
    )
    fields: dict[str, PathStr] | None = Field(default=None, description="Feature name -> path.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _exactly_one(self) -> FeaturesConfig:
        if (self.path is None) == (self.fields is None):
            raise ValueError("give exactly one of 'path' (an object of features) or 'fields'")
        for name in self.fields or ():
            if not name or name in RESERVED_FEATURES:
                raise ValueError(f"feature name {name!r} is empty or reserved")
        return self


class MappingConfig(Section):
    """Where each field is inside the user's JSON events (paths like ``a.b[0].c``)."""

    model_id: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="model_id"),
        description="Model id: a path, or {constant: NAME} when the topic carries one model.",
    )
    event_id: PathStr | None = Field(default="event_id", description="Event id path; optional.")
    event_time: PathStr | None = Field(
        default="ts",
        description="Event time path: epoch s, epoch ms (> 1e11) or ISO-8601; optional.",
    )
    event_time_fallback: Literal["kafka_timestamp", "none"] = Field(
        default="kafka_timestamp",
        description="Event time when the path is absent: record time or NaN.",
    )
    features: FeaturesConfig = Field(
        default_factory=lambda: FeaturesConfig(path="features"),
        description="Where the features are: {path: P} or {fields: {name: path}}.",
    )
    feature_types: dict[str, FeatureType] = Field(
        default_factory=dict,
        description="Declared types; others inferred from their first value (str -> categorical, "
        "number or bool -> numeric).",
    )
    prediction: PathStr | None = Field(
        default="prediction", description="Prediction path; optional."
    )
    prediction_type: FeatureType | None = Field(default=None, description="null = inferred.")
    label: PathStr | None = Field(default=None, description="Ground-truth label path; optional.")
    label_type: FeatureType | None = Field(default=None, description="null = inferred.")
    allow_missing_features: bool = Field(
        default=True,
        description="Missing/null feature -> NaN/None (counted) instead of a dead letter.",
    )

    @model_validator(mode="after")
    def _types_known(self) -> MappingConfig:
        for name in self.feature_types:
            if name in RESERVED_FEATURES:
                raise ValueError(f"feature_types: {name!r} is reserved; use prediction_type")
            fields = self.features.fields
            if fields is not None and name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"feature_types names {name!r}, not in features.fields{hint}")
        return self


def _check_detectors(section: str, spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("expected a mapping of detector kind -> params (or false), or null")
    allowed = DETECTOR_KINDS[section]
    out: dict[str, Any] = {}
    for kind, params in spec.items():
        if kind not in allowed:
            close = difflib.get_close_matches(str(kind), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown {section} detector {kind!r}; {hint}allowed: {', '.join(allowed)}"
            )
        if params is None or params is True:
            params = {}
        if params is not False and not (
            isinstance(params, dict) and all(isinstance(k, str) for k in params)
        ):
            raise ValueError(f"{kind}: expected a mapping of constructor params, or false")
        out[kind] = params
    return out


class MonitorRule(Section):
    """One rule of ``monitors``: applies to streams whose model and feature match the globs."""

    models: list[str] = Field(default_factory=lambda: ["*"], description="Model id globs.")
    features: list[str] = Field(
        default_factory=lambda: ["*"],
        description=f"Feature globs (the prediction is {PREDICTION!r}); ignored for multivariate.",
    )
    numeric: dict[str, Any] | None = Field(
        default=None, description="Numeric detectors: kind -> params or false; null = none."
    )
    categorical: dict[str, Any] | None = Field(
        default=None, description="Categorical detectors: kind -> params or false; null = none."
    )
    multivariate: dict[str, Any] | None = Field(
        default=None, description="Per-model detectors on the numeric vector; null = none."
    )
    include_prediction: bool = Field(
        default=True, description="Monitor the prediction like a feature."
    )

    @field_validator("numeric", "categorical", "multivariate", mode="before")
    @classmethod
    def _kinds(cls, spec: Any, info: Any) -> dict[str, Any] | None:
        return _check_detectors(info.field_name, spec)


class AlertsConfig(Section):
    """Alert policy: one alert per drift episode, not one per event."""

    cooldown_events: int = Field(
        default=5000,
        ge=0,
        description="Per (model, feature, detector): suppress re-alerts within this many events "
        "of that stream.",
    )
    outlier_cooldown_events: int = Field(
        default=0, ge=0, description="The same for outlier alerts of the multivariate detector."
    )
    min_severity: Literal["info", "warning", "critical"] = Field(
        default="info", description="Alerts below this severity are counted but not published."
    )


class LimitsConfig(Section):
    """Cardinality limits: the state and the metrics stay bounded whatever the stream does."""

    max_models: int = Field(
        default=1000,
        ge=1,
        description="New model ids beyond this go to the dead letter (too_many_models).",
    )
    max_features: int = Field(
        default=200,
        ge=1,
        description="Per model; events adding more are dead letters (too_many_features).",
    )
    max_categories: int = Field(
        default=100,
        ge=2,
        description="Per categorical stream; categorical detectors pool the rest.",
    )


class MetricsConfig(Section):
    """The Prometheus endpoint (/metrics, /healthz, /readyz)."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Interface to listen on.")
    port: int = Field(
        default=9108, ge=0, le=65535, description="TCP port; 0 disables the endpoint."
    )
    max_series: int = Field(
        default=10_000,
        ge=1,
        description="Most (model, feature, detector) label sets of the detector metrics; "
        "updates past it are counted in metric_series_dropped_total.",
    )


CARRIES = ("features", "prediction", "label")
"""What an input topic's events can carry (``topics.<name>.carries``)."""
Carried = Literal["features", "prediction", "label"]


class TopicConfig(Section):
    """One input topic's own shape: its field mapping and what its events carry."""

    mapping: MappingConfig | None = Field(
        default=None,
        description="This topic's field mapping (same keys as `mapping`); null = the top-level "
        "`mapping`.",
    )
    carries: list[Carried] | None = Field(
        default=None,
        min_length=1,
        description="What the events carry: features, prediction, label (any of them); null = "
        "what the mapping maps (features, plus prediction and label when their paths are set).",
    )

    @field_validator("carries")
    @classmethod
    def _distinct(cls, carries: list[Carried] | None) -> list[Carried] | None:
        if carries is not None and len(set(carries)) != len(carries):
            raise ValueError("carries lists a kind twice")
        return carries


class LabelsConfig(Section):
    """Delayed labels: the join to predictions by event id and the per-model error stream."""

    problem: Literal["classification", "regression"] = Field(
        default="classification",
        description="classification: error = 0/1 (prediction != label); regression: error = "
        "|prediction - label|.",
    )
    score_threshold: float = Field(
        default=0.5,
        description="Classification with a numeric score: predicted positive when score >= this.",
    )
    positive_labels: list[str] = Field(
        default_factory=lambda: ["1", "true", "yes", "positive"],
        min_length=1,
        description="Classification with a numeric score and string labels: labels meaning "
        "positive (case-insensitive).",
    )
    ttl_seconds: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="The join buffer keeps each model's predictions of the last ttl_seconds "
        "(event time, up to its newest); a label whose prediction left it is late, a label "
        "waiting for one older than that is unknown.",
    )
    max_predictions: int = Field(
        default=1_000_000,
        ge=1,
        description="Cap of the join buffer per model (predictions waiting for a label); the "
        "oldest are evicted first.",
    )
    max_pending: int = Field(
        default=10_000,
        ge=1,
        description="Cap per label partition of labels waiting for their prediction to become "
        "visible; beyond it the oldest is given up (counted as dropped).",
    )
    retry_seconds: float = Field(
        default=1.0, gt=0, description="How often waiting labels look for their prediction again."
    )
    detectors: dict[str, Any] | None = Field(
        default=None,
        description="Detectors on the error stream: kind (adwin, page_hinkley, ddm) -> params or "
        "false; null = adwin and ddm (classification) or adwin (regression).",
    )

    @field_validator("detectors", mode="before")
    @classmethod
    def _kinds(cls, spec: Any) -> dict[str, Any] | None:
        return _check_detectors("error", spec)

    @field_validator("positive_labels")
    @classmethod
    def _lower(cls, labels: list[str]) -> list[str]:
        return [label.lower() for label in labels]

    @model_validator(mode="after")
    def _ddm_is_binary(self) -> LabelsConfig:
        if self.problem == "regression" and (self.detectors or {}).get("ddm") not in (None, False):
            raise ValueError(
                "ddm watches a 0/1 error rate; with problem: regression the error is "
                "|prediction - label|: use adwin or page_hinkley"
            )
        return self
