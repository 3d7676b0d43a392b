"""Shared builders for service tests: specs, a fake clock, a recording dispatcher."""

from __future__ import annotations

import threading
from typing import Any

from service.domain import Budget, StudySpec
from workers.contracts import TrialRequest, TrialResult


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingDispatcher:
    """Keeps what was sent, in order; thread-safe for the replica tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[TrialRequest, str]] = []
        self._lock = threading.Lock()

    def send(self, request: TrialRequest, *, queue: str) -> None:
        with self._lock:
            self.sent.append((request, queue))

    def take(self) -> list[TrialRequest]:
        with self._lock:
            out = [r for r, _ in self.sent]
            self.sent.clear()
        return out


def make_spec(**overrides: Any) -> StudySpec:
    data: dict[str, Any] = {
        "name": "t",
        "objective": "testbed",
        "budget": Budget(max_trials=6),
        "in_flight": 2,
        "seed": 3,
        "search": {"n_startup": 4},
    }
    data.update(overrides)
    return StudySpec(**data)


def completed(request: TrialRequest, *, loss: float = 1.0, cost: float = 2.0) -> TrialResult:
    return TrialResult(
        study_id=request.study_id,
        trial_id=request.trial_id,
        attempt=request.attempt,
        status="completed",
        loss=loss,
        cost_seconds=cost,
        metrics={"tokens": 1e6},
    )


def infra_failure(request: TrialRequest) -> TrialResult:
    return TrialResult(
        study_id=request.study_id,
        trial_id=request.trial_id,
        attempt=request.attempt,
        status="failed",
        cost_seconds=0.5,
        failure_kind="infrastructure",
        failure_reason="device lost",
    )


def finished_study_with_rules(sessions: Any) -> tuple[int, Any]:
    """A COMPLETE testbed study whose trials sit near the front, with its fitted rules;
    returns ``(study_id, objective)``."""
    from search.types import Suggestion
    from service.domain import ScalingAxesSpec, StudyState
    from service.orchestration.studies import create_study_row
    from service.reads.study_rules import fit_rules
    from service.storage import repository as repo
    from service.storage.db import transaction
    from tests.search.near_front_study import sample_study
    from workers.objectives.testbed_truth import TestbedConfig

    objective, observations = sample_study(TestbedConfig(), seed=5, per_budget=12)
    spec = StudySpec(
        name="r",
        objective="testbed",
        budget=Budget(max_trials=len(observations)),
        space=objective.default_space(),
        scaling=ScalingAxesSpec(n_params="n_params", tokens="tokens"),
    )
    with transaction(sessions) as session:
        study = create_study_row(session, spec=spec, now=0.0)
        for i, obs in enumerate(observations):
            suggestion = Suggestion(suggestion_id=f"s{i}", params=obs.params, reason="startup")
            trial = repo.add_trial(session, study=study, now=0.0, suggestion=suggestion)
            repo.start_trial(session, trial=trial, now=0.0, lease_seconds=60.0)
            repo.finish_trial(
                session,
                trial=trial,
                now=1.0,
                failed=obs.failed,
                loss=obs.loss,
                cost_seconds=obs.cost,
                metrics=obs.metrics,
                result_key="0",
                failure_kind="config" if obs.failed else None,
            )
        trials = repo.trials_in_state(session, study_id=study.id, states=["COMPLETE", "FAILED"])
        rules, why = fit_rules(spec, trials)
        assert rules is not None, why
        repo.save_rules(session, study=study, rules=rules, now=2.0)
        repo.set_study_state(session, study=study, state=StudyState.COMPLETE, now=2.0)
        return study.id, objective
