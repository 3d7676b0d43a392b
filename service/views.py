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
from service.domain import StudySpec
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
    tally = repo.tally(session, study_id=study.id)
    return Progress(
        spent_cost=tally.spent_cost,
        max_cost=budget.max_cost,
        dispatched=tally.dispatched,
        max_trials=budget.max_trials,
        by_state={str(k): v for k, v in tally.by_state.items()},
    )


@dataclass(frozen=True)
class Outcomes:
    """The completed trials' ids, losses and costs: all that the front and the cost bands
    are computed from, read as three columns instead of as trials (a study of thousands
    of trials would otherwise build thousands of rows and decode their params)."""

    ids: list[int]
    loss: np.ndarray
    cost: np.ndarray


def completed_outcomes(session: Session, *, study_id: int) -> Outcomes:
    rows = repo.completed_outcomes(session, study_id=study_id)
    return Outcomes(
        ids=[trial_id for trial_id, _, _ in rows],
        loss=np.array([loss for _, loss, _ in rows], dtype=float),
        cost=np.array([cost for _, _, cost in rows], dtype=float),
    )


def front(session: Session, outcomes: Outcomes) -> list[TrialRow]:
    """The completed trials on the (loss, cost) front, by increasing cost; only these
    trials are loaded (without their curves)."""
    if not outcomes.ids:
        return []
    ids = [outcomes.ids[i] for i in front_indices(outcomes.loss, outcomes.cost)]
    rows = repo.get_trials(session, trial_ids=ids, with_curves=False)
    return [rows[i] for i in ids]


def best_per_cost_band(outcomes: Outcomes, *, n_bands: int = 5) -> list[dict[str, Any]]:
    """The best loss affordable at log-spaced cost limits spanning the completed trials."""
    costs = [c for c in outcomes.cost.tolist() if c > 0]
    if not costs:
        return []
    limits = np.geomspace(min(costs), max(costs), n_bands) if len(set(costs)) > 1 else [costs[0]]
    best = best_loss_within_cost(outcomes.loss, outcomes.cost, np.asarray(limits, dtype=float))
    return [
        {"max_cost": float(c), "best_loss": None if math.isinf(b) else float(b)}
        for c, b in zip(limits, best, strict=True)
    ]
