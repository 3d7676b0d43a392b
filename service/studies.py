"""Study and trial operations that need no engine: safe in the API process.

Asking without an engine works because suggestions are computed ahead of need: the
control worker keeps each study's proposal buffer (WAITING trials) filled, and handing
one out is a database update under the study's lock.
"""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from service.budget import trials_left
from service.domain import StudySpec, StudyState, TrialState
from service.results import IngestOutcome, ingest_result
from service.storage import repository as repo
from service.storage import tenants
from service.storage.tables import StudyRow, TrialRow
from service.verification import apply_warm_start, waiting_verifications
from workers.contracts import TrialResult
from workers.objectives.registry import (
    available_objectives,
    check_options,
    check_parameter_names,
)


class UnknownObjectiveNameError(ValueError):
    """A study names an objective that is not registered."""


class NotExternalTrialError(ValueError):
    """tell/heartbeat through the API on a trial that a worker runs."""


class NegativeLossError(ValueError):
    """A negative loss told to a study that did not declare its loss signed."""


def create_study_row(
    session: Session, *, spec: StudySpec, now: float, tenant_id: int | None = None
) -> StudyRow:
    """A new RUNNING study of ``tenant_id`` (None: the tenant ``default``) with no engine
    yet (built by the scheduler's first step); a warm start re-centres its space first
    (NoRulesError: the source has no rules; another tenant's source is a
    StudyNotFoundError, as a missing one is).

    The objective's name and options, and (for a study its workers run) that the space's
    parameters are the objective's, are checked here before anything is stored
    (InvalidObjectiveOptionsError, InvalidParameterNamesError): found by the first step or
    by every trial, they would leave a study that can never run.
    """
    names = available_objectives()
    if spec.objective not in names:
        raise UnknownObjectiveNameError(
            f"unknown objective {spec.objective!r}; registered: {', '.join(names)}"
        )
    check_options(spec.objective, spec.objective_options)
    if spec.warm_start is not None and tenant_id is not None:  # only from its own studies
        tenants.check_study_owner(session, study_id=spec.warm_start.study_id, tenant_id=tenant_id)
    spec = apply_warm_start(session, spec=spec)
    if spec.executor == "workers" and spec.space is not None:
        check_parameter_names(spec.objective, spec.space.names)
    return repo.create_study(
        session,
        name=spec.name,
        objective=spec.objective,
        spec=spec.model_dump(mode="json"),
        engine_state="",
        now=now,
        tenant_id=tenant_id,
    )


def take_buffered(
    session: Session, *, study_id: int, count: int, now: float, lease_seconds: float
) -> list[TrialRow]:
    """Hand out up to ``count`` buffered proposals to an external runner, on a lease."""
    study = repo.get_study(session, study_id=study_id, lock=True)
    if study.state == StudyState.COMPLETE:
        waiting = waiting_verifications(session, study_id=study_id)
        return _hand_out(session, waiting[: max(0, count)], now=now, lease_seconds=lease_seconds)
    if study.state != StudyState.RUNNING:
        return []
    tally = repo.tally(session, study_id=study_id)
    n = min(count, trials_left(session, study=study, tally=tally) + tally.requeued)
    waiting = repo.trials_in_state(session, study_id=study_id, states=[TrialState.WAITING])
    return _hand_out(session, waiting[: max(0, n)], now=now, lease_seconds=lease_seconds)


def _hand_out(
    session: Session, trials: list[TrialRow], *, now: float, lease_seconds: float
) -> list[TrialRow]:
    for trial in trials:
        trial.external = True
        repo.start_trial(session, trial=trial, now=now, lease_seconds=lease_seconds)
    return trials


def tell(
    session: Session,
    *,
    trial_id: int,
    loss: float | None,
    cost: float,
    failed: bool,
    failure_reason: str | None,
    metrics: dict,
    curve: list[dict[str, float]],
    now: float,
    max_attempts: int,
) -> IngestOutcome:
    """Record an external runner's result exactly like a worker's (idempotent).

    A negative loss is refused unless the study sets ``allow_negative_loss``: a loss
    (cross-entropy, error rate) is >= 0, so a negative one is most likely a sign error (a
    log-likelihood sent unnegated) that would steer the search the wrong way unseen.
    """
    trial = _external(session, trial_id=trial_id)
    if not failed and (loss is None or not math.isfinite(loss)):
        raise ValueError("a completed trial needs a finite loss; send failed=true otherwise")
    if not failed and loss < 0 and not _spec(session, trial.study_id).allow_negative_loss:
        raise NegativeLossError(
            f"loss {loss} is negative: a loss is minimised and, unless the study declares it "
            "signed, >= 0 (a log-likelihood is sent negated); if this metric is signed (a "
            "negated reward), create the study with allow_negative_loss: true"
        )
    result = TrialResult(
        study_id=trial.study_id,
        trial_id=trial.id,
        attempt=trial.attempt,
        status="failed" if failed else "completed",
        loss=None if failed else loss,
        cost_seconds=cost,
        failure_kind="config" if failed else None,
        failure_reason=failure_reason,
        metrics=metrics,
        curve=curve,
        worker="external",
    )
    return ingest_result(session, result=result, now=now, max_attempts=max_attempts)


def heartbeat(session: Session, *, trial_id: int, now: float, lease_seconds: float) -> TrialRow:
    """Renew an external trial's lease."""
    trial = _external(session, trial_id=trial_id)
    repo.heartbeat(session, trial=trial, now=now, lease_seconds=lease_seconds)
    return trial


def _spec(session: Session, study_id: int) -> StudySpec:
    return StudySpec.model_validate(repo.get_study(session, study_id=study_id).spec)


def _external(session: Session, *, trial_id: int) -> TrialRow:
    trial = repo.get_trial(session, trial_id=trial_id)
    if not trial.external:
        raise NotExternalTrialError(
            f"trial {trial_id} is run by a worker; its result arrives through the queue"
        )
    return trial
