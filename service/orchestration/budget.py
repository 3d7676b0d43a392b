"""How many more trials a study's budget allows; shared by the scheduler and the API."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.domain import StudySpec
from service.storage import repository as repo
from service.storage.tables import StudyRow

UNLIMITED = 1_000_000_000


def trials_left(session: Session, *, study: StudyRow, tally: repo.Tally | None = None) -> int:
    """Trials that may still start: 0 once the cost is spent or the count is reached.

    Counted from the database under the caller's study lock, so however many replicas
    dispatch, the budget is overshot by at most the trials already in flight.
    """
    tally = tally or repo.tally(session, study_id=study.id)
    budget = StudySpec.model_validate(study.spec).budget
    if budget.max_cost is not None and tally.spent_cost >= budget.max_cost:
        return 0
    if budget.max_trials is None:
        return UNLIMITED
    return max(0, budget.max_trials - tally.dispatched)
