"""workers.objectives.registry: only registered names, plugins through entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.workers.celery_harness import REPO_ROOT
from workers.objectives.base import InfrastructureError, Objective
from workers.objectives.options import LMOptions
from workers.objectives.registry import (
    InvalidObjectiveOptionsError,
    InvalidParameterNamesError,
    UnknownObjectiveError,
    available_objectives,
    check_options,
    check_parameter_names,
    create_objective,
    objective_class,
    options_model,
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
    with pytest.raises(InvalidObjectiveOptionsError, match=r"'lm' does not accept .*bogus"):
        create_objective("lm", {"bogus": 1})
    with pytest.raises(InvalidObjectiveOptionsError, match=r"eval_points: .*greater than"):
        check_options("lm", {"eval_points": 0})
    check_options("lm", {"eval_points": 2, "norm": "rmsnorm"})


@pytest.mark.parametrize("name", ["lm", "testbed"])
def test_a_builtin_takes_every_option_its_model_declares(name: str) -> None:
    """Checked at creation against the model, run through the constructor: they agree."""
    model = options_model(name)
    assert model is not None and model.model_fields
    objective = create_objective(name, model().model_dump())
    assert objective.name == name


def test_a_space_must_hold_the_parameters_its_objective_runs(test_objectives: None) -> None:
    testbed = ["n_params", "tokens", "learning_rate", "batch_size", "warmup_fraction"]
    testbed += ["weight_decay", "schedule"]
    check_parameter_names("testbed", testbed)
    with pytest.raises(
        InvalidParameterNamesError, match=r"unknown \['lr'\]; missing \['schedule'\]"
    ):
        check_parameter_names("testbed", [*testbed[:-1], "lr"])
    check_parameter_names("lm", ["learning_rate"])  # lm's parameters are all optional
    with pytest.raises(InvalidParameterNamesError, match=r"'lm' .*unknown \['lr'\]"):
        check_parameter_names("lm", ["lr"])
    check_parameter_names("t_sleep", ["anything"])  # a plugin that declares none


def test_lm_takes_exactly_the_parameters_it_declares() -> None:
    from workers.objectives.lm import DEFAULT_PARAMS

    assert LMOptions.parameters == {*DEFAULT_PARAMS, "n_heads"}


def test_a_plugin_without_an_options_model_takes_no_options(test_objectives: None) -> None:
    assert options_model("t_sleep") is None
    check_options("t_sleep", {})
    with pytest.raises(InvalidObjectiveOptionsError, match=r"'t_sleep' takes no objective_options"):
        check_options("t_sleep", {"colour": "red"})


def test_a_plugin_declares_its_options_model_through_entry_points(test_objectives: None) -> None:
    assert options_model("t_nan").__name__ == "NaNOptions"
    with pytest.raises(InvalidObjectiveOptionsError, match=r"'t_nan' does not accept .*colour"):
        check_options("t_nan", {"colour": "red"})


def test_light_modules_do_not_import_torch() -> None:
    code = (
        "import sys, workers.contracts, workers.config, workers.heartbeat, "
        "workers.celery_app, workers.runner, workers.objectives.registry as r; "
        "r.available_objectives(); r.check_options('lm', {'norm': 'rmsnorm'}); "
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
