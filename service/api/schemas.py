"""HTTP bodies, named by role: ``*Create`` in, ``*Public`` out, lists as ``{data, count}``."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search.types import MAX_COST, MIN_COST
from service.domain import StudySpec, StudyState, TrialState, result_problem
from service.reads.views import FrontEntry
from service.storable import StorableBody

StudyCreate = StudySpec


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Progress(BaseModel):
    spent_cost: float
    max_cost: float | None
    dispatched: int
    max_trials: int | None
    fraction: float = Field(description="share of the budget used, in [0, 1]")


class CostBand(BaseModel):
    max_cost: float
    best_loss: float | None


class TrialPublic(_Out):
    id: int
    study_id: int
    number: int
    state: TrialState
    params: dict[str, Any]
    reason: str
    external: bool
    attempt: int
    queue: str | None
    worker: str | None
    loss: float | None
    cost_seconds: float | None
    failure_kind: str | None
    failure_reason: str | None
    created_at: float
    dispatched_at: float | None
    heartbeat_at: float | None
    lease_expires_at: float | None
    finished_at: float | None


class FrontPointPublic(TrialPublic):
    """A point of the front: the trial standing for its configuration (its own fields,
    ``loss`` and ``cost_seconds`` included, as measured), and what the front was taken
    on. The raw trials stay in the trials list."""

    trial_ids: list[int] = Field(description="every COMPLETE trial of this configuration")
    n_measurements: int = Field(description="how many times it was measured")
    mean_cost: float = Field(description="the mean cost of its measurements")
    observed_loss: float = Field(description="the mean loss of its measurements")
    estimated_loss: float = Field(
        description="the loss the front was taken on: the engine's model estimate where "
        "the front's source is 'model', else the observed mean"
    )

    @classmethod
    def of(cls, trial: Any, point: FrontEntry) -> FrontPointPublic:
        """The point from the row of the trial standing for it and its front entry."""
        return cls.model_validate(
            {
                **TrialPublic.model_validate(trial).model_dump(),
                "trial_ids": list(point.trial_ids),
                "n_measurements": point.n_measurements,
                "mean_cost": point.cost,
                "observed_loss": point.observed_loss,
                "estimated_loss": point.estimated_loss,
            }
        )


FRONT_SOURCE = Field(
    description="where the front's estimated losses come from: 'model' (the engine's "
    "estimate, current with the study's completed trials) or 'observed' (the measured "
    "means: an imported or external study, or the engine has not yet seen the latest "
    "trials)"
)


class TrialDetail(TrialPublic):
    predicted_loss: float | None
    predicted_cost: float | None
    flops: float | None
    curve: list[dict[str, Any]]
    metrics: dict[str, Any]


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class StudyPublic(_Out):
    id: int
    name: str
    objective: str
    state: StudyState
    created_at: float
    updated_at: float
    message: str | None
    error: str | None = Field(
        None,
        description="why the study's stored spec no longer loads (it cannot run, and "
        "its detail shows the spec as stored); null when it loads",
    )


class StudyDetail(StudyPublic):
    spec: dict[str, Any]
    progress: Progress
    trials_by_state: dict[str, int]
    front: list[FrontPointPublic]
    front_source: str = FRONT_SOURCE
    best_per_cost_band: list[CostBand]
    has_rules: bool
    queue_workers: int | None = Field(
        None,
        description="live trial workers consuming the study's queue (0: its trials wait "
        "until one starts); null for an external study or when heartbeats are unreadable",
    )


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


class AskRequest(StorableBody):
    count: int = Field(1, ge=1, le=100, description="trials wanted")


class Assignment(BaseModel):
    """A trial handed to an external runner: run ``params``, then tell before the lease ends."""

    trial_id: int
    number: int
    params: dict[str, Any]
    lease_expires_at: float


class AskResponse(BaseModel):
    data: list[Assignment]
    count: int


class TellRequest(StorableBody):
    loss: float | None = Field(None, description="required unless failed")
    cost: float = Field(
        ge=0,
        description=f"what the trial cost (GPU-seconds): in [{MIN_COST:g}, {MAX_COST:g}], "
        "or 0 for a failed trial",
    )
    failed: bool = False
    failure_reason: str | None = Field(None, max_length=2000)
    metrics: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    curve: list[dict[str, float]] = Field(default_factory=list, max_length=100_000)

    @model_validator(mode="after")
    def _a_result_the_engine_can_model(self) -> Self:
        # the sign of the loss is the study's business: checked by
        # service.orchestration.studies.tell
        problem = result_problem(failed=self.failed, loss=self.loss, cost=self.cost)
        if problem is not None:
            raise ValueError(problem)
        return self


class TellResponse(BaseModel):
    trial_id: int
    outcome: str = Field(description="recorded | duplicate | requeued | stale")
    state: TrialState


class HeartbeatResponse(BaseModel):
    trial_id: int
    state: TrialState
    lease_expires_at: float | None


class WorkerPublic(BaseModel):
    worker: str
    device: str
    age_s: float
    study_id: int | None
    trial_id: int | None


class QueuePublic(BaseModel):
    name: str
    waiting: int = Field(description="trials dispatched and not yet started by a worker")
    running: int
    consumers: int | None = Field(
        description="live worker processes consuming this queue (0: nothing will run its "
        "trials); null when heartbeats are unreadable"
    )


class QueuesPublic(BaseModel):
    queues: list[QueuePublic]
    workers: list[WorkerPublic]
    heartbeats_available: bool


class FrontPublic(BaseModel):
    study_id: int
    data: list[FrontPointPublic]
    count: int
    source: str = FRONT_SOURCE


class Health(BaseModel):
    status: str
    detail: dict[str, str] = Field(default_factory=dict)


class VerifyRequest(StorableBody):
    """Body of POST /studies/{id}/verify (optional)."""

    scale_factor: float = Field(
        10.0, gt=1.0, le=1000.0, description="x the largest compute the rules observed"
    )


TENANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class TenantCreate(StorableBody):
    name: str = Field(
        pattern=TENANT_NAME_PATTERN,
        description="letters, digits, '_', '.', '-'; at most 100 characters",
    )


class TenantPublic(_Out):
    id: int
    name: str
    created_at: float


class TenantsPublic(BaseModel):
    data: list[TenantPublic]
    count: int


class TokenCreate(StorableBody):
    name: str = Field("api", min_length=1, max_length=200, description="what the token is for")


class TokenPublic(_Out):
    """A token without its secret: ``prefix`` identifies it."""

    id: int
    prefix: str
    name: str
    tenant_id: int | None = Field(description="null for an admin token")
    created_at: float
    revoked_at: float | None


class TokensPublic(BaseModel):
    data: list[TokenPublic]
    count: int


class IssuedTokenPublic(TokenPublic):
    token: str = Field(description="the token itself: shown this once, never stored")
