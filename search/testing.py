"""Small synthetic objectives with a known optimum, for engine tests and demos.

``SizedQuadratic`` mimics a scaling study in three parameters: a model ``size`` that
sets the cost, a ``learning_rate`` whose optimum shrinks with size (a power law, as
in real scaling), and a nuisance ``shift`` with a fixed optimum. Its true Pareto front
is known in closed form, and learning rates far above the optimum fail ("diverge").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.space import LinearParam, LogParam, SearchSpace


@dataclass(frozen=True)
class TrialOutcome:
    loss: float | None
    cost: float
    failed: bool


@dataclass(frozen=True)
class SizedQuadratic:
    """loss = floor + amplitude * size^-exponent * (1 + lr_penalty + shift_penalty).

    ``lr_penalty = lr_weight * ln(lr / lr_opt(size))^2`` with
    ``lr_opt(size) = lr_coef * size^lr_exponent``, ``shift_penalty = (shift - shift_opt)^2``.
    Cost is ``size`` times lognormal noise of mean 1. A learning rate above
    ``diverge_factor * lr_opt`` fails and still costs.
    """

    floor: float = 1.0
    amplitude: float = 4.0
    exponent: float = 0.3
    lr_coef: float = 0.03
    lr_exponent: float = -0.4
    lr_weight: float = 0.1
    shift_opt: float = 0.6
    diverge_factor: float = 8.0
    loss_noise_std: float = 0.0
    cost_noise_sigma: float = 0.0
    size_range: tuple[float, float] = (1.0, 1e4)

    def space(self) -> SearchSpace:
        """Centered on a small size, a learning rate ~3x too low and shift 0."""
        low, high = self.size_range
        return SearchSpace(
            params=[
                LogParam(name="size", center=low * 10, min=low, max=high),
                LogParam(name="learning_rate", center=0.003, min=1e-6, max=1.0),
                LinearParam(name="shift", center=0.0, scale=0.5),
            ]
        )

    def lr_opt(self, size: float) -> float:
        return self.lr_coef * size**self.lr_exponent

    def true_loss(self, params: dict[str, Any]) -> float:
        size = float(params["size"])
        lr_penalty = self.lr_weight * math.log(params["learning_rate"] / self.lr_opt(size)) ** 2
        shift_penalty = (float(params["shift"]) - self.shift_opt) ** 2
        return self.floor + self.amplitude * size**-self.exponent * (
            1.0 + lr_penalty + shift_penalty
        )

    def front_loss(self, cost: float) -> float:
        """The true Pareto front: the best loss of any configuration costing ``cost``."""
        size = min(max(cost, self.size_range[0]), self.size_range[1])
        return self.floor + self.amplitude * size**-self.exponent

    def evaluate(self, params: dict[str, Any], *, rng: np.random.Generator) -> TrialOutcome:
        size = float(params["size"])
        noise = math.exp(
            self.cost_noise_sigma * rng.standard_normal() - 0.5 * self.cost_noise_sigma**2
        )
        cost = size * noise
        if params["learning_rate"] > self.diverge_factor * self.lr_opt(size):
            return TrialOutcome(loss=None, cost=cost, failed=True)
        loss = self.true_loss(params) + self.loss_noise_std * rng.standard_normal()
        return TrialOutcome(loss=loss, cost=cost, failed=False)
