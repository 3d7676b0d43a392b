"""scaletune's search engine: pure computation, no I/O.

The public surface is ``__all__``. Names resolve lazily (PEP 562) so that importing
``search`` or ``search.space`` (as the API process does) never loads torch; the engine
and the scaling fits load their numerical stack on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ParetoSearch": "search.engine",
    "SearchSettings": "search.settings",
    "StudyLimits": "search.pacing",
    "SearchSpace": "search.space",
    "LogParam": "search.space",
    "LinearParam": "search.space",
    "LogitParam": "search.space",
    "IntParam": "search.space",
    "Pow2Param": "search.space",
    "ChoiceParam": "search.space",
    "Observation": "search.types",
    "Suggestion": "search.types",
    "History": "search.history",
    "pareto_mask": "search.pareto",
    "front_indices": "search.pareto",
    "ScalingAxes": "search.scaling",
    "ScalingRules": "search.scaling",
    "fit_scaling_rules": "search.scaling",
    "fit_chinchilla": "search.scaling",
    "SearchError": "search.errors",
    "InvalidSpaceError": "search.errors",
    "InvalidParamsError": "search.errors",
    "InvalidObservationError": "search.errors",
    "UnknownSuggestionError": "search.errors",
    "HistoryMismatchError": "search.errors",
    "NotEnoughDataError": "search.errors",
    "ModelFittingError": "search.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
