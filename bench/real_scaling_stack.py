"""The distributed stack of ``bench/real_scaling.py`` as real processes: the API (uvicorn)
on PostgreSQL, the control worker (Celery, with beat), and trial workers on Redis.

Every process gets the same ``SCALETUNE_*`` environment, with a queue and heartbeat
prefix of its own, so the stack shares a Redis database with nothing else it could
confuse. ``Stack`` is a context manager: leaving it stops every process (SIGTERM to its
group, then SIGKILL), on an error or Ctrl-C too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import free_port, stop_process_group, wait_ready


@dataclass
class StackConfig:
    database_url: str
    broker_url: str
    admin_token: str
    log_dir: Path
    prefix: str = "realscale-"
    workers: int = 2
    device: str = "cpu"
    queue: str = "trials"
    port: int | None = None  # None: a free one
    extra_env: dict[str, str] = field(default_factory=dict)


def _celery(app: str, queue: str, name: str) -> list[str]:
    return ["celery", "-A", app, "worker", "-Q", queue, "-n", name, "--loglevel", "INFO"]


class Stack:
    """Start with ``with Stack(config) as stack:``; ``stack.base`` is the API's URL."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.port = config.port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        c = self.config
        return {
            **os.environ,
            "SCALETUNE_DATABASE_URL": c.database_url,
            "SCALETUNE_BROKER_URL": c.broker_url,
            "SCALETUNE_ADMIN_TOKEN": c.admin_token,
            "SCALETUNE_QUEUE_PREFIX": c.prefix,
            "SCALETUNE_HEARTBEAT_PREFIX": f"{c.prefix}hb",
            "SCALETUNE_TICK_SECONDS": "1",
            "SCALETUNE_REPORT_DIR": str(c.log_dir / "service-reports"),
            **c.extra_env,
        }

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.config.log_dir / f"{name}.log").open("a") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def start(self) -> Stack:
        c, env = self.config, self.env()
        uvicorn = ["uvicorn", "--factory", "service.api.app:create_app", "--no-access-log"]
        api = self._start("api", [*uvicorn, "--port", str(self.port)], env)
        wait_ready(self.base, api)  # migrates the database before the workers need it
        beat = str(c.log_dir / "celerybeat-schedule")
        control = _celery(
            "service.orchestration.control", f"{c.prefix}control", f"control-{c.prefix}@%h"
        )
        self._start("control", [*control, "-P", "solo", "-B", "-s", beat], env)
        worker_env = {**env, "SCALETUNE_DEVICE": c.device, "SCALETUNE_TRIAL_QUEUE": c.queue}
        worker_env["SCALETUNE_WARM_UP"] = "true"  # torch's start-up before the first trial
        for i in range(c.workers):
            worker = _celery("workers.celery_app", f"{c.prefix}{c.queue}", f"w{i}-{c.prefix}@%h")
            env_i = {**worker_env, "SCALETUNE_WORKER_NAME": f"w{i}-{c.prefix}"}
            self._start(f"worker{i}", [*worker, "-c", "1"], env_i)
        return self

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):  # workers first, the API last
            stop_process_group(process)
        self.processes.clear()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
