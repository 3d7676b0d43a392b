"""docker-compose.yml, Dockerfile and .env.example checked without a container engine.

`docker compose config` runs where the compose plugin exists; this machine has none,
so the structure the product relies on is checked on the parsed YAML.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from service.config import Settings
from workers.config import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_part_of_the_distributed_mode_is_there() -> None:
    assert {"redis", "postgres", "api", "control", "gpu-worker", "flower"} <= set(SERVICES)
    for name in ("redis", "postgres", "api"):
        assert "healthcheck" in SERVICES[name], name


def test_gpu_workers_reserve_an_nvidia_device() -> None:
    devices = SERVICES["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert SERVICES["gpu-worker"]["environment"]["SCALETUNE_DEVICE"].startswith("cuda")


@pytest.mark.parametrize(
    "service, module",
    [
        ("api", "service.api.app"),
        ("control", "service.orchestration.control"),
        ("gpu-worker", "workers.celery_app"),
        ("flower", "workers.celery_app"),
    ],
)
def test_commands_name_modules_that_exist(service: str, module: str) -> None:
    command = " ".join(SERVICES[service]["command"])
    assert module in command
    assert importlib.util.find_spec(module) is not None


def test_control_worker_serves_the_control_queue_with_its_beat() -> None:
    command = SERVICES["control"]["command"]
    assert command[command.index("-Q") + 1] == "control" and "-B" in command


def test_no_secret_is_written_in_the_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    literal = re.findall(r"PASSWORD\s*[=:]\s*([^\s$?][^\s]*)", text)
    assert literal == [], literal
    assert "${POSTGRES_PASSWORD:?" in text  # compose refuses to start without one


def test_the_api_gets_its_admin_token_from_the_environment_and_refuses_the_placeholder() -> None:
    api = SERVICES["api"]["environment"]
    assert api["SCALETUNE_ADMIN_TOKEN"].startswith("${SCALETUNE_ADMIN_TOKEN:?")
    shared = COMPOSE["x-scaletune"]["environment"]
    # the api's own environment replaces the shared one: it repeats the store and the broker
    assert {key: api[key] for key in shared} == shared
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("SCALETUNE_")
    )
    with pytest.raises(ValidationError, match="at least 32 characters") as info:
        Settings(admin_token=example["SCALETUNE_ADMIN_TOKEN"])
    assert example["SCALETUNE_ADMIN_TOKEN"] not in str(info.value)  # errors hide the value


def test_env_example_names_only_real_settings() -> None:
    known = {f"SCALETUNE_{name.upper()}" for name in Settings.model_fields}
    known |= {f"SCALETUNE_{name.upper()}" for name in WorkerSettings.model_fields}
    known |= {"SCALETUNE_API_PORT"}
    names = [
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("SCALETUNE_")
    ]
    assert names and set(names) <= known, set(names) - known


def test_dockerfile_installs_the_pinned_torch_and_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in text and "pip install -e ." in text


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no docker compose plugin on this machine; the structural checks above apply",
)
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text())
    subprocess.run(
        [
            "docker",
            "compose",
            "--env-file",
            str(env),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "config",
            "-q",
        ],
        check=True,
    )


def test_every_compose_trial_worker_consumes_the_queue_a_study_uses_by_default() -> None:
    """A study without a `queue` field (the README's example) reaches the shipped workers."""
    from service.domain import StudySpec

    default = StudySpec.model_fields["queue"].default
    assert default == WorkerSettings().trial_queue  # a worker started without -Q serves it
    workers = {
        name: service["command"]
        for name, service in SERVICES.items()
        if {"workers.celery_app", "worker"} <= set(service.get("command", []))
    }
    assert {"gpu-worker", "cpu-worker"} <= set(workers)
    for name, command in workers.items():
        assert default in command[command.index("-Q") + 1].split(","), name
