"""The pure pieces of bench/real_scaling.py: specs, the 10x configurations, overheads."""

from __future__ import annotations

import pytest

from bench.real_scaling import parse_args
from bench.real_scaling_plan import (
    NAIVE_KEPT,
    PRESETS,
    base_label,
    bracket_factors,
    carbs_baseline,
    fixed_params,
    fixed_study,
    lr_sweep,
    naive_baseline,
    overheads,
    repeat_label,
    study_front,
    study_spec,
    sweep_factor,
    sweep_label,
    trial_n_params,
    trial_tflop,
)
from search.engine import ParetoSearch
from service.domain import StudySpec
from workers.objectives.lm import train_config
from workers.objectives.registry import check_options, check_parameter_names
from workers.training.cost import non_embedding_params, training_flops_per_token

CONFIG = {
    "d_model": 128,
    "n_layers": 3,
    "tokens": 1_000_000,
    "batch_size": 16384,
    "learning_rate": 2e-3,
    "warmup_fraction": 0.04,
    "weight_decay": 0.05,
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_study_the_service_accepts(name: str) -> None:
    spec = StudySpec.model_validate(study_spec(PRESETS[name], name=f"real-{name}"))
    check_options("lm", spec.objective_options)
    check_parameter_names("lm", spec.space.names)
    assert spec.budget.max_cost == PRESETS[name].max_cost
    assert spec.budget.max_trials == PRESETS[name].max_trials
    assert spec.objective_options["cost_unit"] == "tflop"


def test_a_fixed_study_can_only_ask_for_its_configuration() -> None:
    spec = StudySpec.model_validate(fixed_study(PRESETS["short"], name="x", params=CONFIG))
    check_parameter_names("lm", spec.space.names)
    (suggestion,) = ParetoSearch(spec.space).ask(1)
    assert suggestion.params == CONFIG
    assert spec.budget.max_trials == 1


def test_the_lr_sweep_multiplies_only_the_learning_rate() -> None:
    sweep = lr_sweep(CONFIG, (0.5, 1.0, 2.0))
    assert list(sweep) == ["lr-x0.5", "lr-x1", "lr-x2"]
    assert [c["learning_rate"] for c in sweep.values()] == [1e-3, 2e-3, 4e-3]
    assert all({**c, "learning_rate": 2e-3} == CONFIG for c in sweep.values())


def test_the_sweep_goes_on_past_its_edge_until_its_best_is_inside() -> None:
    sweep = {0.5: 1.40, 0.7: 1.38, 1.0: 1.37, 1.4: 1.36, 2.0: 1.34}  # run 10's shape
    assert bracket_factors(sweep, count=2) == [2.8, 4.0]
    assert bracket_factors(sweep | {2.8: 1.33, 4.0: 1.32}, count=2) == [5.6, 8.0]
    assert bracket_factors(sweep | {2.8: 1.33, 4.0: 1.32, 5.6: 1.33}, count=2) == []
    # All steps used up: the best stays at x8, and nothing more is run.
    assert bracket_factors({**sweep, 2.8: 1.3, 4.0: 1.2, 5.6: 1.1, 8.0: 1.0}, count=2) == []
    # Downwards, one step at a time with one worker.
    falling = {f: 1.3 + 0.01 * f for f in (0.5, 0.7, 1.0, 1.4, 2.0)}
    assert bracket_factors(falling, count=1) == [0.35]
    # A diverged run past the edge bounds the sweep: the best is inside then.
    assert bracket_factors(sweep | {2.8: float("inf"), 4.0: float("inf")}, count=2) == []
    assert bracket_factors({1.0: 1.3, 0.5: 1.4, 2.0: 1.35}, count=2) == []
    assert bracket_factors({}, count=2) == []


def test_sweep_labels_name_their_factor() -> None:
    assert sweep_factor("lr-x2.8") == 2.8 and sweep_label(2.8) == "lr-x2.8"
    assert sweep_factor(repeat_label("lr-x0.125", 1)) == 0.125
    assert sweep_factor("naive") is None and sweep_factor("carbs/seed1") is None


def test_the_naive_baseline_keeps_the_small_runs_hyperparameters_at_the_predicted_size() -> None:
    small = {**CONFIG, "d_model": 32, "n_layers": 1, "tokens": 65536, "learning_rate": 9e-3}
    small["batch_size"] = 4096
    naive = naive_baseline(CONFIG, small)
    assert {k: naive[k] for k in ("d_model", "n_layers", "tokens")} == {
        k: CONFIG[k] for k in ("d_model", "n_layers", "tokens")
    }
    assert {k: naive[k] for k in NAIVE_KEPT} == {k: small[k] for k in NAIVE_KEPT}


def _front(costs: list[float]) -> list[dict]:
    """Front points on exact power laws in cost: lr ~ c^-0.2, d_model ~ c^0.25."""
    return [
        {
            "cost_seconds": c,
            "params": {
                "learning_rate": 0.01 * c**-0.2,
                "d_model": 64 * c**0.25,
                "warmup_fraction": 0.1,
            },
        }
        for c in costs
    ]


def test_the_carbs_baseline_extrapolates_the_fronts_least_squares_lines() -> None:
    space = [
        {"kind": "log", "name": "learning_rate"},
        {"kind": "pow2", "name": "d_model"},
        {"kind": "logit", "name": "warmup_fraction"},
    ]
    carbs = carbs_baseline(_front([1.0, 4.0, 16.0, 2.0]), space, target_cost=256.0)
    assert carbs["learning_rate"] == pytest.approx(0.01 * 256**-0.2, rel=1e-9)
    assert carbs["d_model"] == 256  # 64 * 256^0.25, on its power-of-two grid
    assert carbs["warmup_fraction"] == pytest.approx(0.1)  # flat: stays


def test_the_carbs_baseline_costs_what_it_is_compared_at_after_snapping() -> None:
    """Depth extrapolated to about 2.5 layers snaps to 3, so the lines' configuration
    costs 10% more than the target; the tokens are rescaled so it costs the target."""
    front = [
        {
            "cost_seconds": trial_tflop(params),
            "params": params,
        }
        for params in (
            {**CONFIG, "d_model": 64, "n_layers": 1, "tokens": 2_000_000},
            {**CONFIG, "d_model": 64, "n_layers": 2, "tokens": 4_000_000},
        )
    ]
    space = [
        {"kind": "pow2", "name": "d_model"},
        {"kind": "int", "name": "n_layers"},
        {"kind": "int", "name": "tokens"},
    ]
    target = 1.8 * front[-1]["cost_seconds"]
    unmatched = carbs_baseline(front, space, target_cost=target)
    assert unmatched["n_layers"] == 3
    assert trial_tflop({**CONFIG, **unmatched}) > 1.1 * target
    matched = carbs_baseline(
        front, space, target_cost=target, cost_of=lambda p: trial_tflop({**CONFIG, **p})
    )
    assert {k: matched[k] for k in ("d_model", "n_layers")} == {"d_model": 64, "n_layers": 3}
    assert matched["tokens"] < unmatched["tokens"]
    assert trial_tflop({**CONFIG, **matched}) == pytest.approx(target, rel=1e-6)


def test_the_carbs_baseline_needs_a_line() -> None:
    with pytest.raises(ValueError, match="2 front points"):
        carbs_baseline(_front([1.0]), [{"kind": "log", "name": "learning_rate"}], target_cost=9)


def test_a_fixed_studys_configuration_reads_back_from_its_spec() -> None:
    spec = fixed_study(PRESETS["smoke"], name="x/10x/lr-x1", params=CONFIG)
    assert fixed_params(spec) == CONFIG
    assert fixed_params(study_spec(PRESETS["smoke"], name="x")) is None  # a search space
    assert fixed_params({"space": {"params": []}}) is None


def test_tflop_and_n_match_the_trainer() -> None:
    model = train_config(CONFIG, seed=0, vocab_size=256).model
    assert trial_n_params(CONFIG) == non_embedding_params(model)
    assert trial_tflop(CONFIG) == training_flops_per_token(model) * CONFIG["tokens"] / 1e12


def _trial(**metrics) -> dict:
    base = {"tokens": 1000, "tokens_per_second": 100.0, "step_seconds": 12.0}
    base |= {"wall_seconds": 15.0, "data_seconds": 0.5, "setup_seconds": 0.5}
    base |= {"eval_seconds": 2.0}
    return {"dispatched_at": 100.0, "finished_at": 120.0, "metrics": base | metrics}


def test_overheads_split_a_trials_wall_time() -> None:
    parts = overheads(_trial())
    assert parts["wall"] == 20.0 and parts["train"] == 10.0
    assert parts["dispatch"] == 5.0 and parts["eval"] == 2.0 and parts["warmup"] == 2.0
    assert parts["share"] == pytest.approx(0.5)
    total = sum(parts[k] for k in ("train", "dispatch", "data", "setup", "eval", "warmup"))
    assert total == pytest.approx(parts["wall"])


def test_overheads_need_a_finished_trial_with_the_split() -> None:
    assert overheads({**_trial(), "finished_at": None}) is None
    assert overheads({**_trial(), "metrics": {"loss": 1.0}}) is None
    # Steps slower than their steady rate throughout: the train time is what they took.
    assert overheads(_trial(tokens_per_second=50.0))["train"] == 12.0


def test_the_study_front_keeps_the_trials_nothing_beats_in_loss_and_cost() -> None:
    trials = [
        {"state": "COMPLETE", "loss": 3.0, "cost_seconds": 1.0},
        {"state": "COMPLETE", "loss": 3.5, "cost_seconds": 2.0},  # beaten by the first
        {"state": "COMPLETE", "loss": 2.0, "cost_seconds": 4.0},
        {"state": "FAILED", "loss": None, "cost_seconds": 0.5},
    ]
    assert [t["cost_seconds"] for t in study_front(trials)] == [1.0, 4.0]
    assert study_front(trials[3:]) == []


def test_repeat_labels_name_the_configuration_they_repeat() -> None:
    labels = [repeat_label("lr-x0.7", r) for r in range(3)]
    assert labels == ["lr-x0.7", "lr-x0.7/seed1", "lr-x0.7/seed2"]
    assert {base_label(label) for label in labels} == {"lr-x0.7"}
    spec = StudySpec.model_validate(fixed_study(PRESETS["short"], name="x", params=CONFIG, seed=2))
    assert spec.seed == 2


def test_the_command_line_takes_a_positive_repeat_count(capsys) -> None:
    base = ["--database-url", "postgresql+psycopg://x/y", "--broker-url", "redis://x/1"]
    assert parse_args(base).repeats == 1
    assert parse_args([*base, "--repeats", "3"]).repeats == 3
    for bad in ("0", "two"):
        with pytest.raises(SystemExit):
            parse_args([*base, "--repeats", bad])
        assert "--repeats" in capsys.readouterr().err
