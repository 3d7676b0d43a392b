"""A study's engine: rebuilt at every use from its small stored state and the study's
trials, which the database alone holds.

The study row keeps ``engine.state_dict(with_history=False)`` as JSON: the random stream,
the trust-region radius, counters, the GP cache and how many observations the engine has
taken in (with their digest), none of which grows with the trials. Each use rebuilds the
engine under the study's row lock from that state and the ``History`` of the stored
trials (``study_history``): the finished trials it learns from, in the order their
results were recorded (``TrialRow.finish_seq``, which only ever appends), and the
unfinished trials holding its suggestions. The engine takes in the observations after
the ones it had taken in, as ``tell`` would have, one after another. Nothing is cached
between steps: another process may have recorded results or asked in between.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from search.engine import ParetoSearch
from search.history import History
from search.pacing import StudyLimits
from search.settings import RULES_SPREAD_EVERY, SearchSettings
from search.space import SearchSpace
from search.types import Observation
from service.domain import (
    StudySpec,
    holds_engine_suggestion,
    learned_observations,
    pending_suggestion,
)
from service.orchestration.front_estimate import store_front
from service.storage import repository as repo
from service.storage.tables import StudyRow


def load_spec(study: StudyRow) -> StudySpec:
    """The study's stored spec, validated (once per step: callers pass it down)."""
    return StudySpec.model_validate(study.spec)


def search_settings(spec: StudySpec) -> SearchSettings:
    """The engine's settings: the study's ``search`` fields, over what the study itself
    decides: its seed and trial-cost ceiling, and, where it declares scaling axes (its
    rules will be fitted), spread points (``search.settings.RULES_SPREAD_EVERY``)."""
    derived: dict[str, Any] = {"seed": spec.seed, "max_suggestion_cost": spec.max_trial_cost}
    if spec.scaling.declared:
        derived["spread_every"] = RULES_SPREAD_EVERY
    return SearchSettings(**(derived | spec.search))


def study_limits(spec: StudySpec) -> StudyLimits:
    """The study's budget and trials in flight, which the engine paces itself against."""
    return StudyLimits(
        max_trials=spec.budget.max_trials,
        max_cost=spec.budget.max_cost,
        in_flight=spec.in_flight,
    )


def resolve_space(spec: StudySpec) -> SearchSpace:
    """The study's space, or its objective's default one (imports the objective)."""
    if spec.space is not None:
        return spec.space
    from workers.objectives.registry import create_objective

    return create_objective(spec.objective, spec.objective_options).default_space()


def study_history(session: Session, *, study_id: int) -> History:
    """What the engine is rebuilt from: the finished trials it learns from in the order
    they were recorded, new last, and the unfinished trials holding its suggestions by
    number (their leases are the trials', kept by the service)."""
    return History(
        observations=learned_observations(repo.finished_results(session, study_id=study_id)),
        pending=[
            pending_suggestion(trial)
            for trial in repo.unfinished_trials(session, study_id=study_id)
            if holds_engine_suggestion(trial)
        ],
    )


@dataclass(frozen=True)
class StudyEngine:
    """A study's engine as rebuilt for one transaction.

    ``spec``: the study's spec, its space resolved (a study's first engine writes the
    objective's default space into the stored spec). ``told``: the observations this
    rebuild took in (recorded since the engine was last saved)."""

    engine: ParetoSearch
    spec: StudySpec
    told: int


def open_engine(
    session: Session, study: StudyRow, spec: StudySpec, *, clock: Callable[[], float]
) -> StudyEngine:
    """The study's engine from its stored state (a new one for a study without) and the
    stored trials; ``HistoryMismatchError`` if the trials no longer start with those it
    took in."""
    if repo.has_engine_state(study):
        state = json.loads(study.engine_state)
    else:
        spec = spec.model_copy(update={"space": resolve_space(spec)})
        study.spec = spec.model_dump(mode="json")
        assert spec.space is not None  # resolved above
        new = ParetoSearch(spec.space, search_settings(spec), clock=clock)
        state = new.state_dict(with_history=False)
    history = study_history(session, study_id=study.id)
    engine = ParetoSearch.from_state_dict(state, history=history, clock=clock)
    engine.set_limits(study_limits(spec))
    told = len(history.observations) - _taken_in(state)
    return StudyEngine(engine=engine, spec=spec, told=told)


def save_engine(session: Session, study: StudyRow, engine: ParetoSearch, *, now: float) -> None:
    """Store the engine's small state on the study row (bumping ``engine_version``).

    The one place an engine is saved; the front it believes is stored with it, in the
    same transaction (``front_estimate.store_front``), for the API to serve."""
    repo.save_engine_state(
        session,
        study=study,
        now=now,
        engine_state=json.dumps(engine.state_dict(with_history=False)),
    )
    store_front(session, study, engine)


def taken_in(session: Session, study: StudyRow) -> list[Observation]:
    """The observations the study's saved engine has taken in, read from the store: the
    start of its history, checked as a rebuild checks it (``HistoryMismatchError`` if
    the stored trials no longer start with them); none before its first save."""
    if not repo.has_engine_state(study):
        return []
    state = json.loads(study.engine_state)
    history = History(observations=study_history(session, study_id=study.id).observations)
    engine = ParetoSearch.from_state_dict(state, history=history)
    return list(engine.observations[: _taken_in(state)])


def _taken_in(state: dict[str, Any]) -> int:
    """How many observations a stored state had taken in; a version-1 state (the trials
    inside) had taken in every observation it holds."""
    if "taken_in" in state:
        return int(state["taken_in"]["count"])
    return len(state.get("observations", ()))
