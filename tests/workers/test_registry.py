"""workers.objectives.registry: only registered names, plugins through entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.workers.celery_harness import REPO_ROOT
from workers.objectives.base import InfrastructureError, Objective
from workers.objectives.registry import (
    InvalidObjectiveOptionsError,
    UnknownObjectiveError,
    available_objectives,
    create_objective,
    objective_class,
)


def test_builtins_are_registered() -> None:
    assert {"lm", "testbed"} <= set(available_objectives())
    assert objective_class("lm").name == "lm"
    assert objective_class("testbed").name == "testbed"


def test_plugins_register_through_entry_points(test_objectives: None) -> None:
    assert {"t_sleep", "t_oom"} <= set(available_objectives())
    objective = create_objective("t_sleep")
    assert isinstance(objective, Objective) and objective.name == "t_sleep"


@pytest.mark.parametrize("name", ["os:system", "workers.objectives.lm:LMObjective", "../lm", ""])
def test_a_name_that_is_not_registered_is_refused_without_importing_it(name: str) -> None:
    with pytest.raises(UnknownObjectiveError, match="unknown objective") as info:
        objective_class(name)
    assert isinstance(info.value, InfrastructureError)
    assert "registered: lm" in str(info.value)


def test_options_the_objective_does_not_take_are_refused_clearly() -> None:
    with pytest.raises(InvalidObjectiveOptionsError, match=r"'lm' does not accept .*'bogus'"):
        create_objective("lm", {"bogus": 1})


def test_light_modules_do_not_import_torch() -> None:
    code = (
        "import sys, workers.contracts, workers.config, workers.heartbeat, "
        "workers.celery_app, workers.runner, workers.objectives.registry as r; "
        "r.available_objectives(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_the_trainer_imports_without_pydantic_or_celery() -> None:
    code = (
        "import sys; sys.modules['pydantic'] = sys.modules['celery'] = None; "
        "sys.modules['search'] = None; "
        "import workers.training.trainer, workers.training.cost"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
