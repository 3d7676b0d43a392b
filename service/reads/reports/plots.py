"""The scaling report's figures: loss frontier, allocation and one per hyperparameter law.

Every figure has labelled axes with units, a legend naming each marker and line, and
y limits taken from the data and the fitted line; interval bands are clipped to those
limits before drawing. (An unclipped band on a logit axis reaches 0 or 1, whose logit
is infinite, and matplotlib's transform of an infinite limit is singular: that used to
crash the report half-way.)
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from search.pareto import config_key, estimated_front, group_repeats
from search.scaling import ScalingRules
from search.scaling.laws import LinearLaw
from search.scaling.rules import HyperparameterRule, inverse
from service.reads.reports.rules_text import law_text

EXTRAPOLATE = 100.0  # plots reach 100x the largest compute observed
_FIGSIZE = (6.4, 4.4)
_LOGIT_EDGE = 1e-6  # logit axes stay inside (1e-6, 1 - 1e-6)
_SCALES = {"ln": "log", "log2": "log", "logit": "logit", "identity": "linear"}


@dataclass(frozen=True)
class RunData:
    """The successful runs: compute, loss, params; ``front`` marks the runs of the
    configurations on the (loss, compute) front."""

    compute: np.ndarray
    loss: np.ndarray
    params: list[dict]
    front: np.ndarray


def run_data(compute: np.ndarray, loss: np.ndarray, params: list[dict]) -> RunData:
    """The runs with the front marked by ``search.pareto``'s definition on (loss,
    compute): a repeated configuration counts once, at its mean, and every run of a
    configuration on the front is marked (a lone lucky draw of a repeated one is not)."""
    front = np.zeros(len(loss), dtype=bool)
    groups = group_repeats([config_key(p) for p in params], loss, compute)
    for point in estimated_front(groups):
        front[list(point.members)] = True
    return RunData(compute=compute, loss=loss, params=params, front=front)


def compute_grid(rules: ScalingRules) -> np.ndarray:
    observed = rules.observed
    return np.geomspace(observed.compute_min, EXTRAPOLATE * observed.compute_max, 200)


def plot_front(rules: ScalingRules, data: RunData, path: Path) -> None:
    figure, ax = _new_axes(rules, "Loss vs compute: runs, front and fitted L*(C)", "loss")
    ax.scatter(data.compute, data.loss, s=8, color="0.7", label="runs")
    ax.scatter(
        data.compute[data.front], data.loss[data.front], s=22, color="tab:blue", label="front"
    )
    # The front whole; of the other runs, the best 90% (a few far-off runs would squash it).
    top = max(float(np.quantile(data.loss, 0.9)), float(np.max(data.loss[data.front])))
    bottom = float(np.min(data.loss))
    if rules.loss_frontier is not None:
        grid = compute_grid(rules)
        estimate, low, high = rules.loss_frontier.predict(grid)
        bottom = min(bottom, float(np.min(estimate)))
        limits = _padded("linear", bottom, top)
        ax.plot(grid, estimate, color="tab:red", label="L*(C) fit")
        _band(ax, grid, low, high, limits, f"{rules.level:.0%} interval")
    ax.set_ylim(*_padded("linear", bottom, top))
    _finish(ax, rules, figure, path)


def plot_rule(rules: ScalingRules, rule: HyperparameterRule, data: RunData, path: Path) -> None:
    """The runs' values, the law ``T(x*) = a + b ln C`` and its interval band."""
    law = rule.vs_compute
    assert law is not None
    values = np.array([float(p[rule.name]) for p in data.params])
    scale = _SCALES[rule.transform]
    figure, ax = _new_axes(
        rules, f"{rule.name}: optimum vs compute", f"{rule.name} ({_scale_words(scale)})"
    )
    ax.set_yscale(scale)
    ax.scatter(data.compute, values, s=8, color="0.75", label="runs")
    ax.scatter(
        data.compute[data.front], values[data.front], s=22, color="tab:blue", label="front runs"
    )
    grid = compute_grid(rules)
    estimate, low, high = _law_band(law, grid, rule.transform)
    shown = np.concatenate([values, estimate])
    limits = _padded(scale, float(np.min(shown)), float(np.max(shown)))
    label = f"law: {law_text(rule, law)}"
    ax.plot(grid, np.clip(estimate, *limits), color="tab:red", label=label)
    _band(ax, grid, low, high, limits, f"{rules.level:.0%} interval")
    ax.set_ylim(*limits)
    _finish(ax, rules, figure, path)


def plot_allocation(rules: ScalingRules, data: RunData, path: Path) -> None:
    """N and D of the runs (front runs larger), the fitted N*(C) and D*(C) with their
    bands, and the allocation the parametric L(N, D) implies (dashed)."""
    figure, ax = _new_axes(
        rules, "Compute-optimal allocation N*(C), D*(C)", "parameters N / tokens D (count)"
    )
    ax.set_yscale("log")
    grid = compute_grid(rules)
    axes, allocation = rules.axes, rules.allocation
    shown: list[float] = []
    lines = []
    for letter, key, law_name, color in (
        ("N", axes.n_params, "n_params", "tab:blue"),
        ("D", axes.tokens, "tokens", "tab:green"),
    ):
        values = np.array([float(p.get(key, np.nan)) for p in data.params]) if key else None
        if values is not None and np.isfinite(values).any():
            ax.scatter(data.compute, values, s=6, color=color, alpha=0.3, label=f"runs: {letter}")
            ax.scatter(
                data.compute[data.front],
                values[data.front],
                s=20,
                color=color,
                label=f"front runs: {letter}",
            )
            shown += [float(v) for v in values[np.isfinite(values)]]
        law = None if allocation is None else getattr(allocation, law_name)
        if law is not None:
            estimate, low, high = _law_band(law, grid, "ln")
            shown += [float(estimate[0]), float(estimate[-1])]
            exponent = f"{law.coef[1]:.3f} [{law.coef_low[1]:.3f}, {law.coef_high[1]:.3f}]"
            lines.append((estimate, low, high, color, f"{letter}*(C) ~ C^{exponent}"))
    if rules.parametric is not None and axes.compute is None:
        n_star, d_star = rules.parametric.compute_optimal(grid)
        lines.append((n_star, None, None, "tab:blue", "N* from L(N, D)"))
        lines.append((d_star, None, None, "tab:green", "D* from L(N, D)"))
        shown += [float(n_star[0]), float(n_star[-1]), float(d_star[0]), float(d_star[-1])]
    limits = _padded("log", min(shown), max(shown)) if shown else (1.0, 10.0)
    for estimate, low, high, color, label in lines:
        style = "-" if low is not None else "--"
        ax.plot(grid, np.clip(estimate, *limits), color=color, linestyle=style, label=label)
        if low is not None:
            _band(ax, grid, low, high, limits, None, color=color)
    if not lines:
        reason = "no allocation law" if allocation is None else allocation.n_params_reason
        note = textwrap.fill(f"no fitted allocation: {reason}", 70)
        ax.text(0.02, 0.95, note, transform=ax.transAxes, fontsize=7, va="top", color="0.3")
    ax.set_ylim(*limits)
    _finish(ax, rules, figure, path)


def _new_axes(rules: ScalingRules, title: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=_FIGSIZE, dpi=120, layout="constrained")
    ax = figure.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xscale("log")
    ax.set_xlabel(f"compute C ({rules.observed.compute_unit})")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    return figure, ax


def _finish(ax: Axes, rules: ScalingRules, figure: Figure, path: Path) -> None:
    """Mark the largest run, add the legend, save."""
    ax.axvline(rules.observed.compute_max, color="0.4", linestyle=":", linewidth=1)
    ax.text(
        rules.observed.compute_max, 0.02, " largest run", transform=ax.get_xaxis_transform(),
        fontsize=8, color="0.3",
    )  # fmt: skip
    ax.legend(fontsize=7, loc="best")
    figure.savefig(path)


def _law_band(law: LinearLaw, grid: np.ndarray, transform: str):
    estimate, low, high = law.predict(np.log(grid)[:, None])
    with np.errstate(over="ignore"):  # a band past the float range is clipped later
        return tuple(inverse(transform, v) for v in (estimate, low, high))


def _band(
    ax: Axes,
    grid: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    limits: tuple[float, float],
    label: str | None,
    *,
    color: str = "tab:red",
) -> None:
    """The interval band, clipped to the axes' limits (never past them, never NaN)."""
    low = np.clip(np.nan_to_num(low, nan=limits[0]), *limits)
    high = np.clip(np.nan_to_num(high, nan=limits[1]), *limits)
    ax.fill_between(grid, low, high, color=color, alpha=0.2, label=label)


def _padded(scale: str, low: float, high: float) -> tuple[float, float]:
    """Axis limits around ``[low, high]`` with a margin, valid for ``scale``."""
    if scale == "logit":
        low, high = (min(max(v, _LOGIT_EDGE), 1 - _LOGIT_EDGE) for v in (low, high))
        to, back = (lambda v: math.log(v / (1 - v))), (lambda y: 1 / (1 + math.exp(-y)))
    elif scale == "log":
        low, high = max(low, 1e-300), max(high, 1e-300)
        to, back = math.log, math.exp
    else:
        to = back = float
    a, b = to(low), to(high)
    margin = 0.08 * (b - a) if b > a else max(abs(a) * 0.1, 0.1)
    lo, hi = back(a - margin), back(b + margin)
    if scale == "logit":
        lo, hi = max(lo, _LOGIT_EDGE), min(hi, 1 - _LOGIT_EDGE)
    return lo, hi


def _scale_words(scale: str) -> str:
    return {"log": "log scale", "logit": "logit scale", "linear": "linear scale"}[scale]
