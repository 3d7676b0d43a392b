"""Real processes for the benchmarks and the integration tests: a free port, waiting for
an API to answer, stopping a process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, process: subprocess.Popen | None = None, *, timeout_s=120.0) -> None:
    """Until ``GET {base}/ready`` answers 200; TimeoutError, sooner if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if httpx.get(f"{base}/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the API at {base} did not become ready")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group (it was started with ``start_new_session``), then
    SIGKILL if it has not exited within 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
