"""Scaling rules of a study: fitted by ``search.scaling`` from its stored observations.

Computed by the processes that own engines (scheduler, embedded runner) when a study
completes, and stored as JSON on the study row, so the API serves them without fitting.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from search.errors import SearchError
from search.types import Observation
from service.domain import StudySpec, TrialState, trial_observation
from service.storage.tables import TrialRow

logger = logging.getLogger(__name__)


def observations(trials: list[TrialRow]) -> list[Observation]:
    """The engine's view of the finished trials (infrastructure failures left out)."""
    out = []
    for trial in trials:
        learnable = trial.state == TrialState.COMPLETE or (
            trial.state == TrialState.FAILED and trial.failure_kind != "infrastructure"
        )
        if learnable:
            out.append(
                trial_observation(
                    params=trial.params,
                    loss=trial.loss,
                    cost=trial.cost_seconds or 0.0,
                    failed=trial.state == TrialState.FAILED,
                    suggestion_id=trial.suggestion_id,
                    metrics=trial.metrics,
                )
            )
    return out


def fit_rules(spec: StudySpec, trials: list[TrialRow]) -> tuple[dict[str, Any] | None, str]:
    """The rules as JSON, or None and why not (no axes, or too little data to fit).

    ``spec`` is the stored one: the first engine writes the space it searches into it
    (``orchestration.engines``), so a study that ran always has one."""
    axes = spec.scaling
    if axes.n_params is None and axes.tokens is None and axes.compute is None:
        return None, "no scaling axes were given"
    if spec.space is None:
        return None, "the study never ran: its space was not resolved"
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
