"""The engine's front, stored on the study row for the API to serve without torch.

``service.orchestration.engines.save_engine`` calls ``store_front`` each time it saves
a study's engine (rebuilt with the new trials). The stored front is
``service.reads.views``'s definition (repeats merged, by increasing cost) taken on the
engine's loss estimates (``ParetoSearch.front()``: the loss model's posterior means), so
a lucky draw that the model does not believe leaves it. It records how many COMPLETE
trials it was computed from: the read side uses it only while that count is current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from search.pareto import config_key
from service.domain import TrialState
from service.reads.views import current_estimate, estimate_json, front_entries
from service.storage import repository as repo
from service.storage.fronts import complete_measurements
from service.storage.tables import StudyRow

if TYPE_CHECKING:
    from search.engine import ParetoSearch


def store_front(session: Session, study: StudyRow, engine: ParetoSearch) -> None:
    """Store the engine's front of the study's COMPLETE trials, unless the stored one
    was computed from the same trials already (a save after failures or asks only)."""
    n_complete = repo.count_by_state(session, study_id=study.id)[TrialState.COMPLETE]
    if current_estimate(study, n_complete=n_complete) is not None:
        return
    believed = {config_key(o.params): o.loss for o in engine.front()}
    points = front_entries(complete_measurements(session, study_id=study.id), believed)
    study.front_estimate = estimate_json(points, n_complete=n_complete)
