"""The box floor of the budget-pacing bench: the regret no method searching a box can
beat, which the bench subtracts before comparing methods."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.budget_pacing import Scenario
from bench.problem import FrontPoint, RegretScale, bench_space, box_floor
from workers.objectives.testbed import START_PARAMS
from workers.objectives.testbed_truth import Testbed, TestbedError


def _scale(name: str) -> RegretScale:
    scenario = Scenario.parse(name)
    testbed = Testbed(scenario.config())
    return RegretScale(testbed, scenario.budget * float(testbed.expected_cost(START_PARAMS)))


def test_a_box_holding_the_front_costs_nothing_and_a_small_box_at_a_large_budget_does():
    wide = box_floor(_scale("chinchilla-steplaw:wide:2000x:cap240:8fl:noise1"), "wide")
    assert 0.0 <= wide < 1e-3
    small = box_floor(
        _scale("chinchilla-steplaw:practitioner:300x:cap240:8fl:noise1"), "practitioner"
    )
    large = box_floor(
        _scale("chinchilla-steplaw:practitioner:20000x:cap240:8fl:noise1"), "practitioner"
    )
    assert 0.0 <= small < large
    assert large > 0.1  # N 1e8 and D 2e9 at most, against a front reaching 2,500x


@pytest.mark.parametrize("budget", ["300x", "20000x"])
def test_no_front_of_configurations_in_the_box_scores_below_the_floor(budget):
    """Random fronts of configurations inside the practitioner box, scored by their true
    loss (a perfect report), never beat the floor."""
    scale = _scale(f"held-out-data-hungry:practitioner:{budget}:cap240:8fl:noise1")
    floor = box_floor(scale, "practitioner")
    rng = np.random.default_rng(0)
    params = {p.name: p for p in bench_space("practitioner").params}
    for _ in range(5):
        points = []
        for _ in range(200):
            config = dict(START_PARAMS)
            for name in ("n_params", "tokens", "learning_rate"):
                low, high = np.log(params[name].min), np.log(params[name].max)
                config[name] = float(np.exp(rng.uniform(low, high)))
            config["batch_size"] = int(2 ** rng.integers(3, 11))
            loss = float(scale.testbed.noiseless_loss(config))
            if np.isfinite(loss):
                points.append(FrontPoint(loss, float(scale.testbed.expected_cost(config)), loss))
        assert scale.regret_of_front(points) >= floor - 1e-9


def test_the_box_front_itself_scores_the_floor():
    """The floor is reached: the box's own optimum at every cost it can reach (a fine
    grid), run on the unbounded testbed, scores it."""
    scale = _scale("chinchilla-steplaw:practitioner:20000x:cap240:8fl:noise1")
    floor = box_floor(scale, "practitioner")
    box = Testbed(
        replace(
            scale.testbed.config,
            n_params_min=1e6,
            n_params_max=1e8,
            tokens_min=2e7,
            tokens_max=2e9,
            batch_size_min=8,
            batch_size_max=1024,
        )
    )
    points = []
    # From just under the grid's first cost: a point at exactly it may round above it.
    for cost in np.geomspace(scale.cost_grid[0] * (1 - 1e-9), scale.cost_grid[-1], 400):
        try:
            params = box.pareto_optimum(float(cost))["params"]
        except TestbedError:  # dearer than any configuration in the box
            continue
        loss = float(scale.testbed.noiseless_loss(params))
        points.append(FrontPoint(loss, float(scale.testbed.expected_cost(params)), loss))
    # 400 costs reach the box's front to within a few thousandths of a nat.
    assert floor - 1e-9 <= scale.regret_of_front(points) <= floor + 5e-3


def test_the_summary_compares_ours_above_the_floor_with_the_best_peer():
    from bench.budget_pacing import summary_table

    def run(method, regret):
        return {
            "scenario": "s", "method": method, "regret": regret, "box_floor": 0.4,
            "spent_fraction": 1.0, "n_trials": 240, "cap_bound": True,
            "front_bias_in_noise_sd": 0.1, "ask_ms_p95": 50.0,
        }  # fmt: skip

    runs = [run("ours", 0.6), run("ours", 0.5), run("tpe-mo", 0.9), run("gp-mo", 0.8)]
    ours = next(line for line in summary_table(runs).splitlines() if "| ours |" in line)
    cells = [c.strip() for c in ours.split("|")]
    assert cells[5:8] == ["0.69", "0.400", "0.38"]  # 0.55 / 0.8; (0.55 - 0.4) / (0.8 - 0.4)


def test_first_seed_adds_seeds_to_a_record(monkeypatch, tmp_path):
    """`--first-seed 3 --seeds 2` runs seeds 3 and 4 (a second seed for a recorded run)."""
    import bench.budget_pacing as budget_pacing

    asked: list[tuple] = []

    def record_tasks(run, tasks, jobs):
        asked.extend(tasks)
        return []

    monkeypatch.setattr(budget_pacing, "run_in_parallel", record_tasks)
    name = "chinchilla-steplaw:practitioner:300x:cap240:8fl:noise1"
    budget_pacing.main(
        ["--scenarios", name, "--methods", "ours", "--first-seed", "3", "--seeds", "2",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert sorted(seed for _, seed, _ in asked) == [3, 4]
    assert len(list(tmp_path.glob("budget_pacing_*.json"))) == 1


@pytest.mark.parametrize("truth", ["untouched-skewed", "untouched-wide-bowls"])
def test_the_untouched_truths_run_by_name_and_stay_out_of_the_matrix(truth):
    from bench.budget_pacing import all_scenarios

    scale = _scale(f"{truth}:practitioner:2000x:cap240:8fl:noise1")
    assert 0.0 <= box_floor(scale, "practitioner") < 1.0
    assert not any(s.truth == truth for s in all_scenarios())


def test_an_unknown_truth_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown truth 'no-such'"):
        Scenario.parse("no-such:wide:300x:cap240:8fl:noise1")
