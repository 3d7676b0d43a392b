"""ParetoSearch's contract: phases, parallel asks, leases, errors, state, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from search.engine import ParetoSearch
from search.errors import InvalidObservationError, InvalidParamsError, UnknownSuggestionError
from search.settings import SearchSettings
from search.space import ChoiceParam, SearchSpace
from search.testing import SizedQuadratic
from tests.search.engine_helpers import FakeClock, run_rounds

PROBLEM = SizedQuadratic(loss_noise_std=0.01, cost_noise_sigma=0.05)


def make_engine(**settings) -> ParetoSearch:
    return ParetoSearch(PROBLEM.space(), SearchSettings(**settings))


def params_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def test_startup_then_model_reasons():
    engine = make_engine(n_startup=6, seed=1)
    first = engine.ask(6)
    assert [s.reason for s in first] == ["startup"] * 6
    assert all(s.predicted_loss is None for s in first)
    rng = np.random.default_rng(0)
    for s in first:
        out = PROBLEM.evaluate(s.params, rng=rng)
        engine.tell(s.suggestion_id, out.loss, out.cost, failed=out.failed)
    later = engine.ask(4)
    assert {s.reason for s in later} <= {"model"}
    for s in later:
        assert s.predicted_cost is not None and s.predicted_cost > 0
        assert 0.0 < s.probability_of_success <= 1.0
        assert math.isfinite(s.predicted_loss)


def test_startup_points_stay_within_initial_radius():
    engine = make_engine(n_startup=20, initial_radius=0.5)
    x = engine.space.to_internal_many([s.params for s in engine.ask(20)])
    assert np.abs(x).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("batch", [8, 24])
def test_parallel_asks_are_distinct_including_pending(batch):
    engine = make_engine(seed=2)
    run_rounds(engine, PROBLEM, rounds=2, batch=8, seed=2)
    first = engine.ask(batch)
    second = engine.ask(batch)
    keys = [params_key(s.params) for s in first + second]
    assert len(set(keys)) == len(keys)
    assert len({s.suggestion_id for s in first + second}) == 2 * batch
    assert {s.reason for s in first + second} <= {"model", "remeasure"}
    assert len(engine.pending()) == 2 * batch


def test_state_round_trips_through_json_and_continues_identically():
    clock = FakeClock()
    engine = ParetoSearch(PROBLEM.space(), SearchSettings(seed=3, remeasure_every=3), clock=clock)
    run_rounds(engine, PROBLEM, rounds=3, batch=5, seed=3)
    engine.ask(2)  # pending suggestions are part of the state
    state = json.loads(json.dumps(engine.state_dict()))
    restored = ParetoSearch.from_state_dict(state, clock=clock)
    assert restored.observations == engine.observations
    assert restored.pending() == engine.pending()
    assert restored.radius == engine.radius
    assert [s.to_dict() for s in restored.ask(4)] == [s.to_dict() for s in engine.ask(4)]


def test_the_gain_scores_every_other_suggestion_by_front_area():
    clock = FakeClock()
    settings = SearchSettings(seed=2, remeasure_every=0)
    alternate = ParetoSearch(PROBLEM.space(), settings, clock=clock)
    run_rounds(alternate, PROBLEM, rounds=2, batch=8, seed=2)
    state = json.loads(json.dumps(alternate.state_dict()))
    restored = ParetoSearch.from_state_dict(state, clock=clock)
    batch = alternate.ask(6)
    expected = ["front area" if i % 2 else "surface EI" for i in range(16, 22)]
    assert [s.extra["gain"] for s in batch] == expected
    assert [s.to_dict() for s in restored.ask(6)] == [s.to_dict() for s in batch]


def test_cost_window_scales_the_target_window():
    engines = [make_engine(seed=4, cost_window=w) for w in (1.0, 3.0)]
    for engine in engines:
        run_rounds(engine, PROBLEM, rounds=1, batch=8, seed=4)
    narrow, wide = (engine.ask(1)[0].extra for engine in engines)
    assert narrow["target_cost"] == wide["target_cost"]
    assert wide["cost_width"] == pytest.approx(3.0 * narrow["cost_width"])


def test_climb_pacing_steps_above_the_front_once_the_spend_allows_one_at_a_time():
    """After two rounds the spend is too small for a climb; once a failed run has cost
    far more than 1/climb_share of a step above the front's top, exactly one suggestion
    of the next batch climbs (the others see it in flight), dearer than every front
    point. The same history with ``climb_share`` 0, or a ceiling under the step, gives
    no climb."""
    engine = make_engine(seed=6, n_startup=6)
    run_rounds(engine, PROBLEM, rounds=2, batch=6, seed=6)
    top = max(o.cost for o in engine.front())
    assert not any(s.extra["climb"] for s in engine.ask(6))
    for s in engine.pending():
        engine.forget(s.suggestion_id)
    engine.observe({"size": 5000.0, "learning_rate": 0.5, "shift": 3.0}, None, 3000.0, failed=True)
    state = engine.state_dict()
    climbs = [s for s in engine.ask(4) if s.extra["climb"]]
    assert len(climbs) == 1
    assert climbs[0].predicted_cost > top
    half_step = 0.5 * engine.settings.cost_overshoot
    assert climbs[0].predicted_cost >= climbs[0].extra["target_cost"] * math.exp(-half_step)
    for change in ({"climb_share": 0.0}, {"max_suggestion_cost": 1.5 * top}):
        variant = ParetoSearch.from_state_dict({**state, "settings": state["settings"] | change})
        assert not any(s.extra["climb"] for s in variant.ask(4))


def test_same_seed_same_suggestions_different_seed_different():
    def history(seed: int) -> list[dict]:
        engine = make_engine(seed=seed)
        run_rounds(engine, PROBLEM, rounds=2, batch=6, seed=0)
        return [s.params for s in engine.ask(3)]

    assert history(5) == history(5)
    assert history(5) != history(6)


def test_lease_expiry_with_fake_clock():
    clock = FakeClock()
    engine = ParetoSearch(PROBLEM.space(), SearchSettings(lease_seconds=60), clock=clock)
    kept, dropped = engine.ask(2)
    assert kept.expires_at == pytest.approx(clock.now + 60)
    clock.now += 30
    engine.tell(kept.suggestion_id, 2.0, 5.0)
    clock.now += 31
    assert engine.pending() == []
    with pytest.raises(UnknownSuggestionError, match="expired"):
        engine.tell(dropped.suggestion_id, 2.0, 5.0)
    with pytest.raises(UnknownSuggestionError, match="expired"):
        engine.forget(dropped.suggestion_id)


def test_unknown_and_closed_ids_are_rejected():
    engine = make_engine()
    (s,) = engine.ask(1)
    engine.forget(s.suggestion_id)
    with pytest.raises(UnknownSuggestionError, match="not pending"):
        engine.tell(s.suggestion_id, 1.0, 1.0)
    with pytest.raises(UnknownSuggestionError, match="not pending"):
        engine.forget("s999-nothing")


@pytest.mark.parametrize(
    ("loss", "cost", "failed", "match"),
    [
        (math.nan, 1.0, False, "loss must be finite"),
        (math.inf, 1.0, False, "loss must be finite"),
        (1.0, math.nan, False, "cost must be finite"),
        (1.0, math.inf, False, "cost must be finite"),
        (1.0, -2.0, False, "cost must be positive"),
        (1.0, 0.0, False, "cost must be positive"),
        (None, 1.0, False, "failed=True"),
        ("1.0", 1.0, False, "must be a number"),
        (None, -1.0, True, "cost must be positive"),
    ],
)
def test_invalid_observations_are_rejected_and_leave_the_suggestion_pending(
    loss, cost, failed, match
):
    engine = make_engine()
    (s,) = engine.ask(1)
    with pytest.raises(InvalidObservationError, match=match):
        engine.tell(s.suggestion_id, loss, cost, failed=failed)
    assert engine.pending() == [s]
    assert engine.observations == ()


def test_failed_trial_keeps_its_cost_and_has_nan_loss():
    engine = make_engine()
    (s,) = engine.ask(1)
    obs = engine.tell(s.suggestion_id, None, 12.5, failed=True)
    assert obs.failed and math.isnan(obs.loss) and obs.cost == 12.5
    assert engine.front() == []


def test_observe_validates_params():
    engine = make_engine()
    with pytest.raises(InvalidParamsError):
        engine.observe({"size": 10.0}, 1.0, 1.0)
    obs = engine.observe({"size": 10.0, "learning_rate": 0.01, "shift": 0.0}, 2.0, 10.0)
    assert obs.suggestion_id is None
    # One success: no model yet, so the front reports the observed loss.
    (point,) = engine.front()
    assert (point.params, point.loss, point.cost) == (obs.params, 2.0, 10.0)
    assert point.metrics["observed_loss"] == 2.0


def test_all_failed_trials_give_an_explained_fallback():
    engine = make_engine(n_startup=4)
    for s in engine.ask(4):
        engine.tell(s.suggestion_id, None, 3.0, failed=True)
    suggestions = engine.ask(3)
    for s in suggestions:
        assert s.reason.startswith("fallback: all 4 trials")
        assert s.probability_of_success is not None
    assert len({params_key(s.params) for s in suggestions}) == 3


def test_single_observation_gives_an_explained_fallback():
    engine = make_engine(n_startup=1)
    engine.observe(PROBLEM.space().center(), 3.0, 10.0)
    (s,) = engine.ask(1)
    assert s.reason.startswith("fallback: only 1 of 1 trials succeeded")


def test_a_ceiling_below_every_candidate_gives_an_explained_fallback():
    """Sizes 1-1e4 cost 1-1e4: a ceiling of 0.5 leaves no candidate under it."""
    engine = make_engine(n_startup=6, max_suggestion_cost=0.5, seed=3)
    run_rounds(engine, PROBLEM, rounds=1, batch=6, seed=3)
    (s,) = engine.ask(1)
    assert s.reason.startswith("fallback: no candidate is predicted to cost under 0.5")
    assert "max_suggestion_cost" in s.reason
    assert s.predicted_cost is not None and s.predicted_cost > 0.5


def test_constant_losses_and_duplicates_do_not_crash():
    engine = make_engine(n_startup=4, seed=4)
    center = PROBLEM.space().center()
    for _ in range(3):
        engine.observe(center, 2.0, 10.0)
    for s in engine.ask(6):
        engine.tell(s.suggestion_id, 2.0, 10.0)
    suggestions = engine.ask(4)
    assert {s.reason for s in suggestions} <= {"model", "remeasure"}
    assert len(engine.front()) == 1
    assert engine.front()[0].metrics["n_measurements"] == 3.0


@pytest.mark.parametrize(
    ("loss", "cost", "message"),
    [(1e31, 2.0, "rescale the metric"), (-1e31, 2.0, "rescale the metric"),
     (1.0, 1e31, "outside"), (1.0, 1e-31, "outside")],
)  # fmt: skip
def test_values_too_extreme_to_model_are_refused(loss, cost, message):
    engine = make_engine(n_startup=2, seed=5)
    (suggestion,) = engine.ask(1)
    with pytest.raises(InvalidObservationError, match=message):
        engine.tell(suggestion.suggestion_id, loss, cost)
    assert [s.suggestion_id for s in engine.pending()] == [suggestion.suggestion_id]


def test_extreme_values_inside_the_limits_are_modelled():
    """Losses and costs at the limits, and spanning many decades, give finite suggestions
    without a numerical warning (warnings are errors in the tests)."""
    engine = make_engine(n_startup=4, seed=5)
    extremes = [(1e30, 2.0), (-1e30, 3.0), (1e-12, 1e-30), (2.0, 1e30), (0.5, 10.0)]
    for s, (loss, cost) in zip(engine.ask(len(extremes)), extremes, strict=True):
        engine.tell(s.suggestion_id, loss, cost)
    for _ in range(3):
        for s in engine.ask(4):
            assert all(math.isfinite(float(v)) for v in s.params.values() if not isinstance(v, str))
            engine.tell(s.suggestion_id, 1.0 + 0.01 * len(engine.observations), 2.0)
    assert engine.front()


def test_max_suggestion_cost_is_respected():
    ceiling = 30.0
    engine = make_engine(seed=7, max_suggestion_cost=ceiling, n_startup=6)
    reasons = run_rounds(engine, PROBLEM, rounds=4, batch=6, seed=7)
    model = [s for s in engine.ask(6) if s.reason == "model"]
    assert model and all(s.predicted_cost <= ceiling for s in model)
    sizes = [o.params["size"] for o in engine.observations[6:]]
    assert "model" in reasons
    assert np.mean(np.array(sizes) <= ceiling * 1.2) >= 0.9


def test_remeasure_reruns_a_lucky_front_point_and_front_merges_repeats():
    engine = make_engine(n_startup=6, remeasure_every=1, seed=8)
    run_rounds(engine, PROBLEM, rounds=2, batch=6, seed=8)
    # A very lucky measurement: a mediocre configuration reported far below its true
    # loss, and below every front point costing up to 1.5x as much.
    lucky = {"size": 10.0, "learning_rate": 0.003, "shift": 0.0}
    best_nearby = min(o.loss for o in engine.front() if o.cost <= 15.0)
    engine.observe(lucky, min(best_nearby, PROBLEM.true_loss(lucky)) - 0.3, 10.0)
    suggestions = engine.ask(6)
    remeasures = [s for s in suggestions if s.reason == "remeasure"]
    assert [s.params for s in remeasures] == [lucky]
    engine.tell(remeasures[0].suggestion_id, PROBLEM.true_loss(lucky), 10.0)
    merged = [o for o in engine.front() if o.params == lucky]
    assert all(o.metrics["n_measurements"] == 2.0 for o in merged)


def test_spread_points_sit_at_a_front_point_s_cost_and_reach_up_the_bowl():
    """Every ``spread_every``-th suggestion of the model phase is a front point moved in
    every coordinate, predicted to cost what that point costs: its learning rates lie
    further from the optimum for their size than the acquisition's picks, which is what
    the scaling rules' response surface needs to place the bowl's bottom under noise."""
    engine = make_engine(n_startup=6, seed=9, spread_every=3, remeasure_every=0)
    run_rounds(engine, PROBLEM, rounds=12, batch=6, seed=9)
    later = engine.observations[6:]
    spread = [o for o in later if o.reason == "spread"]
    model = [o for o in later if o.reason == "model"]
    assert len(spread) == pytest.approx(len(later) / 3, abs=2)

    def lr_offset(o) -> float:
        return abs(math.log(o.params["learning_rate"] / PROBLEM.lr_opt(o.params["size"])))

    assert np.median([lr_offset(o) for o in spread]) > 2 * np.median([lr_offset(o) for o in model])
    (suggestion,) = [s for s in engine.ask(3) if s.reason == "spread"]
    anchor_cost = suggestion.extra["anchor_cost"]
    assert any(o.cost == pytest.approx(anchor_cost) for o in engine.front())
    assert abs(math.log(suggestion.predicted_cost / anchor_cost)) <= 0.2 + 1e-9


@pytest.mark.parametrize("seed", [1, 2])
def test_spread_points_stay_under_the_cost_ceiling(seed):
    """A spread point anchored at the front's top costs about what the top costs; under
    a ``max_suggestion_cost`` below it, no spread point is predicted dearer."""
    engine = make_engine(seed=seed, n_startup=6, spread_every=1, remeasure_every=0)
    run_rounds(engine, PROBLEM, rounds=6, batch=6, seed=seed)
    ceiling = 0.8 * max(o.cost for o in engine.front())
    state = engine.state_dict()
    capped = ParetoSearch.from_state_dict(
        {**state, "settings": state["settings"] | {"max_suggestion_cost": ceiling}}
    )
    spread = [s for s in capped.ask(12) if s.reason == "spread"]
    assert spread and all(s.predicted_cost <= ceiling for s in spread)


def test_spread_points_can_be_turned_off():
    engine = make_engine(n_startup=6, seed=9, spread_every=0)
    assert "spread" not in run_rounds(engine, PROBLEM, rounds=6, batch=6, seed=9)


def test_radius_grows_on_improvement_and_shrinks_after_misses():
    engine = make_engine(n_startup=2, initial_radius=1.0, shrink_patience=2, radius_shrink=0.5)
    for s, loss in zip(engine.ask(2), [3.0, 2.5], strict=True):
        engine.tell(s.suggestion_id, loss, 10.0)
    (s,) = engine.ask(1)
    engine.tell(s.suggestion_id, 1.0, 5.0)  # dominates everything: improves the front
    assert engine.radius == pytest.approx(1.5)
    for s in engine.ask(2):
        engine.tell(s.suggestion_id, 9.0, 50.0)  # dominated: two misses
    assert engine.radius == pytest.approx(0.75)


def test_settings_validation():
    with pytest.raises(ValueError, match="min_radius <= initial_radius"):
        SearchSettings(initial_radius=5.0, max_radius=3.0)
    with pytest.raises(ValueError):
        SearchSettings(unknown_knob=1)
    with pytest.raises(ValueError):
        make_engine().ask(0)


def test_gp_hyperparameters_are_refitted_only_after_enough_new_data():
    engine = make_engine(seed=9, n_startup=8, refit_growth=0.5)
    center = PROBLEM.space().center()

    def fitted_on() -> int:
        engine.forget(engine.ask(1)[0].suggestion_id)  # an ask fits what is due
        return engine.state_dict()["gp_hyperparameters"]["loss"]["n_fitted"]

    for size in np.geomspace(2.0, 200.0, 8):
        engine.observe({**center, "size": float(size)}, 1.0 + 4.0 / size**0.3, float(size))
    assert fitted_on() == 8
    for shift in (0.2, 0.4, 0.6):  # 11 points: less than 8 * 1.5
        engine.observe({**center, "shift": shift}, 2.0 - shift, 10.0)
    assert fitted_on() == 8
    engine.observe({**center, "shift": 0.8}, 1.3, 10.0)  # 12 points: a refit is due
    assert fitted_on() == 12


def test_an_exhausted_finite_space_says_it_repeats():
    space = SearchSpace(params=[ChoiceParam(name="kind", choices=["a", "b"])])
    engine = ParetoSearch(space, SearchSettings(n_startup=2))
    for s, loss in zip(engine.ask(2), [1.0, 2.0], strict=True):
        engine.tell(s.suggestion_id, loss, 1.0 + loss)
    (s,) = engine.ask(1)
    assert s.reason.startswith("fallback: every candidate was already tried")
