"""Real Celery worker processes and a reader of the control queue, for integration tests.

Every harness gets its own queue names, heartbeat key prefix and broker key prefix, so
tests never see each other's messages (nor other suites' workers) in the shared Redis.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kombu import Connection

from workers.celery_app import broker_transport_options, create_celery
from workers.config import WorkerSettings
from workers.contracts import (
    RECORD_RESULT_TASK,
    RUN_TRIAL_TASK,
    TrialRequest,
    trial_send_options,
)
from workers.heartbeat import HeartbeatStore, WorkerBeat

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"  # test objectives, as entry points
_trial_ids = itertools.count(1)


def wait_for(predicate: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Harness:
    """Settings shared by the workers, the sender and the control-queue reader."""

    def __init__(self, redis_url: str, log_dir: Path, **overrides: Any) -> None:
        tag = uuid.uuid4().hex[:8]
        self.trial_queue = f"test-trials-{tag}"
        self.settings = WorkerSettings(
            broker_url=redis_url,
            control_queue=f"test-control-{tag}",
            heartbeat_prefix=f"test-hb-{tag}",
            broker_key_prefix=f"test-{tag}:",
            heartbeat_interval_s=0.2,
            heartbeat_ttl_s=2.0,
            retry_backoff_s=0.1,
            max_retries=2,
            **overrides,
        )
        self.log_dir = log_dir
        self.app = create_celery(self.settings)
        self.heartbeats = HeartbeatStore.from_url(
            redis_url, prefix=self.settings.heartbeat_prefix, ttl_s=self.settings.heartbeat_ttl_s
        )
        self.connection = Connection(
            redis_url, transport_options=broker_transport_options(self.settings)
        )
        # Declare the control queue now, so results sent before the first read are kept.
        self.results = self.connection.SimpleQueue(self.settings.control_queue)
        self.workers: list[WorkerProcess] = []

    def request(self, objective: str, params: dict[str, Any], **fields: Any) -> TrialRequest:
        return TrialRequest(
            study_id=1, trial_id=next(_trial_ids), objective=objective, params=params, **fields
        )

    def send(self, request: TrialRequest) -> None:
        self.app.send_task(
            RUN_TRIAL_TASK,
            args=[request.model_dump(mode="json")],
            **trial_send_options(request, queue=self.trial_queue),
        )

    def next_result(self, *, timeout_s: float) -> dict[str, Any]:
        """The next TrialResult dict sent to the control queue as RECORD_RESULT_TASK."""
        message = self.results.get(block=True, timeout=timeout_s)
        message.ack()
        assert message.headers["task"] == RECORD_RESULT_TASK
        args, _kwargs, _embed = message.payload
        return args[0]

    def no_result(self, *, within_s: float) -> bool:
        try:
            message = self.results.get(block=True, timeout=within_s)
        except self.results.Empty:
            return True
        message.ack()
        return False

    def start_worker(self, **env: str) -> WorkerProcess:
        worker = WorkerProcess(self, name=f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}", env=env)
        self.workers.append(worker)
        return worker.start()

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.results.close()
        self.connection.release()


class WorkerProcess:
    """``celery -A workers.celery_app worker`` with one prefork child, in its own session."""

    def __init__(self, harness: Harness, *, name: str, env: dict[str, str]) -> None:
        self.harness = harness
        self.name = name
        self.env = env
        self.process: subprocess.Popen | None = None

    def _environment(self) -> dict[str, str]:
        s = self.harness.settings
        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), str(REPO_ROOT)]),
                "SCALETUNE_BROKER_URL": s.broker_url,
                "SCALETUNE_CONTROL_QUEUE": s.control_queue,
                "SCALETUNE_HEARTBEAT_PREFIX": s.heartbeat_prefix,
                "SCALETUNE_BROKER_KEY_PREFIX": s.broker_key_prefix,
                "SCALETUNE_HEARTBEAT_INTERVAL_S": str(s.heartbeat_interval_s),
                "SCALETUNE_HEARTBEAT_TTL_S": str(s.heartbeat_ttl_s),
                "SCALETUNE_RETRY_BACKOFF_S": str(s.retry_backoff_s),
                "SCALETUNE_MAX_RETRIES": str(s.max_retries),
                "SCALETUNE_VISIBILITY_TIMEOUT_S": str(s.visibility_timeout_s),
                "SCALETUNE_RESTORE_INTERVAL_S": str(s.restore_interval_s),
                "SCALETUNE_WORKER_NAME": self.name,
                "SCALETUNE_DEVICE": "cpu",
            }
        )
        env.update(self.env)
        return env

    def start(self) -> WorkerProcess:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            "1",
            "-Q",
            self.harness.trial_queue,
            "-n",
            f"{self.name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ]
        with open(self.harness.log_dir / f"{self.name}.log", "wb") as log:  # the child keeps it
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.child(timeout_s=60.0)  # ready once its pool child beats
        return self

    def beat(self) -> WorkerBeat | None:
        return next((b for b in self.harness.heartbeats.workers() if b.worker == self.name), None)

    def child(self, *, timeout_s: float = 30.0, not_pid: int | None = None) -> WorkerBeat:
        """The pool child's latest heartbeat (optionally: of a child other than ``not_pid``)."""

        def alive() -> WorkerBeat | None:
            assert self.process is not None and self.process.poll() is None, "worker exited"
            beat = self.beat()
            return beat if beat is not None and beat.pid != not_pid else None

        return wait_for(alive, timeout_s=timeout_s, what=f"worker {self.name} to beat")

    def running(self, request: TrialRequest, *, timeout_s: float = 30.0) -> WorkerBeat:
        """Wait until this worker reports running ``request``; returns that heartbeat."""

        def check() -> WorkerBeat | None:
            beat = self.beat()
            ok = beat and beat.trial and beat.trial.trial_id == request.trial_id
            return beat if ok else None

        return wait_for(check, timeout_s=timeout_s, what=f"trial {request.trial_id} to start")

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool child."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # warm shutdown of the main process; it stops its child
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
