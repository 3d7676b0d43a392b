"""The study's limits and how the engine paces its spending against them.

A study is limited by a trial count (``max_trials``), a compute budget (``max_cost``),
both or neither, and runs ``in_flight`` trials at once. The engine plans so that the
limits run out together: a study should neither hit its trial cap with most of its
compute unspent nor spend its compute with most of its trials unused.

``pace`` turns the limits and what is spent and pending into three decisions for the
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
  and compute is left over, so targets spread evenly over the range (1).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# Target quantiles are bent as quantile ** CHEAP_BIAS: a round's cost is set by its
# dearest trials, so cheap targets buy more rounds of learning from the same budget, and
# cheap trials are where the hyperparameters are learnt that transfer up
# (docs/architecture.md, "Decisions", "Search engine").
CHEAP_BIAS = 3.0


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
