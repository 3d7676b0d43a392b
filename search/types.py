"""Plain value types shared by the engine, the workers and the service.

Values live in three spaces, and names say which:
- ``params``: the user's parameter space (``{"learning_rate": 3e-4, "batch_size": 256}``);
- ``x`` / ``x_internal``: the engine's internal space (see ``search.space``), one float
  per internal dimension, where the search center is 0 and a step of 1 is one ``scale``;
- ``log_cost``: natural log of the cost, the engine's cost coordinate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# What an observation may hold. Past these, float64 overflows in the models (sums of
# squares of the loss, powers of the cost): a loss of 1e99 and costs of 1e100 or 1e-300
# overflowed where 1e50 and 1e-100 did not. Real losses and costs (GPU-seconds, even
# FLOPs) are far inside them; beyond, a metric needs rescaling, not modelling.
MAX_ABS_LOSS = 1e30
MIN_COST = 1e-30
MAX_COST = 1e30

Params = dict[str, Any]


@dataclass(frozen=True)
class Observation:
    """A finished trial: its configuration, its loss and what it cost.

    ``loss`` is ``nan`` for a failed trial; ``cost`` is always what was paid (a failed
    run still spent GPU time). ``cost`` is in the study's cost unit (GPU-seconds by default).
    ``metrics`` carries what the objective measured beside loss and cost (``n_params``,
    ``tokens``, ``flops``); the scaling fits read their axes from params or metrics.
    ``suggestion_id`` and ``reason`` are those of the engine suggestion the trial ran
    (None for a trial the engine did not suggest); the engine's radius moves on its own
    suggestions' results, re-measurements excepted.
    """

    params: Params
    loss: float
    cost: float
    failed: bool = False
    suggestion_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Built by hand, not with dataclasses.asdict: engines serialise every observation
        # on each state save, and asdict's recursive deep copy dominated that cost.
        return {
            "params": dict(self.params),
            "loss": None if math.isnan(self.loss) else self.loss,
            "cost": self.cost,
            "failed": self.failed,
            "suggestion_id": self.suggestion_id,
            "metrics": dict(self.metrics),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        loss = data.get("loss")
        return cls(
            params=dict(data["params"]),
            loss=math.nan if loss is None else float(loss),
            cost=float(data["cost"]),
            failed=bool(data.get("failed", False)),
            suggestion_id=data.get("suggestion_id"),
            metrics=dict(data.get("metrics") or {}),
            reason=data.get("reason"),
        )


@dataclass(frozen=True)
class Suggestion:
    """A configuration the engine asks to be run.

    ``reason`` says how it was produced, so nothing is silently random:
    ``"startup"`` (random phase), ``"model"`` (Pareto acquisition), ``"remeasure"``
    (a noisy front point run again), ``"spread"`` (a front point moved off its optimum
    at its cost, for the scaling rules), ``"seed"`` (a warm-start point), or
    ``"fallback: <why>"`` when a model-based suggestion was not possible.
    ``expires_at`` is the lease deadline (the engine's clock); a pending suggestion
    that is neither told nor forgotten by then is dropped.
    """

    suggestion_id: str
    params: Params
    reason: str
    predicted_loss: float | None = None
    predicted_cost: float | None = None
    probability_of_success: float | None = None
    expires_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Suggestion:
        return cls(**data)
