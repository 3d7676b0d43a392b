"""Settings of the Pareto search engine (``search.engine.ParetoSearch``).

All distances are in the engine's internal space (``search.space``: the center is 0 and
one unit is one ``scale`` of a parameter); costs are in the study's cost unit, and
``log_cost`` is its natural log.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ``spread_every`` for a study whose scaling rules will be fitted. A search that seeks
# the front puts its runs within about half a doubling of each learning-rate optimum,
# where the loss barely moves: under 1% noise the rules' response surface then places
# the bowl's bottom 0.2 dex off at 100x. The same runs spread about 1.5 doublings around
# the optimum place it to 0.05. A third of the model phase spread halves the rules'
# errors at 100x on the testbed and costs the front about 4% in regret
# (docs/notes/engine-experiments.md, "Spread points").
RULES_SPREAD_EVERY = 3


class SearchSettings(BaseModel):
    """How the engine searches. Frozen and JSON-able (``model_dump(mode="json")``).

    The defaults suit a study of a few hundred trials with up to a few dozen in flight.
    What limits the study (trial count, compute, trials in flight) is not a setting: the
    caller states it as ``search.pacing.StudyLimits``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, ge=0, description="Seed of the engine's own random stream.")
    n_startup: int = Field(
        default=8,
        ge=1,
        description="Trials drawn at random around the center before the models take over.",
    )
    initial_radius: float = Field(
        default=0.7, gt=0, description="Trust-region radius at the start (internal units)."
    )
    min_radius: float = Field(default=0.1, gt=0, description="Smallest trust-region radius.")
    max_radius: float = Field(default=2.0, gt=0, description="Largest trust-region radius.")
    radius_grow: float = Field(
        default=1.5, gt=1, description="Radius factor after a trial that improves the front."
    )
    radius_shrink: float = Field(
        default=0.7, gt=0, lt=1, description="Radius factor after `shrink_patience` misses."
    )
    shrink_patience: int = Field(
        default=6, ge=1, description="Consecutive trials without a front improvement to shrink."
    )
    max_suggestion_cost: float | None = Field(
        default=None,
        gt=0,
        description="Ceiling on a suggestion's predicted cost (model phase); None for none.",
    )
    lease_seconds: float = Field(
        default=3600.0, gt=0, description="A pending suggestion expires after this long."
    )
    remeasure_every: int = Field(
        default=12,
        ge=0,
        description="Every n-th model suggestion re-runs a suspiciously lucky front point "
        "(0 disables re-measurement).",
    )
    spread_every: int = Field(
        default=0,
        ge=0,
        description="Every n-th suggestion of the model phase is a spread point: a front "
        "point's configuration moved by up to spread_half_width in every continuous "
        "coordinate, at that point's predicted cost (0: none; a study with scaling axes "
        "gets RULES_SPREAD_EVERY from the service; search.proposals).",
    )
    spread_half_width: float = Field(
        default=2.0,
        gt=0,
        description="How far a spread point moves from its front point, per continuous "
        "coordinate (internal units: ln for log parameters, doublings for pow2).",
    )
    max_repeats: int = Field(
        default=2, ge=1, description="A configuration is measured at most this many times."
    )
    max_train_points: int = Field(
        default=160, ge=8, description="Bound on each GP's training set (speed)."
    )
    n_candidates: int = Field(
        default=384, ge=16, description="Random candidates scored per suggestion."
    )
    cost_overshoot: float = Field(
        default=0.7,
        ge=0,
        description="One step in log cost: how far beyond the front's costs target costs "
        "reach (below the cheapest point while compute is the scarcer limit, above the "
        "costliest while the trial count is; search.pacing), each climb's height above "
        "the costliest front point, and how far above that point a suggestion may be "
        "predicted.",
    )
    climb_share: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Climb pacing: once a trial one cost_overshoot above the front's "
        "costliest point would cost at most this share of everything spent so far (or, "
        "while a trial cap is the scarcer limit, one round's share of the remaining "
        "budget; search.pacing), and no pending trial is predicted above that point, the "
        "next model suggestion climbs there. The front's top then grows with the spend, "
        "so the climb's cost stays a fixed share of the budget (0 disables; the climb is "
        "then left to the targets beyond the top, set while the trial count is scarcer).",
    )
    cost_window: float = Field(
        default=1.25,
        gt=0,
        description="Width of the window around each target cost, as a multiple of "
        "max(0.35, 0.1 x the target range in log cost). Wider lets the acquisition pick "
        "across neighbouring costs; narrower holds each suggestion to its target.",
    )
    failure_prior: float = Field(
        default=0.1, gt=0, lt=1, description="Prior probability that a configuration fails."
    )
    failure_bandwidth: float = Field(
        default=0.5, gt=0, description="Kernel width of the failure model (internal units)."
    )
    fit_max_iter: int = Field(
        default=200,
        ge=5,
        description="L-BFGS iteration cap per GP fit (a safety bound; warm-started fits "
        "converge well before it).",
    )
    refit_growth: float = Field(
        default=0.05,
        ge=0,
        description="Refit a GP's hyperparameters once its data has grown by this fraction "
        "since the last fit (and by at least one trial); in between, new trials update the "
        "posterior with the cached hyperparameters. 0 refits after every new trial.",
    )
    fit_retries: int = Field(
        default=2, ge=0, description="Retries of a failed GP fit before ModelFittingError."
    )

    @model_validator(mode="after")
    def _check_radii(self) -> Self:
        if not self.min_radius <= self.initial_radius <= self.max_radius:
            raise ValueError(
                "need min_radius <= initial_radius <= max_radius, got "
                f"{self.min_radius} / {self.initial_radius} / {self.max_radius}"
            )
        return self
