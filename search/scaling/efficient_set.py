"""The compute-efficient set: the Pareto front of (loss, compute), made robust to noise.

A single noisy front point is often just lucky: its loss is low because of noise, not
because its hyperparameters are optimal. Fitting scaling laws to the bare front would
then chase that noise. Instead we take every observation whose loss lies within a
*band* above a smooth reference front:

1. the reference is the fitted loss frontier ``L*(C)`` when the caller has one
   (``reference_loss``), else the front interpolated linearly in ``ln compute``
   (non-increasing, constant beyond its ends);
2. the noise level ``sigma`` is read off the front itself: with a fitted reference, the
   robust spread (MAD) of the front's residuals around it; without one, the spread of
   each interior front point's deviation from the straight line through its two
   neighbours, divided by ``sqrt(1.5)`` (that deviation has variance ``1.5 sigma^2``
   for independent points);
3. the band is ``max(band_sigmas * sigma, min_band_fraction * reference)``; a point is
   compute-efficient when ``loss <= reference + band``.

The efficient runs say at which budgets, and over what range of compute, the study
has evidence about the optimum: ``fit_scaling_rules`` reads the estimated optima there
(``search.scaling.optima``) rather than regressing through the runs' own values, which
a search scatters unevenly around the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.errors import NotEnoughDataError
from search.pareto import front_indices

MIN_FRONT_POINTS = 5
MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class EfficientSet:
    """Indices (into the arrays given) of the front and of the efficient set.

    ``front`` is ordered by increasing compute; ``members`` by index. ``band`` is the
    absolute loss tolerance used at each point's compute, ``noise_sd`` the estimate.
    """

    front: np.ndarray
    members: np.ndarray
    noise_sd: float
    band: np.ndarray


def tolerant_front(loss: np.ndarray, compute: np.ndarray, *, rel_tol: float = 0.01):
    """Front indices (by increasing compute) without points beaten by a run costing at
    most ``rel_tol`` more: budgets that differ by rounding (iso-FLOP designs) would
    otherwise put several runs of one budget on the front, and their spread would read
    as noise."""
    front = front_indices(loss, compute)
    keep = [
        i
        for k, i in enumerate(front)
        if not np.any(
            (compute[front[k + 1 :]] <= compute[i] * (1.0 + rel_tol))
            & (loss[front[k + 1 :]] < loss[i])
        )
    ]
    return np.asarray(keep, dtype=int)


def front_loss_at(log_compute_front: np.ndarray, loss_front: np.ndarray, log_compute):
    """The front interpolated linearly in ``ln compute`` (constant beyond its ends)."""
    return np.interp(log_compute, log_compute_front, loss_front)


def estimate_front_noise(loss_front: np.ndarray, reference_front: np.ndarray | None) -> float:
    """Robust per-point noise of a front ordered by compute (0.0 with < 3 points)."""
    if reference_front is not None:
        residual = loss_front - reference_front
    elif len(loss_front) >= 3:
        residual = (loss_front[1:-1] - 0.5 * (loss_front[:-2] + loss_front[2:])) / np.sqrt(1.5)
    else:
        return 0.0
    return float(MAD_TO_SD * np.median(np.abs(residual - np.median(residual))))


def efficient_set(
    loss: np.ndarray,
    compute: np.ndarray,
    *,
    reference_loss: np.ndarray | None = None,
    band_sigmas: float = 2.0,
    min_band_fraction: float = 0.01,
) -> EfficientSet:
    """The compute-efficient set of observations ``(loss, compute)``, both ``(n,)``.

    ``reference_loss`` (n,), when given, is a smooth frontier evaluated at each point's
    compute. Raises NotEnoughDataError when the front has fewer than
    ``MIN_FRONT_POINTS`` points: a scaling law through fewer compute-efficient runs is
    not supported.
    """
    loss = np.asarray(loss, dtype=float)
    compute = np.asarray(compute, dtype=float)
    front = tolerant_front(loss, compute)
    if len(front) < MIN_FRONT_POINTS:
        raise NotEnoughDataError(
            f"the loss-compute front has {len(front)} point{'' if len(front) == 1 else 's'}; "
            f"scaling rules need at least {MIN_FRONT_POINTS} compute-efficient runs spread "
            "over compute"
        )
    if reference_loss is None:
        reference = front_loss_at(np.log(compute[front]), loss[front], np.log(compute))
        noise_sd = estimate_front_noise(loss[front], None)
    else:
        reference = np.asarray(reference_loss, dtype=float)
        noise_sd = estimate_front_noise(loss[front], reference[front])
    band = np.maximum(band_sigmas * noise_sd, min_band_fraction * np.abs(reference))
    members = np.flatnonzero(np.isfinite(loss) & (loss <= reference + band))
    return EfficientSet(front=front, members=members, noise_sd=noise_sd, band=band)
