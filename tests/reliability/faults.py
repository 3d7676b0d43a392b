"""Helpers of the fault tests: an API on the cluster's store, trial rows, the engine's
observations and hand-made result deliveries through the real broker."""

from __future__ import annotations

import warnings
from typing import Any

from sqlalchemy import select

from service.config import Settings
from service.orchestration.engines import taken_in
from service.orchestration.messaging import control_queue, create_sender
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, transaction
from service.storage.tables import StudyRow, TrialRow
from workers.contracts import RECORD_RESULT_TASK

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient  # noqa: F401 (re-exported for the tests)


def cluster_settings(cluster: Any) -> Settings:
    return Settings(
        database_url=cluster.database_url,
        broker_url=cluster.broker_url,
        queue_prefix=cluster.prefix,
        heartbeat_prefix=f"{cluster.prefix}hb",
    )


def trial_rows(database_url: str, study_id: int) -> list[dict[str, Any]]:
    """Every trial of ``study_id`` by number, read straight from the database."""
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            rows = session.scalars(
                select(TrialRow).where(TrialRow.study_id == study_id).order_by(TrialRow.number)
            ).all()
            return [
                {
                    "id": r.id,
                    "number": r.number,
                    "state": r.state,
                    "loss": r.loss,
                    "attempt": r.attempt,
                    "finish_seq": r.finish_seq,
                }
                for r in rows
            ]
    finally:
        engine.dispose()


def engine_observations(database_url: str, study_id: int) -> list[dict[str, Any]]:
    """The observations the study's saved engine has taken in (what it learned from),
    checked against the stored trials as a rebuild checks them."""
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            study = repo.get_study(session, study_id=study_id)
            return [o.to_dict() for o in taken_in(session, study)]
    finally:
        engine.dispose()


def send_results(settings: Settings, payloads: list[dict[str, Any]]) -> None:
    """Deliver results as trial workers do: RECORD_RESULT_TASK on the control queue."""
    sender = create_sender(settings, name="reliability-test")
    try:
        for payload in payloads:
            sender.send_task(RECORD_RESULT_TASK, args=[payload], queue=control_queue(settings))
    finally:
        sender.close()


def study_state(database_url: str, study_id: int) -> str:
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return session.get(StudyRow, study_id).state
    finally:
        engine.dispose()
