"""Engines, sessions and schema migration.

SQLite (embedded) and PostgreSQL (distributed) behave alike for the scheduler: on
PostgreSQL a study's row is locked with ``SELECT ... FOR UPDATE``; on SQLite every
transaction starts with ``BEGIN IMMEDIATE``, which takes the database's write lock up
front, so two processes never interleave their read-then-write of one study.

Sessions made with ``read_only=True`` (the API's GET requests) start a plain, deferred
``BEGIN`` on SQLite instead: in WAL mode such a transaction reads a snapshot and takes
no write lock, so readers neither wait for a writer nor make one wait. They must not
write (a write would have to upgrade the lock and can fail with "database is locked").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
READ_ONLY = "scaletune_read_only"  # execution option of the engine behind read sessions


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url``; SQLite files get their parent directory created."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    _serialize_sqlite(engine)
    return engine


def _serialize_sqlite(engine: Engine) -> None:
    """Let SQLAlchemy own the transactions and start each one with BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``read_only`` ones never take SQLite's write lock."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates it on an empty database)."""
    command.upgrade(alembic_config(engine), "head")
