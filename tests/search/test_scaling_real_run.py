"""The rules' refusals on a real study: run 8 of the real scaling case study (200 lm
trials on a CPU, kept in docs/data/real-scaling-run8/), fitted as the service fitted
them: the study's space, N the trainer's parameter count (a metric of each run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.real_scaling_plan import PRESETS
from search.scaling import ScalingAxes, fit_scaling_rules
from search.space import SearchSpace
from search.types import Observation

RUN8 = Path(__file__).resolve().parents[2] / "docs/data/real-scaling-run8/trials.jsonl"


@pytest.fixture(scope="module")
def rules():
    rows = [json.loads(line) for line in RUN8.read_text().splitlines() if line.strip()]
    observations = [
        Observation(
            params=r["params"], loss=r["loss"], cost=r["cost"], failed=r["failed"],
            metrics=r["metrics"],
        )
        for r in rows
    ]  # fmt: skip
    space = SearchSpace.model_validate({"params": PRESETS["full"].space})
    axes = ScalingAxes(n_params="n_params_total", tokens="tokens")
    return fit_scaling_rules(observations, space, axes, seed=1, n_bootstrap=20)


def test_each_hyperparameter_left_out_of_the_surface_is_told_apart(rules):
    """Warmup matters to the loss but shows no bowl; weight decay has a bowl that forms a
    saddle with warmup's, so it goes; none of them is "flat" (the loss depends on
    every one of them), and the learning rate and batch size stay in the surface."""
    reasons = {r.name: r.reason or "" for r in rules.hyperparameters}
    assert reasons["warmup_fraction"].startswith("no bowl: the loss depends on warmup_fraction")
    assert reasons["weight_decay"].startswith("saddle: weight_decay's bowl is significant")
    assert "together with warmup_fraction it is not convex" in reasons["weight_decay"]
    assert not any(reason.startswith("flat") for reason in reasons.values())
    for kept in ("learning_rate", "batch_size"):
        assert not reasons[kept].startswith(("no bowl", "saddle")), reasons[kept]
