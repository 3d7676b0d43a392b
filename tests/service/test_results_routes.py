"""Front, rules (JSON, YAML) and the scaling report served for a study with real rules."""

from __future__ import annotations

import warnings

import pytest
import yaml

from service.client import ScaletuneClient
from service.config import Settings
from service.main import create_app
from tests.auth import authorize
from tests.service.factories import finished_study_with_rules

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
    study_id, _ = finished_study_with_rules(app.state.sessions)
    with TestClient(app) as client:
        authorize(client, tenant="default")  # the factory's study is the default tenant's
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
