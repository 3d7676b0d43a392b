"""What a study's front is computed from: its COMPLETE trials' configurations, losses and
costs, read without loading the trials (``service.reads.views`` groups them).

Kept beside ``repository`` rather than in it: the front is the only reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.domain import TrialState
from service.storage.tables import TrialRow


@dataclass(frozen=True)
class Measurement:
    """One COMPLETE trial as the front sees it; ``cost`` is NaN where none was recorded."""

    trial_id: int
    params: dict[str, Any]
    loss: float
    cost: float


def complete_measurements(session: Session, *, study_id: int) -> list[Measurement]:
    """The study's COMPLETE trials that have a loss, by id (so the first trial of a
    repeated configuration comes first)."""
    rows = session.execute(
        select(TrialRow.id, TrialRow.params, TrialRow.loss, TrialRow.cost_seconds)
        .where(
            TrialRow.study_id == study_id,
            TrialRow.state == TrialState.COMPLETE,
            TrialRow.loss.is_not(None),
        )
        .order_by(TrialRow.id)
    ).all()
    return [
        Measurement(
            trial_id=trial_id,
            params=params,
            loss=float(loss),
            cost=math.nan if cost is None else float(cost),
        )
        for trial_id, params, loss, cost in rows
    ]
