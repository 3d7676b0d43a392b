"""The failure boundary: fitted to a study's failed and successful runs, and a
prediction past it held on its safe side."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.scaling import ScalingRules, fit_scaling_rules
from search.scaling.failure_boundary import (
    SAFE_PROBABILITY,
    FailureBoundary,
    fit_failure_boundary,
)
from search.space import LogParam, SearchSpace
from search.types import Observation
from tests.search.near_front_study import AXES, sample_study
from workers.objectives.testbed_truth import TestbedConfig

SPACE = SearchSpace(
    params=[
        LogParam(name="n_params", center=1e7, min=1e5, max=1e11),
        LogParam(name="lr", center=1e-3, min=1e-6, max=1.0),
    ]
)


def divergence_limit(n_params: float) -> float:
    """Runs diverge above this learning rate, which falls as N^-0.5."""
    return 4.0 * 3.0 * n_params**-0.5


def _runs(seed: int, n: int = 300) -> list[Observation]:
    """Runs over two decades of N and three of lr; those above the limit fail."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n):
        n_params = 10 ** rng.uniform(6.0, 8.0)
        lr = divergence_limit(n_params) * 10 ** rng.uniform(-2.0, 1.0)
        failed = lr > divergence_limit(n_params)
        runs.append(
            Observation(
                suggestion_id=None,
                params={"n_params": n_params, "lr": lr},
                loss=math.nan if failed else 1.0,
                cost=1.0,
                failed=failed,
            )
        )
    return runs


def _fit(runs: list[Observation]) -> FailureBoundary:
    boundary, reason = fit_failure_boundary(runs, SPACE)
    assert reason is None and boundary is not None
    return boundary


def test_the_boundary_is_found_and_its_safe_value_lies_below_the_limit_beyond_the_data():
    boundary = _fit(_runs(seed=0))
    assert boundary.n_runs == 300 and 0 < boundary.n_failed < 300
    for n_params in (1e6, 1e7, 1e8, 1e9):  # 1e9: a decade past the largest run
        limit = divergence_limit(n_params)
        assert boundary.probability({"n_params": n_params, "lr": limit / 4}) < 0.1
        assert boundary.probability({"n_params": n_params, "lr": limit * 4}) > 0.9
        safe = boundary.value_at({"n_params": n_params, "lr": limit}, "lr", SAFE_PROBABILITY)
        assert limit / 4 < safe < limit, (n_params, safe / limit)
        assert boundary.probability({"n_params": n_params, "lr": safe}) == pytest.approx(
            SAFE_PROBABILITY
        )
    assert boundary.strongest(["lr"]) == "lr"
    assert boundary.strongest(["batch"]) is None
    flat = boundary.model_copy(update={"coef": [boundary.coef[0], boundary.coef[1], 0.0]})
    assert flat.strongest(["lr"]) is None  # a parameter that does not move it is never moved


def test_a_parameter_the_runs_did_not_vary_is_left_out_of_the_boundary():
    """Constant in every run: no information on failure, and standardised by a spread
    of rounding errors it would swamp the model at any other value."""
    runs = [
        Observation(
            suggestion_id=None,
            params={**r.params, "n_params": 3e7},
            loss=r.loss,
            cost=r.cost,
            failed=r.failed,
        )
        for r in _runs(seed=2)
    ]
    boundary = _fit(runs)
    assert boundary.names == ["lr"]
    limit = divergence_limit(3e7)
    assert boundary.probability({"n_params": 1e9, "lr": limit / 4}) < 0.1


def test_too_few_failures_give_no_boundary_and_say_why():
    runs = [r for r in _runs(seed=1) if not r.failed] + [r for r in _runs(seed=1) if r.failed][:4]
    boundary, reason = fit_failure_boundary(runs, SPACE)
    assert boundary is None
    assert reason is not None and "4 failed" in reason and "at least 5" in reason


@pytest.fixture(scope="module")
def rules() -> ScalingRules:
    objective, observations = sample_study(TestbedConfig(), seed=4)
    return fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=40)


def _boundary_on_lr(rules: ScalingRules, past: float, slope: float = 10.0) -> FailureBoundary:
    """A boundary in the learning rate alone (``slope`` per standardised unit of ln lr)
    that puts the rules' predicted learning rate at 100x ``past`` units of logit beyond
    P = 0.5."""
    target = 100 * rules.observed.compute_max
    lr = float(rules.predict(compute=target).params["learning_rate"])
    return FailureBoundary(
        names=["learning_rate"],
        transforms=["ln"],
        mean=[math.log(lr)],
        scale=[1.0],
        coef=[past, slope],
        n_runs=100,
        n_failed=30,
    )


def test_a_prediction_past_the_boundary_is_held_on_its_safe_side(rules):
    target = 100 * rules.observed.compute_max
    before = rules.predict(compute=target)
    held_rules = rules.model_copy(update={"failure_boundary": _boundary_on_lr(rules, 3.0)})
    held = held_rules.predict(compute=target)
    lr_before = float(before.params["learning_rate"])
    lr_held = float(held.params["learning_rate"])
    # logit 3 past P = 0.5 at 10 per unit of ln lr: down by (3 + logit(0.95)) / 10 in ln
    expected = lr_before * math.exp(-(3.0 + math.log(19.0)) / 10.0)
    assert lr_held == pytest.approx(expected, rel=1e-6)
    assert held.failure_probability == pytest.approx(SAFE_PROBABILITY)
    value = held.values["learning_rate"]
    assert value.value == value.estimate == lr_held and "failure boundary" in value.source
    # the law's whole interval lay above the safe value: it shrinks to that value
    assert before.values["learning_rate"].low > lr_held
    assert value.low == value.high == lr_held
    assert any(w.startswith("learning_rate ") and "P(fail) 0.95" in w for w in held.warnings)
    # nothing else moves: not the allocation, not the other hyperparameters
    assert held.n_params == before.n_params and held.tokens == before.tokens
    for name in ("batch_size", "warmup_fraction", "weight_decay", "schedule"):
        assert held.params[name] == before.params[name]


def test_the_interval_is_cut_at_the_safe_value(rules):
    """A boundary just below the prediction keeps the interval's safe part."""
    target = 100 * rules.observed.compute_max
    before = rules.predict(compute=target).values["learning_rate"]
    steep = rules.model_copy(update={"failure_boundary": _boundary_on_lr(rules, 1.0, 100.0)})
    value = steep.predict(compute=target).values["learning_rate"]
    assert before.low < value.estimate < before.estimate
    assert value.low == before.low and value.high == value.estimate


def test_a_boundary_the_parameter_cannot_cross_within_its_limits_only_warns(rules):
    """Far past the boundary (the safe value below the learning rate's declared minimum,
    and failure still likely there): nothing is moved, the warning says why."""
    target = 100 * rules.observed.compute_max
    before = rules.predict(compute=target)
    far = rules.model_copy(update={"failure_boundary": _boundary_on_lr(rules, 500.0, 1.0)})
    after = far.predict(compute=target)
    assert after.params == before.params and after.values == before.values
    assert after.failure_probability == pytest.approx(1.0)
    assert after.warnings[-1].endswith("learning_rate cannot move it within its limits")


def test_a_prediction_inside_the_boundary_is_left_alone_with_its_probability(rules):
    target = 100 * rules.observed.compute_max
    before = rules.predict(compute=target)
    inside = rules.model_copy(update={"failure_boundary": _boundary_on_lr(rules, -3.0)})
    after = inside.predict(compute=target)
    assert after.params == before.params and after.warnings == before.warnings
    assert after.failure_probability == pytest.approx(1 / (1 + math.exp(3.0)))
    assert before.failure_probability is None  # these runs never failed: no boundary
    assert "0 failed" in rules.failure_boundary_reason


def test_a_boundary_over_parameters_the_prediction_lacks_is_not_read(rules):
    """No value to read it at (here a parameter the configuration does not have, as
    with N and D when no allocation is supported): no probability, nothing moves."""
    target = 100 * rules.observed.compute_max
    elsewhere = _boundary_on_lr(rules, 3.0).model_copy(update={"names": ["not_a_parameter"]})
    after = rules.model_copy(update={"failure_boundary": elsewhere}).predict(compute=target)
    assert after.failure_probability is None
    assert after.params == rules.predict(compute=target).params


def test_the_boundary_is_kept_in_the_rules_file(rules, tmp_path):
    stored = rules.model_copy(update={"failure_boundary": _boundary_on_lr(rules, 3.0)})
    for suffix in (".json", ".yaml"):
        loaded = ScalingRules.load(stored.save(tmp_path / f"rules{suffix}"))
        assert loaded.failure_boundary == stored.failure_boundary
        target = 100 * rules.observed.compute_max
        assert loaded.predict(compute=target).params == stored.predict(compute=target).params
