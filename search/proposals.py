"""One suggestion at a time: the startup, model, re-measure, spread and fallback proposals.

Each function returns a ``Proposal`` (internal coordinates, already projected onto the
feasible set, plus what the models predicted) and draws only from the engine's
``numpy.random.Generator``. ``taken_x`` (m, d) are the configurations already pending
or chosen earlier in the same batch: proposals avoid them, so parallel asks differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.acquisition import (
    log_expected_front_improvement,
    log_expected_improvement,
    pareto_score,
)
from search.candidates import FrontTrend, SpaceLayout, perturb, startup_points, trend_points
from search.loss_model import ScaledLossModel
from search.pacing import Pace
from search.pareto import front_indices
from search.settings import SearchSettings
from search.space import SearchSpace
from search.surrogates import FittedModels, ObservationArrays

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_STARTUP_DRAWS = 32  # random points drawn per startup suggestion; the first untaken wins
_TREND_FRACTION = 0.25  # share of the model phase's candidates drawn on the front's trend
# A climb suggestion (``_climb_target``) is held to this window around its target, and
# a pending trial predicted this far above the front's top is a climb still in flight.
CLIMB_WIDTH = 0.35
_CLIMB_IN_FLIGHT = 0.2
# A spread point's predicted log cost lies within this of its front point's.
SPREAD_COST_WIDTH = 0.2


@dataclass(frozen=True)
class Proposal:
    x_internal: np.ndarray  # (d,), projected
    reason: str
    predicted_loss: float | None = None
    predicted_cost: float | None = None
    probability_of_success: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    repeat_of: int | None = None  # index of the observation re-measured, if any


@dataclass(frozen=True)
class ProposalContext:
    """What every proposal needs besides the models."""

    space: SearchSpace
    layout: SpaceLayout
    settings: SearchSettings
    radius: float
    rng: np.random.Generator
    taken_x: np.ndarray  # (m, d): observed, pending and already chosen in this batch
    pending_x: np.ndarray  # (k, d): pending and already chosen in this batch
    pace: Pace  # what the study's limits allow now (search.pacing)
    anchor: np.ndarray  # (d,): the start point (first trial known), else the center
    sequence_index: int = 0  # how many suggestions the engine issued before this one


def propose_startup(ctx: ProposalContext) -> Proposal:
    """A random point within the initial radius of the start point (``ctx.anchor``): no
    cost model exists yet, so staying near it keeps the cost near its cost."""
    radius = ctx.settings.initial_radius
    x = startup_points(_STARTUP_DRAWS, layout=ctx.layout, radius=radius, rng=ctx.rng)
    continuous = ctx.layout.continuous_mask
    x[:, continuous] += ctx.anchor[continuous]  # choices stay drawn at random
    return Proposal(x_internal=_first_new(ctx, ctx.layout.clip(x)), reason="startup")


def propose_model(
    ctx: ProposalContext,
    models: FittedModels,
    loss_model: ScaledLossModel,
    data: ObservationArrays,
) -> Proposal:
    """The candidate with the best cost-aware Pareto score near the next target cost,
    or, when the pace allows a climb (``_climb_target``), one step above the front.

    A climb no candidate is predicted to reach (the front's top is at the box's edge)
    becomes a target: scored as a climb, every candidate would be ruled out and the
    fallback would run the cheapest one, a wasted trial under a trial cap (issue 18)."""
    assert models.surface is not None and models.cost_gp is not None
    assert models.smoothed_front is not None
    climb = _climb_target(ctx, models, data)
    if climb is not None:
        target, width = climb, CLIMB_WIDTH
        x = _candidates_near(ctx, models.smoothed_front, data, target=target, width=width)
        log_cost = models.cost_gp.predict_mean(x)
        if not np.any(log_cost >= climb - 0.5 * ctx.settings.cost_overshoot):
            climb = None  # out of reach (the box's edge): not a step up, a target
    if climb is None:
        dearest = _dearest_in_box(ctx, models, data)
        target, width = _target_log_cost(ctx, data.log_cost[models.smoothed_front], dearest)
        x = _candidates_near(ctx, models.smoothed_front, data, target=target, width=width)
        log_cost = models.cost_gp.predict_mean(x)
    mean, std = loss_model.predict(x)
    p_success = 1.0 - models.failure.probability_of_failure(x)
    surface_loss = models.surface.loss_at(log_cost)
    if ctx.sequence_index % 2:
        gain_name = "front area"
        stair_log_cost, stair_loss = _staircase(ctx, models, loss_model, data)
        log_gain = log_expected_front_improvement(
            mean=mean,
            std=std,
            log_cost=log_cost,
            stair_log_cost=stair_log_cost,
            stair_loss=stair_loss,
            horizon=ctx.settings.cost_overshoot,
            beyond_threshold=surface_loss,
        )
    else:
        gain_name = "surface EI"
        log_gain = log_expected_improvement(mean, std, surface_loss)
    score = pareto_score(
        log_gain=log_gain,
        probability_of_success=p_success,
        predicted_log_cost=log_cost,
        target_log_cost=target,
        cost_width=width,
    )
    # One climb step at a time: nothing predicted dearer than the highest target (its
    # window, for a climb); a climb, though, must be predicted half a step above the top.
    limit = float(data.log_cost[models.smoothed_front].max()) + ctx.settings.cost_overshoot
    limit_name = "one cost_overshoot above the front's costliest point"
    if ctx.pace.fair_share is not None:
        limit = max(limit, math.log(max(ctx.pace.fair_share, 1e-300)))
    if climb is not None:
        limit += width
        score[log_cost < climb - 0.5 * ctx.settings.cost_overshoot] = -np.inf
    ceiling = ctx.settings.max_suggestion_cost
    if ceiling is not None and math.log(ceiling) < limit:
        limit, limit_name = math.log(ceiling), "max_suggestion_cost"
    left = ctx.pace.cost_ceiling
    if left is not None and math.log(max(left, 1e-300)) < limit:
        limit, limit_name = math.log(max(left, 1e-300)), "the budget left after pending trials"
    score[log_cost > limit] = -np.inf
    if not np.isfinite(score).any():
        return _cheapest(x, log_cost, limit=limit, limit_name=limit_name)
    i = _best_new(ctx, x, score)
    return Proposal(
        x_internal=x[i],
        reason="model",
        predicted_loss=float(mean[i]),
        predicted_cost=float(math.exp(log_cost[i])),
        probability_of_success=float(p_success[i]),
        extra={
            "target_cost": float(math.exp(target)),
            "cost_width": width,
            "radius": ctx.radius,
            "log_score": float(score[i]),
            "surface_loss": float(surface_loss[i]),
            "gain": gain_name,
            "climb": climb is not None,
        },
    )


def _staircase(
    ctx: ProposalContext,
    models: FittedModels,
    loss_model: ScaledLossModel,
    data: ObservationArrays,
) -> tuple[np.ndarray, np.ndarray]:
    """The front the area gain is measured against, by increasing log cost: the smoothed
    front joined with the pending trials at their predicted cost and fantasised loss,
    so a batch spreads over the front's gaps instead of filling the same one."""
    assert models.smoothed_front is not None and models.smoothed_loss is not None
    assert models.cost_gp is not None
    log_cost = data.log_cost[models.smoothed_front]
    loss = models.smoothed_loss[models.smoothed_front]
    if ctx.pending_x.shape[0]:
        log_cost = np.append(log_cost, models.cost_gp.predict_mean(ctx.pending_x))
        loss = np.append(loss, loss_model.predict(ctx.pending_x)[0])
    front = front_indices(loss, log_cost)
    return log_cost[front], loss[front]


def _candidates_near(
    ctx: ProposalContext,
    front: np.ndarray,
    data: ObservationArrays,
    *,
    target: float,
    width: float,
) -> np.ndarray:
    """(n_candidates, d) projected candidates: moves from front points, mostly those near
    the target log cost (Gaussian weights of ``width``), and, once the front is long
    enough, points on its trend at log costs around the target."""
    front_log_cost = data.log_cost[front]
    trend = FrontTrend.fit(data.x_internal[front], front_log_cost)
    n_trend = 0 if trend is None else int(_TREND_FRACTION * ctx.settings.n_candidates)
    weights = np.exp(-0.5 * ((front_log_cost - target) / width) ** 2) + 1e-12
    n_moves = ctx.settings.n_candidates - n_trend
    base = front[ctx.rng.choice(front.size, size=n_moves, p=_normed(weights))]
    x = perturb(data.x_internal[base], layout=ctx.layout, radius=ctx.radius, rng=ctx.rng)
    if trend is not None:
        log_costs = target + width * ctx.rng.normal(size=n_trend)
        on_trend = trend_points(trend, log_costs, layout=ctx.layout, radius=ctx.radius, rng=ctx.rng)
        x = np.vstack([x, on_trend])
    return ctx.space.project_internal(x)


def propose_fallback(
    ctx: ProposalContext, models: FittedModels, data: ObservationArrays
) -> Proposal:
    """No model-based suggestion is possible: say why and pick the least likely failure
    among moves around the best trial so far (or the center)."""
    success = np.flatnonzero(~data.failed)
    if success.size:
        anchor = data.x_internal[success[np.argmin(data.loss[success])]]
        where = "around the best trial"
    else:
        anchor = ctx.anchor
        where = "around the start point"
    base = np.repeat(anchor[None, :], ctx.settings.n_candidates, axis=0)
    # No cost model yet: no further than the start-up went, whatever the trust radius.
    radius = min(ctx.radius, ctx.settings.initial_radius)
    x = ctx.space.project_internal(perturb(base, layout=ctx.layout, radius=radius, rng=ctx.rng))
    p_success = 1.0 - models.failure.probability_of_failure(x)
    i = _best_new(ctx, x, p_success)
    return Proposal(
        x_internal=x[i],
        reason=f"fallback: {models.problem}; the point least likely to fail {where}",
        probability_of_success=float(p_success[i]),
    )


def pick_remeasure(
    ctx: ProposalContext,
    models: FittedModels,
    data: ObservationArrays,
    repeats: np.ndarray,
    *,
    max_cost: float = math.inf,
) -> Proposal | None:
    """The front point whose single measurement looks luckiest, or None.

    Lucky = observed loss more than one predictive standard deviation below what the
    loss GP predicts there from all the *other* points (leave-one-out), which is what a
    noise spike looks like. ``repeats`` (n,) counts the measurements of each
    observation's configuration; points at ``max_repeats`` or pending are not re-run,
    nor points that cost more than ``max_cost`` (the re-measurement budget left).
    """
    if models.loss_gp is None or models.loss_train_rows is None:
        return None
    loo_mean, loo_std = models.loss_gp.leave_one_out()
    rows = models.loss_train_rows
    success = np.flatnonzero(~data.failed)
    front = set(success[front_indices(data.loss[success], data.log_cost[success])].tolist())
    eligible = [
        j
        for j, i in enumerate(rows)
        if i in front
        and repeats[i] < ctx.settings.max_repeats
        and math.exp(data.log_cost[i]) <= max_cost
        and not _member(ctx.pending_x, data.x_internal[i])
    ]
    if not eligible:
        return None
    luck = (loo_mean[eligible] - data.loss[rows[eligible]]) / loo_std[eligible]
    best = int(np.argmax(luck))
    if luck[best] < 1.0:
        return None
    i = int(rows[eligible[best]])
    return Proposal(
        x_internal=data.x_internal[i],
        reason="remeasure",
        predicted_loss=float(loo_mean[eligible[best]]),
        predicted_cost=float(math.exp(data.log_cost[i])),
        extra={"observed_loss": float(data.loss[i]), "luck_sigmas": float(luck[best])},
        repeat_of=i,
    )


def propose_spread(
    ctx: ProposalContext, models: FittedModels, data: ObservationArrays
) -> Proposal | None:
    """A spread point: the smoothed front's point nearest the next target cost, moved in
    every continuous coordinate by a uniform draw of up to ``spread_half_width``, the
    first draw predicted to cost within ``SPREAD_COST_WIDTH`` of that point, under the
    ceilings, and more likely to succeed than not; None if no draw is.

    Why: the acquisition's picks sit within about half a doubling of each
    hyperparameter's optimum, where the loss barely moves, so under noise they say
    little about where the bottom of each bowl lies, and the scaling rules' response
    surface reads its laws off those bottoms. Points spread further, at the front's
    costs, show the walls (``search.settings.RULES_SPREAD_EVERY``)."""
    assert models.smoothed_front is not None and models.cost_gp is not None
    front = models.smoothed_front
    dearest = _dearest_in_box(ctx, models, data)
    target, _ = _target_log_cost(ctx, data.log_cost[front], dearest)
    anchor = front[int(np.argmin(np.abs(data.log_cost[front] - target)))]
    n, half_width = ctx.settings.n_candidates, ctx.settings.spread_half_width
    x = np.repeat(data.x_internal[anchor][None, :], n, axis=0)
    cont = np.flatnonzero(ctx.layout.continuous_mask)
    x[:, cont] += ctx.rng.uniform(-half_width, half_width, size=(n, cont.size))
    x = ctx.space.project_internal(ctx.layout.clip(x))
    log_cost = models.cost_gp.predict_mean(x)
    p_success = 1.0 - models.failure.probability_of_failure(x)
    ok = (np.abs(log_cost - data.log_cost[anchor]) <= SPREAD_COST_WIDTH) & (p_success >= 0.5)
    for ceiling in (ctx.settings.max_suggestion_cost, ctx.pace.cost_ceiling):
        if ceiling is not None:
            ok &= log_cost <= math.log(max(ceiling, 1e-300))
    rows = [i for i in np.flatnonzero(ok) if not _member(ctx.taken_x, x[i])]
    if not rows:
        return None
    i = int(rows[0])  # the draws are in random order already
    return Proposal(
        x_internal=x[i],
        reason="spread",
        predicted_cost=float(math.exp(log_cost[i])),
        probability_of_success=float(p_success[i]),
        extra={"anchor_cost": float(math.exp(data.log_cost[anchor])), "half_width": half_width},
    )


def _climb_target(
    ctx: ProposalContext, models: FittedModels, data: ObservationArrays
) -> float | None:
    """The log cost one ``cost_overshoot`` above the smoothed front's costliest point, if
    the pace allows that climb now, else None.

    Pacing (``climb_share``, ``search.pacing``): the climb is due once a trial there
    would cost at most ``climb_allowance`` (that share of everything spent so far,
    failed trials included, or, under a trial cap that binds first, one round's share
    of the remaining budget), no pending trial is already predicted above the top, and
    the step fits under ``max_suggestion_cost`` and the budget left. Each step
    multiplies the top's cost by the same factor, so the steps' costs form a geometric
    series and their sum stays a fixed share of the spend whatever the budget, as in
    the doubling trick. Without it the front's top rises only when a target beyond it
    happens to come up, which the cheap bias of the targets makes rare.
    """
    share = ctx.settings.climb_share
    if share == 0:
        return None
    top = float(data.log_cost[models.smoothed_front].max())
    step = top + ctx.settings.cost_overshoot
    ceiling = ctx.settings.max_suggestion_cost
    if ceiling is not None and step > math.log(ceiling):
        return None
    left = ctx.pace.cost_ceiling
    if left is not None and math.exp(step) > left:
        return None
    if math.exp(step) > ctx.pace.climb_allowance:
        return None
    if ctx.pending_x.shape[0]:
        assert models.cost_gp is not None
        if np.any(models.cost_gp.predict_mean(ctx.pending_x) > top + _CLIMB_IN_FLIGHT):
            return None
    return step


def _dearest_in_box(ctx: ProposalContext, models: FittedModels, data: ObservationArrays) -> float:
    """The cost model's log cost at the box's dearest corner, where its linear prior
    mean points: the front's costliest point with every bounded continuous parameter
    moved to the bound its slope makes dearer (choices and unbounded parameters kept;
    inf without slopes, or where the prediction is not finite). An estimate: far from
    the data the prediction is the prior mean, and log cost is close to linear in the
    log-scaled size parameters (``search.models``)."""
    assert models.cost_gp is not None and models.smoothed_front is not None
    slopes = models.cost_gp.hyper.slopes
    if slopes is None:
        return math.inf
    top = models.smoothed_front[int(np.argmax(data.log_cost[models.smoothed_front]))]
    x = data.x_internal[top].copy()
    bound = np.where(np.asarray(slopes) > 0, ctx.layout.upper, ctx.layout.lower)
    move = ctx.layout.continuous_mask & np.isfinite(bound)
    x[move] = bound[move]
    corner = ctx.space.project_internal(x[None, :])
    dearest = float(models.cost_gp.predict_mean(corner)[0])
    return dearest if math.isfinite(dearest) else math.inf


def _target_log_cost(
    ctx: ProposalContext, front_log_cost: np.ndarray, dearest: float = math.inf
) -> tuple[float, float]:
    """A target across the front's costs, one ``cost_overshoot`` beyond them, and a
    window width.

    Where the range reaches beyond depends on which limit is the scarcer now
    (``search.pacing``): the trial count, one step above the costliest front point, so
    the search walks up in scale; compute, one step below the cheapest, where trials
    are nearly free and the hyperparameters that transfer up are learnt, while the walk
    up is left to the paced climb (``_climb_target``), whose trials are better tuned
    than those of targets beyond the top.

    Successive targets follow the golden-ratio sequence (offset by the seed) rather than
    independent draws: any run of k suggestions covers the cost range evenly, so a
    batch of 8 never happens to put most of its trials, and most of the budget, at the
    expensive end. The quantiles are bent (``Pace.target_bend``): towards the cheap end,
    or, while a trial cap binds first, towards the dear end as far as it takes for the
    targets' mean cost to be the compute left per trial left (``search.pacing``), which
    a range held down by ``max_suggestion_cost`` would not reach spread evenly. How far
    depends on ``dearest``, the log cost of the box's dearest corner
    (``_dearest_in_box``) or ``max_suggestion_cost`` if lower: whether the paced climb
    can still lift the range far enough for the targets to spend the fair share
    (``search.pacing``). Not the budget left: it shrinks as the study spends, and
    counting it would bend the last trials of every study to spend all that is left.
    """
    low, high = float(front_log_cost.min()), float(front_log_cost.max())
    if ctx.pace.compute_bound:
        low -= ctx.settings.cost_overshoot
    else:
        high += ctx.settings.cost_overshoot
    if ctx.pace.fair_share is not None:  # a trial cap binds first: spend what is left
        high = max(high, math.log(max(ctx.pace.fair_share, 1e-300)))
    if ctx.settings.max_suggestion_cost is not None:
        dearest = min(dearest, math.log(ctx.settings.max_suggestion_cost))
    ceilings = [ctx.settings.max_suggestion_cost, ctx.pace.cost_ceiling]
    for ceiling in (c for c in ceilings if c is not None):
        high = min(high, math.log(max(ceiling, 1e-300)))
        low = min(low, high)
    width = ctx.settings.cost_window * max(0.35, 0.1 * (high - low))
    quantile = (_GOLDEN * (ctx.sequence_index + 1 + ctx.settings.seed)) % 1.0
    bend = ctx.pace.target_bend(low, high, dearest=dearest)
    position = float(bend.position(quantile))
    return low + position * (high - low), width


def _cheapest(x: np.ndarray, log_cost: np.ndarray, *, limit: float, limit_name: str) -> Proposal:
    i = int(np.argmin(log_cost))
    return Proposal(
        x_internal=x[i],
        reason=f"fallback: no candidate is predicted to cost under {math.exp(limit):g} "
        f"({limit_name}); the cheapest candidate",
        predicted_cost=float(math.exp(log_cost[i])),
    )


def _normed(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _member(rows: np.ndarray, x: np.ndarray) -> bool:
    if rows.shape[0] == 0:
        return False
    return bool(np.any(np.all(np.abs(rows - x) <= 1e-9, axis=1)))


def _best_new(ctx: ProposalContext, x: np.ndarray, score: np.ndarray) -> int:
    """Index of the highest score whose point is not taken (the best one if all are)."""
    order = np.argsort(-score, kind="stable")
    for i in order:
        if not _member(ctx.taken_x, x[i]):
            return int(i)
    return int(order[0])


def _first_new(ctx: ProposalContext, x: np.ndarray) -> np.ndarray:
    x = ctx.space.project_internal(x)
    return x[_best_new(ctx, x, np.zeros(x.shape[0]))]
