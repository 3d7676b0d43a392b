"""Migrations on stores written before them, on SQLite and PostgreSQL: 0003 moves
studies to the tenant ``default`` and loses nothing of theirs; 0005 numbers finished
trials in the order the engine was told them."""

from __future__ import annotations

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
    "updated_at, engine_state, engine_version, next_number) VALUES (7, (SELECT id FROM "
    "tenants WHERE name = 'default'), 'old', 'testbed', 'RUNNING', '{}', 1.0, 2.0, '{}', 3, 5)"
)
TRIAL_0004 = (
    "INSERT INTO trials (study_id, number, suggestion_id, state, params, reason, external, "
    "attempt, lost_dispatches, created_at, finished_at, curve, metrics, synced) VALUES "
    "(7, :n, :s, :state, '{}', 'startup', false, 0, 0, 1.0, :f, '[]', '{}', :synced)"
)


def test_0005_numbers_finished_trials_in_the_order_they_were_told(database_url) -> None:
    """Finished trials get ``finish_seq`` by (finished_at, number), the order the
    scheduler told them to the engine; the study's counter continues after them."""
    engine = make_engine(database_url)
    config = alembic_config(engine)
    rows = [  # number, state, finished_at
        (0, "COMPLETE", 5.0),
        (1, "FAILED", 3.0),
        (2, "COMPLETE", 3.0),
        (3, "CANCELLED", 4.0),
        (4, "RUNNING", None),
    ]
    try:
        command.upgrade(config, "0004")
        with engine.begin() as conn:
            conn.execute(text(STUDY_0004))
            for number, state, finished in rows:
                synced = state in ("COMPLETE", "FAILED", "CANCELLED")
                conn.execute(
                    text(TRIAL_0004),
                    {
                        "n": number,
                        "s": f"sg-{number}",
                        "state": state,
                        "f": finished,
                        "synced": synced,
                    },
                )
        command.upgrade(config, "head")
        with engine.begin() as conn:
            order = conn.execute(
                text("SELECT number, finish_seq FROM trials ORDER BY number")
            ).all()
            counter = conn.execute(text("SELECT next_finish_seq FROM studies")).scalar()
        assert order == [(0, 2), (1, 0), (2, 1), (3, None), (4, None)] and counter == 3

        command.downgrade(config, "0004")  # and back: final trials are synced
        with engine.begin() as conn:
            synced = conn.execute(text("SELECT number FROM trials WHERE synced ORDER BY number"))
            assert [n for (n,) in synced] == [0, 1, 2, 3]
    finally:
        engine.dispose()
