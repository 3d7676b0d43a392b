"""The tables. Times are unix seconds (float), so the scheduler can run on a fake clock.

Why not Optuna's RDB schema: see docs/architecture.md ("Storage: our own schema").
JSON columns hold params, curves, metrics and the engine's ``state_dict``; never pickle.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Row ids are INTEGER columns: 32-bit on PostgreSQL (64-bit on SQLite). A larger id in a
# request names no row on either backend and is refused (422) before it reaches the
# driver, which on PostgreSQL would fail on it ("integer out of range").
MAX_ROW_ID = 2**31 - 1


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class TenantRow(Base):
    """Who owns studies: every study belongs to one tenant, and a tenant's API tokens
    reach only its own studies. Embedded mode uses the tenant ``default``."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class ApiTokenRow(Base):
    """An API token, stored as the SHA-256 of the token (never the token itself).

    ``tenant_id`` NULL makes an admin token (queue view, tenant and token management).
    ``prefix`` is the token's public part (``st_<8 hex>``): it names the token in
    listings and for revocation and gives away nothing of the secret part.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE", name="fk_api_tokens_tenant_id"),
        nullable=True,
        index=True,
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", name="fk_studies_tenant_id"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    objective: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # The engine's state_dict as JSON text, and a counter bumped on every save so a
    # process can tell whether its cached engine is current.
    engine_state: Mapped[str] = mapped_column(Text)
    engine_version: Mapped[int] = mapped_column(Integer, default=0)
    # Next per-study trial number; taken under the study's row lock.
    next_number: Mapped[int] = mapped_column(Integer, default=0)
    # Next per-study finish order (``TrialRow.finish_seq``); taken under the same lock.
    next_finish_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The engine's estimate of the front, written by the process that owns the engine so
    # the API serves it without torch (``service.storage.fronts``); null until then.
    front_estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        UniqueConstraint("study_id", "suggestion_id", name="uq_trials_study_suggestion"),
        UniqueConstraint("study_id", "finish_seq", name="uq_trials_study_finish_seq"),
        Index("ix_trials_study_state", "study_id", "state"),
        Index("ix_trials_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    suggestion_id: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]]
    reason: Mapped[str] = mapped_column(String(200))
    predicted_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    predicted_cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Dispatches reclaimed before any worker took them: not counted as attempts
    # (``repository.attempts_used``).
    lost_dispatches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    queue: Mapped[str | None] = mapped_column(String(200), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    dispatched_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    flops: Mapped[float | None] = mapped_column(Float, nullable=True)
    failure_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    curve: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # "<attempt>" of the result that finished the trial: proof of which delivery won.
    result_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The order results were recorded in (0, 1, 2, ... per study; None until a result):
    # the engine's history is the learnable finished trials in this order, which only
    # ever appends (``service.orchestration.engines``).
    finish_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
