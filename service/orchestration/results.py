"""Recording trial results idempotently; safe to call from the API (no engine, no torch).

Celery runs trial tasks with ``acks_late``, so a result can arrive twice, late, or after
the trial was reclaimed and handed to another worker. The rule: the first valid result
wins. A result for a final trial changes nothing; an infrastructure failure of an attempt
that is no longer current changes nothing. A recorded result takes the study's next
``finish_seq``; the scheduler's engine learns from it when it is next rebuilt.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from sqlalchemy.orm import Session

from service.domain import FINAL_TRIAL_STATES, TrialNotFoundError, TrialState, result_problem
from service.storage import repository as repo
from service.storage.tables import TrialRow
from workers.contracts import TrialResult


class IngestOutcome(enum.StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    REQUEUED = "requeued"
    STALE = "stale"


class ResultMismatchError(ValueError):
    """A result names a trial of another study."""


def ingest_result(
    session: Session, *, result: TrialResult, now: float, max_attempts: int
) -> IngestOutcome:
    """Record ``result`` on its trial (under the study's lock) and say what happened."""
    study_id = repo.lock_study_of_trial(session, trial_id=result.trial_id)
    return ingest_results(
        session, study_id=study_id, results=[result], now=now, max_attempts=max_attempts
    )[0]


def ingest_results(
    session: Session,
    *,
    study_id: int,
    results: Sequence[TrialResult],
    now: float,
    max_attempts: int,
) -> list[IngestOutcome]:
    """Record a burst of results of study ``study_id``, whose lock the caller holds.

    One query loads their trials; results are applied in order, so a second delivery
    within the burst is a DUPLICATE exactly as it would be in separate transactions. A
    result naming another study's trial or no trial raises and records nothing.
    """
    if not results:
        return []
    trials = repo.get_trials(session, trial_ids=[r.trial_id for r in results])
    signed = _allows_negative_loss(session, study_id)
    return [
        _ingest_one(
            session,
            trial=_trial_of(trials, result, study_id),
            result=result,
            now=now,
            max_attempts=max_attempts,
            signed=signed,
        )
        for result in results
    ]


def _allows_negative_loss(session: Session, study_id: int) -> bool:
    """The study's ``allow_negative_loss``, read from its stored spec as it was created
    (not re-validated: a spec whose options are refused today still records results)."""
    return bool(repo.get_study(session, study_id=study_id).spec.get("allow_negative_loss"))


def _trial_of(trials: dict[int, TrialRow], result: TrialResult, study_id: int) -> TrialRow:
    trial = trials.get(result.trial_id)
    if trial is None:
        raise TrialNotFoundError(f"no trial with id {result.trial_id}")
    if trial.study_id != result.study_id or trial.study_id != study_id:
        raise ResultMismatchError(
            f"trial {result.trial_id} belongs to study {trial.study_id}, not {result.study_id}"
        )
    return trial


def _ingest_one(
    session: Session,
    *,
    trial: TrialRow,
    result: TrialResult,
    now: float,
    max_attempts: int,
    signed: bool,
) -> IngestOutcome:
    if TrialState(trial.state) in FINAL_TRIAL_STATES:
        return IngestOutcome.DUPLICATE
    if result.status == "failed" and result.failure_kind == "infrastructure":
        return _infrastructure_failure(
            session, trial=trial, result=result, now=now, max_attempts=max_attempts
        )
    _finish(session, trial=trial, result=result, now=now, signed=signed)
    return IngestOutcome.RECORDED


def _infrastructure_failure(
    session: Session, *, trial: TrialRow, result: TrialResult, now: float, max_attempts: int
) -> IngestOutcome:
    """Retry the trial unless this attempt is stale or the attempts are used up."""
    if result.attempt != trial.attempt or trial.state != TrialState.RUNNING:
        return IngestOutcome.STALE
    if repo.attempts_used(trial) < max_attempts:
        repo.requeue_trial(session, trial=trial, now=now)
        return IngestOutcome.REQUEUED
    _finish(session, trial=trial, result=result, now=now, signed=True)  # failed: no loss
    return IngestOutcome.RECORDED


def _finish(
    session: Session, *, trial: TrialRow, result: TrialResult, now: float, signed: bool
) -> None:
    """Record the result; one the study cannot use fails the trial, saying why.

    ``domain.result_problem`` is the rule (the one ``tell`` answers 422 with): a worker's
    objective is code, so a non-finite or negative loss (in a study that does not declare
    its loss signed: most likely a sign error, a log-likelihood sent unnegated) or a cost
    the engine cannot model is recorded as a failed trial with the reason, never fed to
    the search nor shown on the front.
    """
    failed, kind, reason = result.status == "failed", result.failure_kind, result.failure_reason
    problem = result_problem(
        failed=failed, loss=result.loss, cost=result.cost_seconds, signed=signed
    )
    if problem is not None and not failed:
        failed, kind, reason = True, "config", problem
    if failed and kind is None:
        kind = "config"
    repo.finish_trial(
        session,
        trial=trial,
        now=now,
        failed=failed,
        loss=result.loss,
        cost_seconds=result.cost_seconds,
        result_key=str(result.attempt),
        failure_kind=kind,
        failure_reason=reason,
        flops=result.flops,
        curve=result.curve,
        metrics=result.metrics,
        worker=result.worker,
    )
