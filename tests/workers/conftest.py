"""Fixtures of the worker tests: real Celery worker processes on the machine's Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported lazily: the GPU machine runs test_gpu.py without Celery
    from tests.workers.celery_harness import Harness

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"


@pytest.fixture
def test_objectives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the plugin objectives (t_sleep, t_oom, ...) in this process."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))


@pytest.fixture(scope="module")
def harness(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One running worker (prefork, one child) on a private queue, shared by a module."""
    from tests.workers.celery_harness import Harness

    h = Harness(redis_url, tmp_path_factory.mktemp("celery-logs"))
    h.start_worker()
    yield h
    h.close()
