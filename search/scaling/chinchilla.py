"""The parametric loss law L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022).

Fitted as the Chinchilla paper and Epoch AI's replication do (see ``search.scaling.lse``),
with a case-resampling bootstrap for standard errors and intervals. Minimising
``L(N, D)`` under ``C = 6 N D`` gives the compute-optimal allocation

    N*(C) = G (C / 6)^a,   D*(C) = G^-1 (C / 6)^b,   G = (alpha A / (beta B))^(1 / (alpha + beta)),
    a = beta / (alpha + beta),   b = alpha / (alpha + beta).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict

from search.errors import NotEnoughDataError
from search.scaling.laws import percentile_interval
from search.scaling.lse import HUBER_DELTA, fit_lse, predict_lse, refit_lse

FLOPS_PER_PARAM_TOKEN = 6.0
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


class ChinchillaFit(BaseModel):
    """A fitted L(N, D) with bootstrap uncertainty; JSON-serialisable.

    ``se``, ``low`` and ``high`` map each of ``E, A, B, alpha, beta, a, b`` to its
    bootstrap standard error and percentile interval at ``level``. ``bootstrap`` keeps
    the resampled ``(E, A, B, alpha, beta)`` rows, so predictions carry intervals.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    a: float
    b: float
    G: float
    se: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    level: float
    n_points: int
    huber_delta: float
    bootstrap: list[list[float]]

    def predict_loss(
        self, n_params: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Loss estimate and interval at each ``(n_params, tokens)``; arrays ``(m,)``."""
        log_x = np.column_stack([np.log(np.atleast_1d(n_params)), np.log(np.atleast_1d(tokens))])
        estimate = predict_lse(_theta(np.array([self.params()])), log_x)[0]
        draws = predict_lse(_theta(np.asarray(self.bootstrap)), log_x)  # (b, m)
        low, high = percentile_interval(draws, self.level)
        return estimate, low, high

    def compute_optimal(self, compute: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N*(C), D*(C))`` for compute ``C`` in FLOPs (``C = 6 N D``)."""
        scaled = np.asarray(compute, dtype=float) / FLOPS_PER_PARAM_TOKEN
        return self.G * scaled**self.a, scaled**self.b / self.G

    def params(self) -> list[float]:
        return [self.E, self.A, self.B, self.alpha, self.beta]


def _theta(params: np.ndarray) -> np.ndarray:
    """``(E, A, B, alpha, beta)`` rows -> LSE thetas ``(e, a_N, a_D, alpha, beta)``."""
    return np.column_stack(
        [np.log(params[:, 0]), np.log(params[:, 1]), np.log(params[:, 2]), params[:, 3:5]]
    )


def derived_quantities(params: np.ndarray) -> dict[str, np.ndarray]:
    """Every named quantity for rows ``(E, A, B, alpha, beta)`` of shape ``(m, 5)``."""
    E, A, B, alpha, beta = params.T
    total = alpha + beta
    with np.errstate(divide="ignore", invalid="ignore"):
        G = (alpha * A / (beta * B)) ** (1.0 / total)
    return {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta, "a": beta / total,
            "b": alpha / total, "G": G}  # fmt: skip


def fit_chinchilla(
    n_params: np.ndarray,
    tokens: np.ndarray,
    loss: np.ndarray,
    *,
    seed: int = 0,
    n_bootstrap: int = 200,
    level: float = 0.9,
    huber_delta: float = HUBER_DELTA,
    groups: np.ndarray | None = None,
) -> ChinchillaFit:
    """Fit ``L = E + A / N^alpha + B / D^beta`` to runs ``(n_params, tokens, loss)``.

    ``groups`` (n,) labels runs whose errors are shared (a sweep's cells); the bootstrap
    then redraws each group's effect with the design fixed
    (``search.scaling.lse.cell_effect_draws``).

    Raises NotEnoughDataError when fewer than 15 runs are given, when N or D spans
    less than a decade, or when the fitted exponents are not both positive (a loss
    that does not fall with N and D has no compute-optimal allocation).
    """
    n_params, tokens, loss = (np.asarray(v, dtype=float) for v in (n_params, tokens, loss))
    if len(loss) < 2:
        raise NotEnoughDataError(
            f"{len(loss)} run{'' if len(loss) == 1 else 's'} cannot support L(N, D)"
        )
    if np.any(n_params <= 0) or np.any(tokens <= 0):
        raise NotEnoughDataError("n_params and tokens must be positive")
    for name, values in (("n_params", n_params), ("tokens", tokens)):
        if np.ptp(np.log10(values)) < 1.0:
            raise NotEnoughDataError(
                f"{name} spans {np.ptp(np.log10(values)):.2f} decades; L(N, D) needs at least 1"
            )
    log_x = np.column_stack([np.log(n_params), np.log(tokens)])
    theta, boot = fit_lse(
        log_x, loss, seed=seed, n_bootstrap=n_bootstrap, delta=huber_delta, groups=groups
    )
    point = derived_quantities(_to_params(theta[None, :]))
    if not (point["alpha"][0] > 0 and point["beta"][0] > 0):
        raise NotEnoughDataError(
            f"fitted exponents alpha={point['alpha'][0]:.3g}, beta={point['beta'][0]:.3g} are "
            "not both positive: loss does not fall with both N and D in these data"
        )
    # A resampled fit that ran off to infinity (a parameter past floating point) is no
    # draw of the law: kept, it would be stored as null and the rules could not load.
    with np.errstate(over="ignore"):
        boot = boot[np.all(np.isfinite(_to_params(boot)), axis=1)]
    draws = derived_quantities(_to_params(boot))
    return _assemble(point, draws, level=level, n_points=len(loss), delta=huber_delta, boot=boot)


def redrawn_bootstrap(
    fit: ChinchillaFit,
    draw: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
    *,
    centre: np.ndarray,
    seed: int,
    n_draws: int,
) -> np.ndarray:
    """``(E, A, B, alpha, beta)`` rows of ``fit`` refitted to ``n_draws`` draws of its
    points (``draw(rng)`` gives ``(ln N, ln D)`` rows and losses; ``centre`` near their
    mean), the refits that ran off to infinity left out."""
    refits = refit_lse(
        _theta(np.array([fit.params()]))[0],
        centre,
        draw,
        seed=seed,
        n_draws=n_draws,
        delta=fit.huber_delta,
    )
    with np.errstate(over="ignore"):
        rows = _to_params(refits)
    return rows[np.all(np.isfinite(rows), axis=1)]


def _to_params(theta: np.ndarray) -> np.ndarray:
    """LSE thetas ``(m, 5)`` -> ``(E, A, B, alpha, beta)`` rows."""
    return np.column_stack([np.exp(theta[:, :3]), theta[:, 3:5]])


def _assemble(point, draws, *, level, n_points, delta, boot) -> ChinchillaFit:
    for name in (*PARAM_NAMES, "a", "b", "G"):  # G: the allocation's draws (N*(C))
        finite = np.isfinite(draws[name])
        if finite.sum() < 2:
            raise NotEnoughDataError(
                f"the bootstrap could not re-estimate L(N, D): {finite.sum()} of "
                f"{len(finite)} resampled fits give a finite {name}"
            )
    se, low, high = {}, {}, {}
    for name in (*PARAM_NAMES, "a", "b"):
        finite = draws[name][np.isfinite(draws[name])]
        with np.errstate(over="ignore"):
            se[name] = float(np.std(finite, ddof=1))
        lo, hi = percentile_interval(finite, level)
        low[name], high[name] = float(lo), float(hi)
        if not all(map(math.isfinite, (se[name], low[name], high[name]))):
            raise NotEnoughDataError(
                f"L(N, D) is not identified: its bootstrap puts {name} beyond floating "
                f"point (standard error {se[name]:.3g})"
            )
    return ChinchillaFit(
        **{name: float(point[name][0]) for name in (*PARAM_NAMES, "a", "b", "G")},
        se=se,
        low=low,
        high=high,
        level=level,
        n_points=n_points,
        huber_delta=delta,
        bootstrap=_to_params(boot).tolist(),
    )
