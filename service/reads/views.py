"""Read-side summaries of a study from its stored trials: the front, cost bands, progress.

No engine and no torch: ``search.pareto`` is numpy only, so the API can serve these. The
front is ``search.pareto``'s (repeats merged, the front taken on loss estimates), with
the engine's estimates where its process stored them on the study row
(``service.orchestration.front_estimate``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import redis
from sqlalchemy.orm import Session

from search.pareto import (
    best_loss_within_cost,
    config_key,
    estimated_front,
    group_repeats,
)
from service.domain import TrialState
from service.storage import repository as repo
from service.storage.fronts import Measurement, complete_measurements
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


# The format of the study row's ``front_estimate``; a stored one of another is ignored.
FRONT_ESTIMATE_VERSION = 1


@dataclass(frozen=True)
class FrontEntry:
    """A point of the front a user sees: one configuration, all its COMPLETE trials
    (``trial_ids``, the first of them ``trial_id``, whose row stands for the point), their
    mean cost, their mean loss (``observed_loss``) and the loss the front was taken on
    (``estimated_loss``: the engine's model where the study has a current estimate,
    else the observed mean)."""

    trial_ids: tuple[int, ...]
    cost: float
    estimated_loss: float
    observed_loss: float

    @property
    def trial_id(self) -> int:
        return self.trial_ids[0]

    @property
    def n_measurements(self) -> int:
        return len(self.trial_ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "trial_ids": list(self.trial_ids),
            "cost": self.cost,
            "estimated_loss": self.estimated_loss,
            "observed_loss": self.observed_loss,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrontEntry:
        return cls(
            trial_ids=tuple(int(i) for i in data["trial_ids"]),
            cost=float(data["cost"]),
            estimated_loss=float(data["estimated_loss"]),
            observed_loss=float(data["observed_loss"]),
        )


def front_entries(
    measurements: list[Measurement], estimates: Mapping[str, float] | None = None
) -> list[FrontEntry]:
    """The front of ``measurements`` by ``search.pareto``'s definition (repeats merged,
    by increasing cost), taken on the observed means, or on ``estimates`` (loss by
    ``config_key``) when given: a configuration without one is not on the front."""
    keys = [config_key(m.params) for m in measurements]
    loss = np.array([m.loss for m in measurements], dtype=float)
    cost = np.array([m.cost for m in measurements], dtype=float)
    groups = group_repeats(keys, loss, cost)
    believed = None
    if estimates is not None:
        believed = np.array([estimates.get(keys[g.members[0]], math.nan) for g in groups])
    points = estimated_front(groups, believed)
    return [
        FrontEntry(
            trial_ids=tuple(measurements[i].trial_id for i in p.members),
            cost=p.cost,
            estimated_loss=p.estimated_loss,
            observed_loss=p.observed_loss,
        )
        for p in points
    ]


def estimate_json(points: list[FrontEntry], *, n_complete: int) -> dict[str, Any]:
    """The study row's ``front_estimate``: the engine's front and the count of COMPLETE
    trials it was computed from."""
    return {
        "version": FRONT_ESTIMATE_VERSION,
        "n_complete": n_complete,
        "points": [p.to_json() for p in points],
    }


def current_estimate(study: StudyRow, *, n_complete: int) -> list[FrontEntry] | None:
    """The engine's front as stored on the study row, when it was computed from the
    study's ``n_complete`` COMPLETE trials (COMPLETE is final and trials are never
    deleted, so the same count means the same trials); None when absent, behind, or of
    another format version (the next engine save rewrites it)."""
    stored = study.front_estimate
    if (
        not isinstance(stored, dict)
        or stored.get("version") != FRONT_ESTIMATE_VERSION
        or stored.get("n_complete") != n_complete
    ):
        return None
    return [FrontEntry.from_json(point) for point in stored["points"]]


@dataclass(frozen=True)
class FrontSummary:
    """What a study's completed trials give the read routes: the front (by increasing
    cost), where its loss estimates come from (``"model"``: the engine's stored estimate;
    ``"observed"``: the measured means), and the best estimated loss per cost band."""

    n_complete: int
    source: str
    points: list[FrontEntry]
    bands: list[dict[str, Any]]

    @property
    def front_ids(self) -> list[int]:
        """The trial standing for each front point, by increasing cost."""
        return [p.trial_id for p in self.points]


def summarise(session: Session, *, study: StudyRow, n_complete: int) -> FrontSummary:
    """The front and cost bands of a study with ``n_complete`` COMPLETE trials: the
    engine's stored estimate when it is current, else the front of the observed means
    (an imported or external study, or one whose engine has not seen the latest trials).
    """
    measurements = complete_measurements(session, study_id=study.id)
    points = current_estimate(study, n_complete=n_complete)
    source = "model"
    if points is None:
        points, source = front_entries(measurements), "observed"
    costs = np.array([m.cost for m in measurements], dtype=float)
    return FrontSummary(
        n_complete=n_complete,
        source=source,
        points=points,
        bands=best_per_cost_band(points, costs),
    )


class FrontCache:
    """Per-process front summaries of recent studies, so that a dashboard polling a
    study of thousands of trials does not read and group all of them on every request.

    An entry is valid while the study's count of COMPLETE trials and its stored front
    estimate are unchanged: COMPLETE is final (its loss and cost never change) and
    trials are never deleted, so a study's complete trials only grow, and two reads that
    count the same number saw the same trials; the estimate comes with the study row the
    route reads anyway. Counting is an index-only query; the summary is rebuilt (one read
    of four columns) only when either moved.
    """

    def __init__(self, max_studies: int = 256) -> None:
        self._entries: OrderedDict[tuple[int, float], tuple[Any, FrontSummary]] = OrderedDict()
        self._max = max_studies
        self._lock = threading.Lock()

    def summary(self, session: Session, *, study: StudyRow, n_complete: int) -> FrontSummary:
        key = (study.id, study.created_at)
        stored = study.front_estimate
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[1].n_complete == n_complete and hit[0] == stored:
                self._entries.move_to_end(key)
                return hit[1]
        fresh = summarise(session, study=study, n_complete=n_complete)
        with self._lock:
            self._entries[key] = (stored, fresh)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return fresh


def front_trials(session: Session, summary: FrontSummary) -> list[TrialRow]:
    """The trial standing for each front point, by increasing cost, read by id (without
    their curves)."""
    if not summary.front_ids:
        return []
    rows = repo.get_trials(session, trial_ids=summary.front_ids, with_curves=False)
    return [rows[i] for i in summary.front_ids]


def best_per_cost_band(
    front: list[FrontEntry], costs: np.ndarray, *, n_bands: int = 5
) -> list[dict[str, Any]]:
    """The best estimated loss on the front affordable at log-spaced cost limits
    spanning the completed trials' ``costs``."""
    positive = [c for c in costs.tolist() if c > 0]
    if not positive or not front:
        return []
    if len(set(positive)) > 1:
        limits = np.geomspace(min(positive), max(positive), n_bands)
    else:
        limits = np.array(positive[:1])
    best = best_loss_within_cost(
        np.array([p.estimated_loss for p in front]), np.array([p.cost for p in front]), limits
    )
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
