"""ScalingRules: fitting on a study, predict, the file format, refusal, verify, warm start."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from search.errors import InvalidParamsError, NotEnoughDataError
from search.scaling import (
    ScalingAxes,
    ScalingRules,
    fit_scaling_rules,
    verification_trial,
    verify,
    warm_start_space,
)
from search.scaling.allocation import fit_loss_frontier
from search.space import LogParam, SearchSpace
from search.types import Observation
from tests.search.near_front_study import AXES, sample_study
from workers.objectives.base import NullContext
from workers.objectives.testbed_truth import TestbedConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    objective, observations = sample_study(TestbedConfig(), seed=4)
    rules = fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=60)
    return objective, observations, rules


def test_every_hyperparameter_gets_a_rule_in_its_natural_space(study):
    _, _, rules = study
    assert rules.names == [
        "learning_rate", "batch_size", "warmup_fraction", "weight_decay", "schedule"
    ]  # fmt: skip
    transforms = {rule.name: rule.transform for rule in rules.hyperparameters}
    assert transforms == {
        "learning_rate": "ln", "batch_size": "log2", "warmup_fraction": "logit",
        "weight_decay": "ln", "schedule": "none",
    }  # fmt: skip
    assert all(rule.supported for rule in rules.hyperparameters)
    lr = rules.rule("learning_rate").vs_compute
    assert lr.r2 > 0.5 and lr.coef_low[1] < lr.coef[1] < lr.coef_high[1] < 0
    # warmup's optimum does not move with compute in this ground truth
    assert abs(rules.rule("warmup_fraction").vs_compute.coef[1]) < 0.05
    schedule = rules.rule("schedule").choice
    assert schedule.value == "wsd" and schedule.frequency > 0.5


def test_predict_returns_a_full_configuration_with_intervals(study):
    objective, _, rules = study
    prediction = rules.predict(compute=100.0 * rules.observed.compute_max)
    assert set(objective.default_space().names) <= set(prediction.params)
    batch = prediction.params["batch_size"]
    assert isinstance(batch, int) and batch & (batch - 1) == 0
    for name in ("learning_rate", "batch_size", "warmup_fraction", "weight_decay"):
        value = prediction.values[name]
        assert value.low < value.estimate < value.high
    assert prediction.loss.low < prediction.loss.estimate < prediction.loss.high
    assert prediction.n_params.low < prediction.n_params.estimate < prediction.n_params.high
    assert prediction.extrapolation_decades == pytest.approx(2.0)


@pytest.mark.parametrize("refused", ["n_params", "tokens"])
def test_with_one_allocation_law_the_other_comes_from_c_equals_6nd(study, refused):
    _, _, rules = study
    compute = 100.0 * rules.observed.compute_max
    both = rules.predict(compute=compute)
    allocation = rules.allocation.model_copy(
        update={refused: None, f"{refused}_reason": "flat or falling (a test)"}
    )
    one = rules.model_copy(update={"allocation": allocation, "parametric": None})
    prediction = one.predict(compute=compute)
    kept = "tokens" if refused == "n_params" else "n_params"
    assert getattr(prediction, kept) == getattr(both, kept)  # the supported law, unchanged
    derived = getattr(prediction, refused)
    assert derived.estimate * getattr(both, kept).estimate * 6.0 == pytest.approx(compute)
    assert derived.low < derived.estimate < derived.high
    assert any("C / 6" in w and "a test" in w for w in prediction.warnings)
    # with neither law, nothing is predicted
    none = one.model_copy(update={"allocation": allocation.model_copy(update={kept: None})})
    assert none.predict(compute=compute).n_params is None


def test_intervals_widen_with_extrapolation(study):
    _, _, rules = study
    widths = []
    for factor in (1.0, 10.0, 100.0, 1000.0):
        value = rules.predict(compute=factor * rules.observed.compute_max).values["learning_rate"]
        widths.append(math.log(value.high / value.low))
    assert np.all(np.diff(widths) > 0)


def test_predict_at_explicit_size_and_tokens(study):
    _, _, rules = study
    prediction = rules.predict(n_params=3e8, tokens=6e9)
    assert prediction.compute == pytest.approx(6 * 3e8 * 6e9)
    assert prediction.loss_source == "parametric L(N, D)"
    assert prediction.params["n_params"] == 3e8


def test_loss_at_a_compute_target_is_the_corrected_law_reaching_as_far_as_its_backtest(study):
    """The loss at a compute target is L(N, D) at (N*, D*) (the corrected runs) with its
    bootstrap interval, reaching as far as its backtest bias carries it 2 decades out;
    the frontier L*(C) (the runs the search tuned best, above the optimum) does not
    stretch it; and the truth at 100x lies inside."""
    objective, _, rules = study
    assert rules.parametric is not None and rules.loss_frontier is not None
    target = 100.0 * rules.observed.compute_max
    prediction = rules.predict(compute=target)
    n_star, d_star = prediction.n_params.estimate, prediction.tokens.estimate
    estimate, low, high = rules.parametric.predict_loss(np.array([n_star]), np.array([d_star]))
    beyond = math.log10(target / rules.parametric_backtest.compute_max)
    least, most = rules.parametric_backtest.stray(beyond, level=rules.level)
    loss = prediction.loss
    assert loss.estimate == pytest.approx(float(estimate[0]))
    assert loss.low == pytest.approx(min(float(low[0]), float(estimate[0]) * math.exp(-most)))
    assert loss.high == pytest.approx(max(float(high[0]), float(estimate[0]) * math.exp(-least)))
    assert prediction.loss_source == "parametric L(N, D)"
    true_loss = float(objective.testbed.compute_optimal(target)[2])
    assert loss.low <= true_loss <= loss.high


def test_a_floorless_frontier_reaches_up_to_no_further_gain(study):
    """Without L(N, D), a pure power law's interval beyond the front reaches up to the
    frontier at the largest observed compute: its floor is unknown."""
    _, _, rules = study
    top = rules.observed.compute_max
    frontier = fit_loss_frontier(
        np.geomspace(top / 1e3, top, 12),
        50.0 * np.geomspace(top / 1e3, top, 12) ** -0.08,
        n_bootstrap=20,
    )
    assert frontier.E_reason is not None
    floorless = rules.model_copy(
        update={"parametric": None, "loss_frontier": frontier, "loss_frontier_backtest": None}
    )
    prediction = floorless.predict(compute=100.0 * top)
    at_top = float(frontier.predict(np.array([top]))[0][0])
    _, _, power_law_high = frontier.predict(np.array([100.0 * top]))
    assert prediction.loss_source == "loss frontier L*(C)"
    assert prediction.loss.high == pytest.approx(at_top)
    assert prediction.loss.high > float(power_law_high[0])
    inside = floorless.predict(compute=top / 10.0)  # within the front: the bootstrap's
    _, _, high_inside = frontier.predict(np.array([top / 10.0]))
    assert inside.loss.high == pytest.approx(float(high_inside[0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_params": 1e8}, "together"),
        ({}, "give compute"),
        ({"compute": -1.0}, "finite positive"),
    ],
)
def test_predict_rejects_incomplete_targets(study, kwargs, message):
    with pytest.raises(InvalidParamsError, match=message):
        study[2].predict(**kwargs)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_file_round_trip(study, tmp_path, suffix):
    _, _, rules = study
    path = rules.save(tmp_path / f"rules{suffix}")
    loaded = ScalingRules.load(path)
    assert loaded == rules
    target = 30.0 * rules.observed.compute_max
    assert loaded.predict(compute=target) == rules.predict(compute=target)


def test_json_file_is_versioned_and_a_newer_version_is_refused(study, tmp_path):
    data = json.loads(study[2].to_json())
    assert data["schema_version"] == 1
    data["schema_version"] = 2
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationError, match="schema_version 2 is not supported"):
        ScalingRules.load(path)
    with pytest.raises(InvalidParamsError, match=r"\.json or \.yaml"):
        study[2].save(tmp_path / "rules.txt")


def test_loading_rules_needs_only_the_search_package(study, tmp_path):
    path = study[2].save(tmp_path / "rules.yaml")
    code = (
        "import sys; from search.scaling import ScalingRules; "
        f"r = ScalingRules.load({str(path)!r}); r.predict(compute=1e20); "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('service', 'workers', 'matplotlib', 'sqlalchemy', 'celery')]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_axes_are_validated():
    with pytest.raises(ValidationError, match="together"):
        ScalingAxes(n_params="n_params")
    with pytest.raises(ValidationError, match="declare n_params and tokens"):
        ScalingAxes()
    with pytest.raises(ValidationError, match="different quantities"):
        ScalingAxes(n_params="x", tokens="x")


def test_unknown_axis_name_is_a_clear_error(study):
    objective, observations, _ = study
    axes = ScalingAxes(n_params="width", tokens="tokens")
    with pytest.raises(InvalidParamsError, match="'width' is neither a parameter"):
        fit_scaling_rules(observations, objective.default_space(), axes)


def _compute_only_study(optimum_of_log_c, *, seed=0, decades=4.0, n_budgets=10, per_budget=20):
    """A space with a compute parameter and a learning rate whose optimum follows
    ``optimum_of_log_c``; loss = 3 C^-0.1 (1 + 0.05 (ln lr - ln lr*)^2) + noise."""
    rng = np.random.default_rng(seed)
    space = SearchSpace(
        params=[LogParam(name="budget", center=10.0), LogParam(name="lr", center=1e-3)]
    )
    observations = []
    for log_c in np.linspace(0.0, decades * math.log(10), n_budgets):
        for _ in range(per_budget):
            log_lr = optimum_of_log_c(log_c) + rng.normal(0.0, 0.5)
            loss = 3 * math.exp(-0.1 * log_c) * (1 + 0.05 * (log_lr - optimum_of_log_c(log_c)) ** 2)
            params = {"budget": math.exp(log_c), "lr": math.exp(log_lr)}
            observations.append(Observation(params, loss + rng.normal(0, 0.002), 1.0))
    return space, observations


def test_compute_only_axis_recovers_the_exponent():
    space, observations = _compute_only_study(lambda log_c: -5.0 - 0.3 * log_c)
    rules = fit_scaling_rules(observations, space, ScalingAxes(compute="budget"))
    law = rules.rule("lr").vs_compute
    assert law.coef[1] == pytest.approx(-0.3, abs=0.03)
    assert law.coef_low[1] < -0.3 < law.coef_high[1]
    assert rules.allocation is None and rules.parametric is None
    assert "no n_params/tokens axes" in rules.parametric_reason


def test_a_turning_point_short_of_99_percent_does_not_refuse_the_law(monkeypatch):
    """A faint bend in the optimum's path (significant at the rules' 90%, not at 99%)
    keeps the law: a false alarm would discard a law the runs support (the demo's
    monotone learning rate was refused that way in 2 of 9 runs at 90%)."""
    from search.scaling import hyperparameter_rules

    space, observations = _compute_only_study(lambda log_c: -5.0 + 0.0008 * (log_c - 4.6) ** 2)
    axes = ScalingAxes(compute="budget")
    rule = fit_scaling_rules(observations, space, axes).rule("lr")
    assert rule.supported and rule.vs_compute is not None
    monkeypatch.setattr(hyperparameter_rules, "TURN_LEVEL", 0.9)
    at_90 = fit_scaling_rules(observations, space, axes).rule("lr")
    assert not at_90.supported and "non-monotone" in at_90.reason


def test_non_monotone_optimum_is_refused_with_its_reason():
    space, observations = _compute_only_study(lambda log_c: -5.0 + 0.15 * (log_c - 4.6) ** 2)
    rules = fit_scaling_rules(observations, space, ScalingAxes(compute="budget"))
    rule = rules.rule("lr")
    assert not rule.supported and "non-monotone" in rule.reason
    prediction = rules.predict(compute=1e6)
    assert not prediction.values["lr"].supported
    assert any("non-monotone" in warning for warning in prediction.warnings)


@pytest.mark.parametrize("n_budgets, says", [(3, "3 points;"), (1, "1 point;")])
def test_too_few_front_points_are_refused(n_budgets: int, says: str):
    space, observations = _compute_only_study(lambda log_c: -5.0, n_budgets=n_budgets, per_budget=5)
    with pytest.raises(NotEnoughDataError, match=f"front has {says}"):
        fit_scaling_rules(observations, space, ScalingAxes(compute="budget"))


def test_a_narrow_compute_range_is_refused():
    space, observations = _compute_only_study(lambda log_c: -5.0, decades=0.5)
    with pytest.raises(NotEnoughDataError, match=r"span 0\.50 decades of compute"):
        fit_scaling_rules(observations, space, ScalingAxes(compute="budget"))


def test_intervals_need_a_bootstrap():
    space, observations = _compute_only_study(lambda log_c: 0.1 * log_c)
    with pytest.raises(ValueError, match="n_bootstrap must be at least 2"):
        fit_scaling_rules(observations, space, ScalingAxes(compute="budget"), n_bootstrap=1)


def test_verification_trial_runs_beyond_the_data_and_is_checked(study):
    objective, _, rules = study
    space = objective.default_space()
    params = verification_trial(rules, space, scale_factor=4.0)
    assert set(params) == set(space.names)
    assert 6 * params["n_params"] * params["tokens"] > rules.observed.compute_max
    out = objective.run(params, seed=0, context=NullContext())
    report = verify(rules, Observation(params, out.loss, out.cost_seconds))
    assert report.observed_loss == out.loss
    assert abs(report.relative_error) < 0.05
    assert report.within_interval == (report.predicted.low <= out.loss <= report.predicted.high)
    failed = verify(rules, Observation(params, math.nan, 1.0, failed=True))
    assert not failed.within_interval and "failed" in failed.message


def test_warm_start_recentres_the_space_on_the_rules(study):
    objective, _, rules = study
    space = objective.default_space()
    compute = 10.0 * rules.observed.compute_max
    warm = warm_start_space(rules, space, compute=compute)
    centre = warm.center()
    predicted = rules.predict(compute=compute).values["learning_rate"].estimate
    assert centre["learning_rate"] == pytest.approx(predicted)
    assert centre["schedule"] == "wsd"
    assert warm.names == space.names
    with pytest.raises(InvalidParamsError):
        verification_trial(rules, space, scale_factor=0.5)


def test_an_unidentified_slope_is_refused_and_predicts_the_best_observed_value(monkeypatch):
    """A slope whose standard error exceeds the limit (here set to 0) is refused with the
    numbers, and the prediction is the best observed value with the near-best runs'
    range, inside the declared limits, rather than a band from the law."""
    monkeypatch.setattr("search.scaling.hyperparameter_rules.MAX_SLOPE_SE", 0.0)
    space, observations = _compute_only_study(lambda log_c: -5.0 - 0.3 * log_c)
    rules = fit_scaling_rules(observations, space, ScalingAxes(compute="budget"))
    rule = rules.rule("lr")
    assert not rule.supported
    assert "not identified: standard error" in rule.reason and "decades" in rule.reason
    value = rules.predict(compute=1e6).values["lr"]
    assert value.estimate is None and value.value == rule.fallback
    assert value.low == rule.observed_low < rule.observed_high == value.high
    lrs = [o.params["lr"] for o in observations]
    assert min(lrs) <= value.low and value.high <= max(lrs)


def test_unbracketed_sizes_fall_back_to_the_allocation_through_the_efficient_runs():
    """Runs placed at (almost) one size per budget never bracket the surface's iso-FLOP
    minimum, so the surface's allocation is refused; the efficient runs themselves still
    show how the good sizes grow, and the rules say that is where N*(C) comes from."""
    # 1.8 decades of compute: N spans under a decade, so no L(N, D) to take N* from
    objective, observations = sample_study(
        TestbedConfig(), compute_min=1e16, compute_max=10**17.8, spread=0.03, seed=2
    )
    rules = fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=40)
    assert rules.parametric is None
    allocation = rules.allocation
    assert allocation.note is not None and "not bracket" in allocation.note
    assert allocation.n_params is not None and allocation.tokens is not None
    truth = objective.testbed
    low, high = (float(truth.compute_optimal(c)[0]) for c in (1e16, 1e18))
    exponent = math.log(high / low) / math.log(1e2)
    assert allocation.n_params.coef[1] == pytest.approx(exponent, abs=0.05)
    prediction = rules.predict(compute=10 * rules.observed.compute_max)
    assert any("through the compute-efficient runs" in w for w in prediction.warnings)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_learning_rate_follows_the_batch_a_prediction_uses(seed):
    """A study whose runs all used batches about 8x under the optimum, each with the
    learning rate tuned to its batch: the batch's optimum is beyond the runs (no law;
    the best observed batch is used), and the learning rate's law is read given that
    batch, not at the joint optimum, whose learning rate (for the optimal batch) would
    be 0.5-0.6 decades too high for it at 10x, past the testbed's divergence limit."""
    objective, observations = sample_study(TestbedConfig(), batch_offset=-3.0, seed=seed)
    rules = fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=60)
    batch, lr = rules.rule("batch_size"), rules.rule("learning_rate")
    assert not batch.supported and "not bracketed" in batch.reason
    assert lr.supported and f"batch_size {batch.fallback:.3g}" in lr.note
    prediction = rules.predict(compute=10.0 * rules.observed.compute_max)
    assert prediction.params["batch_size"] == batch.fallback
    tb = objective.testbed
    n, d = prediction.n_params.estimate, prediction.tokens.estimate
    batch_tokens = batch.fallback * tb.config.seq_len
    for_the_batch = float(tb.lr_opt_at_batch(n, d, batch_tokens))
    assert abs(math.log10(prediction.params["learning_rate"] / for_the_batch)) < 0.1
    joint = float(tb.optimal_hparams(n, d)["learning_rate"])
    assert math.log10(joint / for_the_batch) > 0.5
