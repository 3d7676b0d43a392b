"""The loss model the acquisition scores candidates with: the loss GP inside the
observed costs, and a scaling transfer beyond them.

A GP of the loss reverts to its constant mean away from its data, so a configuration
costlier than every trial so far looks like an average one, and the search hardly
climbs in scale. Hyperparameters, though, move smoothly along the Pareto front (the
premise of tuning as you scale), and the front's loss falls with cost as a power law.
So a candidate predicted to cost more than the costliest front point is scored as its
analogue at that point's cost (the candidate moved back along the front's trend,
``search.candidates.FrontTrend``) plus the Pareto surface's fall between the two costs
(``search.front_model.ParetoSurface``). A scaled-up copy of a good configuration then
looks as good relative to the front as the configuration it came from, while a
candidate that grows the cost off the trend (a larger model on the same tokens, say)
maps back to a worse analogue.
"""

from __future__ import annotations

import numpy as np

from search.candidates import FrontTrend
from search.front_model import ParetoSurface
from search.models import GPPredictor


class ScaledLossModel:
    """Loss posterior at candidates (mean, std in loss units), as ``GPPredictor``."""

    def __init__(
        self,
        gp: GPPredictor,
        cost_gp: GPPredictor,
        surface: ParetoSurface,
        trend: FrontTrend | None,
        top_log_cost: float,
    ) -> None:
        self.gp = gp
        self.cost_gp = cost_gp
        self.surface = surface
        self.trend = trend
        self.top_log_cost = top_log_cost

    def _analogue(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each point's analogue at the top cost (itself if not beyond it), and the
        surface's fall from the top cost to its predicted cost (0 if not beyond)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if self.trend is None:
            return x, np.zeros(x.shape[0])
        excess = np.maximum(self.cost_gp.predict_mean(x) - self.top_log_cost, 0.0)
        analogue = x - np.outer(excess, self.trend.slope)
        top = np.array([self.top_log_cost])
        fall = self.surface.loss_at(self.top_log_cost + excess) - self.surface.loss_at(top)
        return analogue, fall

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        analogue, fall = self._analogue(x)
        mean, std = self.gp.predict(analogue)
        return mean + fall, std

    def condition_on(self, x_new: np.ndarray, y_new: np.ndarray) -> ScaledLossModel:
        analogue, fall = self._analogue(x_new)
        gp = self.gp.condition_on(analogue, np.asarray(y_new, dtype=float) - fall)
        return ScaledLossModel(gp, self.cost_gp, self.surface, self.trend, self.top_log_cost)
