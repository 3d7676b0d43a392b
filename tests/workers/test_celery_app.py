"""create_celery and WorkerSettings: the delivery guarantees are configured, not assumed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.celery_app import create_celery
from workers.config import WorkerSettings
from workers.contracts import RUN_TRIAL_TASK, TrialRequest, trial_send_options, trial_task_id


def test_the_app_acks_late_prefetches_one_and_speaks_only_json() -> None:
    app = create_celery(
        WorkerSettings(
            broker_url="redis://example:6379/3",
            device="cuda:1",
            visibility_timeout_s=7200,
            broker_key_prefix="st:",
        )
    )
    conf = app.conf
    assert conf.broker_url == "redis://example:6379/3"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.worker_concurrency == 1  # one trial per GPU
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.broker_transport_options["global_keyprefix"] == "st:"
    assert conf.task_ignore_result  # results travel as messages, not through a backend
    task = app.tasks[RUN_TRIAL_TASK]
    assert task.acks_late and task.reject_on_worker_lost


def test_settings_come_from_scaletune_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCALETUNE_BROKER_URL", "redis://broker:6379/1")
    monkeypatch.setenv("SCALETUNE_DEVICE", "cuda:0")
    monkeypatch.setenv("SCALETUNE_MAX_RETRIES", "5")
    settings = WorkerSettings()
    assert (settings.broker_url, settings.device, settings.max_retries) == (
        "redis://broker:6379/1",
        "cuda:0",
        5,
    )
    assert settings.is_gpu and settings.heartbeat_url == "redis://broker:6379/1"
    assert create_celery(settings).conf.worker_concurrency == 1
    monkeypatch.setenv("SCALETUNE_QUEUE_PREFIX", "staging-")
    assert WorkerSettings().control_queue_name == "staging-control"  # as the service names it


def test_a_heartbeat_ttl_too_short_for_its_interval_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"heartbeat_ttl_s .* must exceed twice"):
        WorkerSettings(heartbeat_interval_s=10, heartbeat_ttl_s=15)


def test_send_options_carry_the_deterministic_id_queue_and_time_limits() -> None:
    request = TrialRequest(
        study_id=4,
        trial_id=2,
        attempt=1,
        objective="lm",
        params={},
        soft_time_limit_s=50,
        time_limit_s=60,
    )
    assert trial_task_id(request) == "trial-4-2-1"
    assert trial_send_options(request, queue="gpu") == {
        "task_id": "trial-4-2-1",
        "queue": "gpu",
        "soft_time_limit": 50,
        "time_limit": 60,
    }
