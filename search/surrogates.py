"""All the engine's models, fitted together on the observations so far.

- the loss GP, on successful trials (a bounded training set, ``search.training_set``);
- the log-cost GP, of what each trial would have cost had it completed: the cost of a
  configuration, the front's axis, is what a run of it that completes costs. A run that
  diverges or runs out of memory stops early and costs a fraction of that; fitted to
  those costs as they were, the model called the failing region cheap, a configuration
  there looked far below the front at its "cost", and the engine kept proposing
  learning rates at the edge of divergence (a quarter of its trials failed;
  docs/notes/engine-experiments.md). So a GP of the completed runs first says what
  each failed one would have cost, and a failed trial that spent under half of that
  takes the prediction (``_cost_if_completed``). What failures spent is still what the
  pacing counts (``search.pacing`` reads the observed costs);
- the failure model (``search.failure``);
- the Pareto surface (``search.front_model``), fitted to the *smoothed* front: the
  front of the loss GP's posterior means at the observed points rather than of single
  noisy losses, so one lucky measurement does not set the bar for everything after it;
- the scaled loss model (``search.loss_model``): the loss GP, plus scaling transfer
  along the smoothed front's trend beyond its costliest point. Candidates are scored
  with it; smoothing and re-measurement use the loss GP alone (observed points lie
  within the observed costs).

The front the engine reports (``estimated_losses``) is the loss GP's hyperparameters
conditioned on every successful trial, not on its bounded training set, which holds the
lowest losses and so, under noise, the luckiest draws.

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

# A failed trial that spent under half (ln 2 below in log cost) of what a completed run
# of it is predicted to cost stopped early (``_cost_if_completed``).
_STOPPED_EARLY = math.log(2.0)
# The loss estimates of the reported front (``estimated_losses``) condition on at most
# this many successful trials: a Cholesky factor of 2,000 takes about 0.05 s.
ESTIMATE_POINTS = 2000


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
    front = front_indices(data.loss[success], data.log_cost[success])  # within ``success``
    try:
        loss_gp, rows = _fit_cached(
            "loss",
            data.x_internal[success],
            data.loss[success],
            anchors=front,
            settings=settings,
            cache=cache,
        )
        cost_gp, _ = _fit_cached(
            "completed_cost",
            data.x_internal[success],
            data.log_cost[success],
            anchors=front,
            settings=settings,
            cache=cache,
            linear_mean=True,
        )
        if success.size < data.failed.size:
            cost_gp, _ = _fit_cached(
                "cost",
                data.x_internal,
                _cost_if_completed(data, cost_gp),
                anchors=success[front],
                settings=settings,
                cache=cache,
                linear_mean=True,
            )
    except ModelFittingError as err:
        return FittedModels(failure=failure, problem=f"surrogate fit failed ({err})")
    return _with_front(
        data, success, failure=failure, loss_gp=loss_gp, cost_gp=cost_gp, rows=success[rows]
    )


def estimated_losses(
    models: FittedModels, data: ObservationArrays, x_query: np.ndarray
) -> np.ndarray:
    """The loss (q,) at ``x_query`` (q, d) as the front reports it: the loss GP's
    hyperparameters conditioned on every successful trial (at most ``ESTIMATE_POINTS``,
    chosen by place: the smoothed front's neighbourhoods, the latest, evenly spread), not
    on its training set alone.

    Why: past ``max_train_points`` the loss GP trains on a subset that holds the
    observed front and the lowest losses, which under noise are the luckiest draws, with
    few of the ordinary runs beside them; its posterior then believes those draws. In a
    1,290-trial study (held-out-sharp-lr, wide box, 20,000x, 3% noise) the reported
    front's true losses sat 3.0 noise sd above what it reported; conditioned on every
    trial, 0.1 (docs/notes/engine-experiments.md)."""
    assert models.loss_gp is not None and models.smoothed_front is not None
    gp = models.loss_gp
    success = np.flatnonzero(~data.failed)
    if success.size <= gp.x_train.shape[0]:
        return gp.predict_mean(x_query)  # it trained on every success already
    rows = select_training_indices(
        data.x_internal[success],
        anchor_indices=np.searchsorted(success, models.smoothed_front),
        best_indices=np.zeros(0, dtype=int),
        max_points=ESTIMATE_POINTS,
    )
    conditioned = GPPredictor(
        data.x_internal[success[rows]],
        data.loss[success[rows]],
        gp.hyper,
        y_mean=gp.y_mean,
        y_std=gp.y_std,
    )
    return conditioned.predict_mean(x_query)


def _cost_if_completed(data: ObservationArrays, completed_cost: GPPredictor) -> np.ndarray:
    """Log costs (n,) as if every trial had completed: a failed trial that spent less than
    half of what ``completed_cost`` (the GP of the completed runs) predicts for it
    stopped early, and takes the prediction instead; every other cost is as observed.

    A failed run's cost is censored: completing it would have cost at least what it
    spent. One that failed at the end (or whose cost does not depend on when it failed)
    spent about what a completed run does, and is worth keeping: it shows that what it
    varied (a learning rate) does not change the cost. One that diverged early or ran out
    of memory spent a fraction of it, and taken as it is, made the region that fails look
    cheap (``search.surrogates`` module docstring)."""
    log_cost = data.log_cost.copy()
    failed = np.flatnonzero(data.failed)
    predicted = completed_cost.predict_mean(data.x_internal[failed])
    early = log_cost[failed] < predicted - _STOPPED_EARLY
    log_cost[failed[early]] = predicted[early]
    return log_cost


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
