"""Read-side summaries of a study from its stored trials: the front, cost bands, progress.

No engine and no torch: ``search.pareto`` is numpy only, so the API can serve these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from search.pareto import best_loss_within_cost, front_indices
from service.domain import StudySpec, TrialState
from service.storage import repository as repo
from service.storage.tables import StudyRow, TrialRow


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
    budget = StudySpec.model_validate(study.spec).budget
    return Progress(
        spent_cost=repo.spent_cost(session, study_id=study.id),
        max_cost=budget.max_cost,
        dispatched=repo.n_dispatched(session, study_id=study.id),
        max_trials=budget.max_trials,
        by_state={str(k): v for k, v in repo.count_by_state(session, study_id=study.id).items()},
    )


def completed_trials(session: Session, *, study_id: int) -> list[TrialRow]:
    return repo.trials_in_state(
        session, study_id=study_id, states=[TrialState.COMPLETE], with_curves=False
    )


def front(trials: list[TrialRow]) -> list[TrialRow]:
    """The completed trials on the (loss, cost) front, by increasing cost."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.loss is not None]
    if not done:
        return []
    loss = np.array([t.loss for t in done], dtype=float)
    cost = np.array([t.cost_seconds for t in done], dtype=float)
    return [done[i] for i in front_indices(loss, cost)]


def best_per_cost_band(trials: list[TrialRow], *, n_bands: int = 5) -> list[dict[str, Any]]:
    """The best loss affordable at log-spaced cost limits spanning the completed trials."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.loss is not None]
    costs = [t.cost_seconds for t in done if t.cost_seconds and t.cost_seconds > 0]
    if not costs:
        return []
    limits = np.geomspace(min(costs), max(costs), n_bands) if len(set(costs)) > 1 else [costs[0]]
    loss = np.array([t.loss for t in done], dtype=float)
    cost = np.array([t.cost_seconds for t in done], dtype=float)
    best = best_loss_within_cost(loss, cost, np.asarray(limits, dtype=float))
    return [
        {"max_cost": float(c), "best_loss": None if math.isinf(b) else float(b)}
        for c, b in zip(limits, best, strict=True)
    ]
