"""ParetoCostSampler in real Optuna studies: quality, parallel asks, mapping, seeds, states."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from integrations.optuna import (
    ParetoCostSampler,
    UnsupportedStudyError,
    UnusableTrialWarning,
    space_from_distributions,
)
from search.errors import InvalidObservationError, InvalidSpaceError
from search.settings import SearchSettings
from search.space import Pow2Param, SearchSpace
from search.testing import SizedQuadratic
from tests.search.test_engine_quality import sized_front_regret

SEEDS = (0, 1, 2)
PROBLEM = SizedQuadratic(loss_noise_std=0.005, cost_noise_sigma=0.02)
BOX = {
    "size": FloatDistribution(1.0, 1e4, log=True),
    "learning_rate": FloatDistribution(1e-6, 1.0, log=True),
    "shift": FloatDistribution(-2.0, 2.0),
}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    """Optuna logs every failed trial with its traceback; the tests fail trials on purpose."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(before)


class Diverged(Exception):
    """The objective's learning rate was far too high (a failed, still costly, trial)."""


def sized_objective(seed: int):
    """The SizedQuadratic as an Optuna objective returning (loss, cost)."""
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {
            "size": trial.suggest_float("size", 1.0, 1e4, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-6, 1.0, log=True),
            "shift": trial.suggest_float("shift", -2.0, 2.0),
        }
        out = PROBLEM.evaluate(params, rng=rng)
        if out.failed:
            trial.set_user_attr("cost", out.cost)
            raise Diverged
        return out.loss, out.cost

    return objective


def study_regret(study: optuna.Study) -> float:
    observations = [
        SimpleNamespace(
            params=t.params,
            loss=t.values[0] if t.values else math.nan,
            cost=t.values[1] if t.values else math.nan,
            failed=t.state != TrialState.COMPLETE,
        )
        for t in study.trials
    ]
    return sized_front_regret(PROBLEM, observations)


def run_study(sampler: optuna.samplers.BaseSampler, seed: int, n_trials: int) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(sized_objective(seed), n_trials=n_trials, catch=(Diverged,))
    return study


def test_finds_a_better_front_than_random_sampling_through_optuna():
    ours, rand = [], []
    for seed in SEEDS:
        study = run_study(ParetoCostSampler(seed=seed), seed, 32)
        reasons = [
            t.system_attrs.get("scaletune:suggestion", {}).get("reason") for t in study.trials
        ]
        assert reasons.count("model") >= 16, reasons  # the engine drove the study
        ours.append(study_regret(study))
        rand.append(study_regret(run_study(optuna.samplers.RandomSampler(seed=seed), seed, 32)))
    assert all(o < r for o, r in zip(ours, rand, strict=True)), (ours, rand)
    assert np.mean(ours) < 0.5 * np.mean(rand), (ours, rand)


def test_failed_trials_reach_the_engine_with_their_cost():
    sampler = ParetoCostSampler(seed=0)
    study = run_study(sampler, 0, 20)
    synced = study.trials[:-1]  # the last trial reaches the engine at the next ask
    failed = [t for t in synced if t.state == TrialState.FAIL]
    assert failed, "the problem should diverge somewhere in 20 trials"
    assert len(sampler.engine.observations) == len(synced)
    told = [o.cost for o in sampler.engine.observations if o.failed]
    assert sorted(told) == sorted(t.user_attrs["cost"] for t in failed)


def test_parallel_asks_with_running_trials_get_distinct_points():
    sampler = ParetoCostSampler(seed=3, settings=SearchSettings(n_startup=4))
    study = run_study(sampler, 3, 10)
    running = [study.ask(BOX) for _ in range(6)]
    points = {tuple(sorted(t.params.items())) for t in [*running, *study.trials]}
    assert len(points) == len(study.trials)  # every trial, finished or running, differs
    assert len(sampler.engine.pending()) == 6  # the engine knows what is in flight
    frozen = {t.number: t for t in study.trials}
    reasons = {frozen[t.number].system_attrs["scaletune:suggestion"]["reason"] for t in running}
    assert "model" in reasons


def test_threads_of_one_study_share_the_sampler_and_get_distinct_points():
    sampler = ParetoCostSampler(seed=4, settings=SearchSettings(n_startup=4))
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(sized_objective(4), n_trials=14, n_jobs=2, catch=(Diverged,))
    points = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(points) == 14
    assert len(sampler.engine.observations) >= 12  # all but the last trial or two


def test_a_second_worker_holds_the_first_workers_running_trials_as_pending():
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(
        directions=["minimize", "minimize"], storage=storage, sampler=ParetoCostSampler(seed=0)
    )
    first.optimize(sized_objective(0), n_trials=9, catch=(Diverged,))
    in_flight = [first.ask(BOX) for _ in range(3)]
    second_sampler = ParetoCostSampler(seed=0)  # same seed: only the pending can separate
    second = optuna.load_study(study_name=first.study_name, storage=storage, sampler=second_sampler)
    asked = [second.ask(BOX) for _ in range(3)]
    first_points = {tuple(sorted(t.params.items())) for t in in_flight}
    second_points = {tuple(sorted(t.params.items())) for t in asked}
    assert len(second_points) == 3 and not first_points & second_points
    held = {s.suggestion_id for s in second_sampler.engine.pending()}
    assert {f"optuna-trial-{t._trial_id}" for t in in_flight} <= held
    for t in in_flight:  # once told, the first worker's trials become observations
        first.tell(t, [1.5, 10.0])
    second.ask(BOX)
    assert len(second_sampler.engine.observations) == 9 + 3
    assert not {f"optuna-trial-{t._trial_id}" for t in in_flight} & {
        s.suggestion_id for s in second_sampler.engine.pending()
    }


MIXED = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "ratio": FloatDistribution(0.1, 0.9, step=0.2),
    "layers": IntDistribution(1, 10, step=3),
    "width": IntDistribution(16, 1024, log=True),
    "act": CategoricalDistribution(["relu", None, 2.5]),
    "opt": CategoricalDistribution(["adam", "sgd"]),
}


def test_distributions_map_to_engine_params_centred_in_their_box():
    space, codecs = space_from_distributions(MIXED)
    by_name = {p.name: p for p in space.params}
    assert by_name["lr"].kind == "log" and by_name["lr"].center == pytest.approx(1e-3)
    assert (by_name["lr"].min, by_name["lr"].max) == (1e-5, 1e-1)
    assert by_name["dropout"].kind == "linear" and by_name["dropout"].center == 0.25
    assert by_name["width"].kind == "int" and by_name["width"].log
    assert by_name["width"].center == 128 and (by_name["width"].min, by_name["width"].max) == (
        16,
        1024,
    )
    assert by_name["layers"].multiple_of == 3 and not by_name["layers"].log
    assert by_name["opt"].choices == ["adam", "sgd"]
    assert codecs["layers"].to_optuna(by_name["layers"].center) in (4, 7)


def test_every_value_of_every_distribution_round_trips_through_the_engine_space():
    space, codecs = space_from_distributions(MIXED)
    values = {
        "lr": [1e-5, 3.3e-4, 1e-1],
        "dropout": [0.0, 0.123, 0.5],
        "ratio": [0.1, 0.3, 0.5, 0.7, 0.9],
        "layers": [1, 4, 7, 10],
        "width": [16, 17, 500, 1024],
        "act": ["relu", None, 2.5],
        "opt": ["adam", "sgd"],
    }
    for name, column in values.items():
        for value in column:
            engine_value = codecs[name].to_engine(value)
            params = {**space.center(), name: engine_value}
            x = space.to_internal(params)
            back = codecs[name].to_optuna(space.from_internal(x)[name])
            assert back == pytest.approx(value) if isinstance(value, float) else back == value


def test_a_mixed_space_study_keeps_every_suggestion_inside_its_distribution():
    sampler = ParetoCostSampler(seed=1, settings=SearchSettings(n_startup=4))
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(12):
        trial = study.ask(MIXED)
        width, layers = trial.params["width"], trial.params["layers"]
        loss = abs(math.log10(trial.params["lr"]) + 3) + 0.1 * (trial.params["act"] is None)
        study.tell(trial, [loss + 0.01 * layers, width * layers])
    engine_made = [t for t in study.trials if "scaletune:suggestion" in t.system_attrs]
    assert len(engine_made) == 11  # all but the first, which no search space existed for
    for t in study.trials:
        for name, d in MIXED.items():
            assert d._contains(d.to_internal_repr(t.params[name])), (name, t.params[name])
    study.ask(MIXED)  # syncs the last trial
    told = [o.suggestion_id is not None for o in sampler.engine.observations]
    # Every engine-made trial came back from Optuna's storage as exactly the engine's
    # suggestion (steps, shifted ints and index choices included), so it was told by id.
    assert told == [False] + [True] * 11


def test_the_same_seed_gives_the_same_study_and_another_seed_differs():
    def params_of(seed: int) -> list[dict]:
        return [t.params for t in run_study(ParetoCostSampler(seed=seed), 5, 14).trials]

    first = params_of(7)
    assert params_of(7) == first
    assert params_of(8) != first


def test_single_objective_studies_take_the_cost_from_a_callable_or_a_user_attribute():
    def objective(trial: optuna.Trial) -> float:
        size = trial.suggest_float("size", 1.0, 100.0, log=True)
        trial.set_user_attr("cost", size)
        trial.set_user_attr("gpu_hours", size / 3600)
        return 1.0 + size**-0.3

    by_attr = ParetoCostSampler(seed=0)
    optuna.create_study(sampler=by_attr).optimize(objective, n_trials=6)
    costs = [o.cost for o in by_attr.engine.observations]
    assert costs == [o.params["size"] for o in by_attr.engine.observations]

    by_callable = ParetoCostSampler(seed=0, cost=lambda t: t.user_attrs["gpu_hours"])
    optuna.create_study(sampler=by_callable).optimize(objective, n_trials=6)
    assert [o.cost for o in by_callable.engine.observations] == pytest.approx(
        [o.params["size"] / 3600 for o in by_callable.engine.observations]
    )


def test_a_single_objective_trial_without_a_cost_is_a_clear_error():
    study = optuna.create_study(sampler=ParetoCostSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    with pytest.raises(InvalidObservationError, match=r"without a cost.*cost="):
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)


def test_a_non_positive_cost_is_a_clear_error():
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=ParetoCostSampler(seed=0)
    )
    study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0), -2.0), n_trials=1)
    with pytest.raises(InvalidObservationError, match=r"positive finite.*not its log"):
        study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0), 1.0), n_trials=1)


def test_pruned_and_failed_trials_are_failures_and_a_costless_one_is_left_out_with_a_warning():
    sampler = ParetoCostSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for i, state in enumerate([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]):
        trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
        trial.set_user_attr("cost", 2.0 + i)
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    costless = study.ask({"x": FloatDistribution(0.0, 1.0)})
    study.tell(costless, state=TrialState.FAIL)
    with pytest.warns(UnusableTrialWarning, match="FAIL trial 3 has no cost"):
        study.ask({"x": FloatDistribution(0.0, 1.0)})
    observed = [(o.failed, o.cost) for o in sampler.engine.observations]
    assert observed == [(False, 2.0), (True, 3.0), (True, 4.0)]


def test_an_enqueued_trial_is_held_while_it_runs_and_never_asked_of_the_engine():
    sampler = ParetoCostSampler(seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.tell(study.ask(BOX), [2.0, 5.0])
    study.enqueue_trial({"size": 10.0, "learning_rate": 1e-3, "shift": 0.0})
    enqueued = study.ask(BOX)
    assert "scaletune:suggestion" not in study.trials[enqueued.number].system_attrs
    study.ask(BOX)
    held = [s for s in sampler.engine.pending() if s.reason == "external"]
    assert [s.params for s in held] == [{"size": 10.0, "learning_rate": 1e-3, "shift": 0.0}]


def test_a_user_space_sets_kinds_and_is_limited_to_the_distribution():
    batch = Pow2Param(name="batch", center=64)  # unbounded: the box bounds it
    sampler = ParetoCostSampler(
        seed=0, space=SearchSpace(params=[batch]), settings=SearchSettings(n_startup=2)
    )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    box = {"batch": IntDistribution(8, 1024, log=True), "lr": FloatDistribution(1e-4, 1e-2)}
    for _ in range(8):
        trial = study.ask(box)
        study.tell(trial, [1.0 / trial.params["batch"], float(trial.params["batch"])])
    engine_made = [t for t in study.trials if "scaletune:suggestion" in t.system_attrs]
    assert engine_made and all(
        t.params["batch"] & (t.params["batch"] - 1) == 0 for t in engine_made
    )
    (param,) = [p for p in sampler.engine.space.params if p.name == "batch"]
    assert (param.kind, param.min, param.max) == ("pow2", 8, 1024)


def test_a_user_param_of_the_wrong_kind_is_refused():
    with pytest.raises(InvalidSpaceError, match=r"'batch'.*Pow2Param cannot hold"):
        space_from_distributions(
            {"batch": FloatDistribution(8, 1024)},
            space=SearchSpace(params=[Pow2Param(name="batch", center=64)]),
        )


def test_a_center_outside_the_box_is_refused():
    with pytest.raises(InvalidSpaceError, match="lr"):
        space_from_distributions(
            {"lr": FloatDistribution(1e-4, 1e-2, log=True)}, center={"lr": 0.5}
        )


def test_maximising_studies_are_refused_with_what_to_do():
    study = optuna.create_study(direction="maximize", sampler=ParetoCostSampler(seed=0))
    study.tell(study.ask({"x": FloatDistribution(0.0, 1.0)}), 1.0)
    with pytest.raises(UnsupportedStudyError, match="negate"):
        study.ask({"x": FloatDistribution(0.0, 1.0)})


def test_importing_search_does_not_import_optuna():
    code = (
        "import sys, search, search.engine, search.space, search.types, search.settings; "
        "assert 'optuna' not in sys.modules; import integrations.optuna; "
        "assert 'optuna' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_start_up_is_drawn_around_the_enqueued_start_point_not_the_box_mid():
    """Issue 18: with the start point enqueued and trials in flight, the engine's
    start-up stays within its initial radius of that point (and so near its cost),
    however far the box's mid is from it."""
    box = {name: FloatDistribution(1e-3, 1e3, log=True) for name in ("x", "y")}
    start = {"x": 1e-2, "y": 1e-2}
    sampler = ParetoCostSampler(seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.enqueue_trial(start)
    asked = [study.ask(box) for _ in range(6)]  # the first runs the enqueued point
    engine = sampler.engine
    anchor = engine.space.to_internal(start)
    assert np.abs(anchor).max() > 1.0  # the box's mid is far from the start point
    for trial in asked[1:]:
        distance = np.abs(engine.space.to_internal(trial.params) - anchor).max()
        assert distance <= engine.settings.initial_radius + 1e-9, trial.params
