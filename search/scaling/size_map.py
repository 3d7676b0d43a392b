"""How a model's shape parameters set its size N, when N is a metric of each run.

A study of a transformer declares width and depth as parameters and model size N as a
metric the objective reports (``n_params: n_params_total``). The allocation then says
N*(C), but no parameter is N: to run at N* a prediction must choose a width and depth
whose N is N*. Each parameter's own law (the optimum of the loss in it at a given N)
cannot do that: at fixed N the shape hardly matters, so those laws are usually flat or
refused, and their best observed values keep the size of the largest runs.

``SizeMap`` is ``ln N = intercept + sum_p slope_p ln(p)`` over the shape parameters
(those whose values explain N), fitted on the larger half of the runs, where a
prediction starts from: near there a model's size is close to a product of powers of
its dimensions (``12 L d^2`` plus embeddings), which a global fit over tiny models, where
the embeddings dominate, is not. ``resize`` moves the shape parameters from where the
laws put them to N*, each in proportion to how much it varied over the near-best runs
(a parameter the efficient runs never varied does not move unless nothing else can),
and ``snap_to_size`` rounds onto the grids (powers of two, integers) choosing the
rounding whose N is nearest N*.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

# The fitted map must explain this much of ln N's variance over its runs ...
MIN_R_SQUARED = 0.99
# ... and a parameter must move ln N by this share of its spread to count as shaping N.
MIN_CONTRIBUTION = 0.05
MIN_RUNS = 8


class SizeMap(BaseModel):
    """``ln N = intercept + sum_p slopes[p] * ln(p)`` over the shape parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intercept: float
    slopes: dict[str, float]
    r_squared: float
    max_error: float  # the largest |ln N - fitted| over the runs it was fitted on
    n_runs: int

    def log_size(self, values: dict[str, float]) -> float:
        return self.intercept + sum(b * math.log(values[p]) for p, b in self.slopes.items())


def fit_size_map(
    params: Sequence[dict[str, Any]], n_params: np.ndarray, candidates: Sequence[str]
) -> tuple[SizeMap | None, str | None]:
    """The size map of the runs (``params[i]`` with size ``n_params[i]``) over the
    positive numeric ``candidates``, or None with the reason it could not be fitted."""
    log_n = np.log(np.asarray(n_params, dtype=float))
    upper = log_n >= np.median(log_n)
    names = [
        name
        for name in candidates
        if all(isinstance(p[name], int | float) and p[name] > 0 for p in params)
    ]
    if not names:
        return None, "no positive numeric parameter could explain the model size N"
    if upper.sum() < MIN_RUNS:
        return None, f"{int(upper.sum())} runs in the larger half; the size map needs {MIN_RUNS}"
    rows = [int(i) for i in np.flatnonzero(upper)]
    y = log_n[rows]
    if np.ptp(y) <= 0:
        return None, "every run in the larger half has the same size"
    x = np.log(np.array([[float(params[i][n]) for n in names] for i in rows]))
    slopes = _least_squares(x, y)[1:]
    contribution = np.abs(slopes) * x.std(axis=0)
    keep = [j for j in range(len(names)) if contribution[j] >= MIN_CONTRIBUTION * y.std()]
    if not keep:
        return None, "no parameter explains the model size N"
    coef = _least_squares(x[:, keep], y)
    residual = y - coef[0] - x[:, keep] @ coef[1:]
    r_squared = 1.0 - residual.var() / y.var()
    if r_squared < MIN_R_SQUARED:
        return None, (
            f"model size N is not a product of powers of the parameters "
            f"(R^2 {r_squared:.3f} < {MIN_R_SQUARED}); shape parameters keep their own values"
        )
    return SizeMap(
        intercept=float(coef[0]),
        slopes={names[j]: float(b) for j, b in zip(keep, coef[1:], strict=True)},
        r_squared=float(r_squared),
        max_error=float(np.abs(residual).max()),
        n_runs=len(rows),
    ), None


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones(len(y)), x])
    return np.linalg.lstsq(design, y, rcond=None)[0]


def resize(
    size_map: SizeMap,
    start: dict[str, float],
    log_target: float,
    *,
    spread: dict[str, float],
    limits: dict[str, tuple[float | None, float | None]],
) -> dict[str, float]:
    """The shape parameters moved from ``start`` until the map gives ``ln N = log_target``.

    The move is the smallest in ln units weighted by ``spread`` (a parameter's range, in
    ln, over the near-best runs): ``d ln p = w_p b_p r / sum_q w_q b_q^2`` for the
    shortfall ``r``. A parameter that reaches a declared limit stays there and the others
    take up the rest.
    """
    values = {p: math.log(start[p]) for p in size_map.slopes}
    free = set(values)
    for _ in range(len(values)):
        shortfall = log_target - size_map.log_size({p: math.exp(v) for p, v in values.items()})
        weights = {p: spread.get(p, 0.0) ** 2 for p in free}
        if sum(weights[p] * size_map.slopes[p] ** 2 for p in free) <= 0:
            weights = dict.fromkeys(free, 1.0)  # nothing varied: move every one alike
        scale = sum(weights[p] * size_map.slopes[p] ** 2 for p in free)
        if not free or scale <= 0 or abs(shortfall) < 1e-12:
            break
        hit = set()
        for p in free:
            moved = values[p] + weights[p] * size_map.slopes[p] * shortfall / scale
            low, high = limits.get(p, (None, None))
            values[p] = _clip(moved, low, high)
            if values[p] != moved:
                hit.add(p)
        if not hit:
            break
        free -= hit
    return {p: math.exp(v) for p, v in values.items()}


def _clip(log_value: float, low: float | None, high: float | None) -> float:
    if low is not None and log_value < math.log(low):
        return math.log(low)
    if high is not None and log_value > math.log(high):
        return math.log(high)
    return log_value


def snap_to_size(
    size_map: SizeMap,
    continuous: dict[str, float],
    log_target: float,
    *,
    grid: dict[str, tuple[str, int]],
    limits: dict[str, tuple[float | None, float | None]],
) -> dict[str, float]:
    """``continuous`` rounded onto each parameter's grid (``(kind, multiple_of)``): of
    the roundings down and up of every parameter, the one whose N is nearest the target
    (then the one nearest ``continuous``)."""
    options = {
        p: _neighbours(v, *grid[p], limits.get(p, (None, None))) for p, v in continuous.items()
    }
    names = list(options)

    def miss(combo: tuple[float, ...]) -> tuple[float, float]:
        values = dict(zip(names, combo, strict=True))
        off_size = abs(size_map.log_size(values) - log_target)
        off_start = sum((math.log(values[p]) - math.log(continuous[p])) ** 2 for p in names)
        return round(off_size, 9), off_start

    best = min(itertools.product(*(options[p] for p in names)), key=miss)
    return dict(zip(names, best, strict=True))


def _neighbours(value: float, kind: str, multiple_of: int, limits) -> list[float]:
    if kind == "pow2":
        exponent = math.log2(max(value, 1.0))
        found = [float(2 ** math.floor(exponent)), float(2 ** math.ceil(exponent))]
    elif kind == "int":
        step = max(multiple_of, 1)
        found = [
            float(max(math.floor(value / step), 1) * step),
            float(math.ceil(value / step) * step),
        ]
    else:
        return [value]
    low, high = limits
    inside = [v for v in found if (low is None or v >= low) and (high is None or v <= high)]
    return sorted(set(inside or found))
