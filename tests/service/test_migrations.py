"""Migrations on stores written before them, on SQLite and PostgreSQL: 0003 moves
studies to the tenant ``default`` and loses nothing of theirs; 0006 numbers finished
trials in the order the engine was told them."""

from __future__ import annotations

import json

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.storage.db import alembic_config, make_engine

pytestmark = pytest.mark.integration

STUDY_0002 = (
    "INSERT INTO studies (id, name, objective, state, spec, created_at, updated_at, "
    "engine_state, engine_version, next_number) VALUES "
    "(7, 'old', 'testbed', 'RUNNING', '{\"name\": \"old\"}', 1.0, 2.0, '{}', 3, 2)"
)
TRIAL_0002 = (
    "INSERT INTO trials (study_id, number, suggestion_id, state, params, reason, external, "
    "attempt, created_at, curve, metrics, synced) VALUES "
    "(7, :n, :s, 'COMPLETE', '{}', 'startup', false, 0, 1.0, '[]', '{}', true)"
)


def test_a_0002_study_and_its_trials_move_to_the_default_tenant(database_url) -> None:
    engine = make_engine(database_url)
    config = alembic_config(engine)
    try:
        command.upgrade(config, "0002")
        with engine.begin() as conn:
            conn.execute(text(STUDY_0002))
            for n in range(2):
                conn.execute(text(TRIAL_0002), {"n": n, "s": f"sg-{n}"})
        command.upgrade(config, "head")
        with engine.begin() as conn:
            owner = conn.execute(
                text("SELECT t.name FROM studies s JOIN tenants t ON t.id = s.tenant_id")
            ).all()
            trials = conn.execute(text("SELECT count(*) FROM trials WHERE study_id = 7")).scalar()
            version = conn.execute(text("SELECT engine_version FROM studies")).scalar()
        assert owner == [("default",)] and trials == 2 and version == 3
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the owner is required
            conn.execute(text(STUDY_0002.replace("(7,", "(8,").replace("'old'", "'new'", 1)))

        command.downgrade(config, "0002")  # and back: the study and its trials stay
        with engine.begin() as conn:
            trials = conn.execute(text("SELECT count(*) FROM trials WHERE study_id = 7")).scalar()
        assert trials == 2
    finally:
        engine.dispose()


STUDY_0004 = (
    "INSERT INTO studies (id, tenant_id, name, objective, state, spec, created_at, "
    "updated_at, engine_state, engine_version, next_number) VALUES (:id, (SELECT id FROM "
    "tenants WHERE name = 'default'), 'old', 'testbed', 'RUNNING', '{}', 1.0, 2.0, :state, "
    "3, 5)"
)
TRIAL_0004 = (
    "INSERT INTO trials (study_id, number, suggestion_id, state, params, reason, external, "
    "attempt, lost_dispatches, created_at, finished_at, failure_kind, curve, metrics, "
    "synced) VALUES (:study, :n, :s, :state, '{}', 'startup', false, 0, 0, 1.0, :f, :kind, "
    "'[]', '{}', :synced)"
)
# A version-1 engine state (its observations inside) told trial 1, then one it observed
# without a suggestion id (trial 2), then trial 0; trials 3 (an infrastructure failure)
# and 4 (recorded after its last save) it was never told.
TOLD_0004 = json.dumps(
    {"version": 1, "observations": [{"suggestion_id": s} for s in ("sg-1", None, "sg-0")]}
)


def _store_0004(conn, study_id: int, state: str, rows: list[tuple]) -> None:
    conn.execute(text(STUDY_0004), {"id": study_id, "state": state})
    for number, status, finished, kind in rows:
        conn.execute(
            text(TRIAL_0004),
            {
                "study": study_id,
                "n": number,
                "s": f"sg-{number}",
                "state": status,
                "f": finished,
                "kind": kind,
                "synced": status in ("COMPLETE", "FAILED", "CANCELLED"),
            },
        )


def test_0006_numbers_finished_trials_in_the_order_they_were_told(database_url) -> None:
    """Finished trials get ``finish_seq`` in the order the engine was told them: its
    stored observations' order, then by (finished_at, number); the study's counter
    continues after them. Downgrading marks every final trial synced."""
    engine = make_engine(database_url)
    config = alembic_config(engine)
    by_time = [  # number, state, finished_at, failure_kind
        (0, "COMPLETE", 5.0, None),
        (1, "FAILED", 3.0, "config"),
        (2, "COMPLETE", 3.0, None),
        (3, "CANCELLED", 4.0, None),
        (4, "RUNNING", None, None),
    ]
    told = [
        (0, "COMPLETE", 1.0, None),
        (1, "COMPLETE", 2.0, None),
        (2, "COMPLETE", 0.5, None),
        (3, "FAILED", 0.1, "infrastructure"),
        (4, "COMPLETE", 9.0, None),
    ]
    try:
        command.upgrade(config, "0004")
        with engine.begin() as conn:
            _store_0004(conn, 7, "{}", by_time)
            _store_0004(conn, 8, TOLD_0004, told)
        command.upgrade(config, "head")
        with engine.begin() as conn:
            order = conn.execute(
                text("SELECT study_id, number, finish_seq FROM trials ORDER BY study_id, number")
            ).all()
            counters = conn.execute(
                text("SELECT id, next_finish_seq FROM studies ORDER BY id")
            ).all()
        assert order == [
            (7, 0, 2), (7, 1, 0), (7, 2, 1), (7, 3, None), (7, 4, None),
            (8, 0, 2), (8, 1, 0), (8, 2, 1), (8, 3, 3), (8, 4, 4),
        ]  # fmt: skip
        assert counters == [(7, 3), (8, 5)]

        command.downgrade(config, "0004")
        with engine.begin() as conn:
            synced = conn.execute(
                text("SELECT number FROM trials WHERE synced AND study_id = 7 ORDER BY number")
            )
            assert [n for (n,) in synced] == [0, 1, 2, 3]
    finally:
        engine.dispose()
