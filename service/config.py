"""Settings of a scaletune process, read from init kwargs, the environment and .env.

One ``Settings`` per process, built by a factory (never at import): tests pass kwargs
(``Settings(database_url="sqlite://")``) and the API swaps ``get_settings`` through
``app.dependency_overrides``. Every name is prefixed ``SCALETUNE_`` in the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from workers.config import BrokerSettings

DEFAULT_HOME = Path(".scaletune")
MIN_ADMIN_TOKEN_LENGTH = 32


class Settings(BrokerSettings):
    """Where the store lives, and the timing of leases and heartbeats; the broker, queue
    and heartbeat-store settings are the workers' own (``workers.config.BrokerSettings``)."""

    model_config = SettingsConfigDict(
        env_prefix="SCALETUNE_",
        env_file=".env",
        extra="ignore",
        secrets_dir=None,
        hide_input_in_errors=True,  # a rejected value may be a secret: errors never echo it
    )

    database_url: str = Field(
        f"sqlite:///{DEFAULT_HOME / 'scaletune.db'}",
        description="SQLAlchemy URL: a SQLite file (embedded) or postgresql+psycopg://...",
    )
    lease_seconds: float = Field(
        600.0, gt=0, description="an ask/tell trial must heartbeat or tell within this"
    )
    heartbeat_grace_seconds: float = Field(
        120.0, gt=0, description="a worker trial silent this long is reclaimed"
    )
    max_attempts: int = Field(3, ge=1, description="dispatches of one trial before it fails")
    proposal_buffer: int = Field(2, ge=0, description="suggestions asked ahead of need, per study")
    result_batch: int = Field(
        64,
        ge=1,
        description="result messages the control worker takes off its queue and records "
        "together at most (one transaction per study)",
    )
    tick_seconds: float = Field(
        5.0, gt=0, description="the control worker steps every running study this often"
    )
    proposals: Literal["control", "inline"] = Field(
        "control",
        description="control: the API hands out the buffer the control worker fills; "
        "inline: the API process runs the scheduler itself (single process)",
    )
    report_dir: Path = Field(
        DEFAULT_HOME / "reports", description="where scaling reports are written and served"
    )
    max_body_bytes: int = Field(1_000_000, gt=0, description="largest accepted request body")
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per log line, with study and trial ids"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="level of the root logger when log_format is json"
    )

    admin_token: SecretStr | None = Field(
        None,
        description="the admin API token (at least 32 characters, e.g. from "
        "`openssl rand -hex 32`); unset: only admin tokens issued with "
        "`scaletune admin issue-token --admin` are admins",
    )
    metrics_public: bool = Field(
        False, description="serve /metrics without a token (default: an admin token)"
    )

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"the admin token needs at least {MIN_ADMIN_TOKEN_LENGTH} characters "
                "(make one with: openssl rand -hex 32)"
            )
        return token


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (FastAPI dependency; overridable in tests)."""
    return Settings()
