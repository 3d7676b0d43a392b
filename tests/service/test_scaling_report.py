"""The scaling report: Markdown plus PNGs, written from rules and observations alone."""

from __future__ import annotations

import numpy as np
import pytest

from search.scaling import fit_scaling_rules
from search.scaling.allocation import fit_loss_frontier
from service.reads.reports import scaling, write_scaling_report
from tests.search.near_front_study import AXES, sample_study
from tests.search.test_scaling_size_map import AXES as SHAPED_AXES
from tests.search.test_scaling_size_map import shaped_study  # noqa: F401 (a fixture)
from workers.objectives.testbed_truth import TestbedConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted():
    objective, observations = sample_study(TestbedConfig(), seed=5, per_budget=25)
    rules = fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=30)
    return rules, observations


def test_report_has_every_plot_and_the_rules(fitted, tmp_path):
    rules, observations = fitted
    path = write_scaling_report(rules, observations, tmp_path / "report")
    text = path.read_text()
    expected = ["front.png", "allocation.png", "hp-learning_rate.png", "hp-batch_size.png"]
    for name in expected:
        image = path.parent / name
        assert image.read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name})" in text
    law = rules.rule("learning_rate").vs_compute
    exponent = f"{law.coef[1]:+.3f} [{law.coef_low[1]:+.3f}, {law.coef_high[1]:+.3f}]"
    assert f"| learning_rate | learning_rate* ~ C^{exponent} |" in text
    assert "most frequent: `wsd`" in text
    largest = rules.observed.compute_max
    for factor in (1.0, 10.0, 100.0):  # predictions at 1x, 10x and 100x the largest run
        assert f"\n| {factor * largest:.3g} |" in text
    prediction = rules.predict(compute=100.0 * rules.observed.compute_max)
    assert f"{prediction.values['learning_rate'].value:.4g}" in text
    backtest = rules.parametric_backtest
    assert backtest is not None
    assert f"{backtest.bias_per_decade:+.1%} (se {backtest.bias_se:.1%}) per decade" in text


def test_unsupported_rules_are_reported_with_their_reason(fitted, tmp_path):
    rules, observations = fitted
    refused = rules.rule("weight_decay").model_copy(
        update={"supported": False, "reason": "too narrow", "vs_compute": None}
    )
    others = [r for r in rules.hyperparameters if r.name != "weight_decay"]
    rules = rules.model_copy(update={"hyperparameters": [*others, refused]})
    text = write_scaling_report(rules, observations, tmp_path).read_text()
    assert "| weight_decay | unsupported | | too narrow |" in text
    assert not (tmp_path / "hp-weight_decay.png").exists()


def test_a_logit_band_reaching_0_and_1_is_clipped_not_a_crash(fitted, tmp_path):
    """A band so wide that it reaches 0 and 1 (logit +-inf) used to make matplotlib's
    transform singular (LinAlgError) half-way through the report."""
    rules, observations = fitted
    rule = rules.rule("warmup_fraction")
    law = rule.vs_compute.model_copy(update={"coef_cov": [[100.0, 0.0], [0.0, 1.0]]})
    wide = rule.model_copy(update={"supported": True, "vs_compute": law})
    others = [r for r in rules.hyperparameters if r.name != "warmup_fraction"]
    rules = rules.model_copy(update={"hyperparameters": [*others, wide]})
    path = write_scaling_report(rules, observations, tmp_path)
    assert (tmp_path / "hp-warmup_fraction.png").read_bytes()[:8] == PNG_MAGIC
    assert "](hp-warmup_fraction.png)" in path.read_text()


def test_a_failing_plot_leaves_no_partial_report(fitted, tmp_path, monkeypatch):
    rules, observations = fitted
    out = tmp_path / "report"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def broken(*_args, **_kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr("service.reads.reports.scaling.plot_rule", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_scaling_report(rules, observations, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no scratch left
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_a_frontier_whose_floor_is_not_identified_says_so_instead_of_e_0(fitted, tmp_path):
    """A front that is a pure power law over its budgets drives E to ~0 (3.5e-13 in every
    bootstrap draw in issue 17); the report prints the power law and why, not E = 0.000."""
    rules, observations = fitted
    compute = np.geomspace(1e15, 1e18, 10)
    pure = fit_loss_frontier(compute, 50.0 * compute**-0.08, n_bootstrap=10)
    text = write_scaling_report(
        rules.model_copy(update={"loss_frontier": pure}), observations, tmp_path
    ).read_text()
    line = next(line for line in text.splitlines() if line.startswith("- L*(C)"))
    assert line.startswith(f"- L*(C) = {pure.A:.3g} / C^{pure.gamma:.3f}; its floor E is")
    assert "not identified" in line and "ignores any irreducible loss" in line
    assert "0.000 +" not in line


def test_the_allocation_plot_shows_the_runs_n_when_n_is_a_metric(
    shaped_study,  # noqa: F811 (the fixture imported above)
    tmp_path,
    monkeypatch,
):
    """The lm objective reports N as a metric; the plot draws the runs' N from it."""
    space, observations = shaped_study
    rules = fit_scaling_rules(observations, space, SHAPED_AXES, n_bootstrap=20)
    drawn = {}
    draw = scaling.plot_allocation

    def spy(rules, data, path):
        drawn["params"] = data.params
        draw(rules, data, path)

    monkeypatch.setattr(scaling, "plot_allocation", spy)
    write_scaling_report(rules, observations, tmp_path)
    sizes = [p.get("n_params_total") for p in drawn["params"]]
    assert sizes and all(s is not None and s > 0 for s in sizes)
    assert sizes == [o.metrics["n_params_total"] for o in observations if not o.failed]
