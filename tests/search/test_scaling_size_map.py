"""The size map: when model size N is a metric, a prediction at N* sets width and depth.

The study is the near-front testbed study with its N parameter replaced by a
transformer's shape (width a power of two, depth an integer) and N reported as a metric
(``12 L d^2 + 256 d``, the count of a byte-level decoder with tied embeddings), as the
``lm`` objective does. Without the size map the shape parameters' own laws are flat, so a
prediction kept the best observed shape and ran 10x the compute at the old model size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.scaling import ScalingAxes, fit_scaling_rules, verification_trial
from search.scaling.size_map import SizeMap, fit_size_map, resize, snap_to_size
from search.space import IntParam, Pow2Param, SearchSpace
from search.types import Observation
from tests.search.near_front_study import sample_study
from workers.objectives.base import NullContext
from workers.objectives.testbed_truth import TestbedConfig

AXES = ScalingAxes(n_params="n_params_total", tokens="tokens")
VOCAB = 256


def model_size(d_model: float, n_layers: float) -> float:
    return 12.0 * n_layers * d_model**2 + VOCAB * d_model


def _shape_for(n_params: float, rng: np.random.Generator) -> tuple[int, int]:
    n_layers = int(rng.integers(1, 9))
    width = math.sqrt(n_params / (12.0 * n_layers))
    return int(2 ** round(math.log2(max(width, 16.0)))), n_layers


@pytest.fixture(scope="module")
def shaped_study():
    """(space, observations, objective): N from (d_model, n_layers), as a metric."""
    objective, near_front = sample_study(TestbedConfig(), seed=4)
    rng = np.random.default_rng(0)
    observations = []
    for obs in near_front:
        d_model, n_layers = _shape_for(obs.params["n_params"], rng)
        size = model_size(d_model, n_layers)
        run = {**obs.params, "n_params": size}
        out = objective.run(run, seed=4, context=NullContext())
        params = {k: v for k, v in run.items() if k != "n_params"}
        params |= {"d_model": d_model, "n_layers": n_layers}
        loss = math.nan if out.failed else float(out.loss)
        metrics = {"n_params_total": size}
        observations.append(
            Observation(params, loss, out.cost_seconds, out.failed, metrics=metrics)
        )
    base = [p for p in objective.default_space().params if p.name != "n_params"]
    shape = [
        Pow2Param(name="d_model", center=512, min=16, max=2**15),
        IntParam(name="n_layers", center=4, min=1, max=32, log=False),
    ]
    return SearchSpace(params=base + shape), observations


def test_the_map_finds_the_shape_parameters_and_nothing_else(shaped_study):
    space, observations = shaped_study
    rules = fit_scaling_rules(observations, space, AXES, n_bootstrap=40)
    size_map = rules.size_map
    assert size_map is not None, rules.size_map_reason
    assert set(size_map.slopes) == {"d_model", "n_layers"}
    assert size_map.r_squared > 0.99
    assert 1.7 < size_map.slopes["d_model"] < 2.1  # N ~ d^2 in the larger models
    assert 0.8 < size_map.slopes["n_layers"] < 1.1
    # the shape parameters follow N*, so the surface does not seek optima of their own
    for name in ("d_model", "n_layers"):
        rule = rules.rule(name)
        assert not rule.supported and "size map" in rule.reason
        assert rule.vs_compute is None


def test_a_prediction_at_10x_is_sized_to_n_star(shaped_study):
    space, observations = shaped_study
    rules = fit_scaling_rules(observations, space, AXES, n_bootstrap=40)
    prediction = rules.predict(compute=10 * rules.observed.compute_max)
    n_star = prediction.n_params.estimate
    params = prediction.params
    reached = model_size(params["d_model"], params["n_layers"])
    # within a power-of-two width step (x4 in N at worst, x2 at best with depth's help)
    assert abs(math.log(reached / n_star)) < math.log(1.6), (reached, n_star)
    assert "sized to N*" in prediction.values["d_model"].source
    # Without the map the shape stays at the best observed one, far below N* at 10x:
    # this is what the test guards against.
    best = model_size(rules.rule("d_model").fallback, rules.rule("n_layers").fallback)
    assert abs(math.log(best / n_star)) > abs(math.log(reached / n_star)) + math.log(1.5)
    # and the verification trial takes the sized shape
    trial = verification_trial(rules, space, scale_factor=10.0)
    assert (trial["d_model"], trial["n_layers"]) == (params["d_model"], params["n_layers"])


def test_the_shape_interval_follows_n_stars():
    size_map = SizeMap(
        intercept=math.log(12.0), slopes={"d": 2.0, "layers": 1.0},
        r_squared=1.0, max_error=0.0, n_runs=10,
    )  # fmt: skip
    start = {"d": 64.0, "layers": 2.0}
    spread = {"d": math.log(4.0), "layers": math.log(2.0)}
    limits = {"d": (8.0, 4096.0), "layers": (1.0, 16.0)}
    small, large = (
        resize(size_map, start, math.log(n), spread=spread, limits=limits) for n in (1e6, 1e8)
    )
    for values, n in ((small, 1e6), (large, 1e8)):
        assert math.isclose(size_map.log_size(values), math.log(n), rel_tol=1e-9)
    assert small["d"] < large["d"] and small["layers"] < large["layers"]
    # width varied more over the near-best runs, so it takes most of the move
    assert math.log(large["d"] / 64.0) > math.log(large["layers"] / 2.0)


def test_a_limit_holds_and_the_other_parameters_take_up_the_rest():
    size_map = SizeMap(
        intercept=math.log(12.0), slopes={"d": 2.0, "layers": 1.0},
        r_squared=1.0, max_error=0.0, n_runs=10,
    )  # fmt: skip
    limits = {"d": (8.0, 128.0), "layers": (1.0, 64.0)}
    spread = {"d": 1.0, "layers": 0.2}
    values = resize(
        size_map, {"d": 64.0, "layers": 2.0}, math.log(1e7), spread=spread, limits=limits
    )
    assert values["d"] == pytest.approx(128.0)
    assert size_map.log_size(values) == pytest.approx(math.log(1e7))
    grid = {"d": ("pow2", 1), "layers": ("int", 1)}
    snapped = snap_to_size(size_map, values, math.log(1e7), grid=grid, limits=limits)
    assert snapped["d"] == 128.0 and float(snapped["layers"]).is_integer()
    assert abs(size_map.log_size(snapped) - math.log(1e7)) <= math.log(51 / 50.0)


def test_a_size_the_parameters_do_not_explain_gets_no_map():
    rng = np.random.default_rng(1)
    params = [
        {"lr": float(v), "width": int(w)}
        for v, w in zip(rng.uniform(1e-4, 1e-2, 40), rng.integers(8, 64, 40), strict=True)
    ]
    size_map, reason = fit_size_map(params, rng.lognormal(10, 1, 40), ["lr", "width"])
    assert size_map is None and "size" in reason


def test_no_numeric_candidate_is_named_as_the_reason():
    params = [{"act": "gelu"} for _ in range(20)]
    size_map, reason = fit_size_map(params, np.geomspace(1e3, 1e6, 20), ["act"])
    assert size_map is None and "no positive numeric parameter" in reason
