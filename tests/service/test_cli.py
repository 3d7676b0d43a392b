"""The command line: embedded runs and study-file errors (no traceback, what to fix)."""

from __future__ import annotations

import json
import sqlite3
import warnings

import pytest
from typer.testing import CliRunner

from service.api.app import create_app
from service.cli import app
from service.config import Settings
from service.interop.client import ScaletuneClient
from tests.auth import authorize

with warnings.catch_warnings():
    # starlette asks for its "httpx2" fork; the httpx we depend on works for TestClient.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

runner = CliRunner()
HEAD = "name: x\nobjective: testbed\nbudget: {max_trials: 3}\n"


def test_demo_runs_a_study_embedded_and_prints_the_front(tmp_path) -> None:
    result = runner.invoke(
        app, ["demo", "--trials", "6", "--in-flight", "2", "--db", str(tmp_path / "demo.db")]
    )
    assert result.exit_code == 0, result.output
    assert "finished: COMPLETE" in result.output
    assert "Pareto front" in result.output


def _stored(db) -> tuple[dict, list[str]]:  # type: ignore[no-untyped-def]
    """The first study's spec and its trials' params (as stored, by number)."""
    with sqlite3.connect(db) as conn:
        (spec,) = conn.execute("select spec from studies where id = 1").fetchone()
        params = [p for (p,) in conn.execute("select params from trials order by number")]
    conn.close()
    return json.loads(spec), params


def test_demo_seed_is_the_studys_seed_and_repeats_its_start_up_trials(tmp_path) -> None:
    runs = []
    for name in ("a.db", "b.db"):
        args = ["demo", "--trials", "3", "--in-flight", "1", "--seed", "7"]
        result = runner.invoke(app, [*args, "--db", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        runs.append(_stored(tmp_path / name))
    (spec, params), again = runs
    assert spec["seed"] == 7 and len(params) == 3
    assert again == (spec, params)


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--seed", "-1"],
        ["demo", "--trials", "1"],
        ["demo", "--in-flight", "0"],
        ["demo", "--workers", "0"],
        ["run", "STUDY", "--workers", "0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_an_out_of_range_number_is_a_usage_error_and_stores_nothing(tmp_path, args) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(HEAD)
    db = tmp_path / "s.db"
    args = [str(study) if arg == "STUDY" else arg for arg in args]
    result = runner.invoke(app, [*args, "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[-2]}'" in result.output, result.output
    assert "Traceback" not in result.output and not db.exists()


def test_run_with_one_worker_thread_finishes_every_trial_in_flight(tmp_path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(f"{HEAD}in_flight: 3\nsearch: {{n_startup: 3}}\n")
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["run", str(study), "--db", str(db), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "finished: COMPLETE" in result.output
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select state, worker from trials").fetchall()
    conn.close()
    assert [state for state, _ in rows] == ["COMPLETE"] * 3
    assert {worker for _, worker in rows} == {"embedded/trial_0"}  # one thread ran them all


def test_run_with_three_worker_threads_runs_trials_side_by_side(tmp_path) -> None:
    """Three trials in flight on three threads: each thread holds its trial until all
    three have started (a barrier), so the study finishes only if they ran at once."""
    import threading

    from workers.objectives import testbed

    study = tmp_path / "s.yaml"
    study.write_text(f"{HEAD}in_flight: 3\nsearch: {{n_startup: 3}}\n")
    db = tmp_path / "s.db"
    barrier = threading.Barrier(3, timeout=30)
    run = testbed.TestbedObjective.run

    def together(self, params, *, seed, context):  # type: ignore[no-untyped-def]
        barrier.wait()
        return run(self, params, seed=seed, context=context)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(testbed.TestbedObjective, "run", together)
        result = runner.invoke(app, ["run", str(study), "--db", str(db), "--workers", "3"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        workers = {w for (w,) in conn.execute("select worker from trials")}
    conn.close()
    assert workers == {"embedded/trial_0", "embedded/trial_1", "embedded/trial_2"}


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
        (f"{HEAD}in_flight: many\n", "in_flight: Input should be a valid integer"),
        (f"{HEAD}search: {{n_startp: 3}}\n", "search.n_startp: Extra inputs"),
        (f"{HEAD}allow_negative_loss: perhaps\n", "allow_negative_loss"),
        (f"{HEAD}space: {{params: [{{kind: log, name: lr, center: 10, max: 1}}]}}\n", "above max"),
    ],
)
def test_malformed_study_files_fail_without_a_traceback(tmp_path, text, fragment) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text(text)
    result = runner.invoke(app, ["run", str(study), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2
    assert fragment in _flat(result.output) and "Traceback" not in result.output


def test_a_missing_study_file_is_named(tmp_path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read study file" in result.output


def test_an_unknown_objective_is_a_cli_error(tmp_path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("name: x\nobjective: nope\nbudget: {max_trials: 2}\n")
    result = runner.invoke(app, ["run", str(study), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2 and "unknown objective 'nope'" in result.output


@pytest.mark.parametrize(
    "text, fragment",
    [
        (f"{HEAD}objective_options: {{colour: red}}\n", "does not accept these objective_options"),
        (f"{HEAD}space: {{params: [{{kind: log, name: lr, center: 0.1}}]}}\n", "unknown ['lr']"),
    ],
)
def test_a_study_its_objective_cannot_run_is_a_cli_error_and_stores_nothing(
    tmp_path, text, fragment
) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(text)
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["run", str(study), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert fragment in _flat(result.output), result.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from studies").fetchone() == (0,)


@pytest.mark.integration
def test_submit_shows_the_apis_refusal_without_a_traceback(
    tmp_path, sqlite_url, redis_url, monkeypatch
) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(
        "name: x\nobjective: lm\nbudget: {max_trials: 2}\nobjective_options: {eval_points: 0}\n"
    )
    settings = Settings(database_url=sqlite_url, broker_url=redis_url, proposals="inline")
    with TestClient(create_app(settings)) as http:
        authorize(http)
        monkeypatch.setattr(
            "service.cli.common.api_client", lambda api, token: ScaletuneClient(http=http)
        )
        result = runner.invoke(app, ["submit", str(study)])
        assert result.exit_code == 2, result.output
        assert "HTTP 422" in result.output and "eval_points" in _flat(result.output)
        assert http.get("/studies").json()["count"] == 0


def _flat(output: str) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(output.split())


def test_an_axis_that_names_nothing_is_a_cli_error_and_stores_nothing(tmp_path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(f"{HEAD}scaling: {{n_params: n_param}}\n")
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["run", str(study), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert "scaling axes ['n_param'] name no parameter" in _flat(result.output)
    assert "Traceback" not in result.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from studies").fetchone() == (0,)


@pytest.mark.integration
def test_status_and_list_show_a_study_whose_stored_spec_no_longer_loads(
    database_url, redis_url, monkeypatch
) -> None:
    """Its row written as a rule added later finds it (SQLite and PostgreSQL): ``list``
    still lists every study and ``status`` prints the study with the error, exit 0."""
    from sqlalchemy import update

    from service.storage.db import transaction
    from service.storage.tables import StudyRow

    settings = Settings(database_url=database_url, broker_url=redis_url, proposals="inline")
    app_ = create_app(settings)
    try:
        with TestClient(app_) as http:
            authorize(http)
            spec = {"name": "s", "objective": "testbed", "budget": {"max_trials": 3}}
            good = http.post("/studies", json={**spec, "name": "good", "executor": "external"})
            bad = http.post("/studies", json={**spec, "name": "poisoned", "executor": "external"})
            with transaction(app_.state.sessions) as session:
                poisoned = {**spec, "search": {"cost_overshoot": None}}
                session.execute(
                    update(StudyRow).where(StudyRow.id == bad.json()["id"]).values(spec=poisoned)
                )
            monkeypatch.setattr(
                "service.cli.common.api_client", lambda api, token: ScaletuneClient(http=http)
            )
            listed = runner.invoke(app, ["list"])
            assert listed.exit_code == 0, listed.output
            assert "good" in listed.output and "poisoned" in listed.output
            assert "spec no longer loads" in _flat(listed.output)
            status = runner.invoke(app, ["status", str(bad.json()["id"])])
            assert status.exit_code == 0, status.output
            assert "search.cost_overshoot" in _flat(status.output), status.output
            assert runner.invoke(app, ["status", str(good.json()["id"])]).exit_code == 0
    finally:
        app_.state.sessions.kw["bind"].dispose()  # before its database is dropped
