"""Alembic environment: runs on the engine handed over by ``service.storage.db.migrate``.

On SQLite, foreign keys are not enforced while migrations run: a batch migration
rebuilds a table by copying it and dropping the original, and dropping a parent table
with enforcement on deletes (cascades to) its children's rows. Enforcement comes back
afterwards, and ``PRAGMA foreign_key_check`` must find nothing broken.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from service.storage.tables import Base


def run_migrations_online() -> None:
    config = context.config
    engine = config.attributes.get("engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if url is None:
            raise RuntimeError("nothing to migrate: pass an engine or set sqlalchemy.url")
        engine = create_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _foreign_keys(connection, "OFF")
        try:
            context.configure(
                connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    _check_foreign_keys(connection)
            connection.commit()
        finally:
            if sqlite:
                _foreign_keys(connection, "ON")


def _foreign_keys(connection: Connection, state: str) -> None:
    """On the raw connection: a PRAGMA inside a transaction does nothing."""
    driver = connection.connection.driver_connection
    assert driver is not None, "an open connection has its driver's"
    driver.execute(f"PRAGMA foreign_keys={state}")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")


run_migrations_online()
