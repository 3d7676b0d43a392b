"""workers.runner: one TrialRequest to one TrialResult, in-process (the embedded path)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from workers.contracts import TrialRequest
from workers.heartbeat import HeartbeatPublisher, HeartbeatStore
from workers.objectives.base import InfrastructureError
from workers.runner import config_failure_reason, failed_result, run_trial_request

pytestmark = pytest.mark.usefixtures("test_objectives")


def _request(objective: str, params: dict | None = None, **fields) -> TrialRequest:
    return TrialRequest(
        study_id=3, trial_id=9, attempt=1, objective=objective, params=params or {}, **fields
    )


def test_a_completed_trial_carries_loss_cost_curve_and_metrics() -> None:
    result = run_trial_request(_request("t_sleep", {"seconds": 0.2, "loss": 0.75}), worker="w")
    assert (result.study_id, result.trial_id, result.attempt) == (3, 9, 1)
    assert result.status == "completed" and result.loss == 0.75
    assert result.failure_kind is None and result.worker == "w"
    assert result.cost_seconds >= 0.2
    assert result.curve and result.metrics["steps"] == len(result.curve)


def test_out_of_memory_is_the_configurations_fault() -> None:
    result = run_trial_request(_request("t_oom"))
    assert result.status == "failed" and result.failure_kind == "config"
    assert result.failure_reason.startswith("out of memory: CUDA out of memory")


def test_a_nan_loss_is_a_config_failure_that_keeps_its_cost() -> None:
    result = run_trial_request(_request("t_nan", {"cost_seconds": 2.5}))
    assert (result.status, result.failure_kind, result.cost_seconds) == ("failed", "config", 2.5)
    assert result.loss is None


def test_unexpected_errors_and_unknown_objectives_are_infrastructure_errors() -> None:
    with pytest.raises(InfrastructureError, match="ZeroDivisionError: division by zero"):
        run_trial_request(_request("t_crash"))
    with pytest.raises(InfrastructureError, match=r"unknown objective 'nope'; registered: .*lm"):
        run_trial_request(_request("nope"))


def test_an_objective_infrastructure_error_propagates(tmp_path: Path) -> None:
    params = {"counter_file": str(tmp_path / "n"), "fail_times": 1}
    with pytest.raises(InfrastructureError, match="data volume not mounted"):
        run_trial_request(_request("t_flaky", params))
    assert run_trial_request(_request("t_flaky", params)).status == "completed"


def test_the_soft_time_limit_stops_the_trial_as_a_config_failure() -> None:
    request = _request("t_sleep", {"seconds": 30.0}, soft_time_limit_s=0.2)
    result = run_trial_request(request)
    assert (result.status, result.failure_kind) == ("failed", "config")
    assert "soft time limit of 0.2 s" in result.failure_reason
    assert 0.2 <= result.cost_seconds < 5.0


def test_cancellation_stops_the_trial_promptly() -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    result = run_trial_request(_request("t_sleep", {"seconds": 30.0}), cancelled=cancel.is_set)
    assert (result.status, result.failure_kind, result.failure_reason) == (
        "failed",
        "infrastructure",
        "cancelled",
    )
    assert result.cost_seconds < 5.0


def test_invalid_objective_options_are_a_config_failure() -> None:
    result = run_trial_request(_request("t_sleep", objective_options={"colour": "red"}))
    assert result.failure_kind == "config"
    assert "takes no objective_options, got ['colour']" in result.failure_reason


def test_the_heartbeat_shows_the_trial_while_it_runs_and_clears_it_after(redis_url: str) -> None:
    store = HeartbeatStore.from_url(redis_url, prefix="test-runner-hb", ttl_s=5.0)
    publisher = HeartbeatPublisher(store, worker="w1", device="cpu", interval_s=0.05).start()
    seen = []

    def watch() -> None:
        while not seen:
            beat = store.trial(3, 9)
            if beat is not None and beat.step:
                seen.append(beat)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_trial_request(_request("t_sleep", {"seconds": 0.5}), heartbeat=publisher, task_id="t-1")
        watcher.join(timeout=5)
        assert seen and seen[0].worker == "w1" and seen[0].trial.task_id == "t-1"
        assert seen[0].loss == pytest.approx(1.0 / seen[0].step)
        assert store.trial(3, 9) is None
        (worker,) = store.workers()
        assert worker.worker == "w1" and worker.trial is None
    finally:
        publisher.stop()
    assert store.workers() == []


def test_config_failure_reasons_are_recognised_narrowly() -> None:
    assert config_failure_reason(RuntimeError("CUDA error: out of memory")).startswith("out of")
    assert config_failure_reason(FloatingPointError("overflow")) == "non-finite value: overflow"
    assert config_failure_reason(RuntimeError("device-side assert triggered")) is None
    assert config_failure_reason(KeyError("x")) is None


def test_failed_result_is_a_valid_result() -> None:
    result = failed_result(
        _request("t_sleep"),
        failure_kind="infrastructure",
        reason="lost",
        cost_seconds=3.0,
        worker="w",
    )
    assert (result.status, result.failure_kind, result.cost_seconds) == (
        "failed",
        "infrastructure",
        3.0,
    )
