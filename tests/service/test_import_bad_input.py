"""Bad input on the past-runs import, on SQLite and PostgreSQL: ``POST /studies/import``
answers 422 naming the field, ``scaletune import`` exits 2 naming the row and column
(into its embedded store and, with ``--api``, into a service on either backend), never
a 500 or a traceback, and no study or trial is stored.

PostgreSQL refuses what SQLite takes (NUL characters, non-finite numbers in JSON), and an
integer past a float's range broke inference and the engine on both; each is refused by
the models and the runs-file reader, so both backends answer alike. Complements
tests/service/test_import.py (layouts, inference, other refusals) and
tests/reliability/test_bad_input.py (the other endpoints)."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from service.api.app import create_app
from service.cli import app
from service.config import Settings
from service.interop.client import ScaletuneClient
from service.storage.db import transaction
from service.storage.tables import StudyRow, TrialRow
from tests.auth import ADMIN_TOKEN, authorize
from tests.reliability.faults import TestClient
from tests.service.conftest import backend_database

pytestmark = pytest.mark.integration

runner = CliRunner()
JSON = {"content-type": "application/json"}
LRS = [10 ** (-4 + i / 3) for i in range(8)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_client(request, tmp_path_factory, redis_url, postgres_url):  # type: ignore[no-untyped-def]
    """A client of an app on the backend, with inline proposals (module-wide)."""
    directory = tmp_path_factory.mktemp("import-bad-input")
    with backend_database(request.param, directory, postgres_url) as url:
        settings = Settings(
            database_url=url, broker_url=redis_url, proposals="inline", admin_token=ADMIN_TOKEN
        )
        app_ = create_app(settings)
        with TestClient(app_, raise_server_exceptions=False) as client:
            yield client
        app_.state.sessions.kw["bind"].dispose()  # before its database is dropped


@pytest.fixture
def client(backend_client: TestClient) -> TestClient:
    """The backend's client, sending the token of a tenant of this test's own."""
    authorize(backend_client, tenant=f"t-{uuid.uuid4().hex[:12]}")
    return backend_client


def _stored(client: TestClient) -> tuple[int, int]:
    """Studies and trials in the whole store, every tenant's."""
    with transaction(client.app.state.sessions) as session:
        studies = session.scalar(select(func.count()).select_from(StudyRow))
        trials = session.scalar(select(func.count()).select_from(TrialRow))
    return studies, trials


# -- POST /studies/import ------------------------------------------------------------------


def _body() -> dict[str, Any]:
    runs = [
        {"params": {"lr": lr, "opt": "adam" if i % 2 else "sgd"}, "loss": 3 - i / 10, "cost": i + 1}
        for i, lr in enumerate(LRS)
    ]
    return {"name": "past", "runs": runs}


def _first_run(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["runs"][0].update(fields)


def _first_params(params: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["runs"][0]["params"].update(params)


def _every_run(name: str, values: Callable[[int], Any]) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        for i, run in enumerate(body["runs"]):
            run["params"][name] = values(i)

    return change


def _raw(change: Callable[[dict[str, Any]], None]) -> str:
    """The body as JSON text: json.dumps writes NaN, Infinity and \\u0000 as given."""
    body = _body()
    change(body)
    return json.dumps(body)


CHOICE_LR = {"kind": "choice", "name": "lr", "choices": [*LRS[1:], "auto"], "center": "auto"}
OPT = {"kind": "choice", "name": "opt", "choices": ["sgd", "adam"]}

API_CASES = [
    pytest.param(
        _first_params({"l\x00r": 1.0}),
        "runs[0].params: a key holds a NUL character",
        id="nul-in-a-parameter-name",
    ),
    pytest.param(
        _first_params({"opt": "s\x00gd"}),
        "runs[0].params.opt: a string holds a NUL character",
        id="nul-in-a-choice-value",
    ),
    pytest.param(
        _first_run(failed=True, reason="oom\x00"),
        "runs[0].reason: a string holds a NUL character",
        id="nul-in-a-reason",
    ),
    pytest.param(
        _first_run(metrics={"n\x00": 1.0}),
        "runs[0].metrics: a key holds a NUL character",
        id="nul-in-a-metric-name",
    ),
    pytest.param(
        _first_run(metrics={"n": math.inf}),
        "runs[0].metrics.n: inf is not a finite number",
        id="infinite-metric",
    ),
    pytest.param(
        _first_run(metrics={"n": -math.inf}),
        "runs[0].metrics.n: -inf is not a finite number",
        id="negative-infinite-metric",
    ),
    pytest.param(
        _first_run(metrics={"n": math.nan}),
        "runs[0].metrics.n: nan is not a finite number",
        id="nan-metric",
    ),
    pytest.param(
        _first_params({"lr": 2**63}),
        "lr: the integer 9223372036854775808 does not fit in 64 bits",
        id="integer-2^63",
    ),
    pytest.param(
        _every_run("width", lambda i: 2**64 + i),
        "width: the integer 18446744073709551616 does not fit in 64 bits",
        id="integers-past-2^64-in-every-run",
    ),
    pytest.param(  # was a 500: int too large to convert to float, in inference
        _first_params({"lr": 10**400}),
        "lr: the integer 100000000000... (401 digits) does not fit in 64 bits",
        id="integer-past-a-floats-range",
    ),
    pytest.param(  # was a 500 after the study was stored: the engine's front broke on it
        _first_params({"opt": 10**400}),
        "opt: the integer 100000000000... (401 digits) does not fit in 64 bits",
        id="integer-past-a-floats-range-among-choices",
    ),
    pytest.param(
        _first_run(cost=1e31),
        '"runs",0,"cost"],"msg":"Input should be less than 1000000000000000000000000000000"',
        id="cost-past-1e30",
    ),
    pytest.param(
        _first_run(cost=1e300),
        '"runs",0,"cost"],"msg":"Input should be less than 1000000000000000000000000000000"',
        id="cost-1e300",
    ),
    pytest.param(
        _first_run(cost=math.inf),
        "runs[0].cost: inf is not a finite number",
        id="infinite-cost",
    ),
    pytest.param(
        _first_run(flops=1e300),
        '"runs",0,"flops"],"msg":"Input should be less than 1000000000000000000000000000000"',
        id="flops-1e300",
    ),
    pytest.param(
        _first_run(cost=10**400),
        '"runs",0,"cost"],"msg":"Input should be a valid number"',
        id="integer-cost-past-a-floats-range",
    ),
    pytest.param(
        lambda body: body.update(name="n" * 201),
        '"name"],"msg":"String should have at most 200 characters"',
        id="name-of-201-characters",
    ),
    pytest.param(
        lambda body: body.update(name="n" * 50_000),
        '"name"],"msg":"String should have at most 200 characters"',
        id="name-of-50000-characters",
    ),
    pytest.param(
        _first_params({"lr": "auto"}),
        "parameter 'lr' mixes types across runs: a string in some ('auto'), a number in others",
        id="number-and-string",
    ),
    pytest.param(
        _every_run("x", lambda i: bool(i % 2) or i),
        "parameter 'x' mixes types across runs: a number in some (0), a true/false in others",
        id="number-and-true-false",
    ),
    pytest.param(
        _every_run("x", lambda i: "on" if i % 2 else False),
        "parameter 'x' mixes types across runs: a true/false in some (False), a string in",
        id="string-and-true-false",
    ),
]


@pytest.mark.parametrize("change, fragment", API_CASES)
def test_the_api_refuses_what_a_backend_cannot_hold_and_stores_nothing(
    client, change, fragment
) -> None:
    before = _stored(client)
    response = client.post("/studies/import", content=_raw(change), headers=JSON)
    assert response.status_code == 422, response.text[:2000]
    assert fragment in response.text, response.text[:2000]
    assert _stored(client) == before
    assert client.get("/studies").json()["count"] == 0


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_first_params({"lr": 2**63 - 1}), id="integer-at-the-64-bit-limit"),
        pytest.param(
            lambda body: (
                body["runs"][0]["params"].update(lr="auto"),
                body.update(space={"params": [CHOICE_LR, OPT]}),
            ),
            id="mixed-types-in-a-given-choice",
        ),
        pytest.param(_first_run(metrics={"n": 1e308}, cost=9.9e29), id="finite-extremes"),
    ],
)
def test_the_api_stores_the_values_at_the_limits_on_either_backend(client, change) -> None:
    """The controls: what is refused above is refused for what it is, not its neighbours."""
    before = _stored(client)
    response = client.post("/studies/import", content=_raw(change), headers=JSON)
    assert response.status_code == 201, response.text[:2000]
    assert response.json()["state"] == "COMPLETE"
    assert _stored(client) == (before[0] + 1, before[1] + 8)


# -- scaletune import ----------------------------------------------------------------------


def _rows(change: Callable[[int, dict[str, Any]], None]) -> list[dict[str, Any]]:
    rows = []
    for i, lr in enumerate(LRS):
        row: dict[str, Any] = {
            "params.lr": lr,
            "params.opt": "adam" if i % 2 else "sgd",
            "loss": 3 - i / 10,
            "cost": i + 1,
        }
        change(i, row)
        rows.append(row)
    return rows


def _csv(change: Callable[[int, dict[str, Any]], None] = lambda i, row: None) -> str:
    rows = _rows(change)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(row[h]) for h in header) for row in rows]
    return "\n".join(lines) + "\n"


def _jsonl(change: Callable[[int, dict[str, Any]], None]) -> str:
    def nested(i: int, row: dict[str, Any]) -> None:
        change(i, row)
        params = {k.removeprefix("params."): row.pop(k) for k in list(row) if "params." in k}
        row["params"] = params

    return "".join(json.dumps(row) + "\n" for row in _rows(nested))


def _at(index: int, column: str, value: Any) -> Callable[[int, dict[str, Any]], None]:
    def change(i: int, row: dict[str, Any]) -> None:
        if i == index:
            row[column] = value

    return change


def _column(column: str, values: Callable[[int], Any]) -> Callable[[int, dict[str, Any]], None]:
    return lambda i, row: row.update({column: values(i)})


def _renamed(old: str, new: str) -> Callable[[int, dict[str, Any]], None]:
    return lambda i, row: row.update({new: row.pop(old)})


AXES = ["--n-params", "metrics.n", "--tokens", "tokens"]


def _with_axes(i: int, row: dict[str, Any]) -> None:
    row.update({"metrics.n": 1000 * 2**i, "tokens": 10**6 * (i + 1)})


def _axes_and(change: Callable[[int, dict[str, Any]], None]) -> Callable[[int, dict], None]:
    def both(i: int, row: dict[str, Any]) -> None:
        _with_axes(i, row)
        change(i, row)
        row["metrics"] = {"n": row.pop("metrics.n")} if "metrics.n" in row else row["metrics"]

    return both


def _metric_named(name: str) -> Callable[[int, dict[str, Any]], None]:
    def change(i: int, row: dict[str, Any]) -> None:
        row.pop("metrics.n")
        row["metrics"] = {name: 1000 * 2**i}

    return change


MIXED_MAPPING = json.dumps({"space": [CHOICE_LR]})

# (file name, its text, extra arguments, a mapping file's text or None, the message)
CLI_CASES = [
    pytest.param(
        "runs.csv",
        _csv(_renamed("params.lr", "params.l\x00r")),
        [],
        None,
        "row 1 (line 2): params: a key holds a NUL character (\\u0000)",
        id="nul-in-a-parameter-column",
    ),
    pytest.param(
        "runs.jsonl",
        _jsonl(_renamed("params.lr", "params.l\x00r")),
        [],
        None,
        "row 1 (line 1): params: a key holds a NUL character (\\u0000)",
        id="nul-in-a-parameter-key",
    ),
    pytest.param(
        "runs.csv",
        _csv(_at(1, "params.opt", "ad\x00am")),
        [],
        None,
        "row 2 (line 3): params.opt: a string holds a NUL character (\\u0000)",
        id="nul-in-a-choice-value",
    ),
    pytest.param(  # a run's reason is the import's words, never the file's: its source
        "runs.csv",
        _csv(_column("failed", lambda i: "true\x00" if i == 0 else "false")),
        [],
        None,
        "row 1 (line 2), column 'failed': 'true\\x00' is not true/false",
        id="nul-in-the-failed-flag",
    ),
    pytest.param(
        "runs.jsonl",
        _jsonl(_axes_and(_metric_named("n\x00"))),
        [],
        '{"n_params": "metrics.n\\u0000", "tokens": "tokens"}',
        "row 1 (line 1): metrics: a key holds a NUL character (\\u0000)",
        id="nul-in-a-metric-name",
    ),
    pytest.param(
        "runs.jsonl",
        _jsonl(_axes_and(_at(2, "metrics.n", math.inf))),
        AXES,
        None,
        "row 3 (line 3), column 'metrics.n': inf is not a positive number",
        id="infinite-metric",
    ),
    pytest.param(
        "runs.jsonl",
        _jsonl(_axes_and(_at(2, "metrics.n", math.nan))),
        AXES,
        None,
        "row 3 (line 3), column 'metrics.n': nan is not a positive number",
        id="nan-metric",
    ),
    pytest.param(
        "runs.csv",
        _csv(_column("c", lambda i: "inf" if i == 2 else str(i + 1.0))),
        ["--compute", "c"],
        None,
        "row 3 (line 4), column 'c': inf is not a positive number",
        id="infinite-compute-metric",
    ),
    pytest.param(
        "runs.csv",
        _csv(_at(0, "params.lr", 2**64)),
        [],
        None,
        "row 1 (line 2): params: lr: the integer 18446744073709551616 does not fit in 64 bits",
        id="integer-past-2^64",
    ),
    pytest.param(
        "runs.jsonl",
        _jsonl(_at(1, "params.lr", 10**400)),
        [],
        None,
        "row 2 (line 2): params: lr: the integer 100000000000... (401 digits) does not fit",
        id="integer-past-a-floats-range",
    ),
    pytest.param(
        "runs.csv",
        _csv(_at(1, "cost", "1e300")),
        [],
        None,
        "row 2 (line 3), column 'cost': cost 1e+300 must be > 0 and below 1e30",
        id="cost-1e300",
    ),
    pytest.param(
        "runs.csv",
        _csv(_column("flops", lambda i: "1e300" if i == 1 else str(1e18 * (i + 1)))),
        [],
        None,
        "row 2 (line 3): flops: Input should be less than 1000000000000000000000000000000",
        id="flops-1e300",
    ),
    pytest.param(
        "runs.csv",
        _csv(_at(1, "cost", "inf")),
        [],
        None,
        "row 2 (line 3), column 'cost': cost inf must be > 0 and below 1e30",
        id="infinite-cost",
    ),
    pytest.param(
        "runs.csv",
        _csv(),
        ["--name", "n" * 201],
        None,
        "cannot make a study of these runs: name: String should have at most 200 characters",
        id="name-of-201-characters",
    ),
    pytest.param(
        "runs.csv",
        _csv(_at(0, "params.lr", "auto")),
        [],
        None,
        "parameter 'lr' mixes types across runs: a string in some ('auto'), a number in others",
        id="number-and-string",
    ),
    pytest.param(
        "runs.csv",
        _csv(_column("params.x", lambda i: "true" if i % 2 else i)),
        [],
        None,
        "parameter 'x' mixes types across runs: a number in some (0), a true/false in others",
        id="number-and-true-false",
    ),
    pytest.param(  # the service's refusal (HTTP 422 with --api), after the file was read
        "runs.csv",
        _csv(),
        [],
        '{"space": [{"kind": "log", "name": "lr", "center": 0.001, "max": 0.003}]}',
        "run 6: invalid params: 'lr'",
        id="a-run-outside-the-mappings-space",
    ),
]


def _invoke(tmp_path: Path, name: str, text: str, args: list[str], mapping: str | None, *more):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(text)
    if mapping is not None:
        (tmp_path / "mapping.yaml").write_text(mapping)
        args = [*args, "--mapping", str(tmp_path / "mapping.yaml")]
    return runner.invoke(app, ["import", str(path), *args, *more])


def _refused_cleanly(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    flat = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert f"error: {fragment}" in flat or f"error: HTTP 422: {fragment}" in flat, flat


@pytest.mark.parametrize("name, text, args, mapping, fragment", CLI_CASES)
def test_cli_import_into_the_embedded_store_refuses_and_stores_nothing(
    tmp_path, name, text, args, mapping, fragment
) -> None:
    db = tmp_path / "s.db"
    result = _invoke(tmp_path, name, text, args, mapping, "--db", str(db))
    _refused_cleanly(result, fragment)
    if db.exists():  # the store opens once the file is read: a refusal after that
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("select count(*) from studies").fetchone() == (0,)
            assert conn.execute("select count(*) from trials").fetchone() == (0,)


@pytest.mark.parametrize("name, text, args, mapping, fragment", CLI_CASES)
def test_cli_import_into_a_service_refuses_and_stores_nothing(
    client, monkeypatch, tmp_path, name, text, args, mapping, fragment
) -> None:
    monkeypatch.setattr(
        "service.cli.common.api_client", lambda api, token: ScaletuneClient(http=client)
    )
    before = _stored(client)
    result = _invoke(tmp_path, name, text, args, mapping, "--api", "http://api")
    _refused_cleanly(result, fragment)
    assert _stored(client) == before
    assert client.get("/studies").json()["count"] == 0


def test_cli_import_of_mixed_types_goes_through_with_the_mappings_choice(
    client, monkeypatch, tmp_path
) -> None:
    """The way out the refusal names: the mapping's spec for the parameter, into the
    embedded store and into a service on either backend."""
    text = _csv(_at(0, "params.lr", "auto"))
    db = tmp_path / "s.db"
    local = _invoke(tmp_path, "runs.csv", text, [], MIXED_MAPPING, "--db", str(db))
    assert local.exit_code == 0, local.output
    assert "lr choice" in " ".join(local.output.split())
    monkeypatch.setattr(
        "service.cli.common.api_client", lambda api, token: ScaletuneClient(http=client)
    )
    before = _stored(client)
    remote = _invoke(tmp_path, "runs.csv", text, [], MIXED_MAPPING, "--api", "http://api")
    assert remote.exit_code == 0, remote.output
    assert "(COMPLETE)" in remote.output
    assert _stored(client) == (before[0] + 1, before[1] + 8)
