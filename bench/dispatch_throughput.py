"""Dispatch throughput: propose -> queue -> no-op worker -> record, end to end.

One control worker (``service.orchestration.control``, solo pool) and two trial workers
(``workers.celery_app``, solo pool, the testbed objective: microseconds of numpy, so the
workers are effectively no-ops) on the machine's Redis and a fresh PostgreSQL database.
The engine stays in its random start-up phase (``n_startup`` > trials), so the figure is
the service's dispatch path, not GP fitting.

``--in-process`` measures the service's share alone: one ``Scheduler`` on the same
PostgreSQL, a dispatcher that only keeps the requests, and every sent trial answered at
once, ``--burst`` results per step (1: what the control worker does per message; more:
what a consumer draining several result messages per transaction would get).

The end-to-end run also prints the CPU each part used per trial (user + system seconds
from /proc, during the run): the control worker, the two trial workers, the PostgreSQL
backends of the bench's database and the Redis server (shared with anything else on the
machine, so an upper bound). On a shared machine the wall-clock rate depends on the load;
the CPU per trial much less so: 2 cores / (CPU per trial) is what the path could do with
the whole machine to itself.

Run: python bench/dispatch_throughput.py [--trials 2000] [--in-flight 32] [--buffer 64]
     python bench/dispatch_throughput.py --in-process [--burst 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.config import Settings
from service.domain import Budget, StudySpec, StudyState
from service.orchestration.messaging import create_sender, request_step
from service.orchestration.scheduler import Scheduler
from service.orchestration.studies import create_study_row
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from workers.contracts import TrialRequest, TrialResult

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get(
    "SCALETUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("SCALETUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _fresh_database() -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with create_engine(PG, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return name, make_url(PG).set(database=name).render_as_string(hide_password=False)


def _drop_database(name: str) -> None:
    with create_engine(PG, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _workers(env: dict[str, str], prefix: str, logs: Path) -> list[subprocess.Popen]:
    control = [
        "-A",
        "service.orchestration.control",
        "worker",
        "-Q",
        f"{prefix}control",
        "-P",
        "solo",
        "-n",
        f"c-{prefix}@%h",
        "--loglevel",
        "WARNING",
    ]
    trial = [
        "-A",
        "workers.celery_app",
        "worker",
        "-Q",
        f"{prefix}trials",
        "-P",
        "solo",
        "--loglevel",
        "WARNING",
    ]
    return [_start(control, env, logs / "control.log")] + [
        _start([*trial, "-n", f"t{i}-{prefix}@%h"], env, logs / f"trial{i}.log") for i in range(2)
    ]


def run(*, trials: int, in_flight: int, buffer: int) -> float:
    prefix = f"bench{uuid.uuid4().hex[:6]}-"
    db_name, db_url = _fresh_database()
    env = {
        **os.environ,
        "SCALETUNE_BROKER_URL": REDIS,
        "SCALETUNE_DATABASE_URL": db_url,
        "SCALETUNE_QUEUE_PREFIX": prefix,
        "SCALETUNE_PROPOSAL_BUFFER": str(buffer),
        "SCALETUNE_HEARTBEAT_PREFIX": f"{prefix}hb",
        "SCALETUNE_KEY_PREFIX": f"{prefix}hb",
    }
    settings = Settings(database_url=db_url, broker_url=REDIS, queue_prefix=prefix)
    engine = make_engine(db_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    spec = _spec(trials=trials, in_flight=in_flight)
    with tempfile.TemporaryDirectory() as logs:
        processes = _workers(env, prefix, Path(logs))
        try:
            _wait_for_trial_workers(f"{prefix}hb", count=2, timeout_s=180)
            with transaction(sessions) as session:
                study_id = create_study_row(session, spec=spec, now=time.time()).id
            sender = create_sender(settings)
            cpu_before = _cpu_seconds(processes, db_name)
            request_step(sender, settings=settings, study_id=study_id)
            elapsed = _wait(sessions, study_id, timeout_s=600)
            cpu = {
                k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds(processes, db_name).items()
            }
        finally:
            for p in processes:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
            client = redis.Redis.from_url(REDIS)
            keys = list(client.scan_iter(f"{prefix}*")) + list(client.scan_iter(f"*{prefix}*"))
            if keys:
                client.delete(*set(keys))
            engine.dispose()
            _drop_database(db_name)
    return trials / elapsed, {part: seconds / trials for part, seconds in cpu.items()}


def _wait_for_trial_workers(heartbeat_prefix: str, *, count: int, timeout_s: float) -> None:
    """Until ``count`` trial workers beat (their pool is up; on a loaded machine their
    imports can take longer than the study's first trials would wait), plus 2 s for their
    consumers to start."""
    client = redis.Redis.from_url(REDIS)
    deadline = time.monotonic() + timeout_s
    try:
        while client.hlen(f"{heartbeat_prefix}:workers") < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} trial workers did not start in {timeout_s} s")
            time.sleep(0.5)
    finally:
        client.close()
    time.sleep(2.0)


def _cpu_seconds(processes: list[subprocess.Popen], db_name: str) -> dict[str, float]:
    """User + system CPU seconds so far of the control worker, the trial workers, the
    bench database's PostgreSQL backends and the Redis server."""
    control, *trial_workers = processes
    with create_engine(PG).connect() as conn:
        backends = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :name"), {"name": db_name}
        ).scalars()
        postgres = sum(_process_cpu(pid) for pid in backends)
    redis_pids = subprocess.run(
        ["pgrep", "-x", "redis-server"], capture_output=True, text=True
    ).stdout.split()
    return {
        "control": _process_cpu(control.pid),
        "trial_workers": sum(_process_cpu(p.pid) for p in trial_workers),
        "postgres": postgres,
        "redis": sum(_process_cpu(int(pid)) for pid in redis_pids),
    }


def _process_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _KeepingDispatcher:
    def __init__(self) -> None:
        self.sent: list[TrialRequest] = []

    def send(self, request: TrialRequest, *, queue: str) -> None:
        self.sent.append(request)


def run_in_process(*, trials: int, in_flight: int, buffer: int, burst: int) -> float:
    """Results per second through ``Scheduler.step(results=...)`` alone (no Celery)."""
    db_name, db_url = _fresh_database()
    engine = make_engine(db_url)
    try:
        migrate(engine)
        dispatcher = _KeepingDispatcher()
        scheduler = Scheduler(
            sessions=make_sessionmaker(engine),
            settings=Settings(database_url=db_url, proposal_buffer=buffer),
            dispatcher=dispatcher,
        )
        study_id = scheduler.create_study(_spec(trials=trials, in_flight=in_flight))
        scheduler.step(study_id)
        start, done = time.perf_counter(), 0
        while dispatcher.sent:
            sent, dispatcher.sent = dispatcher.sent, []
            results = [_noop_result(request) for request in sent]
            for i in range(0, len(results), burst):
                scheduler.step(study_id, reclaim=False, results=results[i : i + burst])
            done += len(results)
        return done / (time.perf_counter() - start)
    finally:
        engine.dispose()
        _drop_database(db_name)


def _noop_result(request: TrialRequest) -> TrialResult:
    return TrialResult(
        study_id=request.study_id,
        trial_id=request.trial_id,
        attempt=request.attempt,
        status="completed",
        loss=1.0,
        cost_seconds=1.0,
    )


def _spec(*, trials: int, in_flight: int) -> StudySpec:
    return StudySpec(
        name="bench",
        objective="testbed",
        budget=Budget(max_trials=trials),
        in_flight=in_flight,
        queue="trials",
        search={"n_startup": trials + 1},
    )


def _wait(sessions, study_id: int, *, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds from the first dispatch to the study's completion."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with transaction(sessions) as session:
            study = repo.get_study(session, study_id=study_id)
            if study.state == StudyState.COMPLETE:
                rows, _ = repo.list_trials(session, study_id=study_id, limit=1)
                return study.updated_at - rows[0].dispatched_at
        time.sleep(0.5)
    raise TimeoutError("the study did not complete in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--buffer", type=int, default=64, help="proposal_buffer")
    parser.add_argument("--in-process", action="store_true", help="the scheduler alone")
    parser.add_argument("--burst", type=int, default=1, help="results per step (--in-process)")
    args = parser.parse_args()
    sizes = {"trials": args.trials, "in_flight": args.in_flight, "buffer": args.buffer}
    if args.in_process:
        rate = run_in_process(**sizes, burst=args.burst)
        what = f"in_process burst={args.burst} scheduler={rate:.1f} results/s"
    else:
        rate, cpu = run(**sizes)
        per_trial = " ".join(f"{part}={1000 * s:.2f}" for part, s in cpu.items())
        what = (
            f"dispatch_path={rate:.1f} trials/s; CPU ms per trial: {per_trial} "
            f"total={1000 * sum(cpu.values()):.2f}"
        )
    print(
        f"trials={args.trials} in_flight={args.in_flight} buffer={args.buffer} {what} "
        f"load={os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
