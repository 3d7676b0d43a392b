"""Trials sent to a queue that no live worker consumes (the real stack: API, control
worker and a Celery trial worker on another queue, PostgreSQL): they wait without
spending attempts, and the study says so in GET /studies/{id}, GET /queues,
``scaletune status`` and ``scaletune watch``, and once in the control worker's log. A
worker started on the queue later runs them as their first attempt."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from bench.processes import stop_process_group
from service import cli
from service.api.app import create_app
from service.interop.client import ScaletuneClient
from service.storage.db import make_engine, make_sessionmaker, transaction
from service.storage.tables import TrialRow
from tests.auth import ADMIN_TOKEN, authorize, bearer
from tests.e2e.conftest import _start, wait_for
from tests.reliability.faults import TestClient, cluster_settings, trial_rows

pytestmark = pytest.mark.integration

GRACE_S = 3.0  # fast_reclaim_cluster's heartbeat grace; it allows two attempts
STUDY = {
    "name": "unserved",
    "objective": "testbed",
    "budget": {"max_trials": 2},
    "in_flight": 2,
    "queue": "nobody",  # the cluster's trial worker consumes "trials" only
    "seed": 3,
    "search": {"n_startup": 4},
}
WARNING = "which no live worker consumes"


def _leases(database_url: str, study_id: int) -> list[tuple[str, int, float | None]]:
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            rows = session.execute(
                select(TrialRow.state, TrialRow.attempt, TrialRow.lease_expires_at)
                .where(TrialRow.study_id == study_id)
                .order_by(TrialRow.number)
            ).all()
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def _still_waiting_after(url: str, study_id: int, deadline: float):  # type: ignore[no-untyped-def]
    """True once both trials' leases were pushed past ``deadline``, all on attempt 0;
    fails at once if a trial was requeued or failed meanwhile."""
    rows = _leases(url, study_id)
    assert all(attempt == 0 and state == "RUNNING" for state, attempt, _ in rows), rows
    return len(rows) == 2 and all(lease > deadline for _, _, lease in rows)


def test_trials_on_a_queue_without_workers_wait_unspent_and_say_so(
    fast_reclaim_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = fast_reclaim_cluster
    url = cluster.database_url
    settings = cluster_settings(cluster)
    settings.admin_token = SecretStr(ADMIN_TOKEN)
    runner = CliRunner()
    late_worker = None
    with TestClient(create_app(settings)) as client:
        authorize(client)
        monkeypatch.setattr(
            "service.cli.common.api_client", lambda api, token: ScaletuneClient(http=client)
        )
        study_id = client.post("/studies", json=STUDY).json()["id"]
        first = wait_for(
            lambda: (rows := _leases(url, study_id)) and len(rows) == 2 and rows,
            timeout_s=30,
            what="two dispatched trials",
        )
        # Several reclaim periods pass: each pushes the leases on instead of requeueing.
        deadline = max(lease for _, _, lease in first) + 2 * GRACE_S
        wait_for(
            lambda: _still_waiting_after(url, study_id, deadline),
            timeout_s=60,
            what=lambda: f"leases past {deadline}; trials {_leases(url, study_id)}",
        )

        assert client.get(f"/studies/{study_id}").json()["queue_workers"] == 0
        queues = client.get("/queues", headers=bearer(ADMIN_TOKEN)).json()["queues"]
        by_name = {q["name"]: q for q in queues}
        assert by_name[f"{cluster.prefix}nobody"]["consumers"] == 0
        assert by_name[f"{cluster.prefix}nobody"]["waiting"] == 2
        assert by_name[f"{cluster.prefix}trials"]["consumers"] >= 1

        status = runner.invoke(cli.app, ["status", str(study_id)], env={"COLUMNS": "200"})
        assert status.exit_code == 0, status.output
        assert "nobody: no live worker consumes it" in status.output
        listed = runner.invoke(cli.app, ["list"], env={"COLUMNS": "80"})
        assert listed.exit_code == 0, listed.output
        assert [str(study_id), "unserved", "testbed", "RUNNING"] in [
            line.split() for line in listed.output.splitlines()
        ]
        log = (tmp_path / "control.log").read_text()
        assert log.count(f"study {study_id}: 2 trials wait on queue") == 1, log

        stopped = runner.invoke(cli.app, ["stop", str(study_id)])
        assert stopped.exit_code == 0, stopped.output
        watched = runner.invoke(cli.app, ["watch", str(study_id)], env={"COLUMNS": "200"})
        assert watched.exit_code == 0, watched.output
        assert "nobody: no live worker consumes it" in watched.output

        try:
            args = ["-A", "workers.celery_app", "worker", "-Q", f"{cluster.prefix}nobody"]
            args += ["-c", "1", "-n", f"late-{cluster.prefix}@%h", "--loglevel", "WARNING"]
            late_worker = _start(args, cluster.env, tmp_path / "late.log")
            done = wait_for(
                lambda: (
                    (rows := trial_rows(url, study_id))
                    and all(r["state"] == "COMPLETE" for r in rows)
                    and rows
                ),
                timeout_s=60,
                what=lambda: f"the waiting trials to run; trials {trial_rows(url, study_id)}",
            )
            assert [t["attempt"] for t in done] == [0, 0]  # their first attempt, no other
            assert client.get(f"/studies/{study_id}").json()["queue_workers"] >= 1
        finally:
            if late_worker is not None:
                stop_process_group(late_worker)
