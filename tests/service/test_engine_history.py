"""The database is the one record of trials: the engine's stored state stays small, and
the engine rebuilt from it and the stored trials at every step suggests what one engine
kept in memory, told each result as it came, would have suggested (issue 20, item 2).

A scheduler-driven study on SQLite, stepped by two schedulers in turn (a restart at
every step), with results recorded out of order, a configuration failure, an
infrastructure failure that is retried and one that is given up on.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest

from search.engine import ParetoSearch
from search.types import Suggestion
from service.config import Settings
from service.domain import Budget, StudyState
from service.orchestration.engines import (
    load_spec,
    open_engine,
    search_settings,
    study_history,
)
from service.orchestration.results import ingest_result
from service.orchestration.scheduler import Scheduler
from service.storage import repository as repo
from service.storage.db import transaction
from tests.service.factories import FakeClock, RecordingDispatcher, make_spec
from workers.contracts import TrialRequest, TrialResult
from workers.runner import run_trial_request

SETTINGS = Settings(database_url="sqlite://", proposal_buffer=4, max_attempts=2)
TRIALS = 30


@dataclass
class Ask:
    """One ``ask`` of the service's engine: what it had taken in, what was pending."""

    observed: int
    pending: list[str]
    suggestions: list[Suggestion]


@pytest.fixture
def asks(monkeypatch) -> list[Ask]:
    """Every ``ParetoSearch.ask`` made while the study runs, in order."""
    seen: list[Ask] = []
    original = ParetoSearch.ask

    def recording(self: ParetoSearch, n: int = 1) -> list[Suggestion]:
        observed = len(self.observations)
        pending = [s.suggestion_id for s in self.pending()]
        out = original(self, n)
        seen.append(Ask(observed, pending, out))
        return out

    monkeypatch.setattr(ParetoSearch, "ask", recording)
    return seen


def _result(request: TrialRequest) -> TrialResult:
    """The testbed's result, except for a few injected failures."""
    if request.trial_id == 5 and request.attempt == 0:  # retried, then completes
        return _failed(request, "infrastructure")
    if request.trial_id == 9:  # given up on after its two attempts
        return _failed(request, "infrastructure")
    if request.trial_id == 7:
        return _failed(request, "config")
    return run_trial_request(request, device="cpu", worker="test")


def _failed(request: TrialRequest, kind: str) -> TrialResult:
    return TrialResult(
        study_id=request.study_id,
        trial_id=request.trial_id,
        attempt=request.attempt,
        status="failed",
        cost_seconds=0.0 if kind == "infrastructure" else 3.0,
        failure_kind=kind,
        failure_reason="injected",
    )


def _run_study(sessions: Any) -> tuple[int, list[int]]:
    """Run the study to completion; its id and the stored state's size after each step."""
    clock, dispatcher, rng = FakeClock(), RecordingDispatcher(), random.Random(11)
    schedulers = [
        Scheduler(sessions=sessions, settings=SETTINGS, clock=clock, dispatcher=dispatcher)
        for _ in range(2)
    ]
    spec = make_spec(budget=Budget(max_trials=TRIALS), in_flight=4, search={"n_startup": 6})
    study_id = schedulers[0].create_study(spec)
    running: list[TrialRequest] = []
    sizes = []
    for step in range(200):
        report = schedulers[step % 2].step(study_id)
        with transaction(sessions) as session:
            sizes.append(len(repo.get_study(session, study_id=study_id).engine_state))
        if report.state != StudyState.RUNNING:
            return study_id, sizes
        running += dispatcher.take()
        rng.shuffle(running)  # results arrive in any order, a few at a time
        k = rng.randint(1, 3)
        for request in running[:k]:
            with transaction(sessions) as session:
                ingest_result(session, result=_result(request), now=clock(), max_attempts=2)
            clock.advance(10.0)
        running = running[k:]
    raise AssertionError("the study did not complete")


def test_the_stored_state_is_small_and_the_engine_suggests_what_one_kept_in_memory_would(
    sqlite_sessions, asks
) -> None:
    study_id, sizes = _run_study(sqlite_sessions)
    with transaction(sqlite_sessions) as session:
        study = repo.get_study(session, study_id=study_id)
        state = json.loads(study.engine_state)
        history = study_history(session, study_id=study_id)
        spec = load_spec(study)
        trial_9 = repo.get_trial(session, trial_id=9)
    assert study.state == StudyState.COMPLETE
    assert (trial_9.state, trial_9.failure_kind) == ("FAILED", "infrastructure")
    assert trial_9.suggestion_id not in {o.suggestion_id for o in history.observations}
    assert any(o.failed for o in history.observations)  # trial 7, learned from
    # the state holds no trials: it does not grow with them
    assert "history" not in state and "observations" not in state
    assert state["taken_in"]["count"] == len(history.observations) >= TRIALS - 1
    grown = max(sizes) - min(s for s in sizes if s > 0)
    assert grown < 2_000, sizes

    # one engine, never stored, told each result as the service recorded it
    assert spec.space is not None
    alone = ParetoSearch(spec.space, search_settings(spec), clock=lambda: 0.0)
    told, service_asks = 0, list(asks)  # (the engine below records its own asks too)
    assert len(service_asks) > TRIALS // 4  # the service asked in many batches
    assert any(s.reason == "model" for ask in service_asks for s in ask.suggestions)
    for ask in service_asks:
        for observation in history.observations[told : ask.observed]:
            assert observation.suggestion_id is not None
            alone.tell(
                observation.suggestion_id,
                None if observation.failed else observation.loss,
                observation.cost,
                failed=observation.failed,
                metrics=observation.metrics,
            )
        told = ask.observed
        for suggestion in alone.pending():
            if suggestion.suggestion_id not in ask.pending:  # given up on (trial 9)
                alone.forget(suggestion.suggestion_id)
        assert [s.suggestion_id for s in alone.pending()] == ask.pending
        expected = alone.ask(len(ask.suggestions))
        assert [(s.suggestion_id, s.params, s.reason) for s in ask.suggestions] == [
            (s.suggestion_id, s.params, s.reason) for s in expected
        ]


def test_a_version_1_state_still_loads_and_suggests_the_same(sqlite_sessions) -> None:
    """A state stored before the trials left it (version 1: every trial inside) is
    rebuilt from the rows as its version-2 equivalent is."""
    study_id, _ = _run_study(sqlite_sessions)
    session = sqlite_sessions()
    try:
        study = repo.get_study(session, study_id=study_id)
        spec = load_spec(study)
        current = open_engine(session, study, spec, clock=lambda: 0.0)
        full = current.engine.state_dict()  # with its history: the version-1 layout
        small = {k: v for k, v in full.items() if k not in ("taken_in", "history")}
        version_1 = {**small, "version": 1, **full["history"]}
        study.engine_state = json.dumps(version_1)
        restored = open_engine(session, study, spec, clock=lambda: 0.0)
        assert restored.told == 0
        assert restored.engine.state_dict() == full
        assert [s.params for s in restored.engine.ask(3)] == [
            s.params for s in current.engine.ask(3)
        ]
    finally:
        session.rollback()
        session.close()
