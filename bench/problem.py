"""The benchmark problem: the testbed, the search box everyone gets, and Pareto regret.

Every method sees the same box, chosen the way a practitioner would around the start
point ``START_PARAMS`` (a ~10M-parameter model on 200M tokens with common defaults):
every log-scaled value from 1/10x to 10x of its start value (N, D, learning rate, warmup
fraction, weight decay), batch 8-1024 sequences (powers of two) and both schedules. With
the default budget (300x the start point's cost) the dearest corner of the box costs a
third of the budget, and the compute-optimal N and D at the top of the regret range
(budget / 8) lie inside the box.

Pareto regret at a cost c: take the observed trials (failed ones excluded), find their
front by *observed* loss and cost (what a user sees), pick the front point with the
lowest observed loss among those costing at most c, and score its *true* (noiseless) loss
minus the true front L*(c). The regret is averaged over ``N_COST_POINTS`` log-spaced c in
[cost of the start point, budget / 8]: from the cheapest sensible trial (the one the
practitioner would run anyway) to the largest trial a round of 8 parallel trials could
still afford. Where no observed point costs at most c, the user falls back to the start
point, so the regret there is L(start) - L*(c).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from search.pareto import front_indices
from search.space import ChoiceParam, LogitParam, LogParam, Pow2Param, SearchSpace
from workers.objectives.testbed import START_PARAMS
from workers.objectives.testbed_truth import Testbed

N_COST_POINTS = 24
ROUND_SIZE = 8

# (low, high) multipliers around the start value, per parameter; batch in sequences.
BOX = {
    "n_params": (0.1, 10.0),
    "tokens": (0.1, 10.0),
    "learning_rate": (0.1, 10.0),
    "warmup_fraction": (0.1, 10.0),
    "weight_decay": (0.1, 10.0),
}
BATCH_RANGE = (8, 1024)
# The wide box of issue 18: absolute bounds for N, D and the learning rate, the batch from
# 1e3 to 1e8 tokens (1 to 65,536 sequences of 1024); warmup, weight decay and schedule as
# in the practitioner box.
WIDE_BOX = {"n_params": (1e6, 1e10), "tokens": (1e7, 1e12), "learning_rate": (1e-5, 1.0)}
WIDE_BATCH_RANGE = (1, 65536)
BOXES = ("practitioner", "wide")


def bench_space(box: str = "practitioner") -> SearchSpace:
    """The search space every method searches (ours gets the start point as its center):
    the practitioner box, or the wide one (``WIDE_BOX``)."""
    if box not in BOXES:
        raise ValueError(f"unknown box {box!r}; choose from {list(BOXES)}")
    start = START_PARAMS
    bounds = {name: (start[name] * lo, start[name] * hi) for name, (lo, hi) in BOX.items()}
    batch_range = BATCH_RANGE
    if box == "wide":
        bounds |= WIDE_BOX
        batch_range = WIDE_BATCH_RANGE
    logs = [
        LogParam(name=name, center=start[name], min=bounds[name][0], max=bounds[name][1])
        for name in BOX
        if name != "warmup_fraction"
    ]
    lo, hi = BOX["warmup_fraction"]
    warmup = LogitParam(
        name="warmup_fraction",
        center=start["warmup_fraction"],
        min=start["warmup_fraction"] * lo,
        max=start["warmup_fraction"] * hi,
    )
    batch = Pow2Param(
        name="batch_size", center=start["batch_size"], min=batch_range[0], max=batch_range[1]
    )
    schedule = ChoiceParam(name="schedule", choices=["cosine", "wsd"], center=start["schedule"])
    by_name = {p.name: p for p in [*logs, warmup, batch, schedule]}
    return SearchSpace(params=[by_name[name] for name in START_PARAMS])


@dataclass(frozen=True)
class Trial:
    """One run trial: what was observed, and the truth the benchmark scores it with."""

    params: dict[str, Any]
    loss: float | None
    cost: float
    failed: bool
    true_loss: float
    round_index: int


@dataclass(frozen=True)
class FrontPoint:
    """A point of the front a method reports: the loss it reports, its cost, the truth."""

    reported_loss: float
    cost: float
    true_loss: float


@dataclass
class RegretScale:
    """The cost grid of the regret and the true front on it, computed once per budget."""

    testbed: Testbed
    budget: float
    cost_grid: np.ndarray = field(init=False)
    front_loss: np.ndarray = field(init=False)
    fallback_loss: float = field(init=False)

    def __post_init__(self) -> None:
        start_cost = float(self.testbed.expected_cost(START_PARAMS))
        top = self.budget / ROUND_SIZE
        if top <= start_cost:
            raise ValueError(
                f"budget {self.budget:.4g} s is too small: budget / {ROUND_SIZE} must exceed the "
                f"start point's cost {start_cost:.4g} s"
            )
        self.cost_grid = np.geomspace(start_cost, top, N_COST_POINTS)
        self.front_loss = self.testbed.pareto_loss(self.cost_grid)
        self.fallback_loss = float(self.testbed.noiseless_loss(START_PARAMS))

    def regret(self, trials: list[Trial]) -> float:
        """Mean over the cost grid of the chosen point's true loss minus L*(c), the
        front taken on the observed losses."""
        ok = [t for t in trials if not t.failed]
        return self.regret_of_front(
            [FrontPoint(t.loss, t.cost, t.true_loss) for t in ok]  # type: ignore[arg-type]
        )

    def regret_of_front(self, points: list[FrontPoint]) -> float:
        """The regret of a reported front: at each cost, the point with the lowest
        reported loss among those costing at most it, scored by its true loss."""
        chosen = np.full(self.cost_grid.shape, self.fallback_loss)
        if points:
            loss = np.array([p.reported_loss for p in points])
            cost = np.array([p.cost for p in points])
            true = np.array([p.true_loss for p in points])
            idx = front_indices(loss, cost)  # by increasing cost, decreasing reported loss
            n_affordable = np.searchsorted(cost[idx], self.cost_grid, side="right")
            found = n_affordable > 0
            chosen[found] = true[idx[n_affordable[found] - 1]]
        return float(np.mean(chosen - self.front_loss))


def box_floor(scale: RegretScale, box: str) -> float:
    """The regret of the best front the search box allows: the testbed's true front with
    N, D and the batch held to the box (``bench_space``), every other hyperparameter at
    its optimum. No method searching the box can score below it: beyond the box's
    dearest efficient trial every cost on the grid is charged the gap to the unbounded
    front. Regret above it is what a method's search left on the table."""
    params = {p.name: p for p in bench_space(box).params}
    domain = scale.testbed.config
    limits = {}
    for name in ("n_params", "tokens", "batch_size"):
        low, high = getattr(domain, f"{name}_min"), getattr(domain, f"{name}_max")
        param = params[name]
        assert isinstance(param, LogParam | Pow2Param)  # a bounded size parameter
        limits[f"{name}_min"] = type(low)(max(param.min, low))
        limits[f"{name}_max"] = type(high)(min(param.max, high))
    best = Testbed(replace(domain, **limits)).pareto_loss(scale.cost_grid)
    best = np.where(np.isfinite(best), best, scale.fallback_loss)
    return max(float(np.mean(best - scale.front_loss)), 0.0)  # 0 up to rounding


def regret_by_budget_fraction(
    scale: RegretScale, trials: list[Trial], spent_after_round: list[float], fractions
) -> list[float]:
    """Regret using the rounds completed within each fraction of the budget."""
    out = []
    for fraction in fractions:
        limit = fraction * scale.budget * (1 + 1e-9)
        rounds = sum(1 for spent in spent_after_round if spent <= limit)
        if math.isclose(fraction, 1.0):
            rounds = len(spent_after_round)  # the last round may overshoot by cost noise
        out.append(scale.regret([t for t in trials if t.round_index < rounds]))
    return out
