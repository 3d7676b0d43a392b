"""The run_trial task in real Celery worker processes on the real Redis.

Each test sends TrialRequests by task name, as the service does, and reads the
TrialResults that come back as RECORD_RESULT_TASK messages on the control queue.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.workers.celery_harness import Harness, wait_for
from workers.celery_app import cancel_trial

pytestmark = pytest.mark.integration


def test_a_trial_runs_and_its_result_comes_back(harness: Harness) -> None:
    request = harness.request("t_sleep", {"seconds": 0.3, "loss": 0.125}, seed=7)
    harness.send(request)
    beat = harness.workers[0].running(request)
    assert harness.heartbeats.trial(request.study_id, request.trial_id).worker == beat.worker

    result = harness.next_result(timeout_s=30)
    assert result["trial_id"] == request.trial_id
    assert result["status"] == "completed"
    assert result["loss"] == 0.125
    assert result["cost_seconds"] >= 0.3
    assert result["curve"] and result["curve"][-1]["loss"] > 0
    assert result["worker"] == harness.workers[0].name
    assert result["metrics"]["deliveries"] == 1
    # Once done, the trial no longer beats and the worker shows as idle.
    assert harness.heartbeats.trial(request.study_id, request.trial_id) is None
    wait_for(lambda: harness.workers[0].beat().trial is None, timeout_s=5, what="idle worker")


@pytest.mark.parametrize(
    ("objective", "params", "reason"),
    [("t_oom", {}, "out of memory"), ("t_nan", {"cost_seconds": 1.5}, "non-finite loss")],
)
def test_a_config_failure_comes_back_as_a_failed_observation(
    harness: Harness, objective: str, params: dict, reason: str
) -> None:
    harness.send(harness.request(objective, params))
    result = harness.next_result(timeout_s=30)
    assert result["status"] == "failed"
    assert result["failure_kind"] == "config"
    assert reason in result["failure_reason"]
    assert result["loss"] is None
    assert result["metrics"]["retries"] == 0  # the configuration's fault: never retried
    if objective == "t_nan":
        assert result["cost_seconds"] == 1.5  # the cost spent is kept


def test_an_infrastructure_failure_is_retried_then_succeeds(
    harness: Harness, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    harness.send(harness.request("t_flaky", {"counter_file": str(counter), "fail_times": 2}))
    result = harness.next_result(timeout_s=30)
    assert result["status"] == "completed"
    assert result["metrics"]["runs"] == 3
    assert result["metrics"]["retries"] == 2


@pytest.mark.parametrize("objective", ["t_crash", "no_such_objective"])
def test_an_infrastructure_failure_that_persists_is_reported_as_such(
    harness: Harness, objective: str
) -> None:
    harness.send(harness.request(objective, {}))
    result = harness.next_result(timeout_s=30)
    assert result["status"] == "failed"
    assert result["failure_kind"] == "infrastructure"
    assert "gave up after 2 retries" in result["failure_reason"]
    if objective == "no_such_objective":
        assert "unknown objective 'no_such_objective'" in result["failure_reason"]


def test_a_pool_child_killed_mid_trial_leads_to_redelivery(harness: Harness) -> None:
    worker = harness.workers[0]
    request = harness.request("t_sleep", {"seconds": 1.0})
    harness.send(request)
    victim = worker.running(request).pid
    os.kill(victim, signal.SIGKILL)

    result = harness.next_result(timeout_s=60)
    assert result["trial_id"] == request.trial_id
    assert result["status"] == "completed"
    assert result["metrics"]["deliveries"] == 2
    assert worker.child(not_pid=victim).pid != victim
    assert harness.no_result(within_s=0.5)  # exactly one result


def test_a_revoked_trial_stops(harness: Harness) -> None:
    worker = harness.workers[0]
    request = harness.request("t_sleep", {"seconds": 60.0, "ignore_stop": True})
    harness.send(request)
    victim = worker.running(request).pid
    cancel_trial(harness.app, request)
    wait_for(lambda: not _alive(victim), timeout_s=15, what="the revoked trial's process to end")

    # The worker is free again: a new trial runs at once, and only its result arrives.
    follow_up = harness.request("t_sleep", {"seconds": 0.1})
    harness.send(follow_up)
    result = harness.next_result(timeout_s=30)
    assert result["trial_id"] == follow_up.trial_id


def test_time_limits_fail_the_trial_as_a_configuration_failure(harness: Harness) -> None:
    soft = harness.request("t_sleep", {"seconds": 30.0}, soft_time_limit_s=0.5)
    hard = harness.request("t_sleep", {"seconds": 30.0, "ignore_stop": True}, time_limit_s=1.0)
    harness.send(soft)
    result = harness.next_result(timeout_s=30)
    assert (result["trial_id"], result["failure_kind"]) == (soft.trial_id, "config")
    assert "soft time limit" in result["failure_reason"]
    # The cost is what the trial ran: about the limit (the clocks of the limit's timer
    # and of the cost measurement start a few milliseconds apart).
    assert 0.4 <= result["cost_seconds"] < 10

    harness.send(hard)
    result = harness.next_result(timeout_s=30)
    assert (result["trial_id"], result["failure_kind"]) == (hard.trial_id, "config")
    assert "hard time limit of 1.0 s" in result["failure_reason"]


def test_a_whole_worker_killed_mid_trial_is_redelivered_after_the_visibility_timeout(
    redis_url: str, tmp_path: Path
) -> None:
    h = Harness(redis_url, tmp_path, visibility_timeout_s=3.0, restore_interval_s=0.5)
    try:
        first = h.start_worker()
        request = h.request("t_sleep", {"seconds": 2.0})
        h.send(request)
        first.running(request)
        first.kill()  # main process and child: nobody is left to reject the message
        h.start_worker()
        # The dead worker drops out of the online list once its heartbeat is older than the TTL.
        wait_for(
            lambda: first.name not in {b.worker for b in h.heartbeats.workers()},
            timeout_s=10,
            what="the killed worker to go offline",
        )
        result = h.next_result(timeout_s=60)
        assert result["trial_id"] == request.trial_id
        assert result["status"] == "completed"
        assert result["metrics"]["deliveries"] == 2
        assert result["worker"] == h.workers[1].name
    finally:
        h.close()


def test_a_trial_that_keeps_killing_its_worker_is_given_up_as_infrastructure(
    redis_url: str, tmp_path: Path
) -> None:
    h = Harness(redis_url, tmp_path, max_deliveries=1)
    try:
        worker = h.start_worker(SCALETUNE_MAX_DELIVERIES="1")
        request = h.request("t_sleep", {"seconds": 30.0})
        h.send(request)
        os.kill(worker.running(request).pid, signal.SIGKILL)
        result = h.next_result(timeout_s=60)  # the redelivery is refused, not run again
        assert (result["trial_id"], result["status"]) == (request.trial_id, "failed")
        assert result["failure_kind"] == "infrastructure"
        assert result["failure_reason"] == "its worker was lost 1 time(s) while running this trial"
    finally:
        h.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
