"""Past runs as a finished study: the file layouts, the space inferred, the refusals
(naming row and column, storing nothing), the API route on both backends, and the CLI
end to end (rules, report, export, verification and warm start on the imported study)."""

from __future__ import annotations

import csv
import json
import math
import re
import sqlite3
import warnings
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from service.api.app import create_app
from service.cli import app
from service.cli.local_store import open_store
from service.config import Settings
from service.domain import StudySpec, StudyState, TrialState, WarmStartSpec
from service.interop.imports import (
    ImportRefusedError,
    StudyImport,
    create_imported_study,
    describe_space,
    infer_space,
)
from service.interop.runs_file import ColumnMapping, RunsFileError, read_runs, study_import
from service.orchestration.studies import take_buffered
from service.orchestration.verification import apply_warm_start, request_verification
from service.storage import repository as repo
from service.storage.db import transaction
from tests.auth import ADMIN_TOKEN, authorize, bearer, issue_tenant_token_at
from tests.search.near_front_study import sample_study
from workers.objectives.testbed_truth import TestbedConfig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

runner = CliRunner()
HPARAMS = ["learning_rate", "batch_size", "warmup_fraction", "weight_decay", "schedule"]


def _write(path, text: str):
    path.write_text(text)
    return path


# -- file layouts -------------------------------------------------------------------------


def test_a_plain_csv_maps_columns_and_diverged_runs_fail(tmp_path) -> None:
    path = _write(
        tmp_path / "runs.csv",
        "lr,bs,opt,final_loss,secs,crashed\n"
        "0.001,32,adam,3.5,10,false\n"
        "0.01,64,sgd,nan,11,false\n"
        "0.1,32,adam,,12,no\n"
        "0.003,64,adam,3.1,13,true\n"
        "0.03,128,sgd,inf,14,0\n",
    )
    mapping = ColumnMapping(
        params={"learning_rate": "lr", "batch": "bs", "optimizer": "opt"},
        loss="final_loss",
        cost="secs",
        failed="crashed",
    )
    runs = read_runs(path, mapping).runs
    assert [run.failed for run in runs] == [False, True, True, True, True]
    assert runs[0].params == {"learning_rate": 0.001, "batch": 32, "optimizer": "adam"}
    assert (runs[0].loss, runs[0].cost) == (3.5, 10.0)
    assert runs[1].reason == "diverged: loss nan" and runs[2].reason == "no loss recorded"
    assert runs[3].reason == "failed column"


def test_a_wandb_export_with_dict_columns_and_state(tmp_path) -> None:
    """W&B's export recipe (pandas to_csv of config/summary dicts, by repr) plus its
    runs table's State column: crashed runs fail, running ones are skipped."""
    rows = [
        ["", "summary", "config", "name", "State"],
        ["0", "{'loss': 2.5, '_runtime': 100.0}", "{'lr': 0.001, 'model': {'width': 256}}", "a"],
        ["1", "{'loss': nan, '_runtime': 50.0}", "{'lr': 0.1, 'model': {'width': 512}}", "b"],
        [
            "2",
            '{"loss": 2.1, "_runtime": 90.0}',
            '{"lr": {"value": 0.003}, "model": {"width": 512}}',
        ],
        ["3", "{'_runtime': 5.0}", "{'lr': 0.01, 'model': {'width': 256}}", "d"],
    ]
    for row, state in zip(rows[1:], ["finished", "finished", "crashed", "running"], strict=True):
        row[3:] = [row[3] if len(row) > 3 else "c", state]
    path = tmp_path / "wandb.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    mapping = ColumnMapping(params=["lr", "config.model.width"], cost="_runtime")
    read = read_runs(path, mapping)
    assert read.skipped == 1
    assert [run.params for run in read.runs] == [
        {"lr": 0.001, "model.width": 256},
        {"lr": 0.1, "model.width": 512},
        {"lr": 0.003, "model.width": 512},
    ]
    assert [run.failed for run in read.runs] == [False, True, True]
    assert read.runs[0].loss == 2.5 and read.runs[0].cost == 100.0


def test_flat_config_columns_and_jsonl_read_alike(tmp_path) -> None:
    flat = _write(
        tmp_path / "flat.csv",
        "config.lr,config.n,config.d,summary.loss\n0.01,1000000,20000000,3.0\n",
    )
    lines = _write(
        tmp_path / "runs.jsonl",
        json.dumps({"config": {"lr": 0.01, "n": 1000000, "d": 20000000}, "summary": {"loss": 3.0}})
        + "\n",
    )
    mapping = ColumnMapping(n_params="n", tokens="d")
    one, two = read_runs(flat, mapping), read_runs(lines, mapping)
    assert one.runs == two.runs
    (run,) = one.runs
    assert run.params == {"lr": 0.01, "n": 1000000, "d": 20000000}
    assert run.cost == pytest.approx(6 * 1e6 * 2e7)  # no cost column: 6 N D FLOPs
    assert (one.n_params, one.tokens, one.cost_unit) == ("n", "d", "FLOPs (6 N D)")


def test_an_axis_among_the_runs_outcomes_is_a_metric_not_a_parameter(tmp_path) -> None:
    """Width set, model size counted by the trainer: N (``metrics.*`` or ``summary.*``)
    is each run's metric and stays out of the parameters; a set axis (``params.*``) and
    a plain column stay parameters, as does an outcome column named as a parameter."""
    rows = [
        {"params": {"width": 64, "tokens": 1000}, "metrics": {"n": 5000}, "loss": 3.0},
        {"params": {"width": 128, "tokens": 2000}, "metrics": {"n": 18000}, "loss": 2.0},
    ]
    lines = _write(tmp_path / "runs.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    read = read_runs(lines, ColumnMapping(n_params="metrics.n", tokens="tokens"))
    assert [run.params for run in read.runs] == [r["params"] for r in rows]
    assert [run.metrics for run in read.runs] == [{"n": 5000.0}, {"n": 18000.0}]
    assert (read.n_params, read.tokens) == ("n", "tokens")
    assert read.runs[1].cost == pytest.approx(6 * 18000 * 2000)  # 6 N D with N the metric
    columns = ["params.width", "metrics.n"]
    as_param = read_runs(
        lines, ColumnMapping(params=columns, n_params="metrics.n", tokens="tokens")
    )
    assert as_param.runs[0].params == {"width": 64, "metrics.n": 5000, "tokens": 1000}
    assert as_param.runs[0].metrics == {} and as_param.n_params == "metrics.n"
    missing = _write(tmp_path / "missing.jsonl", json.dumps({**rows[0], "metrics": {}}) + "\n")
    with pytest.raises(RunsFileError, match=r"column 'metrics\.n'"):
        read_runs(missing, ColumnMapping(n_params="metrics.n", tokens="tokens"))


@pytest.mark.parametrize(
    "text, mapping, fragment",
    [
        ("lr,loss,cost\n0.1,abc,1\n", {}, "row 1 (line 2), column 'loss': 'abc' is not a number"),
        ("lr,loss,cost\n0.1,1,1\n,2,1\n", {}, "row 2 (line 3), column 'lr': empty"),
        ("lr,loss,cost,failed\n0.1,1,1,maybe\n", {}, "column 'failed': 'maybe' is not true/false"),
        ("lr,loss,cost\n0.1,1,-4\n", {}, "row 1 (line 2), column 'cost': cost -4.0 must be > 0"),
        ("lr,loss,cost\n0.1,-1,1\n", {}, "column 'loss': loss -1.0 is negative"),
        ("lr,loss,cost\n0.1,1\n", {}, "row 1 (line 2): 2 cells for 3 columns"),
        ("lr,loss,cost\n0.1,1,1\n", {"loss": "val_loss"}, "no column 'val_loss' for the loss"),
        ("lr,loss\n0.1,1\n", {}, "no cost: name a cost (--cost)"),
        ("lr,n,d,loss\n0.1,0,5,1\n", {"n_params": "n", "tokens": "d"}, "column 'n': 0"),
        ("lr,cfg,loss,cost\n0.1,{nope,1,1\n", {}, "not a JSON object or dict literal"),
    ],
)
def test_a_bad_file_names_the_row_and_column(tmp_path, text, mapping, fragment) -> None:
    path = _write(tmp_path / "bad.csv", text.replace("{nope", '"{nope}"'))
    with pytest.raises(RunsFileError) as caught:
        read_runs(path, ColumnMapping(params=["lr"], **mapping))
    assert fragment in str(caught.value)


def test_the_space_is_inferred_from_the_values() -> None:
    params = [
        {"lr": 1e-4, "batch": 32, "width": 100, "wd": 0.1, "opt": "adam", "seed": 1},
        {"lr": 1e-2, "batch": 256, "width": 3000, "wd": 0.3, "opt": "sgd", "seed": 1},
        {"lr": 1e-3, "batch": 64, "width": 500, "wd": 0.2, "opt": "adam", "seed": 1},
    ]
    space, constant = infer_space(params)
    kinds = {param.name: param.kind for param in space.params}
    assert kinds == {"lr": "log", "batch": "pow2", "width": "int", "wd": "linear", "opt": "choice"}
    assert space.params[2].log and constant == ["seed"]
    assert all(getattr(param, "max", None) is None for param in space.params)  # may extrapolate
    assert math.isclose(space.params[0].center, 1e-3)


@pytest.mark.parametrize(
    ("name", "values", "kind"),
    [
        ("warmup_fraction", [0.01, 0.05, 0.3], "logit"),  # a fraction's name, a decade in odds
        ("beta2", [0.95, 0.99, 0.999], "logit"),
        ("mix", [0.02, 0.3, 0.6], "logit"),  # reaches 0.5: no name needed
        ("learning_rate", [1e-3, 1e-2, 0.3], "log"),  # small values named like a rate
        ("warmup_fraction", [0.1, 0.2, 0.3], "linear"),  # under a decade in odds
        ("dropout", [0.0, 0.1, 0.3], "linear"),  # reaches 0: no logit, 0 is the floor
    ],
)
def test_a_fraction_is_inferred_as_a_logit(name, values, kind) -> None:
    space, _ = infer_space([{name: v} for v in values])
    (param,) = space.params
    assert param.kind == kind
    if kind == "logit":  # however far the rules extrapolate, the value stays a fraction
        far = space.from_internal(space.to_internal({name: values[-1]}) + 50.0)[name]
        assert values[-1] < far < 1.0
    if name == "dropout":
        assert param.min == 0 and param.max is None


def test_a_linear_parameter_that_reaches_zero_keeps_it_as_its_floor() -> None:
    space, _ = infer_space([{"wd": 0.0, "steps": 0}, {"wd": 0.2, "steps": 500}])
    assert [(p.kind, p.min) for p in space.params] == [("linear", 0), ("int", 0)]
    assert describe_space(space) == "wd linear (min 0), steps int (min 0)"


def test_a_mapping_space_replaces_an_inferred_parameter(tmp_path) -> None:
    path = _write(tmp_path / "r.csv", "wf,loss,cost\n0.01,2,1\n0.2,1.9,1\n")
    mapping = ColumnMapping(
        params=["wf"], space=[{"kind": "logit", "name": "wf", "center": 0.05, "max": 0.5}]
    )
    body, _ = study_import(read_runs(path, mapping), mapping, name="s")
    assert body.space.params[0].kind == "logit"
    bad = ColumnMapping(params=["wf"], space=[{"kind": "log", "name": "nope", "center": 1}])
    with pytest.raises(RunsFileError, match="'nope' is not one of the parameters"):
        study_import(read_runs(path, bad), bad, name="s")
    unsearchable = ColumnMapping(
        params=["wf"], space=[{"kind": "logit", "name": "wf", "center": 2}]
    )
    with pytest.raises(RunsFileError, match=r"mapping space: .*'wf'.*center 2.0 is outside"):
        study_import(read_runs(path, unsearchable), unsearchable, name="s")


# -- the store: all or nothing, both backends ---------------------------------------------


def _body(**overrides) -> StudyImport:  # type: ignore[no-untyped-def]
    runs = [
        {
            "params": {"lr": 10 ** (-4 + i / 3), "opt": "adam" if i % 2 else "sgd"},
            "loss": 3 - i / 10,
            "cost": 1 + i,
        }
        for i in range(8)
    ]
    runs[3] = {**runs[3], "loss": None}  # diverged
    return StudyImport.model_validate({"name": "past", "runs": runs, **overrides})


def test_an_import_stores_finished_trials_in_one_transaction(sessions) -> None:
    with transaction(sessions) as session:
        study, constant = create_imported_study(session, body=_body(), now=5.0)
        study_id = study.id
    with transaction(sessions) as session:
        counts = repo.count_by_state(session, study_id=study_id)
        spec = StudySpec.model_validate(repo.get_study(session, study_id=study_id).spec)
    assert (counts[TrialState.COMPLETE], counts[TrialState.FAILED]) == (7, 1)
    assert spec.executor == "external" and spec.budget.max_trials == 8 and constant == []
    assert [p.kind for p in spec.space.params] == ["log", "choice"]


def test_a_loss_past_what_the_engine_models_is_a_diverged_run(sessions) -> None:
    """A run that blew up and logged float32's largest loss, not NaN, is a failure like
    one that logged NaN (tell refuses such a loss; an import stored it as COMPLETE and
    the engine then left it out)."""
    body = _body()
    runs = [r.model_copy(update={"loss": 3.4e38}) if i == 5 else r for i, r in enumerate(body.runs)]
    blown_up = body.model_copy(update={"runs": runs})
    with transaction(sessions) as session:
        study, _ = create_imported_study(session, body=blown_up, now=5.0)
        study_id = study.id
    with transaction(sessions) as session:
        counts = repo.count_by_state(session, study_id=study_id)
        trials, _ = repo.list_trials(session, study_id=study_id)
        reasons = [t.failure_reason for t in trials if t.state == TrialState.FAILED]
    assert (counts[TrialState.COMPLETE], counts[TrialState.FAILED]) == (6, 2)
    assert "diverged: loss 3.4e+38" in reasons, reasons


def test_a_run_outside_the_given_space_stores_nothing(sessions) -> None:
    space = {
        "params": [
            {"kind": "log", "name": "lr", "center": 1e-3, "max": 1e-2},
            {"kind": "choice", "name": "opt", "choices": ["adam", "sgd"]},
        ]
    }
    refused = pytest.raises(ImportRefusedError, match=r"run 8: invalid params: 'lr'")
    with refused, transaction(sessions) as session:
        create_imported_study(session, body=_body(space=space), now=5.0)
    with transaction(sessions) as session:
        assert repo.list_studies(session)[1] == 0


# -- the API ------------------------------------------------------------------------------


@pytest.fixture
def api(database_url, redis_url, tmp_path):  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        proposals="inline",
        admin_token=ADMIN_TOKEN,
        report_dir=tmp_path / "reports",
    )
    app_ = create_app(settings)
    with TestClient(app_) as client:
        yield client
    app_.state.sessions.kw["bind"].dispose()


@pytest.mark.integration
def test_the_api_imports_runs_into_a_finished_study_of_the_tenant(api) -> None:
    authorize(api, tenant="tenant-a")
    response = api.post("/studies/import", json=_body().model_dump(mode="json"))
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["state"] == StudyState.COMPLETE  # the inline scheduler completed it
    assert study["trials_by_state"]["FAILED"] == 1 and study["trials_by_state"]["COMPLETE"] == 7
    assert "no scaling axes" in study["message"]
    other = authorize(api, tenant="tenant-b")
    assert api.get(f"/studies/{study['id']}", headers=bearer(other)).status_code == 404


@pytest.mark.integration
@pytest.mark.parametrize(
    "change, status, fragment",
    [
        (
            {"space": {"params": [{"kind": "log", "name": "lr", "center": 1e-3, "max": 1e-2}]}},
            422,
            "run 1: invalid params",
        ),
        ({"runs": []}, 422, "at least 1"),
        (
            {
                "runs": [
                    {"params": {"lr": 1.0}, "loss": 1.0, "cost": 0.0},
                    {"params": {"lr": 9.0}, "loss": 1.0, "cost": 1.0},
                ]
            },
            422,
            "run 1: cost must be > 0",
        ),
        # what PostgreSQL cannot store, or a parameter no space can hold
        ({"name": "a\x00b"}, 422, "NUL character"),
        ({"runs": [{"params": {"lr": 1.0}, "loss": math.inf, "cost": 1.0}]}, 422, "finite"),
        ({"runs": [{"params": {"lr": [1.0]}, "loss": 1.0, "cost": 1.0}]}, 422, "valid string"),
        ({"runs": [{"params": {"": 1.0}, "loss": 1.0, "cost": 1.0}]}, 422, "at least 1"),
        (
            {
                "runs": [
                    {"params": {"lr": 1e200}, "loss": 1.0, "cost": 1.0},
                    {"params": {"lr": 2e200}, "loss": 1.0, "cost": 1.0},
                ]
            },
            422,
            "parameter 'lr': scale must be in",
        ),
    ],
)
def test_the_api_refuses_bad_runs_and_stores_nothing(api, change, status, fragment) -> None:
    authorize(api)
    body = json.dumps({**_body().model_dump(mode="json"), **change})  # Infinity as Python writes it
    response = api.post(
        "/studies/import", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert api.get("/studies").json()["count"] == 0


@pytest.mark.integration
def test_an_import_whose_scheduler_step_fails_is_stored_and_answered_201(
    api, monkeypatch, caplog
) -> None:
    """The import is committed before the inline scheduler steps it; a step that then
    fails is logged, and the client learns its study exists (a 500 would make it retry
    an import that is already stored)."""
    from service.orchestration.scheduler import Scheduler

    def broken(self, study_id, **_):  # type: ignore[no-untyped-def]
        raise RuntimeError("the rules' fit crashed")

    monkeypatch.setattr(Scheduler, "step", broken)
    authorize(api)
    response = api.post("/studies/import", json=_body().model_dump(mode="json"))
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["trials_by_state"]["COMPLETE"] == 7 and study["state"] != StudyState.COMPLETE
    assert api.get("/studies").json()["count"] == 1
    assert "the rules' fit crashed" in caplog.text


@pytest.mark.integration
def test_an_admin_token_cannot_import(api) -> None:
    response = api.post(
        "/studies/import", json=_body().model_dump(mode="json"), headers=bearer(ADMIN_TOKEN)
    )
    assert response.status_code == 403 and "tenant" in response.json()["detail"]


# -- the CLI, end to end -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_csv(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A near-front testbed sample as a plain CSV (columns named as a user might)."""
    _, observations = sample_study(TestbedConfig(), seed=5, per_budget=12)
    path = tmp_path_factory.mktemp("sweep") / "sweep.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["N", "D", *HPARAMS, "val_loss", "gpu_s", "diverged"])
        for o in observations:
            row = [o.params["n_params"], o.params["tokens"], *(o.params[h] for h in HPARAMS)]
            writer.writerow([*row, "" if o.failed else o.loss, o.cost, str(o.failed).lower()])
    return path


def test_cli_import_fits_rules_and_everything_works_on_the_study(sweep_csv, tmp_path) -> None:
    db, rules, report = tmp_path / "s.db", tmp_path / "rules.yaml", tmp_path / "report"
    args = ["import", str(sweep_csv), "--params", ",".join(HPARAMS), "--loss", "val_loss"]
    args += ["--cost", "gpu_s", "--failed", "diverged", "--n-params", "N", "--tokens", "D"]
    result = runner.invoke(
        app, [*args, "--db", str(db), "--rules-out", str(rules), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "study 1: COMPLETE" in result.output and "N*(C)" in result.output
    assert "warmup_fraction logit, weight_decay log" in " ".join(result.output.split())
    assert "N* ~ C^+0." in " ".join(result.output.split())
    assert "n_params: N" in rules.read_text() and "tokens: D" in rules.read_text()
    md = report / "scaling-report.md"
    assert (md.parent / "allocation.png").is_file()

    exported = runner.invoke(
        app, ["export", "1", "--db", str(db), "--out", str(tmp_path / "r.json")]
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads((tmp_path / "r.json").read_text())["axes"]["n_params"] == "N"

    _, sessions = open_store(db)
    with transaction(sessions) as session:  # verification: handed out through ask/tell
        trial = request_verification(session, study_id=1, scale_factor=10.0, now=1.0)
        (taken,) = take_buffered(session, study_id=1, count=1, now=1.0, lease_seconds=60.0)
        assert taken.id == trial.id and set(trial.params) == {"N", "D", *HPARAMS}
    warm = StudySpec(
        name="next",
        objective="imported",
        budget={"max_trials": 4},
        warm_start=WarmStartSpec(study_id=1),
    )
    with transaction(sessions) as session:  # warm start: re-centred where the rules point
        spec = apply_warm_start(session, spec=warm)
    with sweep_csv.open() as handle:
        largest_n = max(float(row["N"]) for row in csv.DictReader(handle))
    (n_param,) = [p for p in spec.space.params if p.name == "N"]
    assert n_param.center > largest_n


def test_cli_import_of_a_real_studys_runs_refits_its_size_map_and_allocation(tmp_path) -> None:
    """Run 9 of the real scaling study, as its report wrote the runs: N is the trainer's
    parameter count (a metric), width and depth parameters. The import sizes the model
    through a size map, as the study's own rules did (its ln N = 4.51 + 1.62 ln d_model
    + 0.59 ln n_layers, N*(C) ~ C^0.318), instead of fitting width and depth as
    hyperparameters beside an N parameter."""
    runs = Path(__file__).resolve().parents[2] / "docs/data/real-scaling-run9/trials.jsonl"
    rules = tmp_path / "rules.json"
    args = ["import", str(runs), "--n-params", "metrics.n_params_total", "--tokens", "tokens"]
    result = runner.invoke(app, [*args, "--db", str(tmp_path / "s.db"), "--rules-out", str(rules)])
    assert result.exit_code == 0, result.output
    fitted = json.loads(rules.read_text())
    assert fitted["axes"]["n_params"] == "n_params_total"
    slopes = fitted["size_map"]["slopes"]
    assert slopes == pytest.approx({"d_model": 1.618, "n_layers": 0.587}, abs=1e-3)
    assert fitted["allocation"]["n_params"]["coef"][1] == pytest.approx(0.318, abs=1e-3)
    _, sessions = open_store(tmp_path / "s.db")
    with transaction(sessions) as session:
        trial = request_verification(session, study_id=1, scale_factor=10.0, now=1.0)
        assert "n_params_total" not in trial.params  # width and depth set N
        assert {"d_model", "n_layers", "tokens", "learning_rate"} <= set(trial.params)


def test_cli_import_with_the_studys_mapping_refits_in_the_studys_own_space(tmp_path) -> None:
    """The mapping the real study's report writes beside its runs gives the import the
    study's space (depth an int, every limit), where inference reads depths that were
    all 1 or 2 as powers of two and sets no limits;
    the rules then say what the study's own said of the learning rate (a saddle with
    weight decay, docs/case-study-real-scaling.md, run 9)."""
    data = Path(__file__).resolve().parents[2] / "docs/data/real-scaling-run9"
    db, rules = tmp_path / "s.db", tmp_path / "rules.json"
    args = ["import", str(data / "trials.jsonl"), "--mapping", str(data / "mapping.yaml")]
    result = runner.invoke(app, [*args, "--db", str(db), "--rules-out", str(rules)])
    assert result.exit_code == 0, result.output
    _, sessions = open_store(db)
    with transaction(sessions) as session:
        spec = StudySpec.model_validate(repo.get_study(session, study_id=1).spec)
    assert spec.space is not None
    kinds = {p.name: (p.kind, p.min, p.max) for p in spec.space.params}
    assert kinds["warmup_fraction"] == ("logit", 0.005, 0.3)
    assert kinds["n_layers"] == ("int", 1, 8)
    assert kinds["learning_rate"] == ("log", 0.001, 0.3)
    assert spec.scaling.n_params == "n_params_total" and spec.scaling.tokens == "tokens"
    fitted = json.loads(rules.read_text())
    reasons = {h["name"]: h["reason"] or "" for h in fitted["hyperparameters"]}
    assert reasons["learning_rate"].startswith("saddle:"), reasons["learning_rate"]
    assert "together with weight_decay" in reasons["learning_rate"]


def test_cli_import_of_a_bad_file_fails_without_a_traceback_and_stores_nothing(tmp_path) -> None:
    bad = _write(tmp_path / "bad.csv", "lr,loss,cost\n0.1,1.0,2\n0.2,oops,2\n")
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["import", str(bad), "--params", "lr", "--db", str(db)])
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert "row 2 (line 3), column 'loss': 'oops' is not a number" in flat
    assert "Traceback" not in result.output
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("select count(*) from studies").fetchone() == (0,)
        conn.close()


def _flops_runs(path: Path) -> Path:
    """Six W&B-style runs whose only axis is their FLOPs, as JSON lines."""
    lines = [
        {
            "config": {"lr": 10 ** (-4 + i / 4)},
            "summary": {"loss": 3.0 - i / 20, "flops": 1e15 * 2**i},
        }
        for i in range(6)
    ]
    return _write(path, "\n".join(json.dumps(line) for line in lines))


def test_cli_import_with_flops_a_compute_axis_and_a_name(tmp_path) -> None:
    path = _flops_runs(tmp_path / "runs.jsonl")
    db = tmp_path / "s.db"
    args = ["import", str(path), "--flops", "flops", "--compute", "flops", "--name", "past"]
    result = runner.invoke(app, [*args, "--seed", "3", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "read 6 runs (0 failed)" in result.output and "cost in FLOPs" in _flat(result.output)
    assert "study 1: COMPLETE" in result.output
    _, sessions = open_store(db)
    with transaction(sessions) as session:
        study = repo.get_study(session, study_id=1)
        spec = StudySpec.model_validate(study.spec)
        (trial, *_) = repo.trials_in_state(session, study_id=1, states=[TrialState.COMPLETE])
    assert (study.name, spec.seed, spec.scaling.compute) == ("past", 3, "flops")
    assert trial.flops == trial.cost_seconds == 1e15 and trial.metrics == {"flops": 1e15}


def test_without_db_run_and_import_share_the_store_the_readme_exports_from(
    tmp_path, monkeypatch
) -> None:
    """The README's commands as written: ``scaletune run study.yaml`` and ``scaletune
    import RUNS`` without --db keep their studies in .scaletune/scaletune.db under the
    working directory, and ``scaletune export ID --db .scaletune/scaletune.db --out
    rules.json`` reads them there."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "study.yaml", "name: x\nobjective: testbed\nbudget: {max_trials: 3}\n")
    ran = runner.invoke(app, ["run", "study.yaml"])
    assert ran.exit_code == 0 and "finished: COMPLETE" in ran.output, ran.output
    _flops_runs(tmp_path / "runs.jsonl")
    imported = runner.invoke(
        app, ["import", "runs.jsonl", "--flops", "flops", "--compute", "flops"]
    )
    assert imported.exit_code == 0, imported.output
    assert "imported as study 2 in .scaletune/scaletune.db" in _flat(imported.output)
    store = ["--db", ".scaletune/scaletune.db"]
    exported = runner.invoke(app, ["export", "2", *store, "--out", "rules.json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads((tmp_path / "rules.json").read_text())["axes"]["compute"] == "flops"
    no_rules = runner.invoke(app, ["export", "1", *store, "--out", "other.json"])
    assert no_rules.exit_code == 2 and "study 1 has no scaling rules" in _flat(no_rules.output)
    assert (tmp_path / ".scaletune" / "scaletune.db").is_file()


@pytest.mark.integration
def test_cli_import_into_a_service_with_a_mapping_file(
    tmp_path, sqlite_url, redis_url, monkeypatch
):
    from service.interop.client import ScaletuneClient

    rows = "".join(
        f"{10 ** (-4 + i / 3)},{'adam' if i % 2 else 'sgd'},{3 - i / 10},{i + 1}\n"
        for i in range(8)
    )
    path = _write(tmp_path / "runs.csv", "lr,opt,val,secs\n" + rows)
    mapping = _write(tmp_path / "map.yaml", "params: [lr, opt]\nloss: val\ncost: secs\n")
    settings = Settings(database_url=sqlite_url, broker_url=redis_url, proposals="inline")
    with TestClient(create_app(settings)) as http:
        authorize(http)
        monkeypatch.setattr(
            "service.cli.common.api_client", lambda api, token: ScaletuneClient(http=http)
        )
        args = ["import", str(path), "--mapping", str(mapping), "--api", "http://api"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "imported as study 1 (COMPLETE)" in _flat(result.output)
        assert http.get("/studies/1").json()["trials_by_state"]["COMPLETE"] == 8
        refused = runner.invoke(app, [*args, "--rules-out", str(tmp_path / "r.yaml")])
        assert refused.exit_code == 2 and "scaletune export ID --api" in _flat(refused.output)
        assert http.get("/studies").json()["count"] == 1


@pytest.mark.integration
def test_cli_import_and_export_over_http_to_the_api_named_by_api(
    tmp_path, sqlite_url, live_api
) -> None:
    """``import --api URL --token T`` into the API served there (a real client, real HTTP),
    then the README's ``export ID --format yaml --out rules.yaml`` from it, the rules as
    JSON (by --out's suffix, and on stdout) and the report with its plots."""
    token = issue_tenant_token_at(sqlite_url, tenant="acme")
    over_http = ["--api", live_api, "--token", token]
    path = _flops_runs(tmp_path / "runs.jsonl")
    args = ["import", str(path), "--flops", "flops", "--compute", "flops", *over_http]
    imported = runner.invoke(app, args)
    assert imported.exit_code == 0, imported.output
    assert "imported as study 1 (COMPLETE)" in _flat(imported.output)
    served = httpx.get(f"{live_api}/studies/1/rules", headers=bearer(token)).json()
    assert served["axes"]["compute"] == "flops"

    export = ["export", "1", *over_http]
    as_yaml = runner.invoke(app, [*export, "--format", "yaml", "--out", str(tmp_path / "r.yaml")])
    assert as_yaml.exit_code == 0, as_yaml.output
    assert yaml.safe_load((tmp_path / "r.yaml").read_text()) == served
    as_json = runner.invoke(app, [*export, "--out", str(tmp_path / "r.json")])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads((tmp_path / "r.json").read_text()) == served
    for fmt, parse in (("json", json.loads), ("yaml", yaml.safe_load)):
        printed = runner.invoke(app, [*export, "--format", fmt])
        assert printed.exit_code == 0, printed.output
        assert parse(printed.stdout) == served, (fmt, printed.stdout)

    report = tmp_path / "report"
    downloaded = runner.invoke(app, [*export, "--format", "report", "--out", str(report)])
    assert downloaded.exit_code == 0, downloaded.output
    md = (report / "scaling-report.md").read_text()
    plots = re.findall(r"\]\(([\w.-]+\.png)\)", md)
    assert plots and all((report / name).stat().st_size > 0 for name in plots), plots
    refused = runner.invoke(app, [*export, "--format", "xml"])
    assert refused.exit_code == 2 and "--format must be json, yaml or report" in refused.output


def _flat(output: str) -> str:
    return " ".join(output.split())
