"""Objectives by name: the built-ins and those installed under an entry-point group.

A trial request names its objective; that name is looked up here and nowhere else, so
nothing sent over the API or the queue can make a worker import a module of its choosing.
Built-ins are imported on first use (``lm`` pulls in torch; the service can list names
without it). A package adds objectives by declaring, in its ``pyproject.toml``::

    [project.entry-points."scaletune.objectives"]
    my_objective = "my_package.objectives:MyObjective"

where ``MyObjective`` subclasses ``workers.objectives.base.Objective``. An objective
takes as ``objective_options`` what its options model (a pydantic model) declares, and
nothing when it has none; a plugin declares its model under a second group, in a module
that must import nothing heavy (the service loads it to check a study at creation); its
class variables ``parameters`` and ``required_parameters`` (see
``workers.objectives.options.ObjectiveOptions``) name the params a trial may and must hold::

    [project.entry-points."scaletune.objective_options"]
    my_objective = "my_package.options:MyOptions"
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from workers.objectives.base import InfrastructureError, Objective

ENTRY_POINT_GROUP = "scaletune.objectives"
OPTIONS_ENTRY_POINT_GROUP = "scaletune.objective_options"

# name -> "module:Class", fixed in code; never built from request content.
_BUILTINS: dict[str, str] = {
    "lm": "workers.objectives.lm:LMObjective",
    "testbed": "workers.objectives.testbed:TestbedObjective",
}
_BUILTIN_OPTIONS: dict[str, str] = {
    "lm": "workers.objectives.options:LMOptions",
    "testbed": "workers.objectives.options:TestbedOptions",
}


class UnknownObjectiveError(InfrastructureError, LookupError):
    """No objective of that name is registered on this worker.

    An infrastructure error, not the configuration's fault: another worker (with the
    plugin installed) may be able to run the trial.
    """


class InvalidObjectiveOptionsError(ValueError):
    """``objective_options`` that the objective does not accept."""


class InvalidParameterNamesError(ValueError):
    """A search space whose parameter names the objective does not take, or lacks some."""


class InvalidScalingAxesError(ValueError):
    """A scaling axis that names neither a parameter nor a metric of the objective."""


def _plugin_entry_points(group: str = ENTRY_POINT_GROUP) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def available_objectives() -> list[str]:
    """Every name a request may use, without importing any objective."""
    return sorted(set(_BUILTINS) | set(_plugin_entry_points()))


def objective_class(name: str) -> type[Objective]:
    """The registered class for ``name``; built-ins win over a plugin of the same name."""
    if name in _BUILTINS:
        module_name, class_name = _BUILTINS[name].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
    else:
        plugin = _plugin_entry_points().get(name)
        if plugin is None:
            raise UnknownObjectiveError(
                f"unknown objective {name!r}; registered: {', '.join(available_objectives())}. "
                f"Install a package that declares it under the {ENTRY_POINT_GROUP!r} entry points."
            )
        cls = plugin.load()
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(f"objective {name!r} resolves to {cls!r}, not an Objective subclass")
    return cls


def options_model(name: str) -> type[BaseModel] | None:
    """The model of the options objective ``name`` takes; None: it takes none.

    Imports the model's module only, never the objective's.
    """
    if name in _BUILTIN_OPTIONS:
        module_name, class_name = _BUILTIN_OPTIONS[name].split(":")
        model = getattr(importlib.import_module(module_name), class_name)
    else:
        plugin = _plugin_entry_points(OPTIONS_ENTRY_POINT_GROUP).get(name)
        if plugin is None:
            return None
        model = plugin.load()
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"options of objective {name!r} resolve to {model!r}, not a pydantic model")
    return model


def check_options(name: str, options: dict[str, Any] | None) -> None:
    """InvalidObjectiveOptionsError, naming each bad option, unless ``options`` suit ``name``."""
    model = options_model(name)
    if model is None:
        if options:
            raise InvalidObjectiveOptionsError(
                f"objective {name!r} takes no objective_options, got {sorted(options)}; "
                f"a plugin declares its options under the {OPTIONS_ENTRY_POINT_GROUP!r} "
                "entry points"
            )
        return
    try:
        model.model_validate(options or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(options)'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise InvalidObjectiveOptionsError(
            f"objective {name!r} does not accept these objective_options: {problems} "
            f"(it takes: {', '.join(model.model_fields) or 'none'})"
        ) from exc


def check_parameter_names(name: str, names: Iterable[str]) -> None:
    """InvalidParameterNamesError unless ``names`` are parameters objective ``name`` takes,
    with every one it needs (nothing is checked where its options model declares none)."""
    model = options_model(name)
    known = getattr(model, "parameters", None)
    if known is None:
        return
    problems = []
    unknown = sorted(set(names) - set(known))
    if unknown:
        problems.append(f"unknown {unknown}")
    missing = sorted(set(getattr(model, "required_parameters", ())) - set(names))
    if missing:
        problems.append(f"missing {missing}")
    if problems:
        raise InvalidParameterNamesError(
            f"objective {name!r} cannot run this space's parameters: {'; '.join(problems)} "
            f"(it takes: {', '.join(sorted(known))})"
        )


def check_scaling_axes(name: str, axes: Iterable[str], space_names: Iterable[str] | None) -> None:
    """InvalidScalingAxesError unless each axis names a parameter of the space (None: the
    objective's ``parameters``), a metric objective ``name`` reports, or ``cost``: an axis
    that names nothing is otherwise found only when the rules are fitted, after the whole
    budget was spent. Nothing is checked where the options model declares no metrics."""
    model = options_model(name)
    metrics = getattr(model, "metrics", None)
    params = getattr(model, "parameters", None) if space_names is None else space_names
    if metrics is None or params is None:
        return
    known = set(params) | set(metrics) | {"cost"}
    unknown = [axis for axis in axes if axis not in known]
    if unknown:
        raise InvalidScalingAxesError(
            f"scaling axes {unknown} name no parameter of the space and no metric objective "
            f"{name!r} reports (parameters: {', '.join(sorted(params))}; metrics: "
            f"{', '.join(sorted(metrics))}; or cost)"
        )


def create_objective(name: str, options: dict[str, Any] | None = None) -> Objective:
    """Instantiate objective ``name`` with ``options`` (checked first) as keyword arguments."""
    cls = objective_class(name)
    check_options(name, options)
    return cls(**(options or {}))
