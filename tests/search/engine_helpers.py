"""Drivers shared by the engine tests: run a study in rounds of parallel trials."""

from __future__ import annotations

import numpy as np

from search.engine import ParetoSearch
from search.testing import SizedQuadratic


class FakeClock:
    """A settable clock for lease tests."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_rounds(
    engine: ParetoSearch, problem: SizedQuadratic, *, rounds: int, batch: int, seed: int
) -> list[str]:
    """Ask ``batch`` suggestions per round, evaluate and tell them; return the reasons."""
    rng = np.random.default_rng(seed)
    reasons = []
    for _ in range(rounds):
        for suggestion in engine.ask(batch):
            outcome = problem.evaluate(suggestion.params, rng=rng)
            engine.tell(suggestion.suggestion_id, outcome.loss, outcome.cost, failed=outcome.failed)
            reasons.append(suggestion.reason)
    return reasons
