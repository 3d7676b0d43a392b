"""A seeded study replayed step by step, to prove the engine suggests the same things
before and after a refactor (``test_engine_replay``).

A scenario drives an engine the way the service does: ``in_flight`` trials run at once,
they finish in a shuffled order, one is cancelled (forgotten), a trial the engine did
not suggest is observed first (an enqueued start point), and some steps ask again
before anything finished (a proposal buffer being refilled). Every decision depends
only on what the engine suggested, so two engines that suggest the same things see the
same history.

The expected suggestions (``fixtures/engine_replay.json``) were first recorded with the
engine as it was at commit 26b2f0f, which kept every trial inside its state, by running
this module against that commit's ``search`` package::

    git archive 26b2f0f search | tar -x -C /tmp/engine-26b2f0f
    cd /tmp && PYTHONPATH=/tmp/engine-26b2f0f:$REPO \\
        python -m tests.search.replay_scenario $REPO/tests/search/fixtures/engine_replay.json

(run from outside the repository, so that ``search`` is the archived one). The failure
model's logistic trend (issue 16) changed the suggestions on purpose, so the fixture was
re-recorded with the standalone engine of that commit (``python -m
tests.search.replay_scenario`` from the repository root): the test still proves that the
engine rebuilt from its small state and the history suggests what the standalone one does.
The fixture says which kind of CPU recorded it (``recorded_on``, ``cpu_kind``): elsewhere
only its first asks are compared, and loosely (``test_engine_replay``).

Only the standalone ask / tell / observe / forget API is used here, which both engines
have; the test drives the new engine through ``Driver`` rebuilt from its small state
and the history at every step.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from search.engine import ParetoSearch
from search.pacing import StudyLimits
from search.settings import SearchSettings
from search.testing import SizedQuadratic
from search.types import Suggestion

FIXTURE = Path(__file__).parent / "fixtures" / "engine_replay.json"
PROBLEM = SizedQuadratic(loss_noise_std=0.02, cost_noise_sigma=0.1)
CLOCK_NOW = 1000.0
# The enqueued trial the study starts from: a small model at a reasonable learning rate.
START_POINT = {"size": 20.0, "learning_rate": 0.01, "shift": 0.2}


@dataclass(frozen=True)
class Scenario:
    name: str
    settings: SearchSettings
    limits: StudyLimits
    n_trials: int
    seed: int
    cancel_at: int  # the ask after which one running trial is cancelled
    refill_every: int  # every n-th step also asks one suggestion ahead of need


SCENARIOS = (
    Scenario(
        name="trial-cap",
        settings=SearchSettings(seed=11, n_startup=8, remeasure_every=3),
        limits=StudyLimits(max_trials=48, in_flight=4),
        n_trials=48,
        seed=1,
        cancel_at=12,
        refill_every=5,
    ),
    Scenario(
        name="compute-budget",
        settings=SearchSettings(seed=23, n_startup=6, remeasure_every=2),
        limits=StudyLimits(max_cost=4000.0, in_flight=3),
        n_trials=36,
        seed=2,
        cancel_at=9,
        refill_every=4,
    ),
)


class Driver(Protocol):
    """What a scenario needs of an engine."""

    def ask(self, n: int) -> list[Suggestion]: ...

    def tell(
        self, suggestion: Suggestion, loss: float | None, cost: float, failed: bool
    ) -> None: ...

    def observe(self, params: dict[str, Any], loss: float | None, cost: float) -> None: ...

    def forget(self, suggestion: Suggestion) -> None: ...

    def radius(self) -> float: ...


@dataclass
class StandaloneDriver:
    """One engine kept in memory for the whole study (the library's ask/tell API)."""

    engine: ParetoSearch

    def ask(self, n: int) -> list[Suggestion]:
        return self.engine.ask(n)

    def tell(self, suggestion: Suggestion, loss: float | None, cost: float, failed: bool) -> None:
        self.engine.tell(suggestion.suggestion_id, loss, cost, failed=failed)

    def observe(self, params: dict[str, Any], loss: float | None, cost: float) -> None:
        self.engine.observe(params, loss, cost)

    def forget(self, suggestion: Suggestion) -> None:
        self.engine.forget(suggestion.suggestion_id)

    def radius(self) -> float:
        return self.engine.radius


def new_engine(scenario: Scenario) -> ParetoSearch:
    return ParetoSearch(
        PROBLEM.space(), scenario.settings, limits=scenario.limits, clock=lambda: CLOCK_NOW
    )


@dataclass
class _Study:
    driver: Driver
    rng: np.random.Generator
    running: list[Suggestion] = field(default_factory=list)
    buffer: list[Suggestion] = field(default_factory=list)
    record: list[dict[str, Any]] = field(default_factory=list)

    def ask(self, n: int) -> list[Suggestion]:
        suggestions = self.driver.ask(n)
        self.record.append(
            {"radius": self.driver.radius(), "suggestions": [summary(s) for s in suggestions]}
        )
        return suggestions

    def finish_one(self) -> None:
        suggestion = self.running.pop(int(self.rng.integers(len(self.running))))
        out = PROBLEM.evaluate(suggestion.params, rng=self.rng)
        self.driver.tell(suggestion, out.loss, out.cost, out.failed)


def run(scenario: Scenario, driver: Driver) -> list[dict[str, Any]]:
    """Play ``scenario`` on ``driver``; returns each ask's radius and suggestions."""
    study = _Study(driver=driver, rng=np.random.default_rng(scenario.seed))
    start = PROBLEM.evaluate(START_POINT, rng=study.rng)
    driver.observe(START_POINT, start.loss, start.cost)
    in_flight, asked, step = scenario.limits.in_flight, 0, 0
    while asked < scenario.n_trials or study.running:
        step += 1
        free = min(in_flight - len(study.running), scenario.n_trials - asked)
        if free > 0:
            taken = study.buffer[:free]
            study.buffer = study.buffer[free:]
            if len(taken) < free:
                taken += study.ask(free - len(taken))
            study.running += taken
            asked += len(taken)
        if step % scenario.refill_every == 0 and asked + len(study.buffer) < scenario.n_trials:
            study.buffer += study.ask(1)  # asked ahead, before anything else finished
        if step == scenario.cancel_at and study.running:
            driver.forget(study.running.pop(0))
        for _ in range(1 + int(study.rng.integers(2))):
            if study.running:
                study.finish_one()
    for suggestion in study.buffer:
        driver.forget(suggestion)
    return study.record


def summary(suggestion: Suggestion) -> dict[str, Any]:
    return {
        "suggestion_id": suggestion.suggestion_id,
        "reason": suggestion.reason,
        "params": suggestion.params,
        "predicted_loss": suggestion.predicted_loss,
        "predicted_cost": suggestion.predicted_cost,
        "probability_of_success": suggestion.probability_of_success,
    }


def cpu_kind() -> str:
    """The CPU's vendor (``vendor_id`` of ``/proc/cpuinfo``; the machine type where
    there is none), with ``+avx512`` where it has AVX-512 and its family and model
    (``AuthenticAMD+avx512 26/2``). BLAS picks its kernels by CPU, so the same search
    rounds differently on an Intel and an AMD machine, on two AMD EPYC machines with and
    without AVX-512, and on two generations of AMD EPYC with it (Zen 4 and Zen 5 differ
    in the sixth digit of a predicted cost); a search amplifies that."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()

    def field(name: str) -> str:
        return next(
            (
                line.split(":", 1)[1].strip()
                for line in info.splitlines()
                if line.split(":", 1)[0].strip() == name
            ),
            "?",
        )

    vendor = field("vendor_id") if "vendor_id" in info else platform.machine()
    avx512 = "+avx512" if " avx512f" in info else ""
    return f"{vendor}{avx512} {field('cpu family')}/{field('model')}"


def record_all(make_driver: Callable[[Scenario], Driver]) -> dict[str, Any]:
    recorded: dict[str, Any] = {s.name: run(s, make_driver(s)) for s in SCENARIOS}
    return recorded | {"recorded_on": cpu_kind()}


def main(out: str) -> None:
    import search

    print(f"recording with the engine at {Path(search.__file__).parent}", file=sys.stderr)
    recorded = record_all(lambda s: StandaloneDriver(new_engine(s)))
    Path(out).write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(FIXTURE))
