"""API read latency at a fixed arrival rate, against a real uvicorn server.

The store: ``--studies`` studies, one of them with ``--trials`` finished trials (50-point
curves, the engine state such a study saves), the others with 20 each, on SQLite (a
file) or PostgreSQL (a fresh database), built through the repository like the service
builds it. ``uvicorn --workers N`` serves ``service.api.app:create_app`` from it.

The load (one process, asyncio, keep-alive HTTP/1.1 on raw streams): an open loop, i.e.
request ``i`` has its send time fixed in advance at ``start + i / rate`` whatever the
server does, and its latency is counted from that scheduled time. A server (or client)
that falls behind is charged for the queue it causes instead of silently slowing the
arrivals (coordinated omission). The requests cycle through the read routes a
dashboard polls: study list, study detail, trials page, front, queues, one trial. Every
request carries a token as in production: the studies' tenant's (one indexed token
lookup, plus an ownership read on a study's or trial's route), an admin token for the
queue view (admin-only).

Printed with the latencies (p50/p95/p99/max per route and overall): the achieved rate,
the client's own lateness (actual minus scheduled send, p99), the CPU the client and the
uvicorn processes used per request (PostgreSQL's own CPU is not counted), and the load
average before and after, since on a shared machine the client, the server and the
database share the cores. Also the in-process service time of each route (TestClient,
one call at a time): what a request costs the server without network or queueing.

``--writes-per-s W`` keeps another study running meanwhile: a separate process adds,
starts and finishes W trials per second into it (each under the study's lock, as the
scheduler does), so the reads meet concurrent writes.

Run: python -m bench.api_latency [--backend sqlite --backend postgresql] [--rate 100]
     [--seconds 30] [--trials 3000] [--workers 2] [--writes-per-s 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.processes import free_port, wait_ready
from search.engine import ParetoSearch
from search.types import Suggestion
from service.config import Settings
from service.domain import Budget, StudySpec
from service.orchestration.engines import load_spec, resolve_space, search_settings
from service.orchestration.studies import create_study_row
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.storage.tokens import issue_token

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get(
    "SCALETUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("SCALETUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ADMIN_TOKEN = uuid.uuid4().hex + uuid.uuid4().hex
ADMIN_ROUTES = {"queues"}
SMALL_STUDY_TRIALS = 20
CURVE_POINTS = 50
ASK_BATCH = 50  # the engine re-encodes its pending suggestions per ask: keep few pending


def _add_finished_study(session, *, name: str, n_trials: int, rng) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    """A finished study of ``n_trials`` trials and its saved engine; its id and trial ids."""
    spec = StudySpec(
        name=name,
        objective="testbed",
        budget=Budget(max_trials=n_trials),
        search={"n_startup": n_trials + 1},
    )
    study = create_study_row(session, spec=spec, now=0.0)
    search = ParetoSearch(resolve_space(load_spec(study)), search_settings(spec))
    trial_ids = []
    while len(trial_ids) < n_trials:
        batch = search.ask(min(ASK_BATCH, n_trials - len(trial_ids)))
        trials = repo.add_trials(
            session,
            study=study,
            now=0.0,
            suggestions=[
                Suggestion(suggestion_id=s.suggestion_id, params=s.params, reason="startup")
                for s in batch
            ],
        )
        for suggestion, trial in zip(batch, trials, strict=True):
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
                curve=[{"step": s, "loss": 5.0 - s / 100} for s in range(CURVE_POINTS)],
            )
            trial_ids.append(trial.id)
        session.flush()
    repo.save_engine_state(
        session,
        study=study,
        engine_state=json.dumps(search.state_dict(with_history=False)),
        now=1.0,
    )
    return study.id, trial_ids


def _populate(db_url: str, *, n_trials: int, n_studies: int) -> dict[str, Any]:
    """The store the bench reads: the big study, small ones, and a running one to write."""
    engine = make_engine(db_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    rng = np.random.default_rng(0)
    with transaction(sessions) as session:
        big, trial_ids = _add_finished_study(session, name="big", n_trials=n_trials, rng=rng)
        for k in range(n_studies - 2):
            _add_finished_study(session, name=f"small{k}", n_trials=SMALL_STUDY_TRIALS, rng=rng)
        spec = StudySpec(name="running", objective="testbed", budget=Budget(max_trials=10**6))
        running = create_study_row(session, spec=spec, now=0.0)
        token = issue_token(session, tenant_id=running.tenant_id, name="bench", now=0.0).token
    engine.dispose()
    return {
        "study_id": big,
        "trial_ids": trial_ids,
        "running_study_id": running.id,
        "token": token,  # of the tenant owning every study here
    }


def _route_headers(label: str) -> dict[str, str]:
    """The admin token for an admin-only route; nothing extra (the tenant's) otherwise."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"} if label in ADMIN_ROUTES else {}


def _routes(store: dict[str, Any]) -> dict[str, list[str]]:
    """Route label -> the paths requested for it, in turn."""
    study = store["study_id"]
    trial_ids = store["trial_ids"]
    return {
        "study list": ["/studies?limit=50"],
        "study detail": [f"/studies/{study}"],
        "trials page (50)": [
            f"/studies/{study}/trials?limit=50&offset={o}" for o in range(0, len(trial_ids), 500)
        ],
        "front": [f"/studies/{study}/front"],
        "queues": ["/queues"],
        "one trial": [f"/trials/{t}" for t in trial_ids[:: max(1, len(trial_ids) // 37)]],
    }


def _schedule(routes: dict[str, list[str]], n: int) -> list[tuple[str, str]]:
    """``n`` requests cycling over the routes, each route cycling over its paths."""
    labels = list(routes)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        paths = routes[label]
        out.append((label, paths[(i // len(labels)) % len(paths)]))
    return out


def _write_trials(db_url: str, study_id: int, per_second: float, stop, written) -> None:  # type: ignore[no-untyped-def]
    """Keep ``study_id`` running: add, start and finish trials at ``per_second``."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    rng = np.random.default_rng(1)
    i = 0
    start = time.perf_counter()
    while not stop.is_set():
        time.sleep(max(0.0, start + i / per_second - time.perf_counter()))
        with transaction(sessions) as session:
            study = repo.get_study(session, study_id=study_id, lock=True)
            (trial,) = repo.add_trials(
                session,
                study=study,
                now=time.time(),
                suggestions=[Suggestion(suggestion_id=f"w{i}", params={"x": i}, reason="bench")],
            )
            repo.start_trial(session, trial=trial, now=time.time(), lease_seconds=60.0)
            repo.finish_trial(
                session,
                trial=trial,
                now=time.time(),
                failed=False,
                loss=float(rng.uniform(2, 5)),
                cost_seconds=float(rng.uniform(1, 100)),
                result_key="0",
                curve=[{"step": s, "loss": 5.0 - s / 100} for s in range(CURVE_POINTS)],
            )
        i += 1
        written.value = i
    engine.dispose()


def _service_times(
    db_url: str, requests: list[tuple[str, str]], *, calls: int, headers: dict[str, str]
) -> dict[str, np.ndarray]:
    """Milliseconds per call of each route, in-process and one at a time."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    settings = Settings(
        database_url=db_url, broker_url=REDIS, heartbeat_prefix="benchhb", admin_token=ADMIN_TOKEN
    )
    out: dict[str, list[float]] = {}
    app = create_app(settings, run_migrations=False)
    with TestClient(app, headers=dict(headers)) as client:
        for label, path in requests:
            client.get(path, headers=_route_headers(label)).raise_for_status()  # warm-up
        for _ in range(calls):
            for label, path in requests:
                t0 = time.perf_counter()
                client.get(path, headers=_route_headers(label)).raise_for_status()
                out.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
    return {label: np.array(ms) for label, ms in out.items()}


class _Connections:
    """Keep-alive HTTP/1.1 GETs over raw asyncio streams: a fraction of httpx's CPU per
    request, which matters when the load generator shares the server's cores. Only what
    uvicorn's JSON answers need: a status line, headers, a Content-Length body."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def get(self, path: str, headers: dict[str, str]) -> int:
        """The status code of ``GET path`` (the body is read and dropped). A kept-alive
        connection the server has closed meanwhile (uvicorn: 5 s idle) is replaced, as
        an HTTP client does, and the reconnect counts in the latency."""
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, path, headers)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened.append(writer)
        return await self._exchange(reader, writer, path, headers)

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        path: str,
        headers: dict[str, str],
    ) -> int:
        sent = "".join(f"{k}: {v}\r\n" for k, v in {"Host": self.host, **headers}.items())
        writer.write(f"GET {path} HTTP/1.1\r\n{sent}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        length = int(next(v for k, v in fields.items() if k.lower() == "content-length"))
        await reader.readexactly(length)
        self.idle.append((reader, writer))
        return int(lines[0].split()[1])

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def _open_loop(
    base: str,
    requests: list[tuple[str, str]],
    *,
    rate: float,
    headers: dict[str, str],
) -> dict[str, Any]:
    """Send ``requests[i]`` at ``start + i / rate``; latency from that scheduled time."""
    n = len(requests)
    latency_ms, late_ms = np.zeros(n), np.zeros(n)
    errors: list[str] = []
    url = httpx.URL(base)
    connections = _Connections(url.host, url.port or 80)
    loop = asyncio.get_running_loop()

    async def send(i: int, scheduled: float) -> None:
        late_ms[i] = (loop.time() - scheduled) * 1000
        label, path = requests[i]
        code = await connections.get(path, {**headers, **_route_headers(label)})
        latency_ms[i] = (loop.time() - scheduled) * 1000
        if code != 200:
            errors.append(f"{path}: {code}")

    cpu0 = time.process_time()
    start = loop.time() + 0.2
    tasks = []
    for i in range(n):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        tasks.append(asyncio.create_task(send(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    client_cpu = time.process_time() - cpu0
    connections.close()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[:3]}")
    return {
        "latency_ms": latency_ms,
        "late_ms": late_ms,
        "achieved_rate": n / elapsed,
        "client_cpu_ms_per_request": 1000 * client_cpu / n,
    }


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        if int(entry.name) == pid or ppid == pid:
            total += (utime + stime) / tick
    return total


@contextmanager
def _serve(db_url: str, name: str, workers: int, extra: list[str]) -> Iterator[tuple[str, int]]:
    env = {
        **os.environ,
        "SCALETUNE_DATABASE_URL": db_url,
        "SCALETUNE_BROKER_URL": REDIS,
        "SCALETUNE_HEARTBEAT_PREFIX": f"{name}hb",
        "SCALETUNE_LOG_LEVEL": "WARNING",
        "SCALETUNE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app"]
    port = free_port()
    command += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    command += ["--no-access-log", *extra]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        yield base, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@contextmanager
def _database(backend: str, name: str) -> Iterator[str]:
    """A fresh, empty database URL, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/{name}.db"
        return
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _renice(pid: int, niceness: int) -> None:
    """``pid`` and its scheduling group at ``niceness``: with autogroup scheduling (the
    Linux default) the CPU is shared between sessions first, so a process's own nice
    value only matters inside its session."""
    os.setpriority(os.PRIO_PROCESS, pid, niceness)
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():
        autogroup.write_text(str(niceness))


def _renice_database_backends(db_url: str, niceness: int) -> None:
    """Give ``niceness`` to the PostgreSQL processes serving ``db_url`` (same host)."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        for pid in pids:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
    engine.dispose()


def _stats(ms: np.ndarray) -> dict[str, float]:
    return {
        "n": int(ms.size),
        **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)},
        "max": float(ms.max()),
    }


def run(backend: str, args: argparse.Namespace, headers: dict[str, str]) -> dict[str, Any]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with _database(backend, name) as db_url:
        store = _populate(db_url, n_trials=args.trials, n_studies=args.studies)
        headers = {"Authorization": f"Bearer {store['token']}", **headers}
        routes = _routes(store)
        one_each = [(label, paths[0]) for label, paths in routes.items()]
        in_process = _service_times(db_url, one_each, calls=args.calls, headers=headers)
        stop = multiprocessing.Event()
        written = multiprocessing.Value("i", 0)
        writer = None
        if args.writes_per_s > 0:
            writer = multiprocessing.Process(
                target=_write_trials,
                args=(db_url, store["running_study_id"], args.writes_per_s, stop, written),
            )
            writer.start()
        try:
            with _serve(db_url, name, args.workers, args.uvicorn_arg) as (base, pid):
                warm = _schedule(routes, int(args.rate * 3))
                asyncio.run(_open_loop(base, warm, rate=args.rate, headers=headers))
                if args.nice:
                    _renice(pid, args.nice)  # uvicorn's session: the server and its workers
                if args.nice and backend == "postgresql":
                    _renice_database_backends(db_url, args.nice)
                load_before = os.getloadavg()
                cpu0, written0 = _tree_cpu_seconds(pid), written.value
                requests = _schedule(routes, int(args.rate * args.seconds))
                result = asyncio.run(_open_loop(base, requests, rate=args.rate, headers=headers))
                server_cpu = _tree_cpu_seconds(pid) - cpu0
                writes = written.value - written0
                load_after = os.getloadavg()
        finally:
            stop.set()
            if writer is not None:
                writer.join(timeout=30)
    latency = result["latency_ms"]
    per_route = {
        label: _stats(latency[[i for i, (lab, _) in enumerate(requests) if lab == label]])
        for label in routes
    }
    return {
        "backend": backend,
        "rate": args.rate,
        "seconds": args.seconds,
        "trials": args.trials,
        "studies": args.studies,
        "workers": args.workers,
        "uvicorn_args": args.uvicorn_arg,
        "writes_per_s": args.writes_per_s,
        "trials_written_during_run": writes,
        "auth": "authorization" in {k.lower() for k in headers},
        "nice": args.nice,
        "achieved_rate": result["achieved_rate"],
        "client_late_p99_ms": float(np.percentile(result["late_ms"], 99)),
        "client_cpu_ms_per_request": result["client_cpu_ms_per_request"],
        "server_cpu_ms_per_request": 1000 * server_cpu / len(requests),
        "load_before": load_before,
        "load_after": load_after,
        "in_process": {label: _stats(ms) for label, ms in in_process.items()},
        "open_loop": per_route,
        "all": _stats(latency),
    }


def _print(r: dict[str, Any]) -> None:
    def cell(s: dict[str, float]) -> str:
        return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['p99']:.1f} / {s['max']:.1f}"

    print(
        f"\n{r['backend']}: {r['rate']:.0f} req/s for {r['seconds']:.0f} s, {r['trials']} trials, "
        f"uvicorn --workers {r['workers']} {' '.join(r['uvicorn_args'])}, "
        f"writes {r['writes_per_s']}/s ({r['trials_written_during_run']} done), "
        f"auth {r['auth']}, nice {r['nice']}; "
        f"load {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}"
    )
    print("| route | in-process p50 / p99 ms | open loop p50 / p95 / p99 / max ms |")
    print("| --- | --- | --- |")
    for label, s in r["open_loop"].items():
        ip = r["in_process"][label]
        print(f"| {label} | {ip['p50']:.1f} / {ip['p99']:.1f} | {cell(s)} |")
    print(f"| all | | {cell(r['all'])} |")
    print(
        f"achieved {r['achieved_rate']:.1f}/s, "
        f"client lateness p99 {r['client_late_p99_ms']:.1f} ms, "
        f"CPU per request: server {r['server_cpu_ms_per_request']:.2f} ms, "
        f"client {r['client_cpu_ms_per_request']:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (compose runs 1)"
    )
    parser.add_argument("--uvicorn-arg", action="append", default=[], help="e.g. --loop=uvloop")
    parser.add_argument("--writes-per-s", type=float, default=0.0)
    parser.add_argument("--calls", type=int, default=30, help="in-process calls per route")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the client, uvicorn and the writer at this niceness, their scheduling "
        "groups too (negative needs root), and PostgreSQL's backends for the database at "
        "this process niceness (the postmaster's group is shared, left alone): other jobs "
        "on a shared machine then yield the CPU, approximating a dedicated API host",
    )
    args = parser.parse_args()
    if args.nice:
        _renice(os.getpid(), args.nice)  # inherited by the writer
    headers: dict[str, str] = {}
    results = [run(backend, args, headers) for backend in args.backend or ["postgresql"]]
    for r in results:
        _print(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
