"""A trial's timestamps follow its life on the real stack (API, control worker and Celery
trial workers on PostgreSQL): created, then dispatched, then finished, never the reverse,
although the trials are created and dispatched in one step, after an engine ask that takes
a while, and recorded by another process than the one that created them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service.api.app import create_app
from service.storage.db import make_engine, make_sessionmaker, transaction
from service.storage.tables import TrialRow
from tests.auth import authorize
from tests.e2e.conftest import wait_for
from tests.reliability.faults import TestClient, cluster_settings, study_state

pytestmark = pytest.mark.integration

STUDY = {
    "name": "timestamps",
    "objective": "testbed",
    "budget": {"max_trials": 24},
    "in_flight": 4,
    "seed": 5,
    "search": {"n_startup": 8},
}


def _stamps(database_url: str, study_id: int) -> list[tuple[int, float, float, float]]:
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            rows = session.execute(
                select(
                    TrialRow.number,
                    TrialRow.created_at,
                    TrialRow.dispatched_at,
                    TrialRow.finished_at,
                ).where(TrialRow.study_id == study_id, TrialRow.dispatched_at.is_not(None))
            ).all()
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def test_created_dispatched_finished_in_order_for_every_trial(cluster) -> None:
    settings = cluster_settings(cluster)
    with TestClient(create_app(settings)) as client:
        authorize(client)
        study_id = client.post("/studies", json=STUDY | {"queue": "trials"}).json()["id"]
    wait_for(
        lambda: study_state(cluster.database_url, study_id) == "COMPLETE",
        timeout_s=240,
        what="the study to complete",
    )
    stamps = _stamps(cluster.database_url, study_id)
    assert len(stamps) == 24
    disordered = [
        (number, created, dispatched, finished)
        for number, created, dispatched, finished in stamps
        if not created <= dispatched <= finished
    ]
    assert disordered == []
