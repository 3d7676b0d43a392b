"""Service studies exported into Optuna storages open with optuna.load_study and the dashboard."""

from __future__ import annotations

import io
import json
import warnings
from wsgiref.util import setup_testing_defaults

import numpy as np
import optuna
import optuna_dashboard
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from search.pareto import front_indices
from search.space import (
    ChoiceParam,
    IntParam,
    LinearParam,
    LogitParam,
    LogParam,
    Pow2Param,
    SearchSpace,
)
from search.types import Suggestion
from service.api.app import create_app
from service.api.schemas import TrialDetail
from service.config import Settings
from service.domain import Budget, StudyState, TrialState
from service.interop.client import ScaletuneClient
from service.interop.optuna_export import (
    ExportTrial,
    OptunaExportError,
    export_from_api,
    export_to_optuna,
)
from service.orchestration.embedded import run_embedded
from service.orchestration.scheduler import Scheduler
from service.reads.views import summarise
from service.storage import repository as repo
from service.storage.db import transaction
from tests.auth import authorize
from tests.service.factories import make_spec

with warnings.catch_warnings():
    # starlette asks for its "httpx2" fork; the httpx we depend on works for TestClient.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

SPACE = SearchSpace(
    params=[
        LogParam(name="lr", center=1e-3, min=1e-5, max=1e-1),
        LogParam(name="n_params", center=1e7),  # unbounded: the observed range is exported
        IntParam(name="d_ff", center=512, multiple_of=64, log=False, min=100),
        Pow2Param(name="batch", center=64, min=8, max=1024),
        LogitParam(name="warmup", center=0.01),
        LinearParam(name="shift", center=0.0),
        ChoiceParam(name="schedule", choices=["cosine", "wsd"]),
    ]
)
PARAMS = [
    {"lr": 3e-4, "n_params": 2e6, "d_ff": 256, "batch": 32, "warmup": 0.02, "shift": -0.5,
     "schedule": "cosine"},
    {"lr": 1e-3, "n_params": 5e7, "d_ff": 1024, "batch": 256, "warmup": 0.005, "shift": 0.25,
     "schedule": "wsd"},
    {"lr": 2e-2, "n_params": 1e7, "d_ff": 512, "batch": 64, "warmup": 0.01, "shift": 1.0,
     "schedule": "cosine"},
]  # fmt: skip


@pytest.fixture(autouse=True)
def _quiet_optuna():
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(before)


def add_trial(session, study, params, *, now: float, outcome: str | None) -> None:
    """One trial through the repository's lifecycle: waiting, running, then ``outcome``."""
    suggestion = Suggestion(suggestion_id=f"s{study.next_number}", params=params, reason="model")
    trial = repo.add_trial(session, study=study, suggestion=suggestion, now=now)
    if outcome == "cancel":
        repo.cancel_trial(session, trial=trial, now=now + 1)
        return
    repo.start_trial(session, trial=trial, now=now + 1, lease_seconds=60)
    if outcome is None:
        return
    failed = outcome == "fail"
    repo.finish_trial(
        session,
        trial=trial,
        now=now + 10,
        failed=failed,
        loss=None if failed else 3.0 - 0.1 * trial.number,
        cost_seconds=10.0 * (trial.number + 1),
        result_key="0",
        failure_kind="config" if failed else None,
        failure_reason="out of memory: 80 GiB" if failed else None,
        flops=1e15,
        curve=[{"step": 10, "loss": 4.0}, {"step": 20, "loss": 3.5, "tokens": 1e6}],
        metrics={"tokens": 2e8, "device": "cpu"},
        worker="w1",
    )


@pytest.fixture
def study_id(sqlite_sessions) -> int:
    """A study with 3 complete, 1 failed, 1 running and 1 cancelled trial."""
    spec = make_spec(name="lm", space=SPACE)
    with transaction(sqlite_sessions) as session:
        study = repo.create_study(
            session,
            name="lm",
            objective="testbed",
            spec=spec.model_dump(mode="json"),
            engine_state="",
            now=1_700_000_000.0,
        )
        for i, outcome in enumerate(["complete", "complete", "fail", "complete", None, "cancel"]):
            params = PARAMS[i % 3] | {"shift": round(0.1 * i, 1)}
            add_trial(session, study, params, now=1_700_000_100.0 + 100 * i, outcome=outcome)
        return study.id


@pytest.fixture(params=["sqlite", "postgresql"])
def optuna_storage(request, tmp_path) -> str:
    """Optuna's RDB storage on a SQLite file or on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def load(optuna_storage):
    """``optuna.load_study`` on storages whose pools are closed after the test (before a
    PostgreSQL database is dropped, so no connection is left to the garbage collector)."""
    opened = []

    def _load(name: str, url: str) -> optuna.Study:
        opened.append(optuna.storages.RDBStorage(url))
        return optuna.load_study(study_name=name, storage=opened[-1])

    yield _load
    for storage in opened:
        storage.engine.dispose()


def export(sessions, study_id: int, storage: str, **kwargs) -> str:
    with transaction(sessions) as session:
        return export_to_optuna(session, study_id=study_id, storage=storage, **kwargs)


def test_an_exported_study_opens_with_optuna_load_study(
    sqlite_sessions, study_id, optuna_storage, load
):
    name = export(sqlite_sessions, study_id, optuna_storage)
    study = load(name, optuna_storage)
    assert name == f"scaletune-{study_id}-lm"
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert study.metric_names == ["loss", "cost_seconds"]
    assert study.user_attrs["scaletune_study_id"] == study_id
    assert study.user_attrs["spec"]["space"]["params"][0]["name"] == "lr"
    trials = study.trials
    assert [t.state for t in trials] == [OptunaState.COMPLETE] * 2 + [
        OptunaState.FAIL,
        OptunaState.COMPLETE,
    ]  # the running and the cancelled trial are not part of the snapshot
    assert [t.values for t in trials] == [
        [3.0, 10.0],
        pytest.approx([2.9, 20.0]),
        None,
        pytest.approx([2.7, 40.0]),
    ]
    assert [t.user_attrs["number"] for t in trials] == [0, 1, 2, 3]
    assert trials[0].params == PARAMS[0] | {"shift": 0.0}
    assert trials[0].intermediate_values == {10: 4.0, 20: 3.5}
    assert trials[0].user_attrs["metrics"] == {"tokens": 2e8, "device": "cpu"}
    assert trials[2].user_attrs["failure_reason"] == "out of memory: 80 GiB"
    assert trials[2].user_attrs["cost_seconds"] == 30.0
    assert trials[0].duration is not None and trials[0].duration.total_seconds() == 9.0


def test_distributions_come_from_the_space_bounds_and_the_observed_range(
    sqlite_sessions, study_id, tmp_path
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.load_study(
        study_name=export(sqlite_sessions, study_id, storage), storage=storage
    )
    dists = study.trials[0].distributions
    assert dists["lr"] == FloatDistribution(1e-5, 1e-1, log=True)  # its min/max
    assert dists["n_params"] == FloatDistribution(2e6, 5e7, log=True)  # observed range
    assert dists["d_ff"] == IntDistribution(128, 1024, step=64)  # min 100 onto the 64 grid
    assert dists["batch"] == IntDistribution(8, 1024, log=True)
    assert dists["warmup"] == FloatDistribution(0.005, 0.02)
    assert dists["shift"] == FloatDistribution(0.0, 0.3)
    assert dists["schedule"] == CategoricalDistribution(["cosine", "wsd"])


def test_a_second_export_needs_overwrite_and_then_replaces_the_snapshot(
    sqlite_sessions, study_id, tmp_path
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = export(sqlite_sessions, study_id, storage)
    with pytest.raises(OptunaExportError, match="overwrite=True"):
        export(sqlite_sessions, study_id, storage)
    with transaction(sqlite_sessions) as session:  # the running trial finishes meanwhile
        (running,) = repo.trials_in_state(session, study_id=study_id, states=[TrialState.RUNNING])
        repo.finish_trial(
            session, trial=running, now=2e9, failed=False, loss=2.0, cost_seconds=5.0,
            result_key="0",
        )  # fmt: skip
    export(sqlite_sessions, study_id, storage, overwrite=True)
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == 5
    assert optuna.get_all_study_names(storage) == [name]


def test_api_bodies_export_the_same_trials_as_rows(sqlite_sessions, study_id):
    with transaction(sqlite_sessions) as session:
        rows = repo.trials_in_state(session, study_id=study_id, states=[TrialState.COMPLETE])
        from_rows = [ExportTrial.from_row(row) for row in rows]
        bodies = [TrialDetail.model_validate(row).model_dump(mode="json") for row in rows]
    assert [ExportTrial.from_public(body) for body in bodies] == from_rows


def test_an_embedded_study_exports_the_front_the_service_found(sqlite_sessions, settings, tmp_path):
    scheduler = Scheduler(sessions=sqlite_sessions, settings=settings, dispatcher=None)
    study_id = scheduler.create_study(
        make_spec(budget=Budget(max_trials=8), in_flight=2, search={"n_startup": 8})
    )
    state = run_embedded(
        study_id=study_id, sessions=sqlite_sessions, settings=settings, workers=2, poll_seconds=0.05
    )
    assert state == StudyState.COMPLETE
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.load_study(
        study_name=export(sqlite_sessions, study_id, storage), storage=storage
    )
    with transaction(sqlite_sessions) as session:
        rows = repo.trials_in_state(session, study_id=study_id, states=[TrialState.COMPLETE])
        loss = np.array([r.loss for r in rows])
        cost = np.array([r.cost_seconds for r in rows])
        ours = sorted(rows[i].number for i in front_indices(loss, cost))
    # Optuna's best_trials is the raw front of the values; the service's front (the
    # engine's estimate, repeats merged) travels as a study attribute.
    assert sorted(t.user_attrs["number"] for t in study.best_trials) == ours
    assert len(study.trials[0].params) == len(study.user_attrs["spec"]["space"]["params"])
    with transaction(sqlite_sessions) as session:
        row = repo.get_study(session, study_id=study_id)
        served = summarise(session, study=row, n_complete=len(rows))
    assert served.source == study.user_attrs["scaletune_front_source"] == "model"
    assert [
        (p["trial_ids"], p["estimated_loss"], p["observed_loss"], p["mean_cost"])
        for p in study.user_attrs["scaletune_front"]
    ] == [(list(p.trial_ids), p.estimated_loss, p.observed_loss, p.cost) for p in served.points]


@pytest.mark.integration
def test_a_study_exports_over_the_http_api_as_the_cli_reads_it(sqlite_url, redis_url, tmp_path):
    settings = Settings(database_url=sqlite_url, broker_url=redis_url, proposals="inline")
    with TestClient(create_app(settings)) as http:
        authorize(http)
        client = ScaletuneClient(http=http)
        spec = {"name": "ext", "objective": "testbed", "executor": "external"}
        study = client.create_study(
            spec | {"budget": {"max_trials": 3}, "search": {"n_startup": 3}}
        )
        for item in client.ask(study["id"], count=3)["data"]:
            failed = item["number"] == 1
            client.tell(
                item["trial_id"],
                loss=None if failed else 2.0 + item["number"],
                cost=1.0 + item["number"],
                failed=failed,
                metrics={"tokens": 1e6},
            )
        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        name = export_from_api(client, study_id=study["id"], storage=storage)
        served = client.get_study(study["id"])
    exported = optuna.load_study(study_name=name, storage=storage)
    trials = exported.trials
    states = [OptunaState.COMPLETE, OptunaState.FAIL, OptunaState.COMPLETE]
    assert [t.state for t in trials] == states
    assert [t.values for t in trials] == [[2.0, 1.0], None, [4.0, 3.0]]
    assert trials[0].user_attrs["metrics"] == {"tokens": 1e6}  # from the trial's detail
    assert trials[1].user_attrs["cost_seconds"] == 2.0
    space = exported.user_attrs["spec"]["space"]["params"]  # the objective's default space
    front = exported.user_attrs["scaletune_front"]
    assert [(p["trial_ids"], p["estimated_loss"]) for p in front] == [
        (p["trial_ids"], p["estimated_loss"]) for p in served["front"]
    ]
    assert exported.user_attrs["scaletune_front_source"] == served["front_source"]
    assert set(trials[0].params) == {p["name"] for p in space}


def wsgi_get(app, path: str) -> tuple[str, bytes]:
    """A GET through the WSGI interface itself (no server, no extra client library)."""
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def test_optuna_dashboard_serves_an_exported_study(sqlite_sessions, study_id, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = export(sqlite_sessions, study_id, storage)
    app = optuna_dashboard.wsgi(storage)
    status, body = wsgi_get(app, "/api/studies")
    assert status.startswith("200"), body[:300]
    (summary,) = json.loads(body)["study_summaries"]
    assert summary["study_name"] == name
    status, body = wsgi_get(app, f"/api/studies/{summary['study_id']}")
    assert status.startswith("200"), body[:300]
    detail = json.loads(body)
    assert len(detail["trials"]) == 4
    assert detail["objective_names"] == ["loss", "cost_seconds"]
    assert len(detail["best_trials"]) >= 1
    status, _ = wsgi_get(app, f"/dashboard/studies/{summary['study_id']}")
    assert status.startswith("200")


@pytest.mark.integration
def test_cli_export_copies_a_study_into_an_optuna_storage(
    sqlite_url, redis_url, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from service import cli

    settings = Settings(database_url=sqlite_url, broker_url=redis_url, proposals="inline")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with TestClient(create_app(settings)) as http:
        authorize(http)
        client = ScaletuneClient(http=http)
        monkeypatch.setattr(cli.common, "api_client", lambda api, token: client)
        spec = {"name": "cli", "objective": "testbed", "executor": "external"}
        study = client.create_study(spec | {"budget": {"max_trials": 2}})
        for item in client.ask(study["id"], count=2)["data"]:
            client.tell(item["trial_id"], loss=3.0 - item["number"], cost=1.0 + item["number"])
        args = ["export", str(study["id"]), "--optuna-storage", storage]
        first = CliRunner().invoke(cli.app, [*args, "--optuna-study-name", "from-cli"])
        again = CliRunner().invoke(cli.app, [*args, "--optuna-study-name", "from-cli"])
        replaced = CliRunner().invoke(
            cli.app, [*args, "--optuna-study-name", "from-cli", "--overwrite"]
        )
    assert first.exit_code == 0, first.output
    assert "optuna-dashboard" in first.output
    assert len(optuna.load_study(study_name="from-cli", storage=storage).trials) == 2
    assert again.exit_code == 2 and "Traceback" not in again.output  # needs --overwrite
    message = " ".join(again.output.split())
    assert "pass --overwrite" in message and "overwrite=True" not in message  # the real flag
    assert replaced.exit_code == 0, replaced.output
    assert len(optuna.load_study(study_name="from-cli", storage=storage).trials) == 2
