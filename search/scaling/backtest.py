"""How far a loss law strays when it extrapolates inside a study's own compute range.

The laws are ``L(N, D)`` and the loss frontier ``L*(C)``. A law's bootstrap interval
says how well the runs pin its coefficients, not whether its form holds beyond them.
On real training it did not: small transformers on a CPU improved faster with scale
than ``L(N, D)`` fitted to the smaller ones foresaw (each widening took the loss down
by a step), and the loss at 10x fell 18% below an interval that the law's own
bootstrap made (docs/case-study-real-scaling.md, run 7).

So the study checks each law on itself: fitted again to its points below the top
``HOLD_OUT_DECADES`` of compute (``L(N, D)``: the corrected runs; ``L*(C)``: the
front), the law predicts its points above. Their log-ratio ``ln(predicted /
observed)`` against the decades each lies beyond the cut gives a bias per decade of
extrapolation, a straight line through the origin (a law whose exponents are off by a
constant strays in log-loss about in proportion to the log-distance). A prediction
further out than the data then lets its loss interval reach as far as that bias
carries the estimate at the interval's level, the bias's standard error included
(``search.scaling.predict``). On the testbed's smooth Chinchilla truths the bias is
about zero, and the interval widens by that uncertainty alone.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from search.errors import NotEnoughDataError
from search.scaling.chinchilla import FLOPS_PER_PARAM_TOKEN
from search.scaling.lse import fit_lse, predict_lse

HOLD_OUT_DECADES = 0.5
MIN_HELD_OUT = 5
N_BOOTSTRAP = 30  # the refit's resamples, for its share of ``bias_se``


class Backtest(BaseModel):
    """A law refitted below ``cut_compute`` and scored on its points above it.

    ``bias_per_decade``: ``ln(predicted / observed)`` per decade of compute beyond the
    cut (positive: the law runs high, the larger runs did better than it said), with
    its standard error ``bias_se`` (the scatter about that line and the refit's own
    bootstrap spread)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cut_compute: float
    compute_max: float  # the largest compute among the law's points, in their unit
    n_fit: int
    n_held_out: int
    bias_per_decade: float
    bias_se: float

    def stray(self, decades: float, *, level: float) -> tuple[float, float]:
        """The least and most log-loss ``ln(predicted / observed)`` the law may be off
        by ``decades`` of compute beyond the runs it was fitted to: the ends of the
        bias's two-sided interval at ``level`` (``bias_se``, normal)."""
        decades = max(decades, 0.0)
        z = float(stats.norm.ppf(0.5 + level / 2.0))
        return (
            (self.bias_per_decade - z * self.bias_se) * decades,
            (self.bias_per_decade + z * self.bias_se) * decades,
        )


def backtest_parametric(
    n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, *, seed: int = 0
) -> Backtest:
    """The backtest of ``L(N, D)`` on runs ``(n_params, tokens, loss)``; raises
    NotEnoughDataError (with the numbers) when too few runs lie above the cut."""
    n_params, tokens = np.asarray(n_params, dtype=float), np.asarray(tokens, dtype=float)
    # No minimum span of N and D below the cut (the law itself needs a decade of each):
    # the refit only has to say where the larger runs would land, and a refit that
    # pins its exponents poorly shows as the spread of its bootstrap, in ``bias_se``.
    log_x = np.column_stack([np.log(n_params), np.log(tokens)])
    return _backtest(log_x, loss, FLOPS_PER_PARAM_TOKEN * n_params * tokens, seed=seed)


def backtest_frontier(compute: np.ndarray, loss: np.ndarray, *, seed: int = 0) -> Backtest:
    """The backtest of the loss frontier ``L*(C)`` on the front's points (one point per
    budget: two per coefficient suffice, as for the frontier's own fit)."""
    compute = np.asarray(compute, dtype=float)
    return _backtest(np.log(compute)[:, None], loss, compute, seed=seed, points_per_param=2)


def _backtest(
    log_x: np.ndarray,
    loss: np.ndarray,
    compute: np.ndarray,
    *,
    seed: int,
    points_per_param: int = 3,
) -> Backtest:
    loss = np.asarray(loss, dtype=float)
    cut = float(compute.max()) / 10.0**HOLD_OUT_DECADES
    below, above = compute <= cut, compute > cut
    if above.sum() < MIN_HELD_OUT:
        raise NotEnoughDataError(
            f"{int(above.sum())} runs in the top {HOLD_OUT_DECADES:g} decades of compute; "
            f"the backtest needs {MIN_HELD_OUT}"
        )
    theta, draws = fit_lse(
        log_x[below],
        loss[below],
        seed=seed,
        n_bootstrap=N_BOOTSTRAP,
        points_per_param=points_per_param,
    )
    decades = np.log10(compute[above] / cut)

    def misses(fit: np.ndarray) -> np.ndarray:
        """``ln(predicted / observed)`` at the held-out runs of each fit in ``fit``
        (..., p)."""
        return np.log(predict_lse(fit, log_x[above]) / loss[above])

    def per_decade(residual: np.ndarray) -> np.ndarray:
        """The bias per decade of ``residual`` (..., m): least squares through 0."""
        return residual @ decades / (decades @ decades)

    residual = misses(theta)
    bias = float(per_decade(residual))
    scatter = residual - bias * decades
    # The held-out runs' scatter about the line, and the refit's own uncertainty (the
    # spread of the slope over its bootstrap draws): the held-out runs share one refit.
    scatter_var = float(scatter @ scatter) / (len(residual) - 1) / float(decades @ decades)
    refit_var = float(np.var(per_decade(misses(draws)), ddof=1))
    return Backtest(
        cut_compute=cut,
        compute_max=float(compute.max()),
        n_fit=int(below.sum()),
        n_held_out=int(above.sum()),
        bias_per_decade=bias,
        bias_se=math.sqrt(scatter_var + refit_var),
    )
