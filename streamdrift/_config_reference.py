"""The ``reference`` section: where the reference profile built from training data is."""

from __future__ import annotations

from pydantic import Field, model_validator

from streamdrift._config_kafka import Section


class ReferenceConfig(Section):
    """A reference profile from `streamdrift reference build`: PSI starts from training data."""

    path: str | None = Field(
        default=None, description="Profile file (JSON) written by `reference build --out`."
    )
    redis_key: str | None = Field(
        default=None,
        min_length=1,
        description="Redis key holding the profile (`reference build --to-redis`; the redis "
        "section's server).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceConfig:
        if (self.path is None) == (self.redis_key is None):
            raise ValueError("set exactly one of reference.path and reference.redis_key")
        return self
