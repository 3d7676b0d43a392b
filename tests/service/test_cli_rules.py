"""The rules where the user is: the embedded commands' --report and --rules-out, and
``export --db``, each through the CLI entry point."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from typer.testing import CliRunner

from search.scaling import ScalingRules
from service.cli import app
from service.reads.reports.rules_text import excludes_zero

runner = CliRunner()

# The README's study file, as it stands there.
README_STUDY = """\
name: lr-scaling
objective: testbed
budget: {max_trials: 64}
in_flight: 4
seed: 0
scaling: {n_params: n_params, tokens: tokens}
"""


def _flat(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.slow
def test_the_demo_ends_with_an_lr_law_an_allocation_and_the_report(tmp_path) -> None:
    rules_path, report = tmp_path / "rules.json", tmp_path / "report"
    args = ["demo", "--db", str(tmp_path / "d.db"), "--report", str(report)]
    result = runner.invoke(app, [*args, "--rules-out", str(rules_path)])
    assert result.exit_code == 0, result.output
    rules = ScalingRules.load(rules_path)
    lr = rules.rule("learning_rate")
    assert lr.supported and excludes_zero(lr.vs_compute), lr
    assert rules.allocation.n_params is not None, rules.allocation.n_params_reason
    text = _flat(result.output)
    assert "learning_rate* ~ C^-0." in text and "N* ~ C^+0." in text
    md = report / "scaling-report.md"
    assert "](hp-learning_rate.png)" in md.read_text()
    assert (md.parent / "allocation.png").is_file()


@pytest.mark.slow
def test_the_readme_study_writes_its_report_and_rules_and_exports_them(tmp_path) -> None:
    study, db = tmp_path / "study.yaml", tmp_path / "s.db"
    study.write_text(README_STUDY)
    report, rules_path = tmp_path / "reports", tmp_path / "rules.yaml"
    args = ["run", str(study), "--db", str(db), "--report", str(report)]
    result = runner.invoke(app, [*args, "--rules-out", str(rules_path)])
    assert result.exit_code == 0, result.output
    md = report / "scaling-report.md"
    images = [line for line in md.read_text().splitlines() if line.startswith("![")]
    assert images and all((md.parent / line.split("(")[1][:-1]).is_file() for line in images)
    assert not list(tmp_path.glob(".*"))  # no scratch directory left behind
    written = yaml.safe_load(rules_path.read_text())
    assert f"export 1 --db {db}" in _flat(result.output)
    exported = runner.invoke(app, ["export", "1", "--db", str(db), "--format", "json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output) == json.loads(json.dumps(written))
    out = tmp_path / "exported"
    args = ["export", "1", "--db", str(db), "--format", "report", "--out", str(out)]
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (out / "scaling-report.md").is_file() and (out / "front.png").is_file()


def test_a_rules_file_of_another_kind_is_refused_before_the_study_runs(tmp_path) -> None:
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["demo", "--db", str(db), "--rules-out", str(tmp_path / "r.txt")])
    assert result.exit_code == 2
    assert "a rules file ends in .json, .yaml or .yml, not 'r.txt'" in _flat(result.output)
    assert not db.exists()


def test_export_db_names_what_is_missing(tmp_path) -> None:
    missing = runner.invoke(app, ["export", "1", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no embedded store at" in _flat(missing.output)
    assert not (tmp_path / "none.db").exists()

    db = tmp_path / "s.db"
    run = runner.invoke(app, ["demo", "--trials", "3", "--in-flight", "1", "--db", str(db)])
    assert run.exit_code == 0, run.output
    no_rules = runner.invoke(
        app, ["export", "1", "--db", str(db), "--out", str(tmp_path / "r.yaml")]
    )
    assert no_rules.exit_code == 2 and "study 1 has no scaling rules" in _flat(no_rules.output)
    assert not (tmp_path / "r.yaml").exists()
    unknown = runner.invoke(app, ["export", "7", "--db", str(db)])
    assert unknown.exit_code == 2 and "no study with id 7" in unknown.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from studies").fetchone() == (1,)
    conn.close()


@pytest.mark.parametrize(
    "flag, name, says",
    [("--rules-out", "r.yaml", "no rules file"), ("--report", "report", "no report")],
)
def test_demo_without_rules_says_why_for_each_output_and_exits_1(
    tmp_path, flag, name, says
) -> None:
    args = ["demo", "--trials", "3", "--in-flight", "1", "--db", str(tmp_path / "s.db")]
    result = runner.invoke(app, [*args, flag, str(tmp_path / name)])
    assert result.exit_code == 1
    assert f"{says}: study 1 has no scaling rules" in _flat(result.output)
    assert "Traceback" not in result.output and not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--format", "xml"], "--format must be json, yaml or report"),
        (["--optuna-storage", "OPTUNA_URL"], "--optuna-storage reads a study through the API"),
    ],
)
def test_export_db_refuses_a_bad_format_or_an_optuna_storage(tmp_path, extra, says) -> None:
    """Refused before the store is read: the message names the flag, not the store."""
    db, optuna_url = tmp_path / "s.db", f"sqlite:///{tmp_path / 'o.db'}"
    extra = [optuna_url if arg == "OPTUNA_URL" else arg for arg in extra]
    result = runner.invoke(app, ["export", "1", "--db", str(db), *extra])
    assert result.exit_code == 2 and says in _flat(result.output), result.output
    assert "Traceback" not in result.output and not db.exists()
    assert not (tmp_path / "o.db").exists()
