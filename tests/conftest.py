"""Shared fixtures: the machine's real Redis and PostgreSQL, with a clear message when absent."""

from __future__ import annotations

import os
import socket

import pytest

REDIS_URL = os.environ.get("SCALETUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "SCALETUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

_HOW_TO_START = {
    "redis": "start it with: redis-server --daemonize yes --port 6379 --save '' "
    "(or: docker compose up -d redis), or point SCALETUNE_TEST_REDIS_URL at one",
    "postgresql": "start it with: pg_ctlcluster --skip-systemctl-redirect "
    "$(ls /etc/postgresql) main start (or: docker compose up -d postgres), or point "
    "SCALETUNE_TEST_POSTGRES_URL at one (trust auth, database 'test')",
}


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail (not skip) with instructions: integration tests are part of the promise."""
    if not _port_open(host, port):
        pytest.fail(f"{name} is not reachable at {host}:{port}; {_HOW_TO_START[name]}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_service("postgresql", "127.0.0.1", 5432)
    return POSTGRES_URL
