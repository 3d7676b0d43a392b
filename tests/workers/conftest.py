"""Fixtures of the worker tests: real Celery worker processes on the machine's Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.workers.celery_harness import PLUGIN_DIR, Harness


@pytest.fixture
def test_objectives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the plugin objectives (t_sleep, t_oom, ...) in this process."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))


@pytest.fixture(scope="module")
def harness(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One running worker (prefork, one child) on a private queue, shared by a module."""
    h = Harness(redis_url, tmp_path_factory.mktemp("celery-logs"))
    h.start_worker()
    yield h
    h.close()
