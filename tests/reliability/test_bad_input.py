"""Bad input on every endpoint, on SQLite and PostgreSQL: a 4xx whose message names what
to fix, and nothing stored or changed. Complements tests/service/test_api.py (NaN loss,
negative cost, missing loss, extra fields, unknown objective, empty budget, oversized
bodies).

One app per backend serves the module; each test gets a tenant of its own, so the lists
it reads hold its studies only."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from service.api.app import create_app
from service.config import Settings
from service.domain import MAX_IN_FLIGHT, MAX_SEED, MAX_TIME_LIMIT_S, MAX_TRIALS
from service.storage.db import transaction
from service.storage.tables import StudyRow
from tests.auth import ADMIN_TOKEN, authorize, bearer
from tests.reliability.faults import TestClient
from tests.service.conftest import backend_database

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
ADMIN = bearer(ADMIN_TOKEN)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_client(request, tmp_path_factory, redis_url, postgres_url):  # type: ignore[no-untyped-def]
    """A client of an app on the backend (module-wide; ``client`` gives it a tenant)."""
    directory = tmp_path_factory.mktemp("bad-input")
    with backend_database(request.param, directory, postgres_url) as url:
        settings = Settings(
            database_url=url,
            broker_url=redis_url,
            proposals="inline",
            max_body_bytes=50_000,
            admin_token=ADMIN_TOKEN,
        )
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
        app.state.sessions.kw["bind"].dispose()  # before its database is dropped


@pytest.fixture
def client(backend_client: TestClient) -> TestClient:
    """The backend's client, sending the token of a tenant of this test's own."""
    authorize(backend_client, tenant=f"t-{uuid.uuid4().hex[:12]}")
    return backend_client


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


def _raw_study(**fields: str) -> str:
    """A study body as raw JSON text, ``fields`` spliced in as raw JSON values (the
    values json.dumps would never write: NaN, Infinity)."""
    body = '{"name": "raw", "objective": "testbed", "executor": "external"'
    fields.setdefault("budget", '{"max_trials": 4}')
    return body + "".join(f', "{key}": {value}' for key, value in fields.items()) + "}"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (_raw_study(budget='{"max_cost": Infinity}'), "budget.max_cost: inf is not a finite"),
        (_raw_study(budget='{"max_trials": 4, "max_cost": NaN}'), "budget.max_cost: nan"),
        (_raw_study(max_trial_cost="Infinity"), "max_trial_cost: inf is not a finite"),
        (_raw_study(time_limit_s="Infinity"), "time_limit_s: inf is not a finite"),
        (_raw_study(soft_time_limit_s="-Infinity"), "soft_time_limit_s: -inf"),
        (_raw_study(search='{"cost_overshoot": Infinity}'), "search.cost_overshoot: inf"),
        (_raw_study(objective_options='{"config": {"loss_e": NaN}}'), "config.loss_e: nan"),
        (
            _raw_study(space='{"params": [{"kind": "log", "name": "lr", "center": Infinity}]}'),
            "space.params[0].center: inf",
        ),
        (_raw_study(name='"a\\u0000b"'), "name: a string holds a NUL character"),
        (_raw_study(objective_options='{"x\\u0000": 1}'), "objective_options: a key holds a NUL"),
        (
            _raw_study(space='{"params": [{"kind": "log", "name": "l\\u0000r", "center": 0.1}]}'),
            "space.params[0].name: a string holds a NUL",
        ),
        (_raw_study(search='{"n_startup": 4, "note\\u0000": "x"}'), "search: a key holds a NUL"),
    ],
)
def test_non_finite_numbers_and_nul_characters_in_a_study_are_422(client, raw, fragment) -> None:
    """PostgreSQL stores neither (its json refuses NaN/Infinity, its text NUL): both
    backends answer the same 422, naming the field, and store nothing."""
    response = client.post("/studies", content=raw, headers=JSON)
    assert response.status_code == 422 and fragment in response.text, response.text
    assert client.get("/studies").json()["count"] == 0


@pytest.mark.parametrize(
    "path, raw, fragment",
    [
        (
            "/trials/{t}/tell",
            '{"loss": 1.0, "cost": 1.0, "failure_reason": "a\\u0000"}',
            "failure_reason: a string holds a NUL",
        ),
        (
            "/trials/{t}/tell",
            '{"loss": 1.0, "cost": 1.0, "metrics": {"m\\u0000": 1}}',
            "metrics: a key holds a NUL",
        ),
        (
            "/trials/{t}/tell",
            '{"loss": 1.0, "cost": 1.0, "metrics": {"m": "\\u0000"}}',
            "metrics.m: a string holds a NUL",
        ),
        (
            "/trials/{t}/tell",
            '{"loss": 1.0, "cost": 1.0, "metrics": {"m": Infinity}}',
            "metrics.m: inf",
        ),
        (
            "/trials/{t}/tell",
            '{"loss": 1.0, "cost": 1.0, "curve": [{"step": NaN}]}',
            "curve[0].step: nan",
        ),
        ("/studies/{s}/ask", '{"count": NaN}', "count: nan"),
        ("/studies/{s}/verify", '{"scale_factor": Infinity}', "scale_factor: inf"),
    ],
)
def test_non_finite_numbers_and_nul_characters_elsewhere_are_422(
    client, asked, path, raw, fragment
) -> None:
    study_id, trial_id = asked
    before = _snapshot(client, study_id)
    url = path.format(s=study_id, t=trial_id)
    response = client.post(url, content=raw, headers=JSON)
    assert response.status_code == 422 and fragment in response.text, response.text
    assert _snapshot(client, study_id) == before


@pytest.mark.parametrize(
    "path, raw",
    [
        ("/admin/tenants", '{"name": "t\\u0000x"}'),
        ("/admin/tenants/1/tokens", '{"name": "ci\\u0000"}'),
    ],
)
def test_nul_characters_in_tenant_and_token_names_are_422(client, path, raw) -> None:
    before = client.get("/admin/tokens", headers=ADMIN).json()["count"]
    tenants = client.get("/admin/tenants", headers=ADMIN).json()["count"]
    response = client.post(path, content=raw, headers=JSON | ADMIN)
    assert response.status_code == 422, response.text
    assert client.get("/admin/tokens", headers=ADMIN).json()["count"] == before
    assert client.get("/admin/tenants", headers=ADMIN).json()["count"] == tenants


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"budget": {"max_trials": MAX_TRIALS + 1}}, "less than or equal to 1000000"),
        ({"budget": {"max_trials": 10**23}}, "less than or equal to 1000000"),
        ({"budget": {"max_cost": 1e31}}, '"le":1e+30'),
        ({"seed": MAX_SEED + 1}, "less than or equal to 9223372036854775807"),
        ({"seed": 10**23}, "less than or equal to 9223372036854775807"),
        ({"in_flight": MAX_IN_FLIGHT + 1}, "less than or equal to 1024"),
        ({"time_limit_s": 1e308}, "less than or equal to 2592000"),
        ({"soft_time_limit_s": MAX_TIME_LIMIT_S + 1}, "less than or equal to 2592000"),
        ({"max_trial_cost": 1e31}, '"le":1e+30'),
        ({"queue": "q" * 201}, "at most 200 characters"),
        ({"objective": "o" * 201}, "at most 200 characters"),
        ({"warm_start": {"study_id": 2**31}}, "less than or equal to 2147483647"),
    ],
)
def test_values_past_the_documented_limits_are_422(client, overrides, fragment) -> None:
    """A lease is the time limit: past the limits it could never run out."""
    response = client.post("/studies", json={**STUDY, **overrides})
    assert response.status_code == 422 and fragment in response.text, response.text
    assert client.get("/studies").json()["count"] == 0


def test_values_at_the_limits_are_a_study(client) -> None:
    """The control: each limit itself is accepted and stored on the backend."""
    at_limits = {
        "budget": {"max_trials": MAX_TRIALS, "max_cost": 1e30},
        "seed": MAX_SEED,
        "in_flight": MAX_IN_FLIGHT,
        "time_limit_s": MAX_TIME_LIMIT_S,
        "soft_time_limit_s": MAX_TIME_LIMIT_S,
        "max_trial_cost": 1e30,
        "queue": "q" * 200,
    }
    response = client.post("/studies", json={**STUDY, **at_limits})
    assert response.status_code == 201, response.text
    spec = client.get(f"/studies/{response.json()['id']}").json()["spec"]
    assert (spec["seed"], spec["budget"]["max_trials"]) == (MAX_SEED, MAX_TRIALS)


@pytest.mark.parametrize("cost", [0, 1e-40, 9e-31, -1.0])
def test_a_completed_tell_with_a_cost_outside_the_modelled_range_is_422(
    client, asked, cost
) -> None:
    study_id, trial_id = asked
    before = _snapshot(client, study_id)
    response = client.post(f"/trials/{trial_id}/tell", json={"loss": 1.0, "cost": cost})
    assert response.status_code == 422, response.text
    assert _snapshot(client, study_id) == before


def test_a_failed_tell_may_cost_nothing_and_a_completed_one_the_least_modelled_cost(
    client, asked
) -> None:
    """Controls for the range: a failure that spent nothing, a success at 1e-30."""
    study_id, trial_id = asked
    failed = client.post(f"/trials/{trial_id}/tell", json={"failed": True, "cost": 0})
    assert failed.status_code == 200 and failed.json()["state"] == "FAILED", failed.text
    (item,) = client.post(f"/studies/{study_id}/ask", json={"count": 1}).json()["data"]
    told = client.post(f"/trials/{item['trial_id']}/tell", json={"loss": 1.0, "cost": 1e-30})
    assert told.status_code == 200 and told.json()["state"] == "COMPLETE", told.text


BIG = 2**63


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("get", f"/studies?offset={BIG}", 422),
        ("get", f"/studies?offset={BIG - 1}", 200),  # the largest offset: an empty page
        ("get", f"/studies?limit={BIG}", 422),
        ("get", "/studies?offset=-1", 422),
        ("get", f"/studies/{{s}}/trials?offset={BIG}", 422),
        ("get", f"/studies/{{s}}/trials?offset={BIG - 1}", 200),
        ("get", f"/studies/{{s}}/trials?limit={BIG}", 422),
        ("get", "/studies/{s}/trials?limit=-1", 422),
        ("get", f"/studies/{BIG}", 422),
        ("get", f"/studies/{BIG - 1}", 422),
        ("get", f"/studies/{2**31}", 422),  # past PostgreSQL's INTEGER ids
        ("get", f"/studies/{2**31 - 1}", 404),
        ("get", f"/trials/{BIG - 1}", 422),
        ("get", f"/trials/{2**31 - 1}", 404),
        ("get", f"/studies/{2**31 - 1}/front", 404),
        ("post", f"/trials/{BIG - 1}/tell", 422),
        ("post", f"/trials/{2**31 - 1}/heartbeat", 404),
        ("post", f"/studies/{2**31 - 1}/ask", 404),
        ("post", f"/studies/{BIG - 1}/stop", 422),
        ("get", f"/admin/tokens?tenant_id={BIG}", 422),
        ("post", f"/admin/tenants/{BIG - 1}/tokens", 422),
        ("post", f"/admin/tenants/{2**31 - 1}/tokens", 404),
        ("post", f"/admin/tokens/{BIG - 1}/revoke", 422),
    ],
)
def test_huge_offsets_and_ids_are_422_or_404_never_500(client, asked, method, path, status) -> None:
    study_id, _ = asked
    admin = path.startswith("/admin")
    kwargs = {"headers": ADMIN} if admin else {}
    if method == "post" and path.endswith(("/tell", "/ask", "/tokens")):
        kwargs["json"] = {"loss": 1.0, "cost": 1.0} if path.endswith("/tell") else {}
    response = getattr(client, method)(path.format(s=study_id), **kwargs)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["data"] == []


def test_an_axis_that_names_nothing_is_422_when_the_study_is_created(client) -> None:
    study = {**STUDY, "executor": "workers", "scaling": {"n_params": "n_param"}}
    response = client.post("/studies", json=study)
    assert response.status_code == 422, response.text
    assert "scaling axes ['n_param'] name no parameter" in response.json()["detail"]
    assert client.get("/studies").json()["count"] == 0
    # the control: a parameter, a metric the objective reports, and the cost
    axes = {"n_params": "n_params", "tokens": "tokens", "compute": "flops"}
    assert client.post("/studies", json={**study, "scaling": axes}).status_code == 201
    cost_axis = {**study, "name": "by-cost", "scaling": {"compute": "cost"}}
    assert client.post("/studies", json=cost_axis).status_code == 201


def test_a_create_that_fails_after_its_row_was_written_stores_nothing(client, monkeypatch) -> None:
    """One transaction per request: the answer is built before the commit, so a failure
    there (a 500) leaves no study behind."""

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the answer could not be built")

    monkeypatch.setattr("service.api.routes.studies.views.progress", broken)
    response = client.post("/studies", json=STUDY)
    monkeypatch.undo()
    assert response.status_code == 500
    assert client.get("/studies").json()["count"] == 0


def _poison(client: TestClient, study_id: int, spec: dict) -> None:
    """Write ``spec`` straight into the study's row, as a rule added later would find it."""
    with transaction(client.app.state.sessions) as session:
        session.execute(update(StudyRow).where(StudyRow.id == study_id).values(spec=spec))


POISONS = [
    pytest.param({**STUDY, "search": {"cost_overshoot": None}}, "search", id="null-setting"),
    pytest.param({**STUDY, "in_flight": 10_000}, "in_flight", id="past-a-new-limit"),
    pytest.param({"name": "not a spec"}, "budget", id="half-a-spec"),
]


@pytest.mark.parametrize("spec, field", POISONS)
def test_a_study_whose_stored_spec_no_longer_loads_breaks_no_read(client, spec, field) -> None:
    """It is listed with its error, its detail answers (the spec as stored, the error)
    and never a 500; the other studies read as before; asking of it is a 409 saying why."""
    good = client.post("/studies", json={**STUDY, "name": "good"}).json()["id"]
    bad = client.post("/studies", json={**STUDY, "name": "poisoned"}).json()["id"]
    _poison(client, bad, spec)
    listed = client.get("/studies")
    assert listed.status_code == 200, listed.text
    errors = {s["id"]: s["error"] for s in listed.json()["data"]}
    assert errors[good] is None and field in errors[bad], errors
    assert "the stored spec no longer loads" in errors[bad]
    detail = client.get(f"/studies/{bad}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["spec"] == spec and field in detail.json()["error"]
    assert client.get(f"/studies/{good}").json()["error"] is None
    asked = client.post(f"/studies/{bad}/ask", json={"count": 1})
    assert asked.status_code == 409 and "no longer loads" in asked.text, asked.text
    assert client.get(f"/studies/{bad}/trials").status_code == 200
