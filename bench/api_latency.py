"""API read latency at a fixed request rate (open loop), against a real uvicorn process.

A study with ``--trials`` finished trials is written to a fresh PostgreSQL database;
uvicorn serves ``service.main:create_app``; requests cycle through the read routes
(study detail, trials page, front, queues, one trial) at ``--rate`` per second for
``--seconds``, each on a schedule fixed in advance, so a slow response cannot slow the
arrivals. Latency is measured from the scheduled send time.

Run: python bench/api_latency.py [--rate 100] [--seconds 20] [--trials 300]
"""

from __future__ import annotations

import argparse
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

from search.types import Suggestion
from service.domain import Budget, StudySpec
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
    engine = make_engine(db_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    rng = np.random.default_rng(0)
    spec = StudySpec(name="bench", objective="testbed", budget=Budget(max_trials=n_trials))
    with transaction(sessions) as session:
        study = create_study_row(session, spec=spec, now=0.0)
        for i in range(n_trials):
            params = {
                "lr": float(10 ** rng.uniform(-4, -2)),
                "width": int(2 ** rng.integers(6, 12)),
            }
            trial = repo.add_trial(
                session,
                study=study,
                now=0.0,
                suggestion=Suggestion(suggestion_id=f"s{i}", params=params, reason="startup"),
            )
            repo.start_trial(session, trial=trial, now=0.0, lease_seconds=60.0)
            repo.finish_trial(
                session,
                trial=trial,
                now=1.0,
                failed=False,
                loss=float(rng.uniform(2, 5)),
                cost_seconds=float(rng.uniform(1, 100)),
                result_key="0",
                curve=[{"step": s, "loss": 5.0 - s / 100} for s in range(50)],
            )
        ids = (study.id, trial.id)
    engine.dispose()
    return ids


def _measure(base: str, paths: list[str], *, rate: float, seconds: float) -> np.ndarray:
    n = int(rate * seconds)
    start = time.perf_counter() + 0.5
    latencies = np.zeros(n)
    lock = threading.Lock()
    next_index = [0]

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=10.0) as client:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= n:
                    return
                scheduled = start + i / rate
                time.sleep(max(0.0, scheduled - time.perf_counter()))
                response = client.get(paths[i % len(paths)])
                response.raise_for_status()
                latencies[i] = time.perf_counter() - scheduled

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    study_id, trial_id = _populate(db_url, args.trials)
    env = {
        **os.environ,
        "SCALETUNE_DATABASE_URL": db_url,
        "SCALETUNE_BROKER_URL": REDIS,
        "SCALETUNE_HEARTBEAT_PREFIX": f"{name}hb",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.main:create_app",
            "--port",
            str(PORT),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        paths = [
            f"/studies/{study_id}",
            f"/studies/{study_id}/trials?limit=50",
            f"/studies/{study_id}/front",
            "/queues",
            f"/trials/{trial_id}",
        ]
        _measure(base, paths, rate=args.rate, seconds=2.0)  # warm-up
        ms = _measure(base, paths, rate=args.rate, seconds=args.seconds) * 1000
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(
        f"rate={args.rate:.0f}/s n={ms.size} trials={args.trials} "
        f"p50={np.percentile(ms, 50):.1f}ms p99={np.percentile(ms, 99):.1f}ms max={ms.max():.1f}ms"
    )


if __name__ == "__main__":
    main()
