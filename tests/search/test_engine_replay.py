"""The engine rebuilt at every step from its small state and the history suggests exactly
what the engine that kept every trial in its state suggested (commit 26b2f0f), and
that state does not grow with the trials.

``fixtures/engine_replay.json`` holds the old engine's suggestions in the scenarios of
``tests.search.replay_scenario`` (its docstring says how it was recorded).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from search.engine import ParetoSearch
from search.errors import HistoryMismatchError
from search.history import History, make_observation
from search.types import Observation, Suggestion
from tests.search.engine_helpers import run_rounds
from tests.search.replay_scenario import (
    CLOCK_NOW,
    FIXTURE,
    PROBLEM,
    SCENARIOS,
    Scenario,
    StandaloneDriver,
    cpu_kind,
    new_engine,
    run,
)

EXPECTED = json.loads(FIXTURE.read_text())


@dataclass
class RebuildingDriver:
    """The service's way: the trials live outside the engine (here in two lists, there in
    database rows, holding what rows hold), and each ask rebuilds the engine from its
    saved small state and that history, then saves the small state again as JSON."""

    state: str
    observations: list[Observation] = field(default_factory=list)
    pending: list[Suggestion] = field(default_factory=list)
    state_sizes: list[int] = field(default_factory=list)
    last_radius: float = math.nan

    def _engine(self) -> ParetoSearch:
        return ParetoSearch.from_state_dict(
            json.loads(self.state),
            history=History(observations=tuple(self.observations), pending=tuple(self.pending)),
            clock=lambda: CLOCK_NOW,
        )

    def ask(self, n: int) -> list[Suggestion]:
        engine = self._engine()
        suggestions = engine.ask(n)
        self.last_radius = engine.radius
        self.state = json.dumps(engine.state_dict(with_history=False))
        self.state_sizes.append(len(self.state))
        self.pending += [_as_stored(s) for s in suggestions]
        return suggestions

    def tell(self, suggestion: Suggestion, loss: float | None, cost: float, failed: bool) -> None:
        self.pending = [s for s in self.pending if s.suggestion_id != suggestion.suggestion_id]
        observation = make_observation(
            suggestion.params,
            loss,
            cost,
            failed=failed,
            suggestion_id=suggestion.suggestion_id,
            reason=suggestion.reason,
        )
        self.observations.append(observation)

    def observe(self, params: dict[str, Any], loss: float | None, cost: float) -> None:
        self.observations.append(make_observation(params, loss, cost))

    def forget(self, suggestion: Suggestion) -> None:
        self.pending = [s for s in self.pending if s.suggestion_id != suggestion.suggestion_id]

    def radius(self) -> float:
        return self.last_radius


def _as_stored(suggestion: Suggestion) -> Suggestion:
    """A suggestion as a trial row keeps it: no lease, no extra, no success probability."""
    return Suggestion(
        suggestion_id=suggestion.suggestion_id,
        params=json.loads(json.dumps(suggestion.params)),
        reason=suggestion.reason,
        predicted_loss=suggestion.predicted_loss,
        predicted_cost=suggestion.predicted_cost,
    )


def rebuilding_driver(scenario: Scenario) -> RebuildingDriver:
    return RebuildingDriver(state=json.dumps(new_engine(scenario).state_dict(with_history=False)))


def assert_same_asks(
    got: list[dict[str, Any]],
    expected: list[dict[str, Any]],
    *,
    rel: float = 1e-9,
    exact_params: bool = True,
) -> None:
    """The same asks; ``exact_params=False`` allows the params the last bit of a float
    (another CPU's vector math library), and then not the suggestion ids, which hash
    the params' exact bits."""
    assert len(got) == len(expected)
    for i, (ask, want) in enumerate(zip(got, expected, strict=True)):
        # The trust radius moves by set factors: held three digits tighter.
        assert ask["radius"] == pytest.approx(want["radius"], rel=rel * 1e-3), f"ask {i}"
        assert len(ask["suggestions"]) == len(want["suggestions"]), f"ask {i}"
        for got_s, want_s in zip(ask["suggestions"], want["suggestions"], strict=True):
            assert got_s["reason"] == want_s["reason"], f"ask {i}: reason"
            if exact_params:
                assert got_s["suggestion_id"] == want_s["suggestion_id"], f"ask {i}: id"
                assert got_s["params"] == want_s["params"], f"ask {i}: params"
            else:
                assert _last_bit_apart(got_s["params"], want_s["params"]), f"ask {i}: params"
            for key in ("predicted_loss", "predicted_cost", "probability_of_success"):
                want_value = want_s[key]
                if want_value is None:
                    assert got_s[key] is None, f"ask {i}: {key}"
                else:
                    assert got_s[key] == pytest.approx(want_value, rel=rel), f"ask {i}: {key}"


def _last_bit_apart(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """The same names and values, floats equal to 1e-12 (other values exactly)."""
    if got.keys() != want.keys():
        return False
    return all(
        got[k] == pytest.approx(v, rel=1e-12) if isinstance(v, float) else got[k] == v
        for k, v in want.items()
    )


def standalone_asks(scenario: Scenario) -> list[dict[str, Any]]:
    return json.loads(json.dumps(run(scenario, StandaloneDriver(new_engine(scenario)))))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_rebuilt_every_step_from_small_state_and_history_replays_the_standalone_engine(scenario):
    got = json.loads(json.dumps(run(scenario, rebuilding_driver(scenario))))
    assert_same_asks(got, standalone_asks(scenario))


# On another CPU kind than the fixture's, its first asks: a search amplifies rounding
# (the fixture, recorded on an AMD EPYC, replayed on an Intel Xeon: the same params in
# 21 and in all 32 asks of the two scenarios, predictions within 0.22% before that; on
# an AMD EPYC with AVX-512, params a last bit apart from the first ask on).
OTHER_CPU_ASKS = 8
OTHER_CPU_REL = 1e-2


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_standalone_engine_replays_the_recorded_one(scenario):
    got, expected = standalone_asks(scenario), EXPECTED[scenario.name]
    if EXPECTED["recorded_on"] == cpu_kind():
        assert_same_asks(got, expected)
    else:
        assert_same_asks(
            got[:OTHER_CPU_ASKS],
            expected[:OTHER_CPU_ASKS],
            rel=OTHER_CPU_REL,
            exact_params=False,
        )


def test_the_small_state_does_not_grow_with_the_trials():
    """Over a study of 48 trials its size stays within a few bytes (numbers printed with
    more or fewer digits) once each model whose hyperparameters it caches has been fitted
    (the cost GP of every trial from the first failure on, ``search.surrogates``), while
    the full state grows by every trial."""
    scenario = SCENARIOS[0]
    driver = rebuilding_driver(scenario)
    run(scenario, driver)
    sizes = driver.state_sizes
    assert len(driver.observations) > 40
    # A few bytes, and once, the ~300 of the second cost GP's hyperparameters.
    assert max(sizes) - min(sizes[len(sizes) // 4 :]) < 400, sizes
    state = json.loads(driver.state)
    assert "history" not in state
    assert "observations" not in json.dumps(state)
    full = driver._engine().state_dict()
    assert len(json.dumps(full)) > max(sizes) + 40 * 200


def test_a_history_that_lost_or_reordered_taken_in_trials_is_refused():
    scenario = SCENARIOS[0]
    driver = rebuilding_driver(scenario)
    run(scenario, driver)
    state = driver._engine().state_dict(with_history=False)  # every trial taken in
    observations = driver.observations
    assert state["taken_in"]["count"] == len(observations)
    shuffled = [*observations[:-3], observations[-2], observations[-3], observations[-1]]
    for bad, match in (
        (observations[:-1], "holds"),
        (shuffled, "in the order they finished"),
    ):
        with pytest.raises(HistoryMismatchError, match=match):
            ParetoSearch.from_state_dict(state, history=History(observations=tuple(bad)))


def test_new_observations_move_the_radius_as_tells_would():
    """An engine rebuilt with results it has not seen ends with the radius of one told
    them one by one, and asks the same next; re-measurements and observed trials do not
    move it."""
    problem = PROBLEM
    engine = ParetoSearch(problem.space(), SCENARIOS[0].settings, clock=lambda: CLOCK_NOW)
    rng = np.random.default_rng(3)
    for suggestion in engine.ask(10):
        out = problem.evaluate(suggestion.params, rng=rng)
        engine.tell(suggestion.suggestion_id, out.loss, out.cost, failed=out.failed)
    batch = engine.ask(6)
    small = engine.state_dict(with_history=False)
    for suggestion in batch:
        out = problem.evaluate(suggestion.params, rng=rng)
        engine.tell(suggestion.suggestion_id, out.loss, out.cost, failed=out.failed)
    rebuilt = ParetoSearch.from_state_dict(small, history=engine.history(), clock=lambda: CLOCK_NOW)
    assert rebuilt.radius == engine.radius != small["radius"]
    assert rebuilt.state_dict() == engine.state_dict()
    assert [s.params for s in rebuilt.ask(3)] == [s.params for s in engine.ask(3)]


def test_a_version_1_state_with_its_trials_inside_still_loads():
    """States saved before the split (the service's rows hold such) load as they were:
    every trial in them taken in, the same radius and the same next suggestions."""
    engine = ParetoSearch(PROBLEM.space(), SCENARIOS[0].settings, clock=lambda: CLOCK_NOW)
    run_rounds(engine, PROBLEM, rounds=2, batch=6, seed=5)
    engine.ask(2)
    full = json.loads(json.dumps(engine.state_dict()))
    saved = full.pop("history")
    del full["taken_in"]
    for observation in saved["observations"]:
        del observation["reason"]  # version 1 did not keep it
    legacy = {**full, **saved, "version": 1}
    restored = ParetoSearch.from_state_dict(legacy, clock=lambda: CLOCK_NOW)
    assert [o.params for o in restored.observations] == [o.params for o in engine.observations]
    assert restored.pending() == engine.pending()
    assert restored.radius == engine.radius
    assert restored.state_dict(with_history=False) == engine.state_dict(with_history=False)
    assert [s.params for s in restored.ask(3)] == [s.params for s in engine.ask(3)]


def test_a_given_history_replaces_the_one_in_the_state():
    engine = ParetoSearch(PROBLEM.space(), SCENARIOS[0].settings, clock=lambda: CLOCK_NOW)
    run_rounds(engine, PROBLEM, rounds=1, batch=6, seed=5)
    engine.ask(2)
    without_pending = History(observations=engine.observations)
    restored = ParetoSearch.from_state_dict(engine.state_dict(), history=without_pending)
    assert restored.observations == engine.observations
    assert restored.pending() == [] != engine.pending()
