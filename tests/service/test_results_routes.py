"""Front, rules (JSON, YAML) and the scaling report served for a study with real rules."""

from __future__ import annotations

import warnings

import pytest
import yaml

from search.types import Suggestion
from service.client import ScaletuneClient
from service.config import Settings
from service.domain import Budget, ScalingAxesSpec, StudySpec, StudyState
from service.main import create_app
from service.rules import fit_rules
from service.storage import repository as repo
from service.storage.db import transaction
from service.studies import create_study_row
from tests.search.test_scaling_testbed import sample_study
from workers.objectives.testbed import TestbedConfig

with warnings.catch_warnings():
    # starlette asks for its "httpx2" fork; the httpx we depend on works for TestClient.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


@pytest.fixture
def app_with_rules(sqlite_url: str, redis_url: str, tmp_path):
    settings = Settings(
        database_url=sqlite_url, broker_url=redis_url, report_dir=tmp_path / "reports"
    )
    app = create_app(settings)
    objective, observations = sample_study(TestbedConfig(), seed=5, per_budget=12)
    spec = StudySpec(
        name="r",
        objective="testbed",
        budget=Budget(max_trials=len(observations)),
        space=objective.default_space(),
        scaling=ScalingAxesSpec(n_params="n_params", tokens="tokens"),
    )
    with transaction(app.state.sessions) as session:
        study = create_study_row(session, spec=spec, now=0.0)
        for i, obs in enumerate(observations):
            trial = repo.add_trial(
                session,
                study=study,
                now=0.0,
                suggestion=Suggestion(suggestion_id=f"s{i}", params=obs.params, reason="startup"),
            )
            repo.start_trial(session, trial=trial, now=0.0, lease_seconds=60.0)
            repo.finish_trial(
                session,
                trial=trial,
                now=1.0,
                failed=obs.failed,
                loss=obs.loss,
                cost_seconds=obs.cost,
                metrics=obs.metrics,
                result_key="0",
                failure_kind="config" if obs.failed else None,
            )
        trials = repo.trials_in_state(session, study_id=study.id, states=["COMPLETE", "FAILED"])
        rules, why = fit_rules(spec, trials)
        assert rules is not None, why
        repo.save_rules(session, study=study, rules=rules, now=2.0)
        repo.set_study_state(session, study=study, state=StudyState.COMPLETE, now=2.0)
        study_id = study.id
    with TestClient(app) as client:
        yield client, study_id


def test_rules_and_report_are_served(app_with_rules) -> None:
    client, study_id = app_with_rules
    rules = client.get(f"/studies/{study_id}/rules").json()
    assert {r["name"] for r in rules["hyperparameters"]} >= {"learning_rate", "batch_size"}
    as_yaml = yaml.safe_load(client.get(f"/studies/{study_id}/rules.yaml").text)
    assert as_yaml == rules
    report = client.get(f"/studies/{study_id}/report/scaling-report.md")
    assert report.status_code == 200 and "front.png" in report.text
    png = client.get(f"/studies/{study_id}/report/front.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert ScaletuneClient(http=client).report_file(study_id, "front.png") == png.content


@pytest.mark.parametrize("name", ["../scaletune.db", "nope.png", "x.txt"])
def test_report_refuses_other_files(app_with_rules, name: str) -> None:
    client, study_id = app_with_rules
    assert client.get(f"/studies/{study_id}/report/{name}").status_code == 404


def test_detail_shows_front_and_cost_bands(app_with_rules) -> None:
    client, study_id = app_with_rules
    detail = client.get(f"/studies/{study_id}").json()
    costs = [t["cost_seconds"] for t in detail["front"]]
    losses = [t["loss"] for t in detail["front"]]
    assert costs == sorted(costs) and losses == sorted(losses, reverse=True)
    bands = [b["best_loss"] for b in detail["best_per_cost_band"]]
    assert bands == sorted(bands, reverse=True) and detail["has_rules"] is True
