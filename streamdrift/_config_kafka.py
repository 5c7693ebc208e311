"""The allow-listed kafka-python client settings (``kafka.client``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Section(BaseModel):
    """Base of every section: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaClientConfig(Section):
    """kafka-python settings passed through to the consumer and producer (allow-listed)."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        default=None, description="How to talk to the brokers."
    )
    sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None
    ) = Field(default=None, description="SASL mechanism (with SASL_* protocols).")
    sasl_plain_username: str | None = Field(default=None, description="SASL username.")
    sasl_plain_password: SecretStr | None = Field(
        default=None, description="Secret; masked in dumps."
    )
    sasl_kerberos_service_name: str | None = Field(
        default=None, description="Kerberos service name (GSSAPI)."
    )
    sasl_kerberos_domain_name: str | None = Field(
        default=None, description="Kerberos domain name (GSSAPI)."
    )
    ssl_cafile: str | None = Field(default=None, description="CA bundle to verify the brokers.")
    ssl_certfile: str | None = Field(default=None, description="Client certificate (mutual TLS).")
    ssl_keyfile: str | None = Field(default=None, description="Client private key (mutual TLS).")
    ssl_password: SecretStr | None = Field(
        default=None, description="Key password; masked in dumps."
    )
    ssl_crlfile: str | None = Field(default=None, description="Certificate revocation list.")
    ssl_ciphers: str | None = Field(default=None, description="OpenSSL cipher list.")
    ssl_check_hostname: bool | None = Field(
        default=None, description="Verify the broker host name against its certificate."
    )
    client_id: str | None = Field(
        default=None, description="Client id shown in broker logs and quotas."
    )
    client_rack: str | None = Field(default=None, description="Consumer only.")
    request_timeout_ms: int | None = Field(default=None, ge=1, description="Request timeout.")
    bootstrap_timeout_ms: int | None = Field(
        default=None, ge=1, description="How long connecting to the brokers at start may take."
    )
    connections_max_idle_ms: int | None = Field(
        default=None, ge=1, description="Close idle connections after this."
    )
    metadata_max_age_ms: int | None = Field(
        default=None, ge=0, description="Refresh metadata at least this often."
    )
    reconnect_backoff_ms: int | None = Field(
        default=None, ge=0, description="Wait before reconnecting."
    )
    reconnect_backoff_max_ms: int | None = Field(
        default=None, ge=0, description="Maximum reconnect backoff."
    )
    retry_backoff_ms: int | None = Field(
        default=None, ge=0, description="Wait before retrying a failed request."
    )
    receive_buffer_bytes: int | None = Field(
        default=None, ge=1, description="Socket receive buffer."
    )
    send_buffer_bytes: int | None = Field(default=None, ge=1, description="Socket send buffer.")
    session_timeout_ms: int | None = Field(default=None, ge=1, description="Consumer only.")
    heartbeat_interval_ms: int | None = Field(default=None, ge=1, description="Consumer only.")
    max_poll_interval_ms: int | None = Field(default=None, ge=1, description="Consumer only.")
    group_instance_id: str | None = Field(
        default=None, description="Static membership; consumer only."
    )
    fetch_min_bytes: int | None = Field(default=None, ge=1, description="Consumer only.")
    fetch_max_wait_ms: int | None = Field(default=None, ge=0, description="Consumer only.")
    fetch_max_bytes: int | None = Field(default=None, ge=1, description="Consumer only.")
    max_partition_fetch_bytes: int | None = Field(default=None, ge=1, description="Consumer only.")
    auto_offset_reset: Literal["earliest", "latest"] | None = Field(
        default=None, description="Where to start without a checkpoint; consumer only."
    )
    isolation_level: Literal["read_uncommitted", "read_committed"] | None = Field(
        default=None, description="read_committed skips aborted transactions; consumer only."
    )
    check_crcs: bool | None = Field(default=None, description="Consumer only.")
    acks: Literal[0, 1, "all"] | None = Field(default=None, description="Producer only.")
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        default=None, description="Producer only."
    )
    linger_ms: int | None = Field(default=None, ge=0, description="Producer only.")
    batch_size: int | None = Field(default=None, ge=0, description="Producer only.")
    max_request_size: int | None = Field(default=None, ge=1, description="Producer only.")
    retries: int | None = Field(default=None, ge=0, description="Producer only.")
    delivery_timeout_ms: int | None = Field(default=None, ge=1, description="Producer only.")
    enable_idempotence: bool | None = Field(default=None, description="Producer only.")

    def kwargs(self, role: Literal["consumer", "producer"]) -> dict[str, Any]:
        """The settings that were set, secrets revealed, for ``KafkaConsumer``/``KafkaProducer``.

        >>> KafkaClientConfig(acks="all", session_timeout_ms=10000).kwargs("producer")
        {'acks': 'all'}
        """
        skip = _PRODUCER_ONLY if role == "consumer" else _CONSUMER_ONLY
        out: dict[str, Any] = {}
        for name, value in self:
            if value is None or name in skip:
                continue
            out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return out


_CONSUMER_ONLY = frozenset(
    [
        "client_rack",
        "session_timeout_ms",
        "heartbeat_interval_ms",
        "max_poll_interval_ms",
        "group_instance_id",
        "fetch_min_bytes",
        "fetch_max_wait_ms",
        "fetch_max_bytes",
        "max_partition_fetch_bytes",
        "auto_offset_reset",
        "isolation_level",
        "check_crcs",
    ]
)
_PRODUCER_ONLY = frozenset(
    [
        "acks",
        "compression_type",
        "linger_ms",
        "batch_size",
        "max_request_size",
        "retries",
        "delivery_timeout_ms",
        "enable_idempotence",
    ]
)
