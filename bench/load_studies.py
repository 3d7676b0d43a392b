"""Load: many concurrent studies through the whole stack, then audited from the database.

Real processes on the machine's PostgreSQL (a fresh database) and Redis (a queue and key
prefix of their own): the API (``uvicorn --factory service.api.app:create_app``), one
control worker (``service.orchestration.control``, solo pool, with the beat that ticks)
and ``--trial-workers`` trial workers (``workers.celery_app``, solo pool) running the
testbed objective, microseconds of numpy: a no-op. ``--studies`` studies of ``--trials``
trials each, ``--in-flight`` at once, are created through ``POST /studies``; the engine
stays in its random start-up phase (``n_startup`` > trials), so what is measured is the
service, not GP fitting.

While they run, a reader sends GETs open loop at ``--read-rate`` per second (a study's
detail, a page of its trials, the study list, the queues), each at a send time fixed in
advance, its latency counted from that time (a server that falls behind is charged for
the queueing it causes). When every study is COMPLETE, the database is audited
(``audit``): each study reached its budget and overshot it by in-flight trials at most
(every other study stops on a cost budget), none is left WAITING or RUNNING, each
finished trial carries the key of the one result that won, and the engine was told of
each exactly once.

Run: python -m bench.load_studies [--studies 50] [--in-flight 8] [--trials 40]
     [--read-rate 20] [--trial-workers 2] [--api-workers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.processes import free_port, stop_process_group, wait_ready
from search.errors import HistoryMismatchError
from service.domain import Budget, StudySpec, StudyState, TrialState
from service.orchestration.engines import study_history, taken_in
from service.storage import tenants
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.storage.tables import StudyRow, TrialRow
from service.storage.tokens import issue_token

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get(
    "SCALETUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("SCALETUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
FINISHED = (TrialState.COMPLETE, TrialState.FAILED)
# GPU-seconds: about 18 testbed trials at the default space's center (~84 s each), so a
# study with it stops on cost before 40 trials, with trials still in flight.
COST_BUDGET = 1500.0


def study_body(i: int, *, trials: int, in_flight: int) -> dict:
    """Every other study also has a cost budget (``COST_BUDGET``), reached first."""
    budget = {"max_trials": trials, **({"max_cost": COST_BUDGET} if i % 2 else {})}
    return {
        "name": f"load-{i}",
        "objective": "testbed",
        "budget": budget,
        "in_flight": in_flight,
        "seed": i,
        "search": {"n_startup": trials + 1},
    }


# -- the processes ----------------------------------------------------------------------


# The API wants a token: the studies are a fresh tenant's; the queue view is admin-only.
ADMIN_TOKEN = uuid.uuid4().hex + uuid.uuid4().hex


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tenant_token(database_url: str) -> str:
    """A token of a new tenant, issued straight in the store (as ``scaletune admin`` does)."""
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            name = f"load-{uuid.uuid4().hex[:8]}"
            tenant = tenants.create_tenant(session, name=name, now=time.time())
            return issue_token(session, tenant_id=tenant.id, name="load", now=time.time()).token
    finally:
        engine.dispose()


@contextmanager
def load_cluster(
    *,
    database_url: str,
    broker_url: str,
    logs: Path,
    api_workers: int = 1,
    trial_workers: int = 2,
) -> Iterator[str]:
    """API, control worker and trial workers on a migrated database; yields the API's URL.

    Every process is stopped and every Redis key of the run's prefix deleted on exit.
    """
    prefix = f"load{uuid.uuid4().hex[:8]}-"
    env = {
        **os.environ,
        "SCALETUNE_DATABASE_URL": database_url,
        "SCALETUNE_BROKER_URL": broker_url,
        "SCALETUNE_QUEUE_PREFIX": prefix,
        "SCALETUNE_HEARTBEAT_PREFIX": f"{prefix}hb",
        "SCALETUNE_KEY_PREFIX": f"{prefix}hb",
        "SCALETUNE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    port = free_port()
    celery = [sys.executable, "-m", "celery", "--quiet"]
    quiet = ["--loglevel", "WARNING"]
    commands = {
        "api": [
            *(sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app"),
            *("--port", str(port), "--workers", str(api_workers), "--log-level", "warning"),
        ],
        "control": [
            *(
                *celery,
                "-A",
                "service.orchestration.control",
                "worker",
                "-Q",
                f"{prefix}control",
                *quiet,
            ),
            *("-P", "solo", "-B", "-s", str(logs / "beat"), "-n", f"control-{prefix}@%h"),
        ],
    }
    for i in range(trial_workers):
        commands[f"trials{i}"] = [
            *(*celery, "-A", "workers.celery_app", "worker", "-Q", f"{prefix}trials", *quiet),
            *("-P", "solo", "-n", f"trials{i}-{prefix}@%h"),
        ]
    engine = make_engine(database_url)
    migrate(engine)  # once, before several API processes would race to
    engine.dispose()
    processes = []
    try:
        for name, command in commands.items():
            with (logs / f"{name}.log").open("w") as out:  # the child keeps its descriptor
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, processes[0])
        yield base
    finally:
        for process in processes:
            stop_process_group(process)
        client = redis.Redis.from_url(broker_url)
        keys = set(client.scan_iter(f"{prefix}*")) | set(client.scan_iter(f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


# -- the reader -------------------------------------------------------------------------


class Reader:
    """GETs open loop at ``rate`` per second over the given studies, until ``stop``."""

    def __init__(
        self, base: str, study_ids: list[int], *, rate: float, token: str, threads: int = 16
    ):
        self.base, self.study_ids, self.rate, self.token = base, study_ids, rate, token
        self.latency_ms: list[float] = []
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._next = 0
        self._stopped = threading.Event()
        self._start = time.perf_counter()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _path(self, rng: random.Random) -> str:
        study_id = rng.choice(self.study_ids)
        return rng.choice(
            [
                f"/studies/{study_id}",
                f"/studies/{study_id}/trials?limit=50",
                "/studies?limit=50",
                "/queues",
            ]
        )

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.base, timeout=30.0, headers=_bearer(self.token)) as client:
            while not self._stopped.is_set():
                with self._lock:
                    i, self._next = self._next, self._next + 1
                scheduled = self._start + i / self.rate
                if self._stopped.wait(max(0.0, scheduled - time.perf_counter())):
                    return
                try:
                    path = self._path(rng)
                    admin = _bearer(ADMIN_TOKEN) if path == "/queues" else None
                    status = client.get(path, headers=admin).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self._lock:
                    self.latency_ms.append((time.perf_counter() - scheduled) * 1000)
                    if status != 200:
                        self.errors[str(status)] += 1

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join()


# -- the audit --------------------------------------------------------------------------


@dataclass
class Audit:
    """What the database says after the run; ``problems`` is empty when nothing was lost."""

    problems: list[str] = field(default_factory=list)
    studies_complete: int = 0
    stopped_on_cost: int = 0
    dispatched: int = 0
    finished: int = 0
    failed: int = 0
    requeued: int = 0
    first_dispatch: float = float("inf")
    last_finish: float = 0.0


def audit(database_url: str, study_ids: list[int]) -> Audit:
    """Check every study from the rows themselves (not through the API)."""
    out = Audit()
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            for study_id in study_ids:
                study = session.get(StudyRow, study_id)
                trials = session.scalars(select(TrialRow).where(TrialRow.study_id == study_id))
                _audit_study(out, session, study, list(trials))
    finally:
        engine.dispose()
    return out


def _audit_study(out: Audit, session: Session, study: StudyRow, trials: list[TrialRow]) -> None:
    name = f"study {study.id}"
    budget = StudySpec.model_validate(study.spec).budget
    if study.state == StudyState.COMPLETE:
        out.studies_complete += 1
    else:
        out.problems.append(f"{name} is {study.state}, not COMPLETE")
    dispatched = [t for t in trials if t.dispatched_at is not None]
    finished = [t for t in trials if t.state in FINISHED]
    open_ = [t.number for t in trials if t.state not in (*FINISHED, TrialState.CANCELLED)]
    if open_:
        out.problems.append(f"{name}: trials {open_} never finished (lost)")
    out.problems.extend(f"{name}: {problem}" for problem in _budget_problems(budget, dispatched))
    if len(dispatched) < (budget.max_trials or math.inf):
        out.stopped_on_cost += 1
    if len(finished) != len(dispatched):
        out.problems.append(f"{name}: {len(dispatched)} dispatched, {len(finished)} finished")
    unproven = [t.number for t in finished if t.result_key is None or t.finish_seq is None]
    if unproven:
        out.problems.append(f"{name}: trials {unproven} finished without a recorded result")
    out.problems.extend(f"{name}: {problem}" for problem in _engine_problems(session, study))
    out.dispatched += len(dispatched)
    out.finished += len(finished)
    out.failed += sum(t.state == TrialState.FAILED for t in trials)
    out.requeued += sum(t.attempt > 0 for t in trials)
    out.first_dispatch = min([out.first_dispatch, *(t.dispatched_at for t in dispatched)])
    out.last_finish = max([out.last_finish, *(t.finished_at or 0.0 for t in finished)])


def _budget_problems(budget: Budget, dispatched: list[TrialRow]) -> list[str]:
    """The budget was reached and not overshot: no more trials than ``max_trials``, none
    dispatched once the results recorded by then had spent ``max_cost`` (so the cost is
    overshot only by trials already in flight), and it stopped only on a limit."""

    def spent_by(when: float) -> float:
        return sum(t.cost_seconds or 0.0 for t in dispatched if (t.finished_at or when + 1) <= when)

    problems = []
    max_trials = budget.max_trials or math.inf
    if len(dispatched) > max_trials:
        problems.append(f"{len(dispatched)} trials dispatched, max_trials {max_trials}")
    max_cost = budget.max_cost or math.inf
    late = [t.number for t in dispatched if spent_by(t.dispatched_at) >= max_cost]
    if late:
        problems.append(f"trials {late} dispatched after max_cost was spent")
    spent = spent_by(math.inf)
    if len(dispatched) < max_trials and spent < max_cost:
        problems.append(
            f"stopped at {len(dispatched)} trials and {spent:.0f} spent, short of its budget"
        )
    return problems


def _engine_problems(session: Session, study: StudyRow) -> list[str]:
    """The saved engine rebuilds from the stored trials and has taken in every finished
    trial it learns from (each once: the history holds each trial once)."""
    learned = study_history(session, study_id=study.id).observations
    try:
        told = len(taken_in(session, study))
    except HistoryMismatchError as exc:
        return [f"its engine does not rebuild from its trials: {exc}"]
    if told != len(learned):
        return [f"the engine took in {told} of the {len(learned)} finished trials"]
    return []


# -- the run ----------------------------------------------------------------------------


@dataclass
class LoadResult:
    study_ids: list[int]
    wall_s: float
    create_ms: np.ndarray
    read_ms: np.ndarray
    read_errors: Counter[str]
    audit: Audit

    @property
    def trials_per_s(self) -> float:
        return self.audit.finished / (self.audit.last_finish - self.audit.first_dispatch)


def run_load(
    base: str,
    *,
    database_url: str,
    studies: int,
    trials: int,
    in_flight: int,
    read_rate: float,
    timeout_s: float = 900.0,
) -> LoadResult:
    """Create the studies through the API, read while they run, audit once all are done
    (or at ``timeout_s``: the audit then names what did not finish)."""
    engine = make_engine(database_url)
    create_ms, ids = [], []
    started = time.perf_counter()
    token = tenant_token(database_url)
    with httpx.Client(base_url=base, timeout=30.0, headers=_bearer(token)) as client:
        for i in range(studies):
            t0 = time.perf_counter()
            response = client.post(
                "/studies", json=study_body(i, trials=trials, in_flight=in_flight)
            )
            response.raise_for_status()
            create_ms.append((time.perf_counter() - t0) * 1000)
            ids.append(response.json()["id"])
    reader = Reader(base, ids, rate=read_rate, token=token)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _complete(engine, ids) < len(ids):
            time.sleep(0.25)
        wall_s = time.perf_counter() - started
    finally:
        reader.stop()
        engine.dispose()
    return LoadResult(
        study_ids=ids,
        wall_s=wall_s,
        create_ms=np.array(create_ms),
        read_ms=np.array(reader.latency_ms),
        read_errors=reader.errors,
        audit=audit(database_url, ids),
    )


def _complete(engine, ids: list[int]) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        query = select(func.count()).where(
            StudyRow.id.in_(ids), StudyRow.state == StudyState.COMPLETE
        )
        return conn.execute(query).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--trials", type=int, default=40, help="budget (max_trials) per study")
    parser.add_argument("--read-rate", type=float, default=20.0, help="GETs per second")
    parser.add_argument("--trial-workers", type=int, default=2)
    parser.add_argument(
        "--api-workers", type=int, default=1, help="uvicorn processes (more: uvicorn issue 3149)"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    try:
        with (
            tempfile.TemporaryDirectory() as logs,
            load_cluster(
                database_url=db_url,
                broker_url=REDIS,
                logs=Path(logs),
                api_workers=args.api_workers,
                trial_workers=args.trial_workers,
            ) as base,
        ):
            result = run_load(
                base,
                database_url=db_url,
                studies=args.studies,
                trials=args.trials,
                in_flight=args.in_flight,
                read_rate=args.read_rate,
            )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    a, reads, creates = result.audit, result.read_ms, result.create_ms
    print(
        f"studies={args.studies} trials={args.trials} in_flight={args.in_flight} "
        f"complete={a.studies_complete} on_cost={a.stopped_on_cost} dispatched={a.dispatched} "
        f"finished={a.finished} "
        f"failed={a.failed} requeued={a.requeued} wall={result.wall_s:.1f}s "
        f"throughput={result.trials_per_s:.1f} trials/s"
    )
    print(
        f"reads: n={reads.size} rate={args.read_rate:.0f}/s p50={np.percentile(reads, 50):.1f}ms "
        f"p99={np.percentile(reads, 99):.1f}ms max={reads.max():.1f}ms "
        f"errors={dict(result.read_errors)}; creates: p50={np.percentile(creates, 50):.1f}ms "
        f"p99={np.percentile(creates, 99):.1f}ms; load (1 min) before={load_before:.1f} "
        f"after={os.getloadavg()[0]:.1f}"
    )
    print("audit: " + ("no trial lost or doubled" if not a.problems else "; ".join(a.problems)))
    if a.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
