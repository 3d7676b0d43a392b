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
