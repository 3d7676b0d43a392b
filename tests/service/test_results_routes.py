"""Front, rules (JSON, YAML) and the scaling report served for a study with real rules."""

from __future__ import annotations

import pytest
import yaml

from service.interop.client import ScaletuneClient

pytestmark = pytest.mark.integration


def test_rules_and_report_are_served(client_and_rules_study) -> None:
    client, study_id, _ = client_and_rules_study
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
def test_report_refuses_other_files(client_and_rules_study, name: str) -> None:
    client, study_id, _ = client_and_rules_study
    assert client.get(f"/studies/{study_id}/report/{name}").status_code == 404


def test_detail_shows_front_and_cost_bands(client_and_rules_study) -> None:
    client, study_id, _ = client_and_rules_study
    detail = client.get(f"/studies/{study_id}").json()
    costs = [t["cost_seconds"] for t in detail["front"]]
    losses = [t["loss"] for t in detail["front"]]
    assert costs == sorted(costs) and losses == sorted(losses, reverse=True)
    bands = [b["best_loss"] for b in detail["best_per_cost_band"]]
    assert bands == sorted(bands, reverse=True) and detail["has_rules"] is True
