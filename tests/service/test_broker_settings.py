"""The broker, queue and heartbeat settings are one definition (``BrokerSettings``): the
service's ``Settings`` and the workers' ``WorkerSettings`` read each variable alike, so a
deployment's services and workers meet on the same broker keys, queues and heartbeats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings
from service.orchestration.messaging import control_queue, create_sender
from workers.config import BrokerSettings, WorkerSettings


@pytest.fixture(autouse=True)
def _bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SCALETUNE_* variable and no .env file from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("SCALETUNE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("field", sorted(BrokerSettings.model_fields))
def test_both_sides_default_alike(field: str) -> None:
    assert getattr(Settings(), field) == getattr(WorkerSettings(), field)


@pytest.mark.parametrize(
    "variable, field, value",
    [
        ("SCALETUNE_BROKER_URL", "broker_url", "redis://broker:6379/3"),
        ("SCALETUNE_BROKER_KEY_PREFIX", "broker_key_prefix", "prod:"),
        ("SCALETUNE_QUEUE_PREFIX", "queue_prefix", "staging-"),
        ("SCALETUNE_CONTROL_QUEUE", "control_queue", "ctl"),
        ("SCALETUNE_HEARTBEAT_REDIS_URL", "heartbeat_redis_url", "redis://beats:6379/0"),
        ("SCALETUNE_HEARTBEAT_PREFIX", "heartbeat_prefix", "hb"),
    ],
)
def test_both_sides_read_each_variable_alike(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str, value: str
) -> None:
    assert field in BrokerSettings.model_fields
    monkeypatch.setenv(variable, value)
    assert getattr(Settings(), field) == getattr(WorkerSettings(), field) == value


def test_queues_heartbeats_and_keys_meet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALETUNE_QUEUE_PREFIX", "staging-")
    monkeypatch.setenv("SCALETUNE_CONTROL_QUEUE", "ctl")
    monkeypatch.setenv("SCALETUNE_BROKER_KEY_PREFIX", "prod:")
    monkeypatch.setenv("SCALETUNE_HEARTBEAT_REDIS_URL", "redis://beats:6379/0")
    service, worker = Settings(), WorkerSettings()
    assert control_queue(service) == worker.control_queue_name == "staging-ctl"
    assert service.queue_name("gpu") == worker.queue_name("gpu") == "staging-gpu"
    assert service.heartbeat_url == worker.heartbeat_url == "redis://beats:6379/0"
    sender = create_sender(service)
    assert sender.conf.broker_transport_options["global_keyprefix"] == "prod:"
    assert sender.conf.task_default_queue == "staging-ctl"


def test_an_empty_heartbeat_prefix_is_refused_by_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALETUNE_HEARTBEAT_PREFIX", "")
    for settings in (Settings, WorkerSettings):
        with pytest.raises(ValidationError, match="heartbeat_prefix"):
            settings()
