"""Read-side summaries of a study from its stored trials: the front, cost bands, progress.

No engine and no torch: ``search.pareto`` is numpy only, so the API can serve these.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import redis
from sqlalchemy.orm import Session

from search.pareto import best_loss_within_cost, front_indices
from service.domain import TrialState
from service.storage import repository as repo
from service.storage.tables import StudyRow, TrialRow
from workers.heartbeat import HeartbeatStore


@dataclass(frozen=True)
class Progress:
    """Spent vs budget and trials by state."""

    spent_cost: float
    max_cost: float | None
    dispatched: int
    max_trials: int | None
    by_state: dict[str, int]

    @property
    def fraction(self) -> float:
        """How much of the budget is used, in [0, 1] (the tighter of the two limits)."""
        parts = []
        if self.max_cost:
            parts.append(self.spent_cost / self.max_cost)
        if self.max_trials:
            parts.append(self.dispatched / self.max_trials)
        return min(1.0, max(parts, default=0.0))


def progress(session: Session, *, study: StudyRow) -> Progress:
    """Spent vs budget; the budget is read as stored, so a study whose spec no longer
    loads (``domain.spec_error``) still shows its progress."""
    max_cost, max_trials = _stored_budget(study.spec)
    tally = repo.tally(session, study_id=study.id)
    return Progress(
        spent_cost=tally.spent_cost,
        max_cost=max_cost,
        dispatched=tally.dispatched,
        max_trials=max_trials,
        by_state={str(k): v for k, v in tally.by_state.items()},
    )


def _stored_budget(spec: Any) -> tuple[float | None, int | None]:
    """(max_cost, max_trials) of a stored spec; None where absent or not a number."""
    budget = spec.get("budget") if isinstance(spec, dict) else None
    budget = budget if isinstance(budget, dict) else {}
    max_cost, max_trials = budget.get("max_cost"), budget.get("max_trials")
    return (
        float(max_cost) if _finite_number(max_cost) else None,
        int(max_trials) if _finite_number(max_trials) else None,
    )


def _finite_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class FrontSummary:
    """What a study's completed trials give the read routes: the ids of the trials on
    the (loss, cost) front, by increasing cost, and the best loss per cost band."""

    n_complete: int
    front_ids: list[int]
    bands: list[dict[str, Any]]


class FrontCache:
    """Per-process front summaries of recent studies, so that a dashboard polling a
    study of thousands of trials does not read and sort all of them on every request.

    An entry is valid while the study's count of COMPLETE trials is unchanged: COMPLETE
    is final (its loss and cost never change) and trials are never deleted, so a study's
    complete trials only grow, and two reads that count the same number saw the same
    trials. Counting them is an index-only query; the summary is rebuilt (one read of
    three columns) only when the count moved.
    """

    def __init__(self, max_studies: int = 256) -> None:
        self._entries: OrderedDict[tuple[int, float], FrontSummary] = OrderedDict()
        self._max = max_studies
        self._lock = threading.Lock()

    def summary(self, session: Session, *, study: StudyRow, n_complete: int) -> FrontSummary:
        key = (study.id, study.created_at)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit.n_complete == n_complete:
                self._entries.move_to_end(key)
                return hit
        fresh = summarise(repo.completed_outcomes(session, study_id=study.id))
        with self._lock:
            self._entries[key] = fresh
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return fresh


def summarise(outcomes: list[tuple[int, float | None, float | None]]) -> FrontSummary:
    """The front and cost bands of ``(id, loss, cost)`` of all COMPLETE trials."""
    done = [(i, loss, cost) for i, loss, cost in outcomes if loss is not None]
    loss = np.array([loss for _, loss, _ in done], dtype=float)
    cost = np.array([cost for _, _, cost in done], dtype=float)
    front_ids = [done[k][0] for k in front_indices(loss, cost)] if done else []
    return FrontSummary(
        n_complete=len(outcomes), front_ids=front_ids, bands=best_per_cost_band(loss, cost)
    )


def front_trials(session: Session, summary: FrontSummary) -> list[TrialRow]:
    """The front's trials, by increasing cost, read by id (without their curves)."""
    if not summary.front_ids:
        return []
    rows = repo.get_trials(session, trial_ids=summary.front_ids, with_curves=False)
    return [rows[i] for i in summary.front_ids]


def best_per_cost_band(
    loss: np.ndarray, cost: np.ndarray, *, n_bands: int = 5
) -> list[dict[str, Any]]:
    """The best loss affordable at log-spaced cost limits spanning the completed trials."""
    costs = [c for c in cost.tolist() if c > 0]
    if not costs:
        return []
    limits = np.geomspace(min(costs), max(costs), n_bands) if len(set(costs)) > 1 else [costs[0]]
    best = best_loss_within_cost(loss, cost, np.asarray(limits, dtype=float))
    return [
        {"max_cost": float(c), "best_loss": None if math.isinf(b) else float(b)}
        for c, b in zip(limits, best, strict=True)
    ]


def running_workers(heartbeats: HeartbeatStore | None, trials: list[TrialRow]) -> dict[int, str]:
    """The worker that runs each RUNNING trial, by trial id, as its heartbeat names it.

    A trial's row records its worker with its result; until then only the worker's
    heartbeat (Redis) says who runs it. A trial without a beat of its current attempt is
    left out (dispatched, not yet started), as is everything when Redis does not answer.
    """
    running = [t for t in trials if t.state == TrialState.RUNNING and not t.external]
    if heartbeats is None or not running:
        return {}
    try:
        beats = heartbeats.trials([(t.study_id, t.id) for t in running])
    except redis.RedisError:
        return {}
    return {
        t.id: beat.worker
        for t in running
        if (beat := beats.get((t.study_id, t.id))) is not None and beat.trial.attempt == t.attempt
    }
