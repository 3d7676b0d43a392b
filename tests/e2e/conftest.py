"""End-to-end fixtures: real Celery worker processes on the machine's Redis (db 15)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from bench.processes import stop_process_group
from tests.service.conftest import pg_database_url, sqlite_url  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    """A control worker and a trial worker on their own queues and heartbeat keys."""

    env: dict[str, str]
    prefix: str
    database_url: str
    broker_url: str


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "celery", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def cluster(redis_url: str, pg_database_url: str, tmp_path: Path) -> Iterator[Cluster]:  # noqa: F811
    prefix = f"e2e{uuid.uuid4().hex[:8]}-"
    env = {
        **os.environ,
        "SCALETUNE_BROKER_URL": redis_url,
        "SCALETUNE_DATABASE_URL": pg_database_url,
        "SCALETUNE_QUEUE_PREFIX": prefix,
        "SCALETUNE_HEARTBEAT_PREFIX": f"{prefix}hb",
        "SCALETUNE_KEY_PREFIX": f"{prefix}hb",
        "SCALETUNE_TICK_SECONDS": "1",
        "SCALETUNE_HEARTBEAT_INTERVAL_S": "1",
        "SCALETUNE_HEARTBEAT_TTL_S": "5",
    }
    from service.storage.db import make_engine, migrate

    engine = make_engine(pg_database_url)
    migrate(engine)
    engine.dispose()
    processes = [
        _start(
            [
                "-A",
                "service.orchestration.control",
                "worker",
                "-Q",
                f"{prefix}control",
                "-P",
                "solo",
                "-B",
                "-s",
                str(tmp_path / "beat"),
                "-n",
                f"control-{prefix}@%h",
                "--loglevel",
                "WARNING",
            ],
            env,
            tmp_path / "control.log",
        ),
        _start(
            [
                "-A",
                "workers.celery_app",
                "worker",
                "-Q",
                f"{prefix}trials",
                "-c",
                "2",
                "-n",
                f"trials-{prefix}@%h",
                "--loglevel",
                "WARNING",
            ],
            env,
            tmp_path / "trials.log",
        ),
    ]
    try:
        yield Cluster(env=env, prefix=prefix, database_url=pg_database_url, broker_url=redis_url)
    finally:
        for process in processes:
            stop_process_group(process)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}*")) + list(client.scan_iter(f"*{prefix}*"))
        if keys:
            client.delete(*set(keys))
        client.close()
        for log in ("control.log", "trials.log"):  # shown by pytest when the test fails
            print(f"--- {log} ---\n{(tmp_path / log).read_text()[-4000:]}")


def wait_for(predicate, *, timeout_s: float, what, poll_s: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what() if callable(what) else what}"
    )
