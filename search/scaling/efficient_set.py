"""The compute-efficient set: the Pareto front of (loss, compute), made robust to noise.

A single noisy front point is often just lucky: its loss is low because of noise, not
because its hyperparameters are optimal. Fitting scaling laws to the bare front would
then chase that noise. Instead we take every observation whose loss lies within a
*band* above the front:

1. the front is interpolated linearly in ``ln compute`` (non-increasing, constant
   beyond its ends), giving ``front_loss(C)``;
2. the noise level ``sigma`` is read off the front itself: each interior front point
   is compared with the straight line through its two neighbours, and the robust
   spread (MAD) of those deviations, divided by ``sqrt(1.5)``, estimates the per-point
   noise (the deviation of ``y_i`` from ``(y_{i-1} + y_{i+1}) / 2`` has variance
   ``1.5 sigma^2`` when the points are independent);
3. the band is ``max(band_sigmas * sigma, min_band_fraction * front_loss(C))``; a
   point is compute-efficient when ``loss <= front_loss(C) + band``.

Points near the front are near-optimal for their compute, and their hyperparameters
scatter on both sides of the optimum, so a regression through them estimates the
optimum rather than the luckiest run.
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


def front_loss_at(log_compute_front: np.ndarray, loss_front: np.ndarray, log_compute):
    """The front interpolated linearly in ``ln compute`` (constant beyond its ends)."""
    return np.interp(log_compute, log_compute_front, loss_front)


def estimate_front_noise(loss_front: np.ndarray) -> float:
    """Robust per-point noise of a front ordered by compute (0.0 with < 3 points)."""
    if len(loss_front) < 3:
        return 0.0
    deviation = loss_front[1:-1] - 0.5 * (loss_front[:-2] + loss_front[2:])
    mad = np.median(np.abs(deviation - np.median(deviation)))
    return float(MAD_TO_SD * mad / np.sqrt(1.5))


def efficient_set(
    loss: np.ndarray,
    compute: np.ndarray,
    *,
    band_sigmas: float = 2.0,
    min_band_fraction: float = 0.005,
) -> EfficientSet:
    """The compute-efficient set of observations ``(loss, compute)``, both ``(n,)``.

    Raises NotEnoughDataError when the front has fewer than ``MIN_FRONT_POINTS``
    points: a scaling law through fewer compute-efficient runs is not supported.
    """
    loss = np.asarray(loss, dtype=float)
    compute = np.asarray(compute, dtype=float)
    front = front_indices(loss, compute)
    if len(front) < MIN_FRONT_POINTS:
        raise NotEnoughDataError(
            f"the loss-compute front has {len(front)} points; scaling rules need at least "
            f"{MIN_FRONT_POINTS} compute-efficient runs spread over compute"
        )
    log_compute = np.log(compute)
    reference = front_loss_at(log_compute[front], loss[front], log_compute)
    noise_sd = estimate_front_noise(loss[front])
    band = np.maximum(band_sigmas * noise_sd, min_band_fraction * np.abs(reference))
    members = np.flatnonzero(np.isfinite(loss) & (loss <= reference + band))
    return EfficientSet(front=front, members=members, noise_sd=noise_sd, band=band)
