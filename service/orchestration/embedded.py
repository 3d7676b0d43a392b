"""Embedded mode: a whole study in one process, no broker, no services.

The same scheduler and the same ``workers.runner.run_trial_request`` the Celery task
calls; the queue is replaced by a thread pool whose results are recorded by the main
thread through ``service.orchestration.results``, exactly as the control worker records them.
Threads suit the testbed and other objectives that release the GIL (torch does).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.domain import FINAL_STUDY_STATES, StudyState
from service.orchestration.results import ingest_result
from service.orchestration.scheduler import Scheduler, StepReport
from service.storage.db import transaction
from service.storage.tables import TrialRow
from workers.contracts import TrialRequest, TrialResult
from workers.objectives.base import InfrastructureError
from workers.runner import failed_result, run_trial_request

ProgressCallback = Callable[[StepReport], None]


class InProcessPool:
    """A ``Dispatcher`` running trials on threads; finished results wait in ``results``."""

    def __init__(self, *, workers: int, device: str = "cpu") -> None:
        self.device = device
        self.results: queue.Queue[TrialResult] = queue.Queue()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trial")
        self._beats: dict[int, float] = {}
        self._lock = threading.Lock()

    def send(self, request: TrialRequest, *, queue: str) -> None:
        del queue  # one pool serves every queue in embedded mode
        with self._lock:
            self._beats[request.trial_id] = time.time()
        future = self._executor.submit(self._run, request)
        future.add_done_callback(self._collect)

    def _run(self, request: TrialRequest) -> TrialResult:
        # Each trial names the thread that ran it ("embedded/trial_0"), as a Celery trial
        # names its worker: a user can see how many threads a study used.
        worker = f"embedded/{threading.current_thread().name}"
        try:
            return run_trial_request(request, device=self.device, worker=worker)
        except InfrastructureError as exc:
            return failed_result(
                request, failure_kind="infrastructure", reason=str(exc), worker=worker
            )

    def _collect(self, future: Future[TrialResult]) -> None:
        self.results.put(future.result())

    def heartbeats(self, trials: list[TrialRow]) -> dict[int, float]:
        """Every trial a live thread still holds counts as beating now."""
        now = time.time()
        with self._lock:
            return {t.id: now for t in trials if t.id in self._beats}

    def forget(self, trial_id: int) -> None:
        with self._lock:
            self._beats.pop(trial_id, None)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def run_embedded(
    *,
    study_id: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    workers: int,
    on_step: ProgressCallback | None = None,
    poll_seconds: float = 0.5,
) -> StudyState:
    """Drive ``study_id`` until it is COMPLETE or STOPPED; returns the final state."""
    pool = InProcessPool(workers=workers)
    scheduler = Scheduler(
        sessions=sessions, settings=settings, dispatcher=pool, heartbeats=pool.heartbeats
    )
    try:
        while True:
            report = scheduler.step(study_id)
            if on_step is not None:
                on_step(report)
            if report.state in FINAL_STUDY_STATES or report.state == StudyState.PAUSED:
                return report.state
            _record_results(pool, sessions=sessions, settings=settings, wait=poll_seconds)
    finally:
        pool.shutdown()


def _record_results(
    pool: InProcessPool, *, sessions: sessionmaker[Session], settings: Settings, wait: float
) -> int:
    """Record every finished result (waiting up to ``wait`` s for the first one)."""
    results: list[TrialResult] = []
    try:
        results.append(pool.results.get(timeout=wait))
        while True:
            results.append(pool.results.get_nowait())
    except queue.Empty:
        pass
    if results:
        with transaction(sessions) as session:
            for result in results:
                ingest_result(
                    session, result=result, now=time.time(), max_attempts=settings.max_attempts
                )
        for result in results:
            pool.forget(result.trial_id)
    return len(results)
