"""Objectives by name: the built-ins and those installed under an entry-point group.

A trial request names its objective; that name is looked up here and nowhere else, so
nothing sent over the API or the queue can make a worker import a module of its choosing.
Built-ins are imported on first use (``lm`` pulls in torch; the service can list names
without it). A package adds objectives by declaring, in its ``pyproject.toml``::

    [project.entry-points."scaletune.objectives"]
    my_objective = "my_package.objectives:MyObjective"

where ``MyObjective`` subclasses ``workers.objectives.base.Objective``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from workers.objectives.base import InfrastructureError, Objective

ENTRY_POINT_GROUP = "scaletune.objectives"

# name -> "module:Class", fixed in code; never built from request content.
_BUILTINS: dict[str, str] = {
    "lm": "workers.objectives.lm:LMObjective",
    "testbed": "workers.objectives.testbed:TestbedObjective",
}


class UnknownObjectiveError(InfrastructureError, LookupError):
    """No objective of that name is registered on this worker.

    An infrastructure error, not the configuration's fault: another worker (with the
    plugin installed) may be able to run the trial.
    """


class InvalidObjectiveOptionsError(ValueError):
    """``objective_options`` that the objective's constructor does not accept."""


def _plugin_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


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


def create_objective(name: str, options: dict[str, Any] | None = None) -> Objective:
    """Instantiate objective ``name`` with ``options`` as constructor keyword arguments."""
    cls = objective_class(name)
    try:
        return cls(**(options or {}))
    except TypeError as exc:
        raise InvalidObjectiveOptionsError(
            f"objective {name!r} does not accept options {sorted(options or {})}: {exc}"
        ) from exc
