"""``/metrics`` against a real SQLite store and real Redis heartbeats; JSON logs."""

from __future__ import annotations

import json
import logging
import time
import uuid
import warnings

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from search.types import Suggestion
from service.api.app import create_app
from service.config import Settings
from service.logs import JsonFormatter, log_context
from service.orchestration.studies import create_study_row
from service.storage import repository as repo
from service.storage.db import transaction
from tests.auth import ADMIN_TOKEN, authorize, bearer
from tests.service.factories import make_spec
from workers.heartbeat import HeartbeatStore, TrialRef

with warnings.catch_warnings():
    # starlette asks for its "httpx2" fork; the httpx we depend on works for TestClient.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

EXTERNAL_STUDY = {
    "name": "ask-tell",
    "objective": "testbed",
    "budget": {"max_trials": 6},
    "executor": "external",
    "seed": 1,
    "search": {"n_startup": 6},
}


@pytest.fixture
def prefix(redis_url: str):
    name = f"scaletune-metrics-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def make_client(sqlite_url: str, redis_url: str, prefix: str):
    clients = []

    def make(database_url: str | None = None, **overrides) -> TestClient:
        settings = Settings(
            database_url=database_url or sqlite_url,
            broker_url=redis_url,
            heartbeat_prefix=prefix,
            proposals="inline",
            admin_token=ADMIN_TOKEN,
            **overrides,
        )
        client = TestClient(create_app(settings)).__enter__()
        authorize(client)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
        client.app.state.sessions.kw["bind"].dispose()  # before a test database is dropped


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    """Every sample of ``/metrics`` by (name, labels)."""
    response = client.get("/metrics", headers=bearer(ADMIN_TOKEN))  # admin-only
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _trial(session, study, key: str, *, queue: str = "gpu"):
    suggestion = Suggestion(suggestion_id=key, params={"learning_rate": 1e-3}, reason="startup")
    trial = repo.add_trial(session, study=study, suggestion=suggestion, now=0.0, queue=queue)
    return trial


def _finished(session, study, key: str, *, seconds: float, failed: bool = False) -> None:
    trial = _trial(session, study, key)
    repo.start_trial(session, trial=trial, now=100.0, lease_seconds=60.0)
    repo.finish_trial(
        session,
        trial=trial,
        now=100.0 + seconds,
        failed=failed,
        loss=None if failed else 2.0,
        cost_seconds=seconds,
        result_key="0",
        failure_kind="config" if failed else None,
    )


def _populate(sessions, beats: HeartbeatStore) -> int:
    """2 complete (3 s, 100 s), 1 failed (2000 s), 3 running (one beating), 1 waiting."""
    with transaction(sessions) as session:
        study = create_study_row(session, spec=make_spec(), now=0.0)
        _finished(session, study, "a", seconds=3.0)
        _finished(session, study, "b", seconds=100.0)
        _finished(session, study, "c", seconds=2000.0, failed=True)
        running = [_trial(session, study, k, queue=q) for k, q in (("d", "gpu"), ("e", "gpu"))]
        running.append(_trial(session, study, "f", queue="cpu"))
        for trial in running:
            repo.start_trial(session, trial=trial, now=time.time(), lease_seconds=600.0)
        _trial(session, study, "g")
        study_id, beating = study.id, running[0].id
    ref = TrialRef(study_id=study_id, trial_id=beating)
    beats.write(worker="gpu0", device="cuda:0", trial=ref, started_at=time.time())
    beats.write(worker="gpu1", device="cuda:1", trial=None, started_at=None)
    beats.write(worker="cpu0", device="cpu", trial=None, started_at=None)
    return study_id


def test_metrics_count_trials_queues_workers_and_durations(
    database_url: str, make_client, redis_url: str, prefix: str
) -> None:
    client = make_client(database_url)
    beats = HeartbeatStore.from_url(redis_url, prefix=prefix)
    study_id = _populate(client.app.state.sessions, beats)
    samples = scrape(client)

    counts = {"WAITING": 1, "RUNNING": 3, "COMPLETE": 2, "FAILED": 1, "CANCELLED": 0}
    for state, expected in counts.items():
        assert value(samples, "scaletune_trials", state=state) == expected
    assert value(samples, "scaletune_studies", state="RUNNING") == 1

    duration = "scaletune_trial_duration_seconds"
    assert value(samples, f"{duration}_bucket", state="COMPLETE", le="1.0") == 0
    assert value(samples, f"{duration}_bucket", state="COMPLETE", le="5.0") == 1
    assert value(samples, f"{duration}_bucket", state="COMPLETE", le="300.0") == 2
    assert value(samples, f"{duration}_count", state="COMPLETE") == 2
    assert value(samples, f"{duration}_sum", state="COMPLETE") == pytest.approx(103.0)
    assert value(samples, f"{duration}_bucket", state="FAILED", le="900.0") == 0
    assert value(samples, f"{duration}_bucket", state="FAILED", le="3600.0") == 1
    assert value(samples, f"{duration}_bucket", state="FAILED", le="+Inf") == 1

    # A running trial with a heartbeat runs; one without is still waiting for a worker.
    assert value(samples, "scaletune_queue_trials", queue="gpu", state="running") == 1
    assert value(samples, "scaletune_queue_trials", queue="gpu", state="waiting") == 1
    assert value(samples, "scaletune_queue_trials", queue="cpu", state="waiting") == 1
    assert value(samples, "scaletune_workers", state="busy") == 1
    assert value(samples, "scaletune_workers", state="idle") == 2
    assert value(samples, "scaletune_worker_busy_fraction") == pytest.approx(1 / 3)
    assert value(samples, "scaletune_heartbeats_available") == 1

    with transaction(client.app.state.sessions) as session:
        study = repo.get_study(session, study_id=study_id)
        _finished(session, study, "h", seconds=10.0)
    again = scrape(client)
    assert value(again, "scaletune_trials", state="COMPLETE") == 3
    assert value(again, f"{duration}_bucket", state="COMPLETE", le="15.0") == 2
    beats.client.close()


def test_ask_latency_and_requests_are_observed(make_client) -> None:
    client = make_client()
    study = client.post("/studies", json=EXTERNAL_STUDY).json()
    trials = []
    for _ in range(3):
        trials += client.post(f"/studies/{study['id']}/ask", json={"count": 1}).json()["data"]
    for item in trials[:2]:
        response = client.post(f"/trials/{item['trial_id']}/tell", json={"loss": 2.0, "cost": 1})
        assert response.status_code == 200
    assert client.get("/studies/999").status_code == 404
    samples = scrape(client)

    assert value(samples, "scaletune_ask_latency_seconds_count") == 3
    assert value(samples, "scaletune_ask_latency_seconds_bucket", le="+Inf") == 3
    assert value(samples, "scaletune_ask_latency_seconds_sum") > 0
    requests = "scaletune_http_requests_total"
    tell = {"route": "/trials/{trial_id}/tell", "method": "POST"}
    assert value(samples, requests, **tell, status="200") == 2
    assert value(samples, requests, route="/studies/{study_id}", method="GET", status="404") == 1
    assert value(samples, "scaletune_trials", state="COMPLETE") == 2
    assert value(samples, "scaletune_trials", state="RUNNING") == 1


def test_apps_keep_separate_registries(make_client) -> None:
    first, second = make_client(), make_client()
    first.get("/health")
    health = {"route": "/health", "method": "GET", "status": "200"}
    assert value(scrape(first), "scaletune_http_requests_total", **health) == 1
    key = ("scaletune_http_requests_total", frozenset(health.items()))
    assert key not in scrape(second)


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_carry_study_and_trial_ids(make_client, capsys, restore_root_logger) -> None:
    client = make_client(log_format="json")
    study = client.post("/studies", json=EXTERNAL_STUDY).json()
    (item,) = client.post(f"/studies/{study['id']}/ask", json={"count": 1}).json()["data"]
    client.post(f"/trials/{item['trial_id']}/tell", json={"loss": 2.0, "cost": 1.0})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    access = [line for line in lines if line["logger"] == "scaletune.http"]
    ask = next(line for line in access if line["route"] == "/studies/{study_id}/ask")
    assert ask["study_id"] == study["id"] and ask["status"] == 200 and ask["level"] == "INFO"
    tell = next(line for line in access if line["route"] == "/trials/{trial_id}/tell")
    assert tell["trial_id"] == item["trial_id"] and tell["duration_ms"] >= 0


def test_json_formatter_merges_context_and_extra() -> None:
    record = logging.makeLogRecord(
        {
            "name": "service.orchestration.control",
            "levelname": "WARNING",
            "msg": "trial %s lost",
            "args": (9,),
        }
    )
    record.attempt = 2
    with log_context(study_id=3), log_context(trial_id=9):
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "trial 9 lost" and line["level"] == "WARNING"
    assert (line["study_id"], line["trial_id"], line["attempt"]) == (3, 9, 2)
    assert "study_id" not in json.loads(JsonFormatter().format(record))


@pytest.mark.integration
def test_engine_ask_latency_comes_from_every_asking_process(make_client, redis_url, prefix) -> None:
    """A scheduler in another process (here: another object, as a control worker holds)
    records each engine.ask in Redis; the API's /metrics shows them all."""
    from service.domain import StudySpec
    from service.orchestration.ask_latency import AskLatencyLog
    from service.orchestration.scheduler import Scheduler

    client = make_client()
    log = AskLatencyLog.from_url(redis_url, prefix=prefix)
    timings: list[float] = []

    def timer(seconds: float) -> None:
        timings.append(seconds)
        log.record(seconds)

    scheduler = Scheduler(
        sessions=client.app.state.sessions, settings=client.app.state.settings, ask_timer=timer
    )
    study_id = scheduler.create_study(StudySpec.model_validate(EXTERNAL_STUDY))
    scheduler.ask_external(study_id, count=2)
    scheduler.ask_external(study_id, count=1)
    samples = scrape(client)

    assert len(timings) >= 2
    assert value(samples, "scaletune_engine_ask_seconds_count") == len(timings)
    assert value(samples, "scaletune_engine_ask_seconds_sum") == pytest.approx(sum(timings))
    fast = sum(t <= 10.0 for t in timings)
    assert value(samples, "scaletune_engine_ask_seconds_bucket", le="10.0") == fast
