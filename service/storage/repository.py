"""Repository: every read and write of studies and trials, as keyword-only functions.

The contract (tested on SQLite and PostgreSQL by tests/service/test_repository.py):
- functions take an open ``Session`` and never commit; the caller owns the transaction
  (``service.storage.db.transaction``), so a unit of work is all-or-nothing;
- ``get_study(..., lock=True)`` holds the study's row lock until the transaction ends
  (``FOR UPDATE`` on PostgreSQL; SQLite transactions are serialized by BEGIN IMMEDIATE);
  everything that dispatches, asks or tells a study's engine takes it first;
- trial states only move along ``service.domain``'s lifecycle; a forbidden move raises
  ``InvalidTransitionError`` and writes nothing; final trials never change again;
- trial numbers are dense per study (0, 1, 2, ...) and unique with the suggestion id;
- a trial given a result gets the study's next ``finish_seq`` (0, 1, 2, ...), so the
  finished trials in that order only ever grow at the end (the engine's history).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session, defer

from search.types import Suggestion
from service.domain import (
    StudyNotFoundError,
    StudyState,
    TrialNotFoundError,
    TrialState,
    check_study_transition,
    check_trial_transition,
)
from service.storage import tenants
from service.storage.tables import StudyRow, TrialRow

RowT = TypeVar("RowT", StudyRow, TrialRow)


def create_study(
    session: Session,
    *,
    name: str,
    objective: str,
    spec: dict[str, Any],
    engine_state: str,
    now: float,
    tenant_id: int | None = None,
) -> StudyRow:
    """A new RUNNING study owned by ``tenant_id`` (None: the tenant ``default``, which
    embedded mode and in-process callers use; the API always names the token's tenant)."""
    study = StudyRow(
        tenant_id=tenants.default_tenant_id(session) if tenant_id is None else tenant_id,
        name=name,
        objective=objective,
        state=StudyState.RUNNING,
        spec=spec,
        created_at=now,
        updated_at=now,
        engine_state=engine_state,
        engine_version=0,
        next_number=0,
        next_finish_seq=0,
    )
    session.add(study)
    session.flush()
    return study


def get_study(session: Session, *, study_id: int, lock: bool = False) -> StudyRow:
    """The study; its engine state (JSON text) loads only when touched."""
    query = select(StudyRow).where(StudyRow.id == study_id).options(defer(StudyRow.engine_state))
    if lock:
        query = query.with_for_update()
    study = session.scalars(query).one_or_none()
    if study is None:
        raise StudyNotFoundError(f"no study with id {study_id}")
    return study


def lock_study_of_trial(session: Session, *, trial_id: int) -> int:
    """Take the row lock of the study owning ``trial_id`` (one round trip); its id."""
    study_id = session.scalar(
        select(StudyRow.id)
        .join(TrialRow, TrialRow.study_id == StudyRow.id)
        .where(TrialRow.id == trial_id)
        .with_for_update(of=StudyRow)
    )
    if study_id is None:
        raise TrialNotFoundError(f"no trial with id {trial_id}")
    return study_id


def list_studies(
    session: Session,
    *,
    states: Iterable[StudyState] | None = None,
    offset: int = 0,
    limit: int = 100,
    tenant_id: int | None = None,
) -> tuple[list[StudyRow], int]:
    """A page of studies by id and their total; only ``tenant_id``'s when given."""
    query = select(StudyRow)
    if tenant_id is not None:
        query = query.where(StudyRow.tenant_id == tenant_id)
    if states is not None:
        query = query.where(StudyRow.state.in_([str(s) for s in states]))
    query = query.options(defer(StudyRow.engine_state)).order_by(StudyRow.id)
    return _page(session, query, offset=offset, limit=limit)


def set_study_state(
    session: Session,
    *,
    study: StudyRow,
    state: StudyState,
    now: float,
    message: str | None = None,
) -> None:
    check_study_transition(StudyState(study.state), state)
    study.state = state
    study.updated_at = now
    if message is not None:
        study.message = message


def save_engine_state(session: Session, *, study: StudyRow, engine_state: str, now: float) -> None:
    study.engine_state = engine_state
    study.engine_version += 1
    study.updated_at = now


def save_rules(
    session: Session, *, study: StudyRow, rules: dict[str, Any] | None, now: float
) -> None:
    study.rules = rules
    study.updated_at = now


def add_trial(
    session: Session,
    *,
    study: StudyRow,
    suggestion: Suggestion,
    now: float,
    external: bool = False,
    queue: str | None = None,
) -> TrialRow:
    """A new WAITING trial for ``suggestion``, numbered under the study's lock."""
    (trial,) = add_trials(
        session, study=study, suggestions=[suggestion], now=now, external=external, queue=queue
    )
    return trial


def add_trials(
    session: Session,
    *,
    study: StudyRow,
    suggestions: Sequence[Suggestion],
    now: float,
    external: bool = False,
    queue: str | None = None,
) -> list[TrialRow]:
    """New WAITING trials, numbered in order under the study's lock; one flush (a batched
    INSERT) for all of them."""
    trials = []
    for suggestion in suggestions:
        trials.append(
            TrialRow(
                study_id=study.id,
                number=study.next_number,
                suggestion_id=suggestion.suggestion_id,
                state=TrialState.WAITING,
                params=dict(suggestion.params),
                reason=suggestion.reason,
                predicted_loss=suggestion.predicted_loss,
                predicted_cost=suggestion.predicted_cost,
                external=external,
                attempt=0,
                lost_dispatches=0,
                queue=queue,
                created_at=now,
                curve=[],
                metrics={},
            )
        )
        study.next_number += 1
    session.add_all(trials)
    session.flush()
    return trials


def has_engine_state(study: StudyRow) -> bool:
    """Whether an engine was ever saved for ``study`` (without loading its state)."""
    return study.engine_version > 0


def get_trial(session: Session, *, trial_id: int, lock: bool = False) -> TrialRow:
    query = select(TrialRow).where(TrialRow.id == trial_id)
    if lock:
        query = query.with_for_update()
    trial = session.scalars(query).one_or_none()
    if trial is None:
        raise TrialNotFoundError(f"no trial with id {trial_id}")
    return trial


def get_trials(
    session: Session, *, trial_ids: Iterable[int], with_curves: bool = True
) -> dict[int, TrialRow]:
    """The trials with ``trial_ids`` that exist, by id, in one query; ``with_curves=False``
    leaves the learning curves unloaded until touched."""
    query = select(TrialRow).where(TrialRow.id.in_(list(trial_ids)))
    if not with_curves:
        query = query.options(defer(TrialRow.curve))
    return {row.id: row for row in session.scalars(query).all()}


def list_trials(
    session: Session,
    *,
    study_id: int,
    states: Iterable[TrialState] | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[TrialRow], int]:
    query = select(TrialRow).where(TrialRow.study_id == study_id)
    if states is not None:
        query = query.where(TrialRow.state.in_([str(s) for s in states]))
    query = query.options(defer(TrialRow.curve)).order_by(TrialRow.number)
    return _page(session, query, offset=offset, limit=limit)


def _page(
    session: Session, query: Select[RowT], *, offset: int, limit: int
) -> tuple[list[RowT], int]:
    """One page of ``query``'s rows and how many rows it has in all."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.offset(offset).limit(limit)).all()
    return list(rows), total or 0


def trials_in_state(
    session: Session,
    *,
    study_id: int,
    states: Iterable[TrialState],
    with_curves: bool = True,
    limit: int | None = None,
) -> list[TrialRow]:
    """Trials in ``states``, retries first, at most ``limit``; ``with_curves=False``
    leaves the (large) learning curves unloaded until touched."""
    query = (
        select(TrialRow)
        .where(TrialRow.study_id == study_id, TrialRow.state.in_([str(s) for s in states]))
        .order_by(TrialRow.attempt.desc(), TrialRow.number)
    )
    if not with_curves:
        query = query.options(defer(TrialRow.curve))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).all())


def count_by_state(session: Session, *, study_id: int) -> dict[TrialState, int]:
    rows = session.execute(
        select(TrialRow.state, func.count())
        .where(TrialRow.study_id == study_id)
        .group_by(TrialRow.state)
    ).all()
    counts = {state: 0 for state in TrialState}
    counts.update({TrialState(state): n for state, n in rows})
    return counts


@dataclass(frozen=True)
class Tally:
    """A study's trials by state, the cost spent and the trials dispatched, in one query.

    ``requeued``: WAITING trials dispatched before (reclaimed for another attempt). They
    count in ``dispatched`` (the budget paid for them once) and run again without
    spending more of it.
    """

    by_state: dict[TrialState, int]
    spent_cost: float
    dispatched: int
    requeued: int = 0


def tally(session: Session, *, study_id: int) -> Tally:
    rows = session.execute(
        select(
            TrialRow.state,
            func.count(),
            func.sum(TrialRow.cost_seconds),
            func.count(TrialRow.dispatched_at),
        )
        .where(TrialRow.study_id == study_id)
        .group_by(TrialRow.state)
    ).all()
    by_state = {state: 0 for state in TrialState}
    by_state.update({TrialState(state): n for state, n, _, _ in rows})
    spent = sum(float(cost or 0.0) for _, _, cost, _ in rows)
    requeued = sum(d for state, _, _, d in rows if state == TrialState.WAITING)
    return Tally(
        by_state=by_state,
        spent_cost=spent,
        dispatched=sum(d for *_, d in rows),
        requeued=requeued,
    )


def start_trial(
    session: Session,
    *,
    trial: TrialRow,
    now: float,
    lease_seconds: float,
    queue: str | None = None,
) -> None:
    """WAITING -> RUNNING with a fresh lease; ``dispatched_at`` keeps the first dispatch.

    Timestamps never run backwards along a trial's life (``created_at <= dispatched_at
    <= finished_at``): each is at least the one before, whichever process's clock (the
    API's, a control worker's) wrote that one.
    """
    check_trial_transition(TrialState(trial.state), TrialState.RUNNING)
    trial.state = TrialState.RUNNING
    if trial.dispatched_at is None:
        trial.dispatched_at = max(now, trial.created_at)
    trial.heartbeat_at = None
    trial.lease_expires_at = now + lease_seconds
    if queue is not None:
        trial.queue = queue


def heartbeat(
    session: Session,
    *,
    trial: TrialRow,
    now: float,
    lease_seconds: float,
    worker: str | None = None,
) -> None:
    """Renew a RUNNING trial's lease; a final or waiting trial is left alone."""
    if trial.state != TrialState.RUNNING:
        return
    trial.heartbeat_at = now
    trial.lease_expires_at = max(trial.lease_expires_at or 0.0, now + lease_seconds)
    if worker is not None:
        trial.worker = worker


def finish_trial(
    session: Session,
    *,
    trial: TrialRow,
    now: float,
    failed: bool,
    loss: float | None,
    cost_seconds: float,
    result_key: str,
    failure_kind: str | None = None,
    failure_reason: str | None = None,
    flops: float | None = None,
    curve: Sequence[dict[str, float]] = (),
    metrics: dict[str, Any] | None = None,
    worker: str | None = None,
) -> None:
    """RUNNING (or WAITING: a late result) -> COMPLETE or FAILED with its result, next in
    the study's finish order; the caller holds the study's row lock, which orders it."""
    target = TrialState.FAILED if failed else TrialState.COMPLETE
    check_trial_transition(TrialState(trial.state), target)
    study = session.get(StudyRow, trial.study_id)
    assert study is not None  # the trial's foreign key
    trial.finish_seq = study.next_finish_seq
    study.next_finish_seq += 1
    trial.state = target
    trial.finished_at = _not_before(now, trial)
    trial.loss = None if failed else loss
    trial.cost_seconds = cost_seconds
    trial.flops = flops
    trial.failure_kind = failure_kind
    trial.failure_reason = failure_reason
    trial.curve = list(curve)
    trial.metrics = dict(metrics or {})
    trial.worker = worker or trial.worker
    trial.result_key = result_key
    trial.lease_expires_at = None


def requeue_trial(session: Session, *, trial: TrialRow, now: float, started: bool = True) -> None:
    """RUNNING -> WAITING for another attempt (an infrastructure failure or a lost worker);
    ``started=False``: no worker ever took this attempt, which then does not count
    against ``max_attempts`` (see ``attempts_used``)."""
    check_trial_transition(TrialState(trial.state), TrialState.WAITING)
    trial.state = TrialState.WAITING
    trial.attempt += 1
    if not started:
        trial.lost_dispatches += 1
    trial.lease_expires_at = None
    trial.heartbeat_at = None
    trial.worker = None


def attempts_used(trial: TrialRow) -> int:
    """Attempts that count against ``max_attempts``: those some worker (or external
    runner) took, including the current one."""
    return trial.attempt + 1 - trial.lost_dispatches


def cancel_trial(session: Session, *, trial: TrialRow, now: float) -> None:
    check_trial_transition(TrialState(trial.state), TrialState.CANCELLED)
    trial.state = TrialState.CANCELLED
    trial.finished_at = _not_before(now, trial)


def _not_before(now: float, trial: TrialRow) -> float:
    """``now``, or the trial's latest earlier stamp if another process's clock is ahead."""
    return max(now, trial.dispatched_at or trial.created_at)


def expired_trials(session: Session, *, study_id: int, now: float) -> list[TrialRow]:
    """RUNNING trials whose lease has run out."""
    return list(
        session.scalars(
            select(TrialRow).where(
                TrialRow.study_id == study_id,
                TrialRow.state == TrialState.RUNNING,
                TrialRow.lease_expires_at < now,
            )
        ).all()
    )


def finished_results(session: Session, *, study_id: int) -> list[Row[Any]]:
    """The results of the COMPLETE and FAILED trials in the order they were recorded:
    what the engine's history and the scaling rules are built from. Columns, not
    ``TrialRow`` objects (5x faster to load at thousands of trials, at every rebuild)."""
    return list(
        session.execute(
            select(
                TrialRow.id,
                TrialRow.number,
                TrialRow.finish_seq,
                TrialRow.suggestion_id,
                TrialRow.state,
                TrialRow.reason,
                TrialRow.failure_kind,
                TrialRow.params,
                TrialRow.loss,
                TrialRow.cost_seconds,
                TrialRow.metrics,
            )
            .where(
                TrialRow.study_id == study_id,
                TrialRow.state.in_([TrialState.COMPLETE, TrialState.FAILED]),
            )
            .order_by(TrialRow.finish_seq)
        ).all()
    )


def unfinished_trials(session: Session, *, study_id: int) -> list[TrialRow]:
    """WAITING and RUNNING trials by number (curves left unloaded until touched)."""
    return list(
        session.scalars(
            select(TrialRow)
            .where(
                TrialRow.study_id == study_id,
                TrialRow.state.in_([TrialState.WAITING, TrialState.RUNNING]),
            )
            .order_by(TrialRow.number)
            .options(defer(TrialRow.curve))
        ).all()
    )


def study_ids(session: Session, *, states: Iterable[StudyState]) -> list[int]:
    return list(
        session.scalars(
            select(StudyRow.id).where(StudyRow.state.in_([str(s) for s in states]))
        ).all()
    )
