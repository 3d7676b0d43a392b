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
  even spread); ``Pace.target_bias`` bends the targets of that range towards its dear
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
quantiles q become q ** bias with the bias solved (``spending_bias``) so that the
targets' mean cost is the fair share: at most 1, where an even spread already spends
it (a study ahead of its pace turns compute-bound and cheap-biased anyway), and at
least ``DEAR_BIAS``, which keeps one target in eight in the cheaper half of the range
when even that cannot spend the fair share (it exceeds what the ceiling allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Target quantiles are bent as quantile ** CHEAP_BIAS: a round's cost is set by its
# dearest trials, so cheap targets buy more rounds of learning from the same budget, and
# cheap trials are where the hyperparameters are learnt that transfer up
# (docs/architecture.md, "Decisions", "Search engine").
CHEAP_BIAS = 3.0
# The most target quantiles are bent towards the dear end under a trial cap (module
# docstring): q ** (1/3) leaves one target in eight in the cheaper half of the range.
DEAR_BIAS = 1.0 / CHEAP_BIAS
# Quantiles spread evenly on (0, 1), as any run of golden-ratio quantiles is: the grid on
# which a target's mean cost is taken.
_QUANTILES = (np.arange(256) + 0.5) / 256
_BISECTIONS = 40


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

    def target_bias(self, low: float, high: float) -> float:
        """The power bending the quantiles of targets from log cost ``low`` to ``high``:
        ``cheap_bias``, or, with a fair share, the bias that spends it (``spending_bias``)."""
        if self.fair_share is None:
            return self.cheap_bias
        return spending_bias(low, high, self.fair_share, most=self.cheap_bias)


def expected_target_cost(low: float, high: float, bias: float) -> float:
    """The mean cost of targets ``exp(low + q ** bias * (high - low))`` over quantiles q
    spread evenly on (0, 1); ``low`` and ``high`` are log costs."""
    span = (high - low) * _QUANTILES**bias
    top = float(span.max())
    return math.exp(low + top) * float(np.mean(np.exp(span - top)))


def spending_bias(low: float, high: float, fair_share: float, *, most: float = 1.0) -> float:
    """The bias in [``DEAR_BIAS``, ``most``] whose targets from log cost ``low`` to
    ``high`` cost ``fair_share`` on average (``expected_target_cost``): ``most`` where
    they already cost that much, ``DEAR_BIAS`` where even it leaves them short. The mean
    cost falls as the bias grows, so bisection (in log bias) finds it."""
    if high <= low or expected_target_cost(low, high, most) >= fair_share:
        return most
    if expected_target_cost(low, high, DEAR_BIAS) <= fair_share:
        return DEAR_BIAS
    lo, hi = math.log(DEAR_BIAS), math.log(most)  # mean cost above, below the fair share
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if expected_target_cost(low, high, math.exp(mid)) > fair_share:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


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
