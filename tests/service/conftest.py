"""Service fixtures: a migrated store on SQLite (file) or on a fresh PostgreSQL database,
an API client over a finished study with fitted rules, and the API served over HTTP for
the client commands' ``--api``."""

from __future__ import annotations

import gc
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.api.app import create_app
from service.config import Settings
from service.storage.db import make_engine, make_sessionmaker, migrate
from tests.auth import ADMIN_TOKEN, authorize
from tests.reliability.faults import TestClient
from tests.service.factories import finished_study_with_rules


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'scaletune.db'}"


@contextmanager
def throwaway_pg_database(postgres_url: str) -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (its URL), dropped afterwards."""
    name = f"scaletune_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _collect_dropped_connections()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def backend_database(backend: str, directory, postgres_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The URL of a fresh store on ``backend``: a SQLite file in ``directory``, or a
    throwaway PostgreSQL database (the bad-input suites run on both)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'scaletune.db'}"
    else:
        with throwaway_pg_database(postgres_url) as url:
            yield url


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL, dropped afterwards."""
    with throwaway_pg_database(postgres_url) as url:
        yield url


def _collect_dropped_connections() -> None:
    """Collect connection objects of disposed engines now, before the database is dropped.

    NOTE(service): psycopg warns (ResourceWarning) when a connection object is garbage
    collected unclosed; after an engine's dispose() the pool's already-closed fairies can
    still reach __del__ in a later test, where filterwarnings=error turns the warning into
    an unraisable-exception failure of an unrelated test. Collecting here keeps it local.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on both backends."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def sqlite_sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return Settings(
        database_url=sqlite_url,
        proposal_buffer=2,
        heartbeat_grace_seconds=60.0,
        lease_seconds=30.0,
        max_attempts=2,
    )


@pytest.fixture
def client_and_rules_study(sqlite_url: str, redis_url: str, tmp_path):
    """An API client of the default tenant, the id of its finished study with fitted
    rules, and the app's sessions."""
    settings = Settings(
        database_url=sqlite_url, broker_url=redis_url, report_dir=tmp_path / "reports"
    )
    app = create_app(settings)
    study_id, _ = finished_study_with_rules(app.state.sessions)
    with TestClient(app) as client:
        authorize(client, tenant="default")  # the factory's study is the default tenant's
        yield client, study_id, app.state.sessions


@pytest.fixture
def live_api(sqlite_url: str, redis_url: str, tmp_path, monkeypatch) -> Iterator[str]:
    """The real API served by uvicorn on a free port of 127.0.0.1 (in a thread of this
    process, so a test starts it in well under a second), on the store ``sqlite_url`` with
    inline proposals and ``ADMIN_TOKEN``; its base URL, for ``scaletune ... --api URL``.

    The commands build their own clients from ``--api`` and ``--token``; the fixture only
    closes them after the test, as the end of a ``scaletune`` process does (in the test
    process an unclosed socket would be a ResourceWarning, an error here)."""
    import uvicorn

    from service.cli import common
    from service.interop.client import ScaletuneClient

    build, built = common.api_client, []

    def closed_after_the_test(api: str, token: str | None) -> ScaletuneClient:
        built.append(build(api, token))
        return built[-1]

    monkeypatch.setattr(common, "api_client", closed_after_the_test)

    settings = Settings(
        database_url=sqlite_url,
        broker_url=redis_url,
        proposals="inline",
        admin_token=ADMIN_TOKEN,
        report_dir=tmp_path / "reports",
    )
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the API under uvicorn did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        for client in built:
            client.close()
        server.should_exit = True
        thread.join(timeout=30.0)
        sock.close()
        app.state.sessions.kw["bind"].dispose()
