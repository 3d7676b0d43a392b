"""All the engine's models, fitted together on the observations so far.

- the loss GP, on successful trials (a bounded training set, ``search.training_set``);
- the log-cost GP, on successful trials: the cost of a configuration is what a run that
  completes costs. A run that diverges or runs out of memory stops early and costs a
  fraction of that; fitted to those costs, the model called the failing region cheap,
  a configuration there looked far below the front at its "cost", and the engine kept
  proposing learning rates at the edge of divergence (a quarter of its trials failed;
  docs/notes/engine-experiments.md). What failures cost is still spent and paced
  (``search.pacing`` reads the costs observed), and the failure model still learns
  where they are;
- the failure model (``search.failure``);
- the Pareto surface (``search.front_model``), fitted to the *smoothed* front: the
  front of the loss GP's posterior means at the observed points rather than of single
  noisy losses, so one lucky measurement does not set the bar for everything after it;
- the scaled loss model (``search.loss_model``): the loss GP, plus scaling transfer
  along the smoothed front's trend beyond its costliest point. Candidates are scored
  with it; smoothing and re-measurement use the loss GP alone (observed points lie
  within the observed costs).

GP hyperparameters are cached with the size of the data they were fitted on. New data
updates the posterior exactly (same hyperparameters, new Cholesky factor); once the data
has grown by ``refit_growth`` (5%) since the last fit, the marginal likelihood is
maximised again, warm-started from the cached values. One trial among hundreds barely
moves the optimum, so this keeps asks fast at thousands of trials while early in a study
(under 20 trials) every new trial triggers a refit. The cache is plain JSON, so a
restored engine fits exactly what the original would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.candidates import FrontTrend
from search.errors import ModelFittingError
from search.failure import FailureModel
from search.front_model import ParetoSurface
from search.loss_model import ScaledLossModel
from search.models import GPHyperparameters, GPPredictor, fit_gp, standardisation
from search.pareto import front_indices
from search.settings import SearchSettings
from search.training_set import select_training_indices


@dataclass(frozen=True)
class ObservationArrays:
    """The observations as arrays: ``x_internal`` (n, d), the rest (n,)."""

    x_internal: np.ndarray
    loss: np.ndarray  # NaN where failed
    log_cost: np.ndarray
    failed: np.ndarray  # bool


@dataclass(frozen=True)
class FittedModels:
    """What one round of fitting produced; ``problem`` says why the model phase cannot run."""

    failure: FailureModel
    loss_gp: GPPredictor | None = None
    cost_gp: GPPredictor | None = None
    surface: ParetoSurface | None = None
    smoothed_loss: np.ndarray | None = None  # (n,), NaN where failed
    smoothed_front: np.ndarray | None = None  # observation indices, by increasing cost
    loss_train_rows: np.ndarray | None = None  # observation indices the loss GP trains on
    scaled_loss: ScaledLossModel | None = None  # what candidates are scored with
    problem: str | None = None


def fit_models(
    data: ObservationArrays, *, settings: SearchSettings, cache: dict[str, Any]
) -> FittedModels:
    """Fit every model; failures to fit become ``problem``, never exceptions."""
    failure = FailureModel(
        data.x_internal,
        data.failed,
        prior=settings.failure_prior,
        bandwidth=settings.failure_bandwidth,
    )
    success = np.flatnonzero(~data.failed)
    if success.size < 2:
        what = "all" if success.size == 0 else "only 1 of"
        return FittedModels(
            failure=failure,
            problem=f"{what} {data.failed.size} trials succeeded; the loss model needs 2",
        )
    try:
        loss_gp, rows = _fit_cached(
            "loss",
            data.x_internal[success],
            data.loss[success],
            anchors=front_indices(data.loss[success], data.log_cost[success]),
            settings=settings,
            cache=cache,
        )
        cost_gp, _ = _fit_cached(
            "cost",
            data.x_internal[success],
            data.log_cost[success],
            anchors=front_indices(data.loss[success], data.log_cost[success]),
            settings=settings,
            cache=cache,
            linear_mean=True,
        )
    except ModelFittingError as err:
        return FittedModels(failure=failure, problem=f"surrogate fit failed ({err})")
    return _with_front(
        data, success, failure=failure, loss_gp=loss_gp, cost_gp=cost_gp, rows=success[rows]
    )


def _with_front(
    data: ObservationArrays,
    success: np.ndarray,
    *,
    failure: FailureModel,
    loss_gp: GPPredictor,
    cost_gp: GPPredictor,
    rows: np.ndarray,
) -> FittedModels:
    smoothed = np.full(data.loss.shape, np.nan)
    smoothed[success] = loss_gp.predict_mean(data.x_internal[success])
    front = success[front_indices(smoothed[success], data.log_cost[success])]
    surface = ParetoSurface(data.log_cost[front], smoothed[front])
    trend = FrontTrend.fit(data.x_internal[front], data.log_cost[front])
    scaled = ScaledLossModel(loss_gp, cost_gp, surface, trend, float(data.log_cost[front].max()))
    return FittedModels(
        failure=failure,
        loss_gp=loss_gp,
        cost_gp=cost_gp,
        surface=surface,
        smoothed_loss=smoothed,
        smoothed_front=front,
        loss_train_rows=rows,
        scaled_loss=scaled,
    )


def _fit_cached(
    name: str,
    x_internal: np.ndarray,
    y: np.ndarray,
    *,
    anchors: np.ndarray,
    settings: SearchSettings,
    cache: dict[str, Any],
    linear_mean: bool = False,
) -> tuple[GPPredictor, np.ndarray]:
    """Fit (or reuse) one GP on its bounded training set and record it in ``cache``.

    Returns the posterior and the rows of ``x_internal`` it was trained on.
    """
    best = np.argsort(y, kind="stable")
    rows = select_training_indices(
        x_internal, anchor_indices=anchors, best_indices=best, max_points=settings.max_train_points
    )
    x_train, y_train = x_internal[rows], y[rows]
    entry = cache.get(name)
    warm: GPHyperparameters | None = None
    if entry:
        warm = GPHyperparameters.from_dict(entry["hyper"])
        if not _refit_due(entry["n_fitted"], y.size, settings.refit_growth):
            y_mean, y_std = standardisation(y_train)
            return GPPredictor(x_train, y_train, warm, y_mean=y_mean, y_std=y_std), rows
    predictor = fit_gp(
        x_train,
        y_train,
        warm_start=warm,
        max_iter=settings.fit_max_iter,
        retries=settings.fit_retries,
        linear_mean=linear_mean,
    )
    cache[name] = {"n_fitted": int(y.size), "hyper": predictor.hyper.to_dict()}
    return predictor, rows


def _refit_due(n_fitted: int, n_now: int, growth: float) -> bool:
    return n_now - n_fitted >= max(1, math.ceil(growth * n_fitted))
