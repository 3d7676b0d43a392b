"""The front a user sees, through the API on SQLite and PostgreSQL: repeats merged, the
engine's stored estimate served when current (and the per-process cache following it),
the observed means otherwise, the raw trials still listed."""

from __future__ import annotations

import time
import warnings

import pytest

from search.types import Observation
from service.api.app import create_app
from service.cli.remote import _status_table
from service.config import Settings
from service.orchestration.engines import load_spec, open_engine
from service.orchestration.front_estimate import store_front
from service.reads.views import FrontEntry, current_estimate, estimate_json
from service.storage import repository as repo
from service.storage.db import transaction
from service.storage.tables import StudyRow
from tests.auth import ADMIN_TOKEN, authorize

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

CHEAP = {"lr": 1e-3, "width": 64.0}
LUCKY = {"lr": 3e-3, "width": 256.0}
STEADY = {"lr": 1e-3, "width": 256.0}
LARGE = {"lr": 1e-3, "width": 1024.0}
# (params, loss, cost) in import order, so trial ids follow it. LUCKY drew 1.0 once and
# 3.0 when run again: alone, the lucky draw would beat STEADY; merged (2.0), it does not.
RUNS = [
    (CHEAP, 2.5, 5.0),
    (LUCKY, 1.0, 10.0),
    (STEADY, 1.5, 10.0),
    (LUCKY, 3.0, 10.0),
    (LARGE, 1.2, 40.0),
]


def _client(database_url: str, redis_url: str, proposals: str):  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        proposals=proposals,
        admin_token=ADMIN_TOKEN,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def api(database_url, redis_url):  # type: ignore[no-untyped-def]
    """An API whose studies no scheduler touches (proposals from a control worker that
    is not running): an imported study keeps no engine, and its front is the observed."""
    with _client(database_url, redis_url, "control") as client:
        authorize(client)
        yield client
    client.app.state.sessions.kw["bind"].dispose()


@pytest.fixture
def inline_api(database_url, redis_url):  # type: ignore[no-untyped-def]
    """An API that runs the scheduler inline: an imported study is told to its engine."""
    with _client(database_url, redis_url, "inline") as client:
        authorize(client)
        yield client
    client.app.state.sessions.kw["bind"].dispose()


def _import(client: TestClient) -> dict:
    runs = [{"params": p, "loss": loss, "cost": cost} for p, loss, cost in RUNS]
    response = client.post("/studies/import", json={"name": "repeats", "runs": runs})
    assert response.status_code == 201, response.text
    return response.json()


def _points(body: list[dict]) -> list[tuple]:
    return [(p["trial_ids"], p["n_measurements"], p["mean_cost"], p["observed_loss"]) for p in body]


class BelievingEngine:
    """An engine whose front is given: what the loss model believes of each point."""

    def __init__(self, front: list[tuple[dict, float, float]]) -> None:
        self._front = front

    def front(self) -> list[Observation]:
        return [Observation(params=p, loss=loss, cost=cost) for p, loss, cost in self._front]


def test_a_lucky_draw_is_merged_with_its_repeat_and_leaves_the_observed_front(api) -> None:
    study = _import(api)
    ids = [t["id"] for t in api.get(f"/studies/{study['id']}/trials").json()["data"]]
    cheap, lucky, steady, lucky_again, large = sorted(ids)
    front = api.get(f"/studies/{study['id']}/front").json()
    assert front["source"] == "observed"
    assert _points(front["data"]) == [
        ([cheap], 1, 5.0, 2.5),
        ([steady], 1, 10.0, 1.5),
        ([large], 1, 40.0, 1.2),
    ]
    assert [p["estimated_loss"] for p in front["data"]] == [2.5, 1.5, 1.2]
    # Existing fields stay: each point is the row of the trial standing for it.
    assert [(p["id"], p["loss"], p["cost_seconds"]) for p in front["data"]] == [
        (cheap, 2.5, 5.0),
        (steady, 1.5, 10.0),
        (large, 1.2, 40.0),
    ]
    detail = api.get(f"/studies/{study['id']}").json()
    assert detail["front_source"] == "observed" and detail["front"] == front["data"]
    assert detail["trials_by_state"]["COMPLETE"] == 5  # the raw trials stay listed
    assert lucky_again in ids and lucky in ids
    rows = dict(_status_table(detail)["rows"])  # what `scaletune status` prints
    assert rows["front"] == (
        "3 points (observed losses); best: loss 1.2 (measured 1.2 over 1 run) at cost 40"
    )


def test_the_served_front_is_the_stored_estimate_once_the_engine_stores_it(api) -> None:
    study_id = _import(api)["id"]
    url = f"/studies/{study_id}"
    cheap, lucky, _, lucky_again, _ = sorted(
        t["id"] for t in api.get(f"{url}/trials").json()["data"]
    )
    assert api.get(f"{url}/front").json()["source"] == "observed"  # cached now
    api.get(url).raise_for_status()
    # The model believes LUCKY's configuration is good after all (1.1), better than the
    # dearer LARGE; STEADY it believes worse (1.6): the front changes with no new trial.
    believed = BelievingEngine([(CHEAP, 2.4, 5.0), (LUCKY, 1.1, 10.0)])
    with transaction(api.app.state.sessions) as session:
        store_front(session, repo.get_study(session, study_id=study_id), believed)
    front = api.get(f"{url}/front").json()
    assert front["source"] == "model"
    assert _points(front["data"]) == [([cheap], 1, 5.0, 2.5), ([lucky, lucky_again], 2, 10.0, 2.0)]
    assert [p["estimated_loss"] for p in front["data"]] == [2.4, 1.1]
    detail = api.get(url).json()
    assert detail["front_source"] == "model" and detail["front"] == front["data"]
    assert detail["best_per_cost_band"][-1]["best_loss"] == 1.1
    rows = dict(_status_table(detail)["rows"])
    assert rows["front"] == (
        "2 points (model losses); best: loss 1.1 (measured 2 over 2 runs) at cost 10"
    )


def test_the_engine_stores_its_front_and_the_api_serves_it(inline_api) -> None:
    """The inline scheduler tells the imported runs to the engine and saves it: the front
    served is the engine's own, repeats merged (SQLite and PostgreSQL: the JSON column)."""
    study = _import(inline_api)
    front = inline_api.get(f"/studies/{study['id']}/front").json()
    assert front["source"] == "model"
    sessions = inline_api.app.state.sessions
    with transaction(sessions) as session:
        row = repo.get_study(session, study_id=study["id"])
        engine_front = open_engine(session, row, load_spec(row), clock=time.time).engine.front()
    assert [p["estimated_loss"] for p in front["data"]] == pytest.approx(
        [o.loss for o in engine_front]
    )
    assert [p["observed_loss"] for p in front["data"]] == pytest.approx(
        [o.metrics["observed_loss"] for o in engine_front]
    )
    ids = sorted(t["id"] for t in inline_api.get(f"/studies/{study['id']}/trials").json()["data"])
    lucky_trials = {ids[1], ids[3]}
    for point in front["data"]:
        assert point["n_measurements"] == len(point["trial_ids"])
        assert not lucky_trials & set(point["trial_ids"]) or point["n_measurements"] == 2


def test_a_stored_estimate_is_current_only_for_the_trials_it_was_computed_from() -> None:
    point = {"trial_ids": [3, 4], "cost": 10.0, "estimated_loss": 1.1, "observed_loss": 2.0}
    stored = estimate_json([FrontEntry.from_json(point)], n_complete=5)
    study = StudyRow(front_estimate=stored)
    (entry,) = current_estimate(study, n_complete=5)
    assert (entry.trial_id, entry.n_measurements, entry.estimated_loss) == (3, 2, 1.1)
    assert current_estimate(study, n_complete=6) is None
    other_format = StudyRow(front_estimate={**stored, "version": 0})
    assert current_estimate(other_format, n_complete=5) is None
    assert current_estimate(StudyRow(front_estimate=None), n_complete=5) is None
