"""Prometheus metrics (``GET /metrics``) and structured JSON logs for the API process.

Metrics come from two places. Counts that the store and the heartbeats already hold
(trials and studies by state, queue depths, workers busy, trial durations) are read at
scrape time by ``StoreCollector``, so every API replica reports the same numbers and
nothing is lost when a process restarts. Latencies only the process itself can see
(``POST /studies/{id}/ask``, every request) are observed by ``ObservabilityMiddleware``.
Each app has its own ``CollectorRegistry``: several apps in one process (tests) never
share or collide on series.

Each request's log records carry the study or trial id of its path (``service.logs``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client import Histogram as HistogramMetric
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.api.auth import metrics_access
from service.api.refusals import refusals
from service.domain import StudyState, TrialState
from service.logs import log_context
from service.orchestration.ask_latency import AskLatencyLog
from service.reads.queues import Queues, read_queues
from service.storage.tables import StudyRow, TrialRow
from workers.heartbeat import HeartbeatStore

logger = logging.getLogger("scaletune.http")

# Trial wall time from first dispatch to result, seconds: a testbed trial takes well under
# a second, an LM trial minutes to hours.
DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
ASK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ASK_ROUTE = "/studies/{study_id}/ask"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.FAILED)

# -- metrics read from the store and the heartbeats --------------------------------------


class StoreCollector(Collector):
    """Series computed from the database and Redis heartbeats on every scrape."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        heartbeats: HeartbeatStore | None,
        ask_log: AskLatencyLog | None = None,
    ) -> None:
        self.sessions = sessions
        self.heartbeats = heartbeats
        self.ask_log = ask_log

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            yield _count_by_state(
                session, TrialRow, TrialState, "scaletune_trials", "Trials by state."
            )
            yield _count_by_state(
                session, StudyRow, StudyState, "scaletune_studies", "Studies by state."
            )
            yield _trial_durations(session)
            queues = read_queues(session, self.heartbeats)  # what GET /queues shows
        yield from _queue_metrics(queues)
        if self.ask_log is not None and queues.heartbeats_available:
            yield _engine_ask_latency(self.ask_log)


def _engine_ask_latency(ask_log: AskLatencyLog) -> HistogramMetricFamily:
    """The engine's ask() in the control workers, from the buckets they keep in Redis."""
    buckets, count, total = ask_log.read()
    family = HistogramMetricFamily(
        "scaletune_engine_ask_seconds",
        "Wall seconds of the search engine's ask() in the control workers (all replicas).",
    )
    family.add_metric(
        [], [*((_le(le), float(n)) for le, n in buckets), ("+Inf", float(count))], total
    )
    return family


def _count_by_state(
    session: Session,
    table: type[TrialRow] | type[StudyRow],
    states: type[TrialState] | type[StudyState],
    name: str,
    doc: str,
) -> GaugeMetricFamily:
    counts = dict(session.execute(select(table.state, func.count()).group_by(table.state)).all())
    gauge = GaugeMetricFamily(name, doc, labels=["state"])
    for state in states:
        gauge.add_metric([str(state)], float(counts.get(state, 0)))
    return gauge


def _trial_durations(session: Session) -> HistogramMetricFamily:
    """Finished trials' wall seconds from first dispatch to result, by final state.

    Bucketed in SQL (one ``SUM(CASE ...)`` per bucket), so a scrape reads one row per
    state however many trials the store holds.
    """
    seconds = TrialRow.finished_at - TrialRow.dispatched_at
    columns = [func.sum(case((seconds <= le, 1), else_=0)) for le in DURATION_BUCKETS_S]
    query = (
        select(TrialRow.state, func.count(), func.sum(seconds), *columns)
        .where(TrialRow.state.in_(FINISHED_STATES), TrialRow.dispatched_at.is_not(None))
        .group_by(TrialRow.state)
    )
    rows = {row[0]: row[1:] for row in session.execute(query).all()}
    family = HistogramMetricFamily(
        "scaletune_trial_duration_seconds",
        "Wall seconds from a trial's first dispatch to its result, by final state.",
        labels=["state"],
    )
    for state in FINISHED_STATES:
        count, total, *cumulative = rows.get(state, (0, 0.0, *[0] * len(DURATION_BUCKETS_S)))
        buckets = [
            (_le(le), float(n or 0)) for le, n in zip(DURATION_BUCKETS_S, cumulative, strict=True)
        ]
        family.add_metric(
            [str(state)], [*buckets, ("+Inf", float(count))], sum_value=float(total or 0.0)
        )
    return family


def _le(bound: float) -> str:
    return repr(float(bound))


def _queue_metrics(queues: Queues) -> Iterator[Metric]:
    """Queue depths from the /queues view; workers online and the busy fraction."""
    depth = GaugeMetricFamily(
        "scaletune_queue_trials",
        "Dispatched trials per queue: waiting for a worker, or running on one.",
        labels=["queue", "state"],
    )
    for queue in queues.queues:
        depth.add_metric([queue.name, "waiting"], float(queue.waiting))
        depth.add_metric([queue.name, "running"], float(queue.running))
    yield depth
    busy = sum(1 for w in queues.workers if w.trial_id is not None)
    workers = GaugeMetricFamily(
        "scaletune_workers", "Workers with a live heartbeat, busy or idle.", labels=["state"]
    )
    workers.add_metric(["busy"], float(busy))
    workers.add_metric(["idle"], float(len(queues.workers) - busy))
    yield workers
    yield GaugeMetricFamily(
        "scaletune_worker_busy_fraction",
        "Share of the workers online that run a trial now (0 with no worker online).",
        value=busy / len(queues.workers) if queues.workers else 0.0,
    )
    yield GaugeMetricFamily(
        "scaletune_heartbeats_available",
        "1 when the heartbeat store (Redis) answered this scrape, else 0.",
        value=1.0 if queues.heartbeats_available else 0.0,
    )


# -- metrics observed in the request path ------------------------------------------------


class RequestMetrics:
    """Per-app request counters and the ask() latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "scaletune_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.ask_seconds = HistogramMetric(
            "scaletune_ask_latency_seconds",
            "Seconds to answer POST /studies/{id}/ask (hand out trials to an external runner).",
            buckets=ASK_BUCKETS_S,
            registry=registry,
        )

    def observe(self, *, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        if route == ASK_ROUTE and method == "POST":
            self.ask_seconds.observe(seconds)


_IDS_IN_PATH = re.compile(r"^/(studies|trials)/(\d+)")


def ids_from_path(path: str) -> dict[str, int]:
    """``{"study_id": 3}`` for ``/studies/3/...``, ``{"trial_id": 9}`` for ``/trials/9/...``."""
    match = _IDS_IN_PATH.match(path)
    if match is None:
        return {}
    key = "study_id" if match.group(1) == "studies" else "trial_id"
    return {key: int(match.group(2))}


class ObservabilityMiddleware:
    """ASGI middleware: log context from the path, request metrics, one access log line."""

    def __init__(self, app: Any, *, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_and_record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        with log_context(**ids_from_path(scope["path"])):
            try:
                await self.app(scope, receive, send_and_record)
            finally:
                self._record(scope, status["code"], time.perf_counter() - started)

    def _record(self, scope: dict, status: int, seconds: float) -> None:
        # An API route's template, else the mount that served it (``/ui``).
        route = getattr(scope.get("route"), "path", None) or scope.get("root_path") or "unmatched"
        self.metrics.observe(route=route, method=scope["method"], status=status, seconds=seconds)
        logger.info(
            "%s %s %s",
            scope["method"],
            scope["path"],
            status,
            extra={"route": route, "status": status, "duration_ms": round(1e3 * seconds, 2)},
        )


router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_access)],
    responses=refusals(401, 403, 503),
)
def metrics(request: Request) -> Response:
    """Prometheus exposition: trials, studies, queues, workers, durations, ask latency."""
    body = generate_latest(request.app.state.metrics_registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)


def install_observability(app: FastAPI) -> None:
    """Add ``/metrics`` and the request middleware; needs ``app.state.sessions``/``heartbeats``."""
    registry = CollectorRegistry()
    registry.register(
        StoreCollector(
            sessions=app.state.sessions,
            heartbeats=app.state.heartbeats,
            ask_log=getattr(app.state, "ask_log", None),
        )
    )
    app.state.metrics_registry = registry
    app.add_middleware(ObservabilityMiddleware, metrics=RequestMetrics(registry))
    app.include_router(router)
