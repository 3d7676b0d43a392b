"""Bad input on every endpoint: a 4xx whose message names what to fix, and the study
unchanged. Complements tests/service/test_api.py (NaN loss, negative cost, missing loss,
extra fields, unknown objective, empty budget, oversized bodies)."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.main import create_app
from tests.auth import authorize
from tests.reliability.faults import TestClient

pytestmark = pytest.mark.integration

STUDY = {
    "name": "bad-input",
    "objective": "testbed",
    "budget": {"max_trials": 4},
    "in_flight": 2,
    "executor": "external",
    "seed": 1,
    "search": {"n_startup": 4},
}
JSON = {"content-type": "application/json"}
LR = {"kind": "log", "name": "learning_rate", "center": 1e-3, "min": 1e-5, "max": 1.0}


@pytest.fixture
def client(sqlite_url: str, redis_url: str):  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=sqlite_url, broker_url=redis_url, proposals="inline", max_body_bytes=50_000
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        authorize(client)
        yield client


@pytest.fixture
def asked(client: TestClient) -> tuple[int, int]:
    """A study with one trial handed out: (study id, trial id)."""
    study_id = client.post("/studies", json=STUDY).json()["id"]
    (item,) = client.post(f"/studies/{study_id}/ask", json={"count": 1}).json()["data"]
    return study_id, item["trial_id"]


def _snapshot(client: TestClient, study_id: int) -> tuple:
    detail = client.get(f"/studies/{study_id}").json()
    trials = client.get(f"/studies/{study_id}/trials").json()["data"]
    return detail["state"], detail["progress"], [(t["state"], t["loss"]) for t in trials]


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ('{"loss": Infinity, "cost": 1.0}', "finite"),
        ('{"loss": -Infinity, "cost": 1.0}', "finite"),
        ('{"loss": 1.0, "cost": NaN}', "finite"),
        ('{"loss": 1.0, "cost": Infinity}', "finite"),
        ('{"loss": 1e31, "cost": 1.0}', "beyond +-1e+30 cannot be modelled: rescale it"),
        ('{"loss": -1e31, "cost": 1.0}', "beyond +-1e+30 cannot be modelled: rescale it"),
        ('{"loss": 1.0, "cost": 1e31}', "beyond 1e+30 cannot be modelled"),
        ('{"loss": "low", "cost": 1.0}', "valid number"),
        ('{"loss": 1.0, "cost": [1]}', "valid number"),
        ('{"loss": 1.0}', "Field required"),
        ('{"loss": 1.0, "cost": 1.0, "failed": "maybe"}', "valid boolean"),
        ('{"loss": 1.0, "cost": 1.0, "metrics": {"a": {"b": 1}}}', "metrics"),
        ('{"loss": 1.0, "cost": 1.0, "curve": [{"step": "x"}]}', "curve"),
        ("[1.0, 1.0]", "valid dictionary"),
        ('{"loss": 1.0, "cost": ', "JSON"),
    ],
)
def test_bad_tells_are_422_and_change_nothing(client, asked, raw, fragment) -> None:
    study_id, trial_id = asked
    before = _snapshot(client, study_id)
    response = client.post(f"/trials/{trial_id}/tell", content=raw, headers=JSON)
    assert response.status_code == 422 and fragment in response.text, response.text
    assert _snapshot(client, study_id) == before


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"objective": ""}, "at least 1 character"),
        ({"name": ""}, "at least 1 character"),
        ({"in_flight": "many"}, "valid integer"),
        ({"budget": {"max_trials": -1}}, "max_trials"),
        ({"queue": "a queue; rm"}, "pattern"),
        ({"executor": "gpu"}, "'workers' or 'external'"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"space": {"params": [{"kind": "log", "center": 1e-3}]}}, "name"),
        ({"space": {"params": [{"kind": "cubic", "name": "lr", "center": 1.0}]}}, "kind"),
        ({"space": {"params": [{"kind": "log", "name": "lr", "center": "x"}]}}, "center"),
        ({"space": {"params": [{**LR, "center": 10.0, "max": 1.0}]}}, "center 10.0 is above max"),
        ({"space": {"params": [{**LR, "min": 1.0, "max": 1e-5}]}}, "min (1.0) must be < max"),
        ({"space": {"params": [LR, LR]}}, "'learning_rate' is defined twice"),
        ({"space": {"params": [{**LR, "center": -1.0}]}}, "outside the log range"),
        ({"space": {"params": []}}, "at least one parameter"),
        ({"executor": "workers", "space": {"params": [{**LR, "name": "lr"}]}}, "unknown ['lr']"),
        ({"executor": "workers", "space": {"params": [LR]}}, "missing ['batch_size'"),
        ({"search": {"no_such_setting": 1}}, "search.no_such_setting: Extra inputs"),
        ({"search": {"n_startup": "many"}}, "search.n_startup: Input should be a valid integer"),
        ({"search": {"seed": 2}}, "the study's seed sets it"),
        ({"objective_options": {"no_such_option": 1}}, "no_such_option"),
        ({"objective_options": {"config": {"loss_e": "high"}}}, "loss_e"),
        ({"objective": "lm", "objective_options": {"norm": "batchnorm"}}, "'layernorm'"),
    ],
)
def test_bad_studies_are_422_and_create_nothing(client, overrides, fragment) -> None:
    response = client.post("/studies", json={**STUDY, **overrides})
    assert response.status_code == 422 and fragment in response.text, response.text
    assert client.get("/studies").json()["count"] == 0


def test_an_external_studys_parameter_names_are_its_runners_business(client) -> None:
    """A control for the name checks above: the objective runs no trial of an external
    study, so its space may name anything."""
    space = {"params": [{**LR, "name": "lr"}]}
    response = client.post("/studies", json={**STUDY, "executor": "external", "space": space})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("post", "/studies/{s}/ask", {"count": 0}, 422),
        ("post", "/studies/{s}/ask", {"count": 101}, 422),
        ("post", "/studies/{s}/ask", {"count": "two"}, 422),
        ("post", "/studies/{s}/ask", {"count": 1, "queue": "x"}, 422),
        ("get", "/studies/{s}/trials?state=BOGUS", None, 422),
        ("get", "/studies/{s}/trials?limit=0", None, 422),
        ("get", "/studies/{s}/trials?offset=-1", None, 422),
        ("get", "/studies?limit=100000", None, 422),
        ("get", "/studies/abc", None, 422),
        ("get", "/trials/abc", None, 422),
        ("get", "/studies/9223372036854775808/trials", None, 422),  # past 64-bit ids
        ("post", "/trials/0/tell", {"loss": 1.0, "cost": 1.0}, 422),
        ("post", "/trials/{t}/heartbeat", None, 200),  # a control: the trial is valid
        ("post", "/trials/999999/tell", {"loss": 1.0, "cost": 1.0}, 404),
        ("post", "/trials/999999/heartbeat", None, 404),
        ("post", "/studies/999999/pause", None, 404),
        ("get", "/studies/{s}/report/..%2F..%2Fetc%2Fpasswd", None, 404),
    ],
)
def test_every_endpoint_refuses_bad_arguments(client, asked, method, path, body, status) -> None:
    study_id, trial_id = asked
    before = _snapshot(client, study_id)
    url = path.format(s=study_id, t=trial_id)
    response = getattr(client, method)(url, **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["detail"], response.text
    assert _snapshot(client, study_id)[2] == before[2]


def test_an_oversized_tell_is_413_and_changes_nothing(client, asked) -> None:
    study_id, trial_id = asked
    before = _snapshot(client, study_id)
    curve = [{"step": float(i), "loss": 1.0} for i in range(5_000)]
    response = client.post(f"/trials/{trial_id}/tell", json={"loss": 1, "cost": 1, "curve": curve})
    assert response.status_code == 413 and "50000 bytes" in response.text
    assert _snapshot(client, study_id) == before


def test_a_negative_loss_is_422_unless_the_study_declares_it_signed(client, asked) -> None:
    study_id, trial_id = asked
    before = _snapshot(client, study_id)
    response = client.post(f"/trials/{trial_id}/tell", json={"loss": -0.5, "cost": 1.0})
    assert response.status_code == 422, response.text
    assert "allow_negative_loss: true" in response.json()["detail"]
    assert _snapshot(client, study_id) == before
    told = client.post(f"/trials/{trial_id}/tell", json={"loss": 0.0, "cost": 1.0})
    assert told.status_code == 200 and told.json()["outcome"] == "recorded", told.text


def test_a_signed_loss_study_takes_negative_losses_as_data(client) -> None:
    """A loss may be signed (a negated reward) where the study says so: it is recorded and
    the engine keeps suggesting past its startup trials on it."""
    study = {
        **STUDY,
        "budget": {"max_trials": 6},
        "in_flight": 1,
        "search": {"n_startup": 3},
        "allow_negative_loss": True,
    }
    study_id = client.post("/studies", json=study).json()["id"]
    for i in range(6):
        (item,) = client.post(f"/studies/{study_id}/ask", json={"count": 1}).json()["data"]
        told = client.post(f"/trials/{item['trial_id']}/tell", json={"loss": -1.0 - i, "cost": 1})
        assert told.status_code == 200 and told.json()["outcome"] == "recorded", told.text
    assert client.get(f"/studies/{study_id}").json()["state"] == "COMPLETE"
    losses = [t["loss"] for t in client.get(f"/studies/{study_id}/trials").json()["data"]]
    assert sorted(losses) == [-6.0, -5.0, -4.0, -3.0, -2.0, -1.0]


def test_an_oversized_chunked_body_is_413_too(client, asked) -> None:
    """Without Content-Length the limit still holds: the body is counted as it is read."""
    study_id, trial_id = asked
    before = _snapshot(client, study_id)

    def chunks():  # a generator body: httpx sends it chunked, with no Content-Length
        yield b'{"loss": 1.0, "cost": 1.0, "failure_reason": "'
        for _ in range(60):
            yield b"x" * 1000
        yield b'"}'

    response = client.post(f"/trials/{trial_id}/tell", content=chunks(), headers=JSON)
    assert response.status_code == 413 and "50000 bytes" in response.text, response.text
    assert _snapshot(client, study_id) == before
