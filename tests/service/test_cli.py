"""The command line: embedded runs and study-file errors (no traceback, what to fix)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()


def test_demo_runs_a_study_embedded_and_prints_the_front(tmp_path) -> None:
    result = runner.invoke(
        app, ["demo", "--trials", "6", "--in-flight", "2", "--db", str(tmp_path / "demo.db")]
    )
    assert result.exit_code == 0, result.output
    assert "finished: COMPLETE" in result.output
    assert "Pareto front" in result.output


def test_run_executes_a_study_file(tmp_path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: from-file\nobjective: testbed\nbudget: {max_trials: 5}\nin_flight: 2\n"
        "seed: 4\nsearch: {n_startup: 5}\n"
    )
    result = runner.invoke(app, ["run", str(study), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert "from-file" in result.output and "COMPLETE" in result.output


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: x\nobjective: testbed\n", "budget: Field required"),
        ("name: x\nobjective: testbed\nbudget: {max_trials: 0}\n", "budget.max_trials"),
        ("[1, 2", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("name: x\nobjective: testbed\nbudget: {max_trials: 3}\nflights: 2\n", "flights"),
    ],
)
def test_malformed_study_files_fail_without_a_traceback(tmp_path, text, fragment) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text(text)
    result = runner.invoke(app, ["run", str(study), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2
    assert fragment in result.output and "Traceback" not in result.output


def test_a_missing_study_file_is_named(tmp_path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read study file" in result.output


def test_an_unknown_objective_is_a_cli_error(tmp_path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("name: x\nobjective: nope\nbudget: {max_trials: 2}\n")
    result = runner.invoke(app, ["run", str(study), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2 and "unknown objective 'nope'" in result.output
