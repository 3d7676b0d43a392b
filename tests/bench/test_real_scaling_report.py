"""bench/real_scaling_report.py on a synthetic study: the numbers, the Markdown, the plots.

The study's trials are API-shaped dicts over a known loss surface (an lr optimum that
falls with compute), so the rules fit as on a real study and the report's every path runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.real_scaling_plan import (
    LR_FACTORS,
    NAIVE_KEPT,
    PRESETS,
    at_scale_configs,
    best_trial,
    study_spec,
    trial_n_params,
    trial_tflop,
)
from bench.real_scaling_report import (
    markdown,
    plot_front,
    plot_optima,
    plot_verification,
    summarise,
    write_mapping,
    write_trials,
)
from search.scaling import ScalingAxes, fit_scaling_rules
from search.space import SearchSpace
from service.domain import StudySpec, trial_observation
from service.interop.runs_file import ColumnMapping, load_mapping, read_runs, study_import

SEED_FACTORS = (1.004, 0.99, 1.02, 1.0, 0.995)  # the second seed's loss over the first's


def _lr_opt(params: dict) -> float:
    return 0.3 * (6 * trial_n_params(params) * params["tokens"]) ** -0.1


def _loss(params: dict) -> float:
    n, d = trial_n_params(params), params["tokens"]
    return (
        1.2
        + 30 / n**0.3
        + 60 / d**0.3
        + 0.05 * math.log(params["learning_rate"] / _lr_opt(params)) ** 2
    )


def _trial(i: int, params: dict, reason: str = "model") -> dict:
    return {
        "id": i,
        "state": "COMPLETE",
        "reason": reason,
        "params": params,
        "loss": _loss(params),
        "cost_seconds": trial_tflop(params),
        "dispatched_at": 1000.0 + i,
        "finished_at": 1040.0 + i,
        "metrics": {
            "n_params": trial_n_params(params),
            "n_params_total": trial_n_params(params),
            "tokens": params["tokens"],
            "tokens_per_second": params["tokens"] / 36.0,
            "step_seconds": 36.5,
            "wall_seconds": 38.5,
            "data_seconds": 0.2,
            "setup_seconds": 0.3,
            "eval_seconds": 1.5,
            "mfu": None,
        },
    }


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(0)
    space = PRESETS["short"].space
    trials = []
    for i in range(48):
        d_model, n_layers = int(2 ** rng.integers(5, 9)), int(rng.integers(1, 5))
        params = {
            "d_model": d_model,
            "n_layers": n_layers,
            "tokens": int(np.exp(rng.uniform(np.log(65536), np.log(4e6)))),
            "batch_size": int(2 ** rng.integers(11, 16)),
            "learning_rate": 1.0,  # set below, near the optimum (the front's runs are tuned)
            "warmup_fraction": float(rng.uniform(0.01, 0.2)),
            "weight_decay": float(np.exp(rng.uniform(np.log(1e-3), np.log(0.3)))),
        }
        params["learning_rate"] = _lr_opt(params) * float(np.exp(rng.normal(0, 0.3)))
        trials.append(_trial(i, params))
    observations = [
        trial_observation(
            params=t["params"], loss=t["loss"], cost=t["cost_seconds"], failed=False,
            suggestion_id=None, metrics=t["metrics"],
        )
        for t in trials
    ]  # fmt: skip
    rules = fit_scaling_rules(
        observations,
        SearchSpace.model_validate({"params": space}),
        ScalingAxes(n_params="n_params", tokens="tokens"),
        n_bootstrap=30,
    )
    predicted = {**trials[-1]["params"], "learning_rate": 2e-3}
    scaled = {}
    for k, f in enumerate(LR_FACTORS):
        params = {**predicted, "learning_rate": 2e-3 * f}
        scaled[f"lr-x{f:g}"] = _trial(100 + k, params)
        # A second seed: the loss moved by a factor that differs between the points.
        again = _trial(120 + k, params)
        scaled[f"lr-x{f:g}/seed1"] = again | {"loss": again["loss"] * SEED_FACTORS[k]}
    scaled["naive"] = _trial(110, {**predicted, "learning_rate": 0.02})
    scaled["naive"]["metrics"]["deliveries"] = 2  # its first worker was lost
    scaled["carbs"] = {**_trial(111, predicted), "state": "FAILED", "loss": None}
    scaled["verification"] = _trial(130, predicted, reason="verification")
    return {
        "study": {"id": 7, "progress": {"spent_cost": 12.5}},
        "rules": rules,
        "trials": trials,
        "verification": {"trial_id": 130, "params": predicted, "report": None},
        "scaled": scaled,
    }


def test_the_summary_compares_the_rules_config_with_its_sweep_and_baselines(data) -> None:
    summary = summarise(data, scale_factor=10.0)
    sweep = {label: row["loss"] for label, row in summary["sweep"].items()}
    assert set(sweep) == {f"lr-x{f:g}" for f in LR_FACTORS}  # repeats grouped, not listed
    first = data["scaled"]["lr-x0.5"]["loss"]
    assert sweep["lr-x0.5"] == pytest.approx(first * (1 + SEED_FACTORS[0]) / 2)
    assert summary["sweep_best"] == min(sweep, key=sweep.get)
    assert summary["gap_to_sweep_best"] == pytest.approx(sweep["lr-x1"] / min(sweep.values()) - 1)
    for seed, gap in enumerate(summary["gap_by_seed"]):
        suffix = "/seed1" if seed else ""
        losses = [data["scaled"][f"lr-x{f:g}{suffix}"]["loss"] for f in LR_FACTORS]
        assert gap == pytest.approx(losses[2] / min(losses) - 1)
    assert len(summary["gap_by_seed"]) == 2 and summary["repeats"] == 2
    # Pooled over the five pairs (the one-run baselines add nothing).
    expected = math.sqrt(np.mean([math.log(f) ** 2 / 2 for f in SEED_FACTORS]))
    assert summary["seed_sd"] == pytest.approx(expected)
    assert summary["verification_loss"] == data["scaled"]["verification"]["loss"]
    # The study's spend, without the /verify trial (the service's spent cost has it).
    assert summary["spent_tflop"] == pytest.approx(sum(t["cost_seconds"] for t in data["trials"]))
    naive = summary["baselines"]["naive"]
    assert naive["vs_rules"] == pytest.approx(naive["loss"] / sweep["lr-x1"] - 1)
    assert summary["baselines"]["carbs"]["loss"] is None  # a failed baseline stays visible
    assert summary["baselines"]["carbs"]["state"] == "FAILED"
    low, high = summary["prediction"]["learning_rate"][1:]
    best_lr = summary["sweep"][summary["sweep_best"]]["learning_rate"]
    # No interval (an unsupported law) counts as a miss, never as a hit.
    inside = low is not None and low <= best_lr <= high
    assert summary["best_lr_in_interval"] == inside
    overheads = summary["overheads"]
    assert len(overheads["rows"]) == 48 + 13 and overheads["redelivered"] == 1
    assert overheads["long_trials"] == 48 + 12  # all 40 s long; the redelivered one left out
    assert overheads["long_share_max"] == pytest.approx(1 - 36 / 40)


def test_a_naive_baseline_that_is_the_rules_configuration_is_not_run_but_reported(
    data,
) -> None:
    """With no hyperparameter law, the rules' values are the best run's, so the naive
    baseline would be the rules' configuration trained again under the same seed; it is
    not run, and the report gives it the rules' own runs, labelled as such."""
    space = PRESETS["short"].space
    predicted = data["verification"]["params"]
    assert "naive" in at_scale_configs(predicted, data["trials"], space)  # lr 2e-3 != best's
    best = best_trial(data["trials"])["params"]
    same = {**predicted, **{k: best[k] for k in NAIVE_KEPT}}
    configs = at_scale_configs(same, data["trials"], space)
    assert "naive" not in configs
    assert set(configs) == {f"lr-x{f:g}" for f in LR_FACTORS} | {"carbs"}
    assert configs["lr-x1"] == same
    scaled = {k: v for k, v in data["scaled"].items() if not k.startswith("naive")}
    verification = {**data["verification"], "params": same}
    summary = summarise({**data, "scaled": scaled, "verification": verification}, scale_factor=10)
    naive = summary["baselines"]["naive"]
    assert naive["same_as_rules"] and naive["vs_rules"] == 0.0
    assert naive["losses"] == summary["sweep"]["lr-x1"]["losses"]
    assert "| baseline naive (the rules' configuration) |" in markdown(summary)
    # Where the naive baseline differs from the rules' and was not run, none is made up.
    apart = summarise({**data, "scaled": scaled}, scale_factor=10)
    assert "naive" not in apart["baselines"]


def test_a_repeat_that_failed_leaves_its_configuration_without_a_mean(data) -> None:
    scaled = dict(data["scaled"])
    scaled["lr-x2/seed1"] = {**scaled["lr-x2/seed1"], "state": "FAILED", "loss": None}
    summary = summarise({**data, "scaled": scaled}, scale_factor=10.0)
    assert summary["sweep"]["lr-x2"]["loss"] is None
    assert summary["sweep"]["lr-x2"]["state"] == "FAILED"
    assert summary["gap_by_seed"] == summary["gap_by_seed"][:1]  # seed 1 no longer complete


def test_the_markdown_and_plots_are_written(data, tmp_path) -> None:
    summary = summarise(data, scale_factor=10.0)
    text = markdown(summary)
    assert "| baseline carbs |" in text and "failed" in text
    # The sweep's table (a row per configuration), the overheads' (a row per trial).
    assert text.count("\n| ") == 2 + 5 + 2 + 2 + 61
    assert "failed" in text
    plot_front(data, tmp_path / "front.png")
    plot_optima(data, tmp_path / "optima.png", scale_factor=10.0)
    plot_verification(data, summary, tmp_path / "verification.png")
    assert all((tmp_path / n).stat().st_size > 10_000 for n in ("front.png", "optima.png"))
    assert (tmp_path / "verification.png").stat().st_size > 10_000


def test_a_study_without_a_10x_check_still_gets_its_numbers(data) -> None:
    alone = {**data, "verification": None, "scaled": {}}
    summary = summarise(alone, scale_factor=10.0)
    assert summary["sweep"] == {} and summary["sweep_best"] is None
    assert "gap_to_sweep_best" not in summary and summary["baselines"] == {}
    summary["verification_refused"] = "the rules cannot set ['tokens'] at this compute"
    assert "Verification refused by the API: the rules cannot set" in markdown(summary)


def test_the_trials_are_written_as_a_runs_file_scaletune_import_reads(data, tmp_path) -> None:
    study = tmp_path / "trials.jsonl"
    write_trials([(str(t["id"]), t) for t in data["trials"]], study)
    runs = read_runs(study, ColumnMapping()).runs
    assert len(runs) == 48
    assert [r.params for r in runs] == [t["params"] for t in data["trials"]]
    assert [r.loss for r in runs] == pytest.approx([t["loss"] for t in data["trials"]])
    at_scale = tmp_path / "at-scale.jsonl"
    write_trials(list(data["scaled"].items()), at_scale)
    scaled = read_runs(at_scale, ColumnMapping()).runs
    assert len(scaled) == 13
    assert [r.failed for r in scaled] == [label == "carbs" for label in data["scaled"]]


def test_the_mapping_written_beside_the_runs_imports_them_in_the_studys_space(
    data, tmp_path
) -> None:
    """The study as the API returns it (its spec with every default), its runs and the
    mapping: the import reads N from the runs' metrics and D from their params, and its
    space is the study's, limits and kinds, not one inferred from the runs."""
    spec = StudySpec.model_validate(study_spec(PRESETS["short"], name="s")).model_dump(mode="json")
    write_trials([(str(t["id"]), t) for t in data["trials"]], tmp_path / "trials.jsonl")
    write_mapping(spec, tmp_path / "mapping.yaml")
    mapping = load_mapping(tmp_path / "mapping.yaml")
    assert (mapping.n_params, mapping.tokens) == ("metrics.n_params_total", "params.tokens")
    runs = read_runs(tmp_path / "trials.jsonl", mapping)
    body, constant = study_import(runs, mapping, name="again")
    assert constant == [] and body.space is not None
    assert body.scaling.n_params == "n_params_total" and body.scaling.tokens == "tokens"
    declared = StudySpec.model_validate(spec).space
    assert declared is not None
    assert body.space.params == declared.params
