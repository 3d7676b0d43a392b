"""Compute-optimal allocation N*(C) = G C^a, D*(C) = G' C^b, and the loss frontier L*(C).

``N*`` and ``D*`` are power laws fitted through the compute-efficient set (a straight
line in log-log space, ``search.scaling.laws``). Both must grow with compute: a flat or
falling allocation is refused, because a scale-up recipe built on it would be noise.

The loss frontier is the saturating law ``L*(C) = E + A / C^gamma`` fitted to the
front with the same robust log-space Huber fit as the Chinchilla law
(``search.scaling.lse``); it must fall with compute (``gamma > 0`` at the interval's
lower end).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from search.errors import NotEnoughDataError
from search.scaling.laws import (
    LinearLaw,
    fit_law_to_optima,
    fit_linear_law,
    percentile_interval,
)
from search.scaling.lse import fit_lse, predict_lse


class LossFrontier(BaseModel):
    """``L*(C) = E + A / C^gamma`` with bootstrap uncertainty; JSON-serialisable.

    ``bootstrap`` keeps resampled ``(E, A, gamma)`` rows; intervals at a target
    compute are their percentiles there, so they widen away from the data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    E: float
    A: float
    gamma: float
    gamma_low: float
    gamma_high: float
    level: float
    n_points: int
    compute_min: float
    compute_max: float
    bootstrap: list[list[float]]
    # Why E is not identified (None when it is): see fit_loss_frontier.
    E_reason: str | None = None

    def predict(self, compute: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Loss estimate and interval at each compute; arrays ``(m,)``."""
        log_c = np.log(np.atleast_1d(np.asarray(compute, dtype=float)))[:, None]
        estimate = predict_lse(_theta(np.array([[self.E, self.A, self.gamma]])), log_c)[0]
        draws = predict_lse(_theta(np.asarray(self.bootstrap)), log_c)
        low, high = percentile_interval(draws, self.level)
        return estimate, low, high


def _theta(rows: np.ndarray) -> np.ndarray:
    return np.column_stack([np.log(rows[:, 0]), np.log(rows[:, 1]), rows[:, 2]])


# A fitted E below this share of the lowest loss is read as "no floor in the data".
UNIDENTIFIED_FLOOR = 1e-6


def fit_loss_frontier(
    compute: np.ndarray,
    loss: np.ndarray,
    *,
    seed: int = 0,
    n_bootstrap: int = 200,
    level: float = 0.9,
) -> LossFrontier:
    """Fit ``L*(C)`` to front points; NotEnoughDataError unless loss falls with C."""
    compute = np.asarray(compute, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if np.ptp(np.log10(compute)) < 1.0:
        raise NotEnoughDataError(
            f"the front spans {np.ptp(np.log10(compute)):.2f} decades of compute; "
            "the loss frontier needs at least 1"
        )
    # One point per budget is the common design, so two points per parameter suffice here.
    theta, boot = fit_lse(
        np.log(compute)[:, None], loss, seed=seed, n_bootstrap=n_bootstrap, points_per_param=2
    )
    with np.errstate(over="ignore"):
        rows = np.column_stack([np.exp(boot[:, :2]), boot[:, 2]])
    rows = rows[np.all(np.isfinite(rows), axis=1)]  # refits that ran off to infinity
    if len(rows) < 2:
        raise NotEnoughDataError(
            "the loss frontier's bootstrap refits ran off to infinity: L*(C) is not identified"
        )
    gamma_low, gamma_high = percentile_interval(rows[:, 2], level)
    if not gamma_low > 0:
        raise NotEnoughDataError(
            f"loss does not fall significantly with compute along the front (gamma = "
            f"{theta[2]:.3g}, {level:.0%} interval [{gamma_low:.3g}, {gamma_high:.3g}])"
        )
    E = float(np.exp(theta[0]))
    E_reason = None
    if UNIDENTIFIED_FLOOR * float(loss.min()) > E:
        # The optimiser drove E to zero: over these budgets the front is a pure power law
        # (no curvature in log-log shows a floor). Every bootstrap refit starts there,
        # where the gradient in ln E vanishes, so the draws keep the same E.
        E_reason = (
            f"not identified: the front shows no loss floor over {np.ptp(np.log10(compute)):.1f} "
            f"decades of compute (E fitted at {E:.2g}); L*(C) is a pure power law here and "
            "its extrapolation ignores any irreducible loss"
        )
    return LossFrontier(
        E=E,
        E_reason=E_reason,
        A=float(np.exp(theta[1])),
        gamma=float(theta[2]),
        gamma_low=float(gamma_low),
        gamma_high=float(gamma_high),
        level=level,
        n_points=len(loss),
        compute_min=float(compute.min()),
        compute_max=float(compute.max()),
        bootstrap=rows.tolist(),
    )


def fit_allocation_law(
    compute: np.ndarray,
    amount: np.ndarray,
    *,
    name: str,
    seed: int = 0,
    n_bootstrap: int = 200,
    level: float = 0.9,
) -> LinearLaw:
    """``ln amount = ln G + a ln C`` through the efficient set; ``a`` must be > 0.

    ``name`` ("n_params" or "tokens") labels errors. Raises NotEnoughDataError when
    the data are too few or narrow, or the exponent's interval reaches 0 or below
    (a flat or falling allocation).
    """
    law = fit_linear_law(
        np.log(np.asarray(compute, dtype=float))[:, None],
        np.log(np.asarray(amount, dtype=float)),
        names=["ln_compute"],
        seed=seed,
        n_bootstrap=n_bootstrap,
        level=level,
    )
    return growing(law, name, level)


def allocation_law_from_optima(
    log_compute: np.ndarray,
    log_amount: np.ndarray,
    log_amount_draws: np.ndarray,
    *,
    name: str,
    level: float = 0.9,
) -> LinearLaw:
    """``ln amount* = ln G + a ln C`` through estimated optima (``search.scaling.optima``):
    ``log_amount`` (P,) at ``log_compute`` (P,), with bootstrap draws (b, P). The law
    keeps its draws and its intervals are their percentiles: along ``L(N, D)``'s
    allocation a draw is ``ln G + a ln(C / 6)`` of one refit, with ``a`` a ratio of
    fitted exponents, skewed. Same refusals as ``fit_allocation_law``."""
    law = fit_law_to_optima(
        np.asarray(log_compute, dtype=float)[:, None],
        log_amount,
        log_amount_draws,
        names=["ln_compute"],
        level=level,
        percentiles=True,
    )
    return growing(law, name, level)


def growing(law: LinearLaw, name: str, level: float) -> LinearLaw:
    low, high = law.slope_interval()
    if not low > 0:
        raise NotEnoughDataError(
            f"{name}*(C) is flat or falling in these data: exponent {law.coef[1]:.3g}, "
            f"{level:.0%} interval [{low:.3g}, {high:.3g}] includes values <= 0"
        )
    return law
