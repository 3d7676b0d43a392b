"""The study's limits and how the engine paces its spending against them.

A study is limited by a trial count (``max_trials``), a compute budget (``max_cost``),
both or neither, and runs ``in_flight`` trials at once. The engine plans so that the
limits run out together: a study should neither hit its trial cap with most of its
compute unspent nor spend its compute with most of its trials unused.

``pace`` turns the limits and what is spent and pending into the decisions for the
next model suggestion (``search.proposals``):

- ``compute_bound``: whether compute, not the trial count, is the scarcer resource now.
  Then cheap trials are nearly free, so targets reach one ``cost_overshoot`` *below* the
  front's cheapest point and the walk up in scale is left to the paced climb; otherwise
  each trial takes a slot, so targets reach one step *above* the costliest point. With
  both limits, compute is scarcer when its used fraction (spent plus pending, of
  ``max_cost``) is at least the trial count's (observed plus pending, of ``max_trials``):
  the engine switches whenever one runs ahead of the other, which keeps them together.
- ``climb_allowance``: a climb (one step above the front's top) is due once the step
  costs at most this. ``climb_share`` of the spend so far (a geometric series: the
  climb takes a fixed share of any budget), and, while the trial count is the scarcer,
  at least one round's fair share of the remaining budget: the remaining compute
  divided by the remaining trials, times the trials of a round (``in_flight``). So a
  large budget under a trial cap is climbed into at the pace that spends it, and a
  study that falls behind its pace climbs sooner.
- ``cost_ceiling``: no suggestion is predicted dearer than the compute left after the
  pending trials (a trial the budget cannot pay for would be refused anyway).
- ``fair_share``: while a trial cap is the scarcer of two limits, the compute left per
  trial left. Targets and suggestions may reach up to it even above the one-step
  limit over the front's top, so the last rounds of a capped study spend what is left
  instead of stopping a step above the top.
- ``cheap_bias``: the power that bends target quantiles towards the cheap end
  (``search.proposals``). 3 (half the targets in the cheapest eighth of the range)
  except while a trial cap is the scarcer of two limits: then trials are what is short
  and compute is left over, and the bias is the most a target may be bent cheap (1, an
  even spread); ``Pace.target_bend`` bends the targets of that range towards its dear
  end until their mean cost is the fair share.

Why the targets, not only the range, follow the fair share under a trial cap: a trial
costs about its target, so a study spends per trial what its targets cost on average.
Targets spread evenly in *log* cost over a range of two or three decades average a
small fraction of the range's top (a sixth to a third), so a range whose top is the
fair share spends a fraction of it per trial. Without a per-trial ceiling the paced
climb lifts the front's top, and with it the range, until that average reaches the fair
share. A per-trial ceiling (``SearchSettings.max_suggestion_cost``) stops the range
there: with 100 units, 200 trials and a ceiling of 1.5 (three fair shares) studies hit
the cap with 55-74% spent (issue 18). So while the trial count is the scarcer, the
quantiles q become q ** bias with the bias solved (``spending_bend``) so that the
targets' mean cost is the fair share: at most 1, where an even spread already spends
it (a study ahead of its pace turns compute-bound and cheap-biased anyway), and down to
``DEAR_BIAS`` (one target in eight in the cheaper half of the range).

Where even ``DEAR_BIAS`` leaves the targets short, two cases differ, told apart by the
dearest trial the study allows (``dearest``: the cost model's estimate of the box's
dearest corner, ``search.proposals``, or a ceiling). If targets bent by ``DEAR_BIAS``
over a range reaching it would spend the fair share, the paced climb will lift the
range until they do, and the bend stops at ``DEAR_BIAS``: the study lags its pace
early, on cheap trials that learn what transfers up, and catches up on a taller front.
Bending further there stacked most targets a step above a young front, and regret
rose (0.105 -> 0.158 at 2,000x in the practitioner box). If not, no climb can close
the gap and a lag would never be made up: ``SPREAD_SHARE`` (one in eight) of the
targets stay spread evenly over the range, and the rest are bent as far towards its
top as the fair share takes, all but a sliver at the top where even that falls short,
so the study spends what the box allows. With a budget of 20,000x the start cost, 240
trials and a box whose dearest corner is 100-180x, the bound alone held the targets to
about 40% of the fair share (issue 18, docs/notes/benchmark-history.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Target quantiles are bent as quantile ** CHEAP_BIAS: a round's cost is set by its
# dearest trials, so cheap targets buy more rounds of learning from the same budget, and
# cheap trials are where the hyperparameters are learnt that transfer up
# (docs/architecture.md, "Decisions", "Search engine").
CHEAP_BIAS = 3.0
# The most the whole spread of targets is bent towards the dear end under a trial cap
# (module docstring): q ** (1/3) leaves one target in eight in the cheaper half.
DEAR_BIAS = 1.0 / CHEAP_BIAS
# Beyond it, this share of the targets stays spread evenly over the range and the rest
# are bent as far towards its top as the fair share takes (module docstring).
SPREAD_SHARE = 0.125
# The least bias bisected: the bent targets within a thousandth of the range of its top.
_LEAST_BIAS = 1e-3
# Quantiles spread evenly on (0, 1), as any run of golden-ratio quantiles is: the grid on
# which a target's mean cost is taken.
_QUANTILES = (np.arange(256) + 0.5) / 256
_BISECTIONS = 40


@dataclass(frozen=True)
class Bend:
    """How target quantiles q in (0, 1) map to positions in the cost range (0 its
    cheap end, 1 its top): q ** bias, or, with a ``spread`` share, q / spread for the
    quantiles under it (an even spread) and the rest rescaled and bent by ``bias``."""

    bias: float
    spread: float = 0.0

    def position(self, quantile: Any) -> Any:
        """Positions of quantile(s) (a float, or an array of them)."""
        if not self.spread:
            return quantile**self.bias  # a float's own pow: bit for bit as before
        q = np.asarray(quantile, dtype=float)
        rest = np.clip((q - self.spread) / (1.0 - self.spread), 0.0, 1.0)
        return np.where(q < self.spread, q / self.spread, rest**self.bias)


class StudyLimits(BaseModel):
    """What limits the study the engine searches for; frozen and JSON-able.

    Not a search setting: the caller (the service's scheduler, a benchmark) states the
    study's own budget. No limit at all behaves as a trial count of unknown size.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_trials: int | None = Field(default=None, ge=1, description="trials, at most")
    max_cost: float | None = Field(default=None, gt=0, description="total cost, at most")
    in_flight: int = Field(default=1, ge=1, description="trials running at once")


@dataclass(frozen=True)
class Pace:
    """The pacing decisions for the next model suggestion (module docstring)."""

    compute_bound: bool
    climb_allowance: float
    cost_ceiling: float | None
    fair_share: float | None = None
    cheap_bias: float = CHEAP_BIAS

    def target_bend(self, low: float, high: float, *, dearest: float = math.inf) -> Bend:
        """How the quantiles of targets from log cost ``low`` to ``high`` are bent:
        by ``cheap_bias``, or, with a fair share, as far as it takes to spend it
        (``spending_bend``); ``dearest``: the log cost of the dearest trial the study
        allows (the box's dearest corner, or a ceiling)."""
        if self.fair_share is None:
            return Bend(self.cheap_bias)
        return spending_bend(low, high, self.fair_share, most=self.cheap_bias, dearest=dearest)


def expected_target_cost(low: float, high: float, bend: Bend) -> float:
    """The mean cost of targets ``exp(low + bend.position(q) * (high - low))`` over
    quantiles q spread evenly on (0, 1); ``low`` and ``high`` are log costs."""
    span = (high - low) * bend.position(_QUANTILES)
    top = float(span.max())
    try:
        return math.exp(low + top) * float(np.mean(np.exp(span - top)))
    except OverflowError:  # a cost model's far extrapolation (``dearest``)
        return math.inf


def spending_bend(
    low: float,
    high: float,
    fair_share: float,
    *,
    most: float = 1.0,
    dearest: float = math.inf,
) -> Bend:
    """The bend whose targets from log cost ``low`` to ``high`` cost ``fair_share`` on
    average (``expected_target_cost``): a bias in [``DEAR_BIAS``, ``most``] where one
    spends it (``most`` where that already does), and ``DEAR_BIAS`` where it falls short
    now but would not over a range reaching ``dearest`` (the climb can close the gap).
    Else ``SPREAD_SHARE`` of the targets stay spread evenly and the rest are bent by a
    bias under ``DEAR_BIAS``, all but a sliver at the top where even that falls short."""
    if high <= low or expected_target_cost(low, high, Bend(most)) >= fair_share:
        return Bend(most)
    if expected_target_cost(low, high, Bend(DEAR_BIAS)) > fair_share:
        return _bisect_bend(low, high, fair_share, DEAR_BIAS, most, 0.0)
    if dearest > high and (
        math.isinf(dearest) or expected_target_cost(low, dearest, Bend(DEAR_BIAS)) > fair_share
    ):
        return Bend(DEAR_BIAS)
    return _bisect_bend(low, high, fair_share, _LEAST_BIAS, DEAR_BIAS, SPREAD_SHARE)


def _bisect_bend(
    low: float, high: float, fair_share: float, least: float, most: float, spread: float
) -> Bend:
    """The bias in [least, most] (with ``spread``) whose targets cost ``fair_share`` on
    average, ``least`` where even it leaves them short. The mean cost falls as the bias
    grows, so bisection (in log bias) finds it."""
    if expected_target_cost(low, high, Bend(least, spread)) <= fair_share:
        return Bend(least, spread)
    lo, hi = math.log(least), math.log(most)  # mean cost above, below the fair share
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if expected_target_cost(low, high, Bend(math.exp(mid), spread)) > fair_share:
            lo = mid
        else:
            hi = mid
    return Bend(math.exp(0.5 * (lo + hi)), spread)


def pace(
    limits: StudyLimits,
    *,
    spent: float,
    pending_cost: float,
    n_used: int,
    climb_share: float,
) -> Pace:
    """``spent``: cost of every observed trial (failed ones too); ``pending_cost``: the
    predicted cost of the pending ones; ``n_used``: observed plus pending trials."""
    committed = spent + pending_cost
    share_allowance = climb_share * spent
    if limits.max_cost is None:
        return Pace(compute_bound=False, climb_allowance=share_allowance, cost_ceiling=None)
    remaining = max(limits.max_cost - committed, 0.0)
    if limits.max_trials is None:
        return Pace(compute_bound=True, climb_allowance=share_allowance, cost_ceiling=remaining)
    trials_left = max(limits.max_trials - n_used, 1)
    compute_bound = committed / limits.max_cost >= n_used / limits.max_trials
    if compute_bound:
        return Pace(compute_bound=True, climb_allowance=share_allowance, cost_ceiling=remaining)
    allowance = share_allowance
    if climb_share > 0:
        round_share = remaining * min(limits.in_flight, trials_left) / trials_left
        allowance = max(allowance, round_share)
    return Pace(
        compute_bound=False,
        climb_allowance=allowance,
        cost_ceiling=remaining,
        fair_share=remaining / trials_left,
        cheap_bias=1.0,
    )
