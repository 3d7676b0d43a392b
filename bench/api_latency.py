"""API read latency at a fixed request rate, against real uvicorn worker processes.

A study with ``--trials`` finished trials (and the engine state a real study of that size
stores) is written to a fresh PostgreSQL database; ``uvicorn --workers N`` serves
``service.main:create_app``; requests cycle through the read routes (study detail,
trials page, front, queues, one trial).

Two measurements:
- in-process service time per route: each route called ``--calls`` times in a row
  through ``TestClient`` (no network, no concurrency): what a request costs the server;
- open loop at ``--rate`` requests per second for ``--seconds``: every request has a
  send time fixed in advance (``start + i / rate``) and a pool of client threads larger
  than the expected concurrency; latency is counted from the scheduled send time, so a
  server (or client) that falls behind is charged for the queueing it causes instead of
  silently slowing the arrivals (coordinated omission). The achieved rate and the
  client's own lateness (actual minus scheduled send) are printed with the numbers, so a
  starved load generator is visible.

Run: python bench/api_latency.py [--rate 100] [--seconds 20] [--trials 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from search.engine import ParetoSearch
from search.types import Suggestion
from service.config import Settings
from service.domain import Budget, StudySpec
from service.scheduler import load_spec, resolve_space, search_settings
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.studies import create_study_row

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get(
    "SCALETUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("SCALETUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PORT = 8765


def _populate(db_url: str, n_trials: int) -> tuple[int, int]:
    """A finished study of ``n_trials`` trials with 50-point curves and its saved engine."""
    engine = make_engine(db_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    rng = np.random.default_rng(0)
    spec = StudySpec(
        name="bench",
        objective="testbed",
        budget=Budget(max_trials=n_trials),
        search={"n_startup": n_trials + 1},
    )
    with transaction(sessions) as session:
        study = create_study_row(session, spec=spec, now=0.0)
        search = ParetoSearch(resolve_space(load_spec(study)), search_settings(spec))
        for i, suggestion in enumerate(search.ask(n_trials)):
            trial = repo.add_trial(
                session,
                study=study,
                now=0.0,
                suggestion=Suggestion(
                    suggestion_id=f"s{i}", params=suggestion.params, reason="startup"
                ),
            )
            loss, cost = float(rng.uniform(2, 5)), float(rng.uniform(1, 100))
            search.tell(suggestion.suggestion_id, loss, cost)
            repo.start_trial(session, trial=trial, now=0.0, lease_seconds=60.0)
            repo.finish_trial(
                session,
                trial=trial,
                now=1.0,
                failed=False,
                loss=loss,
                cost_seconds=cost,
                result_key="0",
                curve=[{"step": s, "loss": 5.0 - s / 100} for s in range(50)],
            )
        state = json.dumps(search.state_dict())
        repo.save_engine_state(session, study=study, engine_state=state, now=1.0)
        ids = (study.id, trial.id)
    engine.dispose()
    return ids


def _paths(study_id: int, trial_id: int) -> dict[str, str]:
    """Route label -> the path requested."""
    return {
        "study detail": f"/studies/{study_id}",
        "trials page (50)": f"/studies/{study_id}/trials?limit=50",
        "front": f"/studies/{study_id}/front",
        "queues": "/queues",
        "one trial": f"/trials/{trial_id}",
    }


def _service_times(db_url: str, paths: list[str], *, calls: int) -> dict[str, np.ndarray]:
    """Milliseconds per call of each route, in-process and one at a time."""
    from fastapi.testclient import TestClient

    from service.main import create_app

    settings = Settings(database_url=db_url, broker_url=REDIS, heartbeat_prefix="benchhb")
    out = {}
    with TestClient(create_app(settings, run_migrations=False)) as client:
        for path in paths:
            client.get(path).raise_for_status()  # warm-up
            ms = np.zeros(calls)
            for i in range(calls):
                t0 = time.perf_counter()
                client.get(path).raise_for_status()
                ms[i] = (time.perf_counter() - t0) * 1000
            out[path] = ms
    return out


def _open_loop(
    base: str, paths: list[str], *, rate: float, seconds: float, threads: int = 32
) -> tuple[np.ndarray, np.ndarray, float]:
    """Latency from the scheduled send (ms), client lateness (ms), achieved rate (req/s)."""
    n = int(rate * seconds)
    start = time.perf_counter() + 0.5
    latency_ms, late_ms = np.zeros(n), np.zeros(n)
    lock = threading.Lock()
    next_index = [0]

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=30.0) as client:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= n:
                    return
                scheduled = start + i / rate
                time.sleep(max(0.0, scheduled - time.perf_counter()))
                late_ms[i] = (time.perf_counter() - scheduled) * 1000
                client.get(paths[i % len(paths)]).raise_for_status()
                latency_ms[i] = (time.perf_counter() - scheduled) * 1000

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latency_ms, late_ms, n / (time.perf_counter() - start)


def _serve(db_url: str, name: str, workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "SCALETUNE_DATABASE_URL": db_url,
        "SCALETUNE_BROKER_URL": REDIS,
        "SCALETUNE_HEARTBEAT_PREFIX": f"{name}hb",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app"]
    command += ["--port", str(PORT), "--workers", str(workers), "--log-level", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def _wait_ready(base: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{base}/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("uvicorn did not become ready")


def _print_routes(title: str, paths: dict[str, str], ms_of: dict[str, np.ndarray]) -> None:
    print(title)
    for label, path in paths.items():
        ms = ms_of[path]
        print(
            f"  {label:18s} n={ms.size:5d} p50={np.percentile(ms, 50):7.1f}ms "
            f"p99={np.percentile(ms, 99):7.1f}ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--calls", type=int, default=100, help="in-process calls per route")
    args = parser.parse_args()
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    base = f"http://127.0.0.1:{PORT}"
    server = None
    try:
        paths = _paths(*_populate(db_url, args.trials))
        in_process = _service_times(db_url, list(paths.values()), calls=args.calls)
        _print_routes("in-process service time", paths, in_process)
        server = _serve(db_url, name, args.workers)
        _wait_ready(base)
        urls = list(paths.values())
        _open_loop(base, urls, rate=args.rate, seconds=3.0)  # warm-up, every worker
        latency, late, achieved = _open_loop(base, urls, rate=args.rate, seconds=args.seconds)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    by_path = {url: latency[i :: len(urls)] for i, url in enumerate(urls)}
    _print_routes(f"open loop, uvicorn --workers {args.workers}", paths, by_path)
    print(
        f"all: rate={args.rate:.0f}/s achieved={achieved:.1f}/s n={latency.size} "
        f"trials={args.trials} p50={np.percentile(latency, 50):.1f}ms "
        f"p99={np.percentile(latency, 99):.1f}ms max={latency.max():.1f}ms "
        f"client lateness p99={np.percentile(late, 99):.1f}ms "
        f"load={os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
