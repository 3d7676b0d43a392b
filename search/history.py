"""A study's history as the engine reads it: finished trials and suggestions still out.

The engine's own state (``ParetoSearch.state_dict(with_history=False)``) is small: its
random stream, trust-region radius, counters and GP cache. What the study ran is the
``History``, which the caller keeps (the service keeps it as database rows) and hands
to ``ParetoSearch.from_state_dict(state, history=...)`` at every step, as an Optuna
sampler is handed the study's trials. ``make_observation`` is the one check of what the
engine can learn from, used by ``tell``/``observe`` and by callers building a history.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.errors import InvalidObservationError
from search.types import MAX_ABS_LOSS, MAX_COST, MIN_COST, Observation, Suggestion


@dataclass(frozen=True)
class History:
    """What the engine learns from, in the order it happened.

    ``observations``: finished trials in the order they finished. The history of one
    step extends the previous step's: the engine remembers how many observations it
    has taken in (its radius moves once per trial, on the trial's arrival) and takes in
    only those after them. An observation answering an engine suggestion carries its
    ``suggestion_id`` and ``reason``; one the engine did not suggest (an enqueued or
    imported trial) has ``suggestion_id`` None.

    ``pending``: suggestions issued and not finished (queued or running), oldest first.
    The engine reads their ``params``, ``predicted_cost`` and ``reason``; their leases
    (``expires_at`` None: never) are the caller's business.
    """

    observations: Sequence[Observation] = ()
    pending: Sequence[Suggestion] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "observations": [o.to_dict() for o in self.observations],
            "pending": [s.to_dict() for s in self.pending],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        return cls(
            observations=tuple(Observation.from_dict(o) for o in data.get("observations", ())),
            pending=tuple(Suggestion.from_dict(dict(s)) for s in data.get("pending", ())),
        )


def make_observation(
    params: Mapping[str, Any],
    loss: float | None,
    cost: float,
    *,
    failed: bool = False,
    suggestion_id: str | None = None,
    reason: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Observation:
    """An observation the engine can learn from, or ``InvalidObservationError``.

    ``loss`` may be None (or NaN) only when ``failed``; ``cost`` is what the trial spent,
    positive and finite, failed or not. ``params`` are taken as given (``tell`` passes
    the suggestion's, ``observe`` validated ones).
    """
    cost_value = _finite_number(cost, "cost")
    if cost_value <= 0:
        raise InvalidObservationError(f"cost must be positive (what the trial spent), got {cost!r}")
    if not MIN_COST <= cost_value <= MAX_COST:
        raise InvalidObservationError(
            f"cost {cost!r} is outside [{MIN_COST:g}, {MAX_COST:g}]: report it in a "
            "unit that puts it inside (GPU-seconds, GPU-hours, ...)"
        )
    if failed:
        loss_value = math.nan
    elif loss is None:
        raise InvalidObservationError(
            "loss is None for a trial not marked failed; pass failed=True for a run "
            "that crashed, diverged or ran out of memory"
        )
    else:
        loss_value = _finite_number(loss, "loss")
        if abs(loss_value) > MAX_ABS_LOSS:
            raise InvalidObservationError(
                f"loss {loss!r} is beyond +-{MAX_ABS_LOSS:g}: rescale the metric"
            )
    return Observation(
        params=dict(params),
        loss=loss_value,
        cost=cost_value,
        failed=bool(failed),
        suggestion_id=suggestion_id,
        metrics=dict(metrics or {}),
        reason=reason,
    )


def checked(observation: Observation) -> Observation:
    """``observation`` if the engine can learn from it (``make_observation``'s checks)."""
    make_observation(
        observation.params,
        None if observation.failed else observation.loss,
        observation.cost,
        failed=observation.failed,
    )
    return observation


def digest(observations: Sequence[Observation]) -> str:
    """A short fingerprint of the observations' outcomes (loss, cost, failed), in order,
    for checking that a history still starts with what an engine took in. Built from
    the stored numbers only, so it is the same on any machine."""
    outcomes = np.array(
        [(0.0 if o.failed else o.loss, o.cost, float(o.failed)) for o in observations],
        dtype="<f8",
    )
    return hashlib.sha256(outcomes.tobytes()).hexdigest()[:16]


def _finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise InvalidObservationError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidObservationError(f"{what} must be finite, got {value!r}")
    return number
