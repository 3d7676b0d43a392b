"""A study's engine: built from its spec, cached per study, told the trials it has not seen,
saved as ``state_dict`` JSON on the study row.

Engines are cached per study and rebuilt from the stored state whenever the row's
``engine_version`` moved on (another process wrote it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress

from sqlalchemy.orm import Session

from search.engine import ParetoSearch
from search.errors import InvalidObservationError, UnknownSuggestionError
from search.pacing import StudyLimits
from search.settings import SearchSettings
from search.space import SearchSpace
from service.domain import StudySpec, TrialState, trial_observation
from service.orchestration.front_estimate import store_front
from service.storage import repository as repo
from service.storage.tables import StudyRow, TrialRow

logger = logging.getLogger(__name__)

# The service owns leases (per trial, in the database); the engine's own must never fire.
ENGINE_LEASE_SECONDS = 1e12
# A failed trial still cost something; the engine needs a positive cost to learn from it.
MIN_FAILED_COST = 1e-6


def load_spec(study: StudyRow) -> StudySpec:
    return StudySpec.model_validate(study.spec)


def search_settings(spec: StudySpec) -> SearchSettings:
    """The engine's settings: the study's ``search`` fields, plus what the study itself
    decides (its seed and trial-cost ceiling)."""
    return SearchSettings(
        seed=spec.seed,
        max_suggestion_cost=spec.max_trial_cost,
        lease_seconds=ENGINE_LEASE_SECONDS,
        **spec.search,
    )


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


class EngineCache:
    """The engines of one process, one per study, as of the study row's ``engine_version``."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._engines: dict[int, tuple[int, ParetoSearch]] = {}

    def get(self, study: StudyRow) -> ParetoSearch:
        """The study's engine: cached, restored from its stored state, or new."""
        cached = self._engines.get(study.id)
        if cached is not None and cached[0] == study.engine_version:
            return cached[1]
        if not repo.has_engine_state(study):
            engine = self._new(study)
        else:
            state = json.loads(study.engine_state)
            engine = ParetoSearch.from_state_dict(state, clock=self.clock)
            engine.set_limits(study_limits(load_spec(study)))
        self._engines[study.id] = (study.engine_version, engine)
        return engine

    def _new(self, study: StudyRow) -> ParetoSearch:
        """A study's first engine; the resolved space is written back into its spec."""
        spec = load_spec(study)
        space = resolve_space(spec)
        study.spec = spec.model_copy(update={"space": space}).model_dump(mode="json")
        return ParetoSearch(
            space, search_settings(spec), limits=study_limits(spec), clock=self.clock
        )

    def save(self, session: Session, study: StudyRow, engine: ParetoSearch) -> None:
        repo.save_engine_state(
            session, study=study, now=self.clock(), engine_state=json.dumps(engine.state_dict())
        )
        store_front(session, study, engine)
        self._engines[study.id] = (study.engine_version, engine)

    def drop(self, study_id: int) -> None:
        """Forget the study's engine, whose in-memory state may no longer match the store
        (a rolled-back transaction asked or told it)."""
        self._engines.pop(study_id, None)


def sync(session: Session, study: StudyRow, engine: ParetoSearch) -> int:
    """Tell (or make forget) the engine every final trial it has not seen."""
    trials = repo.unsynced_final_trials(session, study_id=study.id)
    for trial in trials:
        _sync_one(engine, trial)
        trial.synced = True
    return len(trials)


def _sync_one(engine: ParetoSearch, trial: TrialRow) -> None:
    learn = trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAILED and trial.failure_kind != "infrastructure"
    )
    if not learn:
        _forget(engine, trial.suggestion_id)
        return
    failed = trial.state == TrialState.FAILED
    cost = trial.cost_seconds or 0.0
    obs = trial_observation(
        params=trial.params,
        loss=trial.loss,
        cost=max(cost, MIN_FAILED_COST) if failed else cost,
        failed=failed,
        suggestion_id=trial.suggestion_id,
        metrics=trial.metrics,
    )
    try:
        engine.tell(obs.suggestion_id, obs.loss, obs.cost, failed=failed, metrics=obs.metrics)  # type: ignore[arg-type]  # None: UnknownSuggestionError
    except UnknownSuggestionError:
        engine.observe(obs.params, obs.loss, obs.cost, failed=failed, metrics=obs.metrics)
    except InvalidObservationError as exc:
        logger.warning("trial %s not learned from: %s", trial.id, exc)
        _forget(engine, trial.suggestion_id)


def _forget(engine: ParetoSearch, suggestion_id: str) -> None:
    with suppress(UnknownSuggestionError):
        engine.forget(suggestion_id)
