"""One root exception, one subclass per area; every message says what to do."""

from __future__ import annotations


class StreamdriftError(Exception):
    """Root of every error streamdrift raises on purpose."""


class ConfigError(StreamdriftError):
    """The configuration file or an environment override is invalid."""


class StateError(StreamdriftError):
    """A detector state document is corrupt, truncated or of an unknown version."""


class DecodeError(StreamdriftError):
    """An input event cannot be decoded or mapped; it goes to the dead-letter output."""


class FencedError(StreamdriftError):
    """A checkpoint was refused: another consumer owns the partition now."""


class DeliveryError(StreamdriftError):
    """Alerts or dead letters could not be delivered; the checkpoint must not advance."""


class StoreError(StreamdriftError):
    """The state store (Redis) failed or is unreachable."""


class StateLostError(StreamdriftError):
    """The store lost a task's checkpoint (emptied or rolled back): the fence or state vanished."""


class ConnectError(StreamdriftError):
    """Kafka refused or never answered the connection: address, credentials or TLS settings."""
