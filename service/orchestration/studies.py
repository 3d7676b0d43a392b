"""Study and trial operations that need no engine: safe in the API process.

Asking without an engine works because suggestions are computed ahead of need: the
control worker keeps each study's proposal buffer (WAITING trials) filled, and handing
one out is a database update under the study's lock.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.domain import (
    FINAL_STUDY_STATES,
    StudySpec,
    StudyState,
    TrialState,
    result_problem,
)
from service.orchestration.budget import trials_left
from service.orchestration.results import IngestOutcome, ingest_result
from service.orchestration.verification import apply_warm_start, waiting_verifications
from service.storage import repository as repo
from service.storage import tenants
from service.storage.tables import StudyRow, TrialRow
from workers.contracts import TrialResult
from workers.objectives.registry import (
    available_objectives,
    check_options,
    check_parameter_names,
    check_scaling_axes,
)


class UnknownObjectiveNameError(ValueError):
    """A study names an objective that is not registered."""


class NotExternalTrialError(ValueError):
    """tell/heartbeat through the API on a trial that a worker runs."""


class UnusableResultError(ValueError):
    """A told result the study cannot record (``domain.result_problem`` says why)."""


def create_study_row(
    session: Session, *, spec: StudySpec, now: float, tenant_id: int | None = None
) -> StudyRow:
    """A new RUNNING study of ``tenant_id`` (None: the tenant ``default``) with no engine
    yet (built by the scheduler's first step); a warm start re-centres its space first
    (NoRulesError: the source has no rules; another tenant's source is a
    StudyNotFoundError, as a missing one is).

    The objective's name and options, and (for a study its workers run) that the space's
    parameters are the objective's and that each scaling axis names one of them or a
    metric the objective reports, are checked here before anything is stored
    (InvalidObjectiveOptionsError, InvalidParameterNamesError, InvalidScalingAxesError):
    found by the first step, by every trial or by the fit after the last, they would
    leave a study that can never run or never give rules. An external study's runner
    reports its own metrics: its axes are not checked.
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
    if spec.executor == "workers":
        space_names = None if spec.space is None else spec.space.names
        if space_names is not None:
            check_parameter_names(spec.objective, space_names)
        axes = spec.scaling.model_dump(exclude_none=True).values()
        check_scaling_axes(spec.objective, axes, space_names)
    return store_study(session, spec=spec, now=now, tenant_id=tenant_id)


def store_study(
    session: Session, *, spec: StudySpec, now: float, tenant_id: int | None
) -> StudyRow:
    """Store an already checked ``spec`` as a new RUNNING study, with no engine state
    yet (``create_study_row`` checks a new study's spec; an import stores finished runs
    under its own)."""
    return repo.create_study(
        session,
        name=spec.name,
        objective=spec.objective,
        spec=spec.model_dump(mode="json"),
        engine_state="",
        now=now,
        tenant_id=tenant_id,
    )


def change_state(
    session: Session, *, study: StudyRow, state: StudyState, now: float, message: str | None = None
) -> None:
    """Pause, resume or stop ``study`` (locked by the caller); InvalidTransitionError if
    its state cannot become ``state``. A final state cancels the proposal buffer: no one
    will dispatch those trials now.

    The one state change, for the API's routes and the scheduler alike."""
    repo.set_study_state(session, study=study, state=state, now=now, message=message)
    if state in FINAL_STUDY_STATES:
        cancel_waiting(session, study=study, now=now)


def cancel_waiting(session: Session, *, study: StudyRow, now: float) -> None:
    """Cancel the study's buffered proposals (its WAITING trials)."""
    for trial in repo.trials_in_state(session, study_id=study.id, states=[TrialState.WAITING]):
        repo.cancel_trial(session, trial=trial, now=now)


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

    A result ``domain.result_problem`` refuses is an UnusableResultError (a 422), the
    study's own rule on the loss's sign included: a loss (cross-entropy, error rate) is
    >= 0 unless the study sets ``allow_negative_loss``, so a negative one is most likely
    a sign error (a log-likelihood sent unnegated) that would steer the search the wrong
    way unseen.
    """
    trial = _external(session, trial_id=trial_id)
    signed = _spec(session, trial.study_id).allow_negative_loss
    problem = result_problem(failed=failed, loss=loss, cost=cost, signed=signed)
    if problem is not None:
        raise UnusableResultError(problem)
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
