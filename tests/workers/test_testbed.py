"""The synthetic scaling testbed: its ground truth is what the config says it is."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from workers.objectives.base import NullContext
from workers.objectives.options import TestbedOptions
from workers.objectives.testbed import METRIC_NAMES, START_PARAMS, TestbedObjective
from workers.objectives.testbed_truth import PARAM_NAMES, Testbed, TestbedConfig, TestbedError

DEFAULT = TestbedConfig()
# Another world: different Chinchilla exponents and step-law exponents.
SHIFTED = replace(DEFAULT, alpha=0.30, beta=0.36, lr_n_exp=-0.55, lr_d_exp=0.2, batch_d_exp=0.45)


def optimal_params(tb: Testbed, n: float, d: float) -> dict:
    best = tb.optimal_hparams(n, d)
    return {"n_params": n, "tokens": d, **{k: best[k] for k in PARAM_NAMES[2:]}}


def random_configs(tb: Testbed, rng: np.random.Generator, size: int) -> dict:
    """Configurations drawn over the whole domain, hyperparameters within wide bounds."""
    cfg = tb.config
    k = rng.integers(math.log2(cfg.batch_size_min), math.log2(cfg.batch_size_max) + 1, size=size)
    return {
        "n_params": np.exp(rng.uniform(np.log(cfg.n_params_min), np.log(cfg.n_params_max), size)),
        "tokens": np.exp(rng.uniform(np.log(cfg.tokens_min), np.log(cfg.tokens_max), size)),
        "learning_rate": np.exp(rng.uniform(np.log(1e-5), np.log(1.0), size)),
        "batch_size": 2.0**k,
        "warmup_fraction": rng.uniform(1e-3, 0.5, size),
        "weight_decay": np.exp(rng.uniform(np.log(1e-4), np.log(1.0), size)),
        "schedule": rng.choice([name for name, _ in cfg.schedule_penalties], size),
    }


@pytest.mark.parametrize("config", [DEFAULT, SHIFTED], ids=["default", "shifted"])
def test_loss_decreases_in_n_and_d_at_optimal_hparams(config):
    tb = Testbed(config)
    grid = np.geomspace(1e6, 1e10, 12)
    in_n = [float(tb.noiseless_loss(optimal_params(tb, n, 1e9))) for n in grid]
    in_d = [float(tb.noiseless_loss(optimal_params(tb, 1e8, 10 * d))) for d in grid]
    assert np.all(np.diff(in_n) < 0)
    assert np.all(np.diff(in_d) < 0)
    assert in_n[-1] > config.loss_e and in_d[-1] > config.loss_e


def _numerical_optimum(tb: Testbed, n: float, d: float, schedule: str) -> dict:
    """Minimise the noiseless loss over (ln lr, ln batch, logit warmup, ln wd) from the start."""

    def loss(z):
        params = {
            "n_params": n,
            "tokens": d,
            "learning_rate": math.exp(z[0]),
            "batch_size": math.exp(z[1]),
            "warmup_fraction": 1 / (1 + math.exp(-z[2])),
            "weight_decay": math.exp(z[3]),
            "schedule": schedule,
        }
        return float(tb.noiseless_loss(params))

    # Start below the optimum's learning rate so the search never crosses the divergence edge.
    z0 = [math.log(1e-5), math.log(64), math.log(0.01 / 0.99), math.log(0.1)]
    result = minimize(loss, z0, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-12})
    z = result.x
    return {
        "learning_rate": math.exp(z[0]),
        "batch_size": math.exp(z[1]),
        "warmup_fraction": 1 / (1 + math.exp(-z[2])),
        "weight_decay": math.exp(z[3]),
        "loss": result.fun,
    }


@pytest.mark.parametrize(
    ("config", "n", "d"),
    [
        (DEFAULT, 3e7, 6e8),
        (SHIFTED, 1e9, 3e10),
        # min_steps this high makes the too-few-steps penalty bind at the step-law batch.
        (replace(DEFAULT, min_steps=5e4, weight_decay_d_exp=0.1), 1e7, 2e8),
        (replace(DEFAULT, lr_skew=1.5), 1e8, 2e9),
    ],
    ids=["default", "shifted", "steps-bound", "skewed-lr"],
)
def test_hparam_optimum_is_where_the_config_says(config, n, d):
    tb = Testbed(config)
    claimed = tb.optimal_hparams(n, d)
    found = _numerical_optimum(tb, n, d, claimed["schedule"])
    for name in ("learning_rate", "batch_size", "warmup_fraction", "weight_decay"):
        assert found[name] == pytest.approx(float(claimed[name]), rel=2e-3), name
    assert found["loss"] == pytest.approx(float(tb.noiseless_loss(optimal_params(tb, n, d))))


def test_a_skewed_lr_bowl_rises_faster_above_its_optimum_than_below():
    """``lr_skew`` keeps the optimum and the curvature there, and makes a learning rate
    e times the optimum cost more than one e times below it (the same at 0)."""
    n, d = 1e8, 2e9
    for skew in (0.0, 1.5):
        tb = Testbed(replace(DEFAULT, lr_skew=skew))
        best = optimal_params(tb, n, d)
        at = {
            f: float(tb.noiseless_loss({**best, "learning_rate": best["learning_rate"] * f}))
            for f in (math.e, 1 / math.e, 1.01, 1 / 1.01)
        }
        floor = float(tb.noiseless_loss(best))
        above, below = at[math.e] - floor, at[1 / math.e] - floor
        if skew == 0:
            assert above == pytest.approx(below, rel=1e-9)
        else:
            assert above > 2.5 * below > 0
        near_above, near_below = at[1.01] - floor, at[1 / 1.01] - floor
        assert near_above == pytest.approx(near_below, rel=0.05)  # quadratic at the bottom


def test_step_law_defaults_and_best_schedule():
    tb = Testbed()
    best = tb.optimal_hparams(1e8, 2e9)
    assert best["learning_rate"] == pytest.approx(1.79 * 1e8**-0.713 * 2e9**0.307)
    assert best["batch_tokens"] == pytest.approx(0.58 * 2e9**0.571)
    assert best["batch_size"] == pytest.approx(best["batch_tokens"] / DEFAULT.seq_len)
    params = optimal_params(tb, 1e8, 2e9)
    losses = {s: float(tb.noiseless_loss({**params, "schedule": s})) for s in ("cosine", "wsd")}
    assert best["schedule"] == "wsd"
    assert losses["cosine"] == pytest.approx(losses["wsd"] * 1.01)


def test_start_point_is_well_off_the_optimum():
    tb = Testbed()
    at_start = float(tb.noiseless_loss(START_PARAMS))
    at_best = float(
        tb.noiseless_loss(optimal_params(tb, START_PARAMS["n_params"], START_PARAMS["tokens"]))
    )
    assert at_start > 1.05 * at_best


@pytest.mark.parametrize("config", [DEFAULT, SHIFTED], ids=["default", "shifted"])
def test_compute_optimal_minimises_chinchilla_at_fixed_flops(config):
    tb = Testbed(config)
    for flops in (1e17, 1e21):
        n_star, d_star, loss_star = tb.compute_optimal(flops)
        assert 6 * n_star * d_star == pytest.approx(flops)
        s = flops / 6

        def chinchilla(log_n, s=s):
            return float(tb.chinchilla_loss(math.exp(log_n), s / math.exp(log_n)))

        found = minimize_scalar(chinchilla, bounds=(0, 40), method="bounded")
        assert math.exp(found.x) == pytest.approx(float(n_star), rel=1e-3)
        assert float(loss_star) == pytest.approx(
            float(tb.noiseless_loss(optimal_params(tb, float(n_star), float(d_star))))
        )
    slope = math.log(tb.compute_optimal(1e21)[0] / tb.compute_optimal(1e17)[0]) / math.log(1e4)
    assert slope == pytest.approx(config.beta / (config.alpha + config.beta))


def test_divergence_above_the_learning_rate_threshold_still_costs():
    tb = Testbed()
    params = {**optimal_params(tb, 1e7, 2e8), "batch_size": 32}
    lr_edge = (
        float(tb.optimal_hparams(1e7, 2e8)["learning_rate"])
        * (32 * DEFAULT.seq_len / float(tb.optimal_hparams(1e7, 2e8)["batch_tokens"]))
        ** DEFAULT.lr_batch_exp
    )
    ok = {**params, "learning_rate": 3.9 * lr_edge}
    bad = {**params, "learning_rate": 4.1 * lr_edge}
    assert tb.failure(ok) is None and np.isfinite(tb.noiseless_loss(ok))
    assert tb.failure(bad) == "diverged" and np.isnan(tb.noiseless_loss(bad))
    # the loss it would have reached, which its curve follows until the spike
    assert float(tb.loss_ignoring_failure(ok)) == float(tb.noiseless_loss(ok))
    assert float(tb.loss_ignoring_failure(bad)) > float(tb.loss_ignoring_failure(ok))
    assert float(tb.expected_cost(bad)) == pytest.approx(
        DEFAULT.divergence_at_fraction * float(tb.expected_cost(ok))
    )
    ctx = NullContext()
    outcome = TestbedObjective().run(bad, seed=3, context=ctx)
    assert outcome.failed and outcome.loss is None and "diverged" in outcome.failure_reason
    assert outcome.cost_seconds > 0 and ctx.curve  # it ran for a while before diverging


def test_out_of_memory_when_model_times_batch_is_too_big():
    tb = Testbed()
    params = optimal_params(tb, 1e10, 2e11)
    oom = {**params, "batch_size": 1024}  # 1e10 * 1024 * 1024 tokens > 4e15
    fits = {**params, "batch_size": 256}
    assert tb.failure(oom) == "oom" and tb.failure(fits) is None
    outcome = TestbedObjective().run(oom, seed=0, context=NullContext())
    assert outcome.failed and "out of memory" in outcome.failure_reason
    assert outcome.cost_seconds == pytest.approx(DEFAULT.oom_cost_seconds, rel=0.3)


def test_noise_is_seeded_and_has_the_configured_size():
    objective = TestbedObjective()
    first = objective.run(START_PARAMS, seed=7, context=NullContext())
    again = objective.run(START_PARAMS, seed=7, context=NullContext())
    assert (first.loss, first.cost_seconds, first.curve) == (
        again.loss,
        again.cost_seconds,
        again.curve,
    )
    outcomes = [objective.run(START_PARAMS, seed=s, context=NullContext()) for s in range(400)]
    losses = np.array([o.loss for o in outcomes])
    costs = np.array([o.cost_seconds for o in outcomes])
    assert len(set(losses)) == 400
    truth = objective.testbed
    assert abs(losses.mean() - float(truth.noiseless_loss(START_PARAMS))) < 4 * 0.01 / 20
    assert losses.std() == pytest.approx(DEFAULT.loss_noise_std, rel=0.2)
    assert costs.mean() == pytest.approx(float(truth.expected_cost(START_PARAMS)), rel=0.02)
    assert np.log(costs).std() == pytest.approx(DEFAULT.cost_noise_sigma, rel=0.2)


def test_noise_can_be_a_share_of_the_reducible_loss():
    """``loss_noise_share`` sets the loss sd to that share of L_chin(N, D) - E, at every
    size, so that small and large runs are equally noisy relative to what can be learned."""
    config = replace(DEFAULT, loss_noise_std=0.0, loss_noise_share=0.03)
    objective = TestbedObjective(config)
    for n_params, tokens in ((1e7, 2e8), (1e9, 2e10)):
        params = {**START_PARAMS, "n_params": n_params, "tokens": tokens}
        reducible = float(objective.testbed.chinchilla_loss(n_params, tokens)) - config.loss_e
        assert float(objective.testbed.loss_noise_sd(n_params, tokens)) == pytest.approx(
            0.03 * reducible
        )
        losses = np.array(
            [objective.run(params, seed=s, context=NullContext()).loss for s in range(400)]
        )
        assert losses.std() == pytest.approx(0.03 * reducible, rel=0.2)
    with pytest.raises(TestbedError, match="loss_noise_share"):
        replace(DEFAULT, loss_noise_share=-0.01)


def test_same_seed_on_different_params_draws_different_noise():
    objective = TestbedObjective()
    other = {**START_PARAMS, "weight_decay": 0.1000001}
    a = objective.run(START_PARAMS, seed=1, context=NullContext())
    b = objective.run(other, seed=1, context=NullContext())
    assert abs(a.loss - b.loss) > 1e-4


def test_run_reports_a_learning_curve_and_metrics():
    ctx = NullContext()
    outcome = TestbedObjective().run(START_PARAMS, seed=0, context=ctx)
    assert ctx.curve == outcome.curve and len(ctx.curve) == TestbedObjective.curve_points
    tokens = [p["tokens"] for p in ctx.curve]
    assert np.all(np.diff(tokens) > 0) and tokens[-1] == pytest.approx(START_PARAMS["tokens"])
    assert ctx.curve[0]["loss"] > ctx.curve[-1]["loss"] == outcome.loss
    assert outcome.flops == pytest.approx(6 * 1e7 * 2e8)
    assert outcome.metrics["steps"] == pytest.approx(2e8 / (64 * DEFAULT.seq_len))
    # the metrics a study's scaling axes may name (checked when the study is created)
    assert set(outcome.metrics) == set(METRIC_NAMES) == TestbedOptions.metrics
    json.dumps(outcome.metrics)
    json.dumps(outcome.curve)


@pytest.mark.parametrize("config", [DEFAULT, SHIFTED], ids=["default", "shifted"])
def test_pareto_loss_is_non_increasing_and_attained(config):
    tb = Testbed(config)
    costs = np.geomspace(1.0, 1e8, 200)
    front = tb.pareto_loss(costs)
    finite = np.isfinite(front)
    assert finite[-150:].all()
    assert np.all(np.diff(front[finite]) <= 0)
    for cost in (50.0, 5e3, 5e5):
        best = tb.pareto_optimum(cost)
        assert float(tb.expected_cost(best["params"])) == pytest.approx(cost, rel=1e-9)
        assert float(tb.noiseless_loss(best["params"])) == pytest.approx(best["loss"], rel=1e-9)
        assert best["loss"] == pytest.approx(float(tb.pareto_loss(cost)), rel=1e-9)


@pytest.mark.parametrize("config", [DEFAULT, SHIFTED], ids=["default", "shifted"])
def test_no_configuration_beats_the_front(config):
    tb = Testbed(config)
    rng = np.random.default_rng(0)
    configs = random_configs(tb, rng, 10_000)
    # Plus configurations near the front, where a wrong front would be beaten first; the
    # jitter stays in the domain because the front is taken over the domain only.
    cfg = tb.config
    near = [tb.pareto_optimum(c)["params"] for c in np.geomspace(20.0, 1e6, 40)]
    near = {k: np.repeat([p[k] for p in near], 50) for k in PARAM_NAMES}
    jitter = np.exp(rng.normal(0, 0.05, (2, near["n_params"].size)))
    near["n_params"] = np.clip(near["n_params"] * jitter[0], cfg.n_params_min, cfg.n_params_max)
    near["tokens"] = np.clip(near["tokens"] * jitter[1], cfg.tokens_min, cfg.tokens_max)
    configs = {k: np.concatenate([configs[k], near[k]]) for k in PARAM_NAMES}
    loss = tb.noiseless_loss(configs)
    cost = tb.expected_cost(configs)
    ok = np.isfinite(loss)
    assert ok.sum() > 5_000
    assert np.all(loss[ok] >= tb.pareto_loss(cost[ok]) * (1 - 1e-9))


def test_changing_the_config_changes_the_ground_truth():
    a, b = Testbed(DEFAULT), Testbed(SHIFTED)
    assert not np.allclose(a.pareto_loss([1e3, 1e5]), b.pareto_loss([1e3, 1e5]))
    ratio = float(b.optimal_hparams(1e9, 1e10)["learning_rate"]) / float(
        b.optimal_hparams(1e8, 1e10)["learning_rate"]
    )
    assert ratio == pytest.approx(10**SHIFTED.lr_n_exp)
    assert float(a.optimal_hparams(1e8, 1e10)["learning_rate"]) != pytest.approx(
        float(b.optimal_hparams(1e8, 1e10)["learning_rate"])
    )
    assert float(a.compute_optimal(1e20)[0]) != pytest.approx(float(b.compute_optimal(1e20)[0]))


def test_config_validates_and_round_trips_through_json():
    with pytest.raises(TestbedError, match="loss_a"):
        TestbedConfig(loss_a=-1.0)
    with pytest.raises(TestbedError, match="warmup_opt"):
        TestbedConfig(warmup_opt=1.5)
    with pytest.raises(TestbedError, match="max_utilisation"):
        TestbedConfig(max_utilisation=1.5)
    with pytest.raises(TestbedError, match="n_params_min"):
        TestbedConfig(n_params_min=1e11)
    with pytest.raises(TestbedError, match="unknown"):
        TestbedConfig.from_dict({"alpah": 0.3})
    data = json.loads(json.dumps(SHIFTED.to_dict()))
    assert TestbedConfig.from_dict(data) == SHIFTED


def test_bad_params_fail_with_a_clear_error():
    tb = Testbed()
    with pytest.raises(TestbedError, match=r"missing.*schedule"):
        tb.noiseless_loss({k: v for k, v in START_PARAMS.items() if k != "schedule"})
    with pytest.raises(TestbedError, match="unknown schedule"):
        tb.noiseless_loss({**START_PARAMS, "schedule": "linear"})
    with pytest.raises(TestbedError, match="learning_rate"):
        tb.noiseless_loss({**START_PARAMS, "learning_rate": -1.0})


def test_default_space_is_centred_on_the_start_point():
    space = TestbedObjective().default_space()
    assert space.names == list(PARAM_NAMES)
    assert space.center() == START_PARAMS
    assert space.validate_params(Testbed().pareto_optimum(1e4)["params"] | {"batch_size": 64})
