"""The held-out engine-study matrix of bench/scaling_extrapolation.py: its options, cache
keys, truths and tables (no engine study is run here)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bench.designed_sweeps import coverage_at_100x, prediction_at_100x
from bench.scaling_extrapolation import (
    GROUND_TRUTHS,
    HELD_OUT_MATRIX,
    bar_table,
    coverage_table,
    dex_table,
    loss_excess,
    lr_coverage_at_predicted_batch,
    median_interval,
    parse_args,
    parse_study_path,
    study_jobs,
    study_name,
    truth_config,
)
from bench.truths import ENGINE_HELD_OUT
from search.scaling import fit_scaling_rules
from tests.search.near_front_study import AXES, sample_study
from workers.objectives.testbed_truth import Testbed, TestbedConfig


def test_held_out_runs_thirty_studies_of_240_trials_and_explicit_options_win():
    jobs = study_jobs(parse_args(["--held-out", "--jobs", "1"]))
    assert len(jobs) == 30
    assert {j[0] for j in jobs} == set(ENGINE_HELD_OUT)
    assert {j[2] for j in jobs} == {0.01, 0.03}
    assert {j[3] == [240] for j in jobs} == {True}
    fewer = parse_args(["--held-out", "--seeds", "0,1,2"])
    assert len(study_jobs(fewer)) == 18 and fewer.truths == HELD_OUT_MATRIX["truths"]
    # without the flag: the development truths at the testbed's default noise
    assert {(j[0], j[2]) for j in study_jobs(parse_args([]))} == {
        (truth, None) for truth in GROUND_TRUTHS
    }


def test_unknown_truth_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown ground truth 'nope'.*engine-balanced"):
        study_jobs(parse_args(["--truths", "nope"]))


@pytest.mark.parametrize("noise", [None, 0.03])
def test_study_cache_key_reads_back(noise):
    name = study_name("engine-steep-laws", "flops", noise)
    path = Path(f"/tmp/{name}_240_4.json")
    assert parse_study_path(path) == ("engine-steep-laws", "flops", noise, 240, 4)


def test_noise_share_replaces_the_fixed_noise():
    config = truth_config("engine-balanced", "flops", 0.03)
    assert (config.loss_noise_std, config.loss_noise_share) == (0.0, 0.03)
    assert config.half_utilisation_batch_tokens == 0.0
    default = truth_config("engine-balanced", "flops")
    assert (default.loss_noise_std, default.loss_noise_share) == (0.01, 0.0)


def test_held_out_truths_differ_from_the_development_ones_and_are_plausible():
    """Other N*(C) exponents and lr and batch laws; D*/N* within 5-100 at 1e19 FLOPs."""

    def laws(overrides: dict) -> tuple[float, ...]:
        config = truth_config(*overrides)
        exponent = config.beta / (config.alpha + config.beta)
        return (round(exponent, 3), config.lr_n_exp, config.lr_d_exp, config.batch_d_exp)

    development = [laws((t, "flops")) for t in GROUND_TRUTHS]
    for truth in ENGINE_HELD_OUT:
        held_out = laws((truth, "flops"))
        for dev in development:
            assert all(h != d for h, d in zip(held_out, dev, strict=True))
        n_star, d_star, _ = Testbed(truth_config(truth, "flops")).compute_optimal(1e19)
        assert 5 < float(d_star / n_star) < 100


def _row(truth, noise, lr, batch, exponent, refused=False, excess=0.01):
    row = {"truth": truth, "noise_share": noise, "trials": 240, "loss_excess": excess}
    row |= {"learning_rate_as_used": lr, "batch_size_as_used": batch, "exponent_error": exponent}
    row |= {"learning_rate": None if refused else lr, "batch_size": batch}
    return row | ({"refused": "no law for learning_rate"} if refused else {})


def test_dex_table_scores_what_the_user_gets_and_counts_refused_laws():
    rows = [
        _row("a", 0.01, 1.1, 1.2, 0.01),
        _row("a", 0.01, 1.1, 1.2, -0.02),
        _row("a", 0.01, 10.0, 1.2, 0.01, refused=True, excess=0.08),
    ]
    lines = dex_table(rows).splitlines()
    # as used, the refused rule's 10x miss is in the median; the law-only median is not
    assert lines[2].startswith("| a | 1% | 240 | 3 | 0.041 ok / 0.041 (1) | 0.079 ok / 0.079 (0)")
    assert lines[2].endswith("| 0.010 ok | 1.00% / 1 / 0 |")
    assert lines[3].startswith("| all | all | 240 | 3 |")
    worse = dex_table([_row("a", 0.03, 10.0, 1.2, 0.05, refused=True, excess=None)] * 2)
    worse_row = worse.splitlines()[2]
    assert "| 1.000 / nan (2) |" in worse_row and worse_row.endswith("| 0.050 | diverged / 2 / 2 |")


def test_the_bar_table_calls_a_bar_only_where_the_medians_interval_is_clear_of_it():
    """Five studies just under the bar in lr (0.05-0.07 dex) meet it; five far over it in
    batch (0.3-0.5 dex) miss it; a cell whose studies straddle the bar (0.01-0.4 dex)
    has a median under it and is undecided, not "ok"."""
    tight = [_row("a", 0.01, 10**d, 10**b, 0.01) for d, b in zip(
        [0.05, 0.06, 0.06, 0.07, 0.07], [0.3, 0.35, 0.4, 0.45, 0.5], strict=True
    )]  # fmt: skip
    spread = [_row("b", 0.01, 10**d, 1.0, 0.01) for d in [0.01, 0.02, 0.06, 0.3, 0.4]]
    lines = bar_table(tight + spread).splitlines()
    a, b = lines[2].split(" | "), lines[3].split(" | ")
    assert a[3].startswith("0.060 [") and a[3].endswith("met"), a
    assert a[4].startswith("0.400 [") and a[4].endswith("missed"), a
    assert b[3].startswith("0.060 [") and b[3].endswith("undecided"), b


def test_the_median_interval_holds_the_median_and_is_reproducible():
    values = np.array([0.3, 0.1, 0.5, 0.2, 0.4, 0.25, 0.35])
    median, low, high = median_interval(values)
    assert low <= median <= high and median == pytest.approx(0.3)
    assert (median, low, high) == median_interval(values)
    assert high - low < np.ptp(values)


def test_loss_excess_prices_the_whole_predicted_configuration():
    """Zero at the true optimum; positive off it; None where the testbed diverges."""
    config = truth_config("engine-balanced", "flops")
    testbed = Testbed(config)
    compute = 1e20
    n_star, d_star, best = testbed.compute_optimal(compute)
    optimum = testbed.optimal_hparams(n_star, d_star)
    params = {
        "learning_rate": float(optimum["learning_rate"]),
        "batch_size": float(optimum["batch_size"]),
        "warmup_fraction": float(optimum["warmup_fraction"]),
        "weight_decay": float(optimum["weight_decay"]),
        "schedule": optimum["schedule"],
    }

    def prediction(n, d, **changed):
        return SimpleNamespace(
            n_params=SimpleNamespace(estimate=n),
            tokens=SimpleNamespace(estimate=d),
            params=params | changed,
        )

    assert loss_excess(testbed, prediction(n_star, d_star), best) == pytest.approx(0, abs=1e-9)
    off_size = loss_excess(testbed, prediction(4 * n_star, d_star / 4), best)
    eighth = params["batch_size"] / 8
    off_batch = loss_excess(testbed, prediction(n_star, d_star, batch_size=eighth), best)
    assert off_size > 0.001 and off_batch > 0.01
    too_fast = params["learning_rate"] * 10 * config.divergence_lr_factor
    assert loss_excess(testbed, prediction(n_star, d_star, learning_rate=too_fast), best) is None


def test_coverage_table_marks_coverage_inside_80_to_97_percent():
    def cover(hits: int, total: int) -> list[dict]:
        entry = {"covered": True, "width_dex": 0.5, "error_dex": -0.1}
        miss = entry | {"covered": False, "error_dex": 0.4}
        names = ("learning_rate", "batch_size", "n_star", "d_star")
        return [
            {"coverage": {**dict.fromkeys(names, entry if i < hits else miss), "loss": None}}
            for i in range(total)
        ]

    lines = coverage_table(cover(9, 10)).splitlines()
    assert lines[2] == "| learning_rate | 10 | 9/10 (90%) ok | 0.500 | 0.100 |"
    assert lines[-1].startswith("| loss | 0 | 0/0")
    assert "(100%) |" in coverage_table(cover(10, 10)).splitlines()[2]


def test_the_lr_interval_is_also_scored_against_the_optimum_for_the_predicted_batch():
    """The testbed's lr optimum moves along the lr-batch ridge (as batch^0.5 by default):
    at the optimal batch it is ``optimal_hparams``' learning rate; the bench scores a
    supported lr interval against the optimum at the batch the prediction gives."""
    config = TestbedConfig()
    testbed = Testbed(config)
    optimum = testbed.optimal_hparams(1e8, 2e9)
    batch = float(optimum["batch_tokens"])
    at_optimum = float(testbed.lr_opt_at_batch(1e8, 2e9, batch))
    assert at_optimum == pytest.approx(float(optimum["learning_rate"]))
    quarter = float(testbed.lr_opt_at_batch(1e8, 2e9, batch / 4))
    assert quarter == pytest.approx(at_optimum / 2)

    objective, observations = sample_study(config, seed=4)
    rules = fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=40)
    prediction = rules.predict(compute=100 * rules.observed.compute_max)
    scored = lr_coverage_at_predicted_batch(config, prediction)
    value = prediction.values["learning_rate"]
    assert value.supported and scored is not None
    truth = float(
        testbed.lr_opt_at_batch(
            prediction.n_params.estimate,
            prediction.tokens.estimate,
            prediction.params["batch_size"] * config.seq_len,
        )
    )
    assert scored["error_dex"] == pytest.approx(math.log10(value.estimate / truth))
    assert scored["covered"] == (value.low <= truth <= value.high)


def test_coverage_is_scored_at_the_predictions_own_compute_against_the_truth_there():
    """Every rules bench scores one prediction at 100x (``prediction_at_100x``); the
    coverage reads the testbed's optimum at that prediction's compute."""
    config = TestbedConfig()
    objective, observations = sample_study(config, seed=4)
    rules = fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=40)
    prediction = prediction_at_100x(rules)
    assert prediction.compute == pytest.approx(100 * rules.observed.compute_max)
    scored = coverage_at_100x(config, prediction)
    n_star, _, loss = Testbed(config).compute_optimal(prediction.compute)
    assert prediction.n_params is not None and prediction.loss is not None
    assert scored["loss"]["covered"] == (prediction.loss.low <= float(loss) <= prediction.loss.high)
    assert scored["n_star"]["covered"] == (
        prediction.n_params.low <= float(n_star) <= prediction.n_params.high
    )
    assert scored["n_star"]["error_dex"] == pytest.approx(
        math.log10(prediction.n_params.estimate / float(n_star))
    )
    assert scored["loss"]["width_dex"] == pytest.approx(
        math.log10(prediction.loss.high / prediction.loss.low)
    )
    # a wider target is scored against its own optimum, not the first one's
    further = rules.predict(compute=10 * prediction.compute)
    n_further, _, _ = Testbed(config).compute_optimal(further.compute)
    assert coverage_at_100x(config, further)["n_star"]["error_dex"] == pytest.approx(
        math.log10(further.n_params.estimate / float(n_further))
    )
