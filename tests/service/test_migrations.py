"""Migration 0003 on a store written before tenants existed, on SQLite and PostgreSQL:
its studies move to the tenant ``default`` and nothing of theirs is lost."""

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
