"""The study files behind run 10's runs at 10x after its study (docs/data/real-scaling-run10/
wider-sweep.jsonl): each recorded run names the file that ran it, a valid study that can
only run that run's configuration under its seed, and that configuration is the rules'
10x configuration with another learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli.studyfile import load_study_file

RUN10 = Path(__file__).resolve().parents[2] / "docs/data/real-scaling-run10"


def _runs(name: str) -> list[dict]:
    return [json.loads(line) for line in (RUN10 / name).read_text().splitlines()]


RUNS = _runs("wider-sweep.jsonl")


@pytest.mark.parametrize("run", RUNS, ids=[run["label"] for run in RUNS])
def test_each_run_after_the_study_is_its_study_file_s_only_configuration(run: dict) -> None:
    spec = load_study_file(RUN10 / run["study_file"])
    assert spec.objective == "lm" and spec.budget.max_trials == 1
    assert spec.seed == run["seed"]
    only = {p.name: p.choices for p in spec.space.params}
    assert all(len(choices) == 1 for choices in only.values())
    assert {name: choices[0] for name, choices in only.items()} == run["params"]
    rules_run = next(r for r in _runs("at-scale.jsonl") if r["label"] == "lr-x1")["params"]
    assert {k: v for k, v in run["params"].items() if k != "learning_rate"} == {
        k: v for k, v in rules_run.items() if k != "learning_rate"
    }


def test_every_study_file_there_is_a_recorded_run() -> None:
    files = {f"wider-sweep/{path.name}" for path in (RUN10 / "wider-sweep").glob("*.yaml")}
    assert files == {run["study_file"] for run in RUNS}
