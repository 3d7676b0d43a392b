"""Scaling rules of a study: fitted by ``search.scaling`` from its stored observations.

Computed by the processes that own engines (scheduler, embedded runner) when a study
completes, and stored as JSON on the study row, so the API serves them without fitting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from search.errors import SearchError
from search.types import Observation
from service.domain import FinishedTrial, StudySpec, learned_observations

logger = logging.getLogger(__name__)


def observations(trials: Sequence[FinishedTrial]) -> list[Observation]:
    """The engine's view of the finished trials (``service.domain.learned_observations``)."""
    return learned_observations(trials)


def fit_rules(
    spec: StudySpec, trials: Sequence[FinishedTrial]
) -> tuple[dict[str, Any] | None, str]:
    """The rules as JSON, or None and why not (no axes, or too little data to fit).

    ``spec``'s space is the resolved one (the engine's; ``engines.open_engine``)."""
    axes = spec.scaling
    if not axes.declared:
        return None, "no scaling axes were given"
    if spec.space is None:
        return None, "the study's space was never resolved (no engine was built)"
    from search.scaling import ScalingAxes, fit_scaling_rules

    try:
        rules = fit_scaling_rules(
            observations(trials),
            spec.space,
            ScalingAxes(n_params=axes.n_params, tokens=axes.tokens, compute=axes.compute),
            seed=spec.seed,
        )
    except (SearchError, ValueError) as exc:  # too little data, or axes that do not fit
        logger.info("no scaling rules: %s", exc)
        return None, str(exc)
    return json.loads(rules.to_json()), "fitted"
