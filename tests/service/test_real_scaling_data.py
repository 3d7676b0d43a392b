"""The study files behind run 10's wider sweep at 10x (docs/data/real-scaling-run10/):
each is a valid study that can only run the configuration its recorded trial ran, and
that configuration is the rules' 10x configuration with the learning rate scaled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli.studyfile import load_study_file

RUN10 = Path(__file__).resolve().parents[2] / "docs/data/real-scaling-run10"


def _runs(name: str) -> dict[str, dict]:
    lines = (RUN10 / name).read_text().splitlines()
    return {run["label"]: run for run in map(json.loads, lines)}


@pytest.mark.parametrize("label", ["lr-x2", "lr-x4", "lr-x8"])
def test_each_wider_sweep_file_runs_the_recorded_configuration(label: str) -> None:
    spec = load_study_file(RUN10 / "wider-sweep" / f"{label}.yaml")
    assert spec.objective == "lm" and spec.budget.max_trials == 1
    only = {p.name: p.choices for p in spec.space.params}
    assert all(len(choices) == 1 for choices in only.values())
    params = {name: choices[0] for name, choices in only.items()}
    assert params == _runs("wider-sweep.jsonl")[label]["params"]
    rules_run = _runs("at-scale.jsonl")["lr-x1"]["params"]
    factor = float(label.removeprefix("lr-x"))
    assert params["learning_rate"] == pytest.approx(factor * rules_run["learning_rate"])
    assert {k: v for k, v in params.items() if k != "learning_rate"} == {
        k: v for k, v in rules_run.items() if k != "learning_rate"
    }
