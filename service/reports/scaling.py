"""The scaling report: Markdown with PNG plots of the rules and the data behind them.

``write_scaling_report(rules, observations, out_dir)`` writes ``scaling-report.md``
beside ``front.png`` (loss vs compute with the fitted L*(C)), ``allocation.png``
(N* and D* vs C) and one ``hp-<name>.png`` per fitted hyperparameter (its values along
the front, the law and its interval, extended to 100x the largest compute observed).
Pure files: it needs the rules and the observations, never a database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from search.pareto import pareto_mask
from search.scaling import ScalingRules
from search.scaling.fitting import observation_compute
from search.scaling.laws import LinearLaw
from search.scaling.rules import HyperparameterRule, inverse
from search.types import Observation

EXTRAPOLATE = 100.0  # plots and the predictions table reach 100x the largest compute
_FIGSIZE = (6.4, 4.2)


def _successful(rules: ScalingRules, observations: Sequence[Observation]):
    """``(compute, loss, params)`` of the successful observations, as arrays/list."""
    ok = [o for o in observations if not o.failed and math.isfinite(o.loss)]
    compute = np.array([observation_compute(rules.axes, o) for o in ok])
    return compute, np.array([o.loss for o in ok]), [o.params for o in ok]


def _compute_grid(rules: ScalingRules) -> np.ndarray:
    observed = rules.observed
    return np.geomspace(observed.compute_min, EXTRAPOLATE * observed.compute_max, 200)


def _new_axes(title: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=_FIGSIZE, dpi=120, layout="constrained")
    ax = figure.add_subplot()
    ax.set_title(title)
    ax.set_xscale("log")
    ax.set_xlabel("compute")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    return figure, ax


def _mark_observed_range(ax: Axes, rules: ScalingRules) -> None:
    ax.axvline(rules.observed.compute_max, color="0.4", linestyle=":", linewidth=1)
    ax.text(
        rules.observed.compute_max, 0.02, " largest run", transform=ax.get_xaxis_transform(),
        fontsize=8, color="0.3",
    )  # fmt: skip


def _plot_front(rules: ScalingRules, data, path: Path) -> None:
    compute, loss, _ = data
    figure, ax = _new_axes("Loss vs compute: runs, front and fitted L*(C)", "loss")
    ax.scatter(compute, loss, s=8, color="0.7", label="runs")
    front = pareto_mask(loss, compute)
    ax.scatter(compute[front], loss[front], s=22, color="tab:blue", label="front")
    if rules.loss_frontier is not None:
        grid = _compute_grid(rules)
        estimate, low, high = rules.loss_frontier.predict(grid)
        ax.plot(grid, estimate, color="tab:red", label="L*(C) fit")
        ax.fill_between(
            grid, low, high, color="tab:red", alpha=0.2, label=f"{rules.level:.0%} interval"
        )
    ax.set_ylim(top=float(np.quantile(loss, 0.9)))
    _mark_observed_range(ax, rules)
    ax.legend(fontsize=8)
    figure.savefig(path)


def _law_band(law: LinearLaw, grid: np.ndarray, transform: str):
    estimate, low, high = law.predict(np.log(grid)[:, None])
    return (inverse(transform, v) for v in (estimate, low, high))


def _plot_rule(rules: ScalingRules, rule: HyperparameterRule, data, path: Path) -> None:
    compute, loss, params = data
    values = np.array([float(p[rule.name]) for p in params])
    front = pareto_mask(loss, compute)
    figure, ax = _new_axes(f"{rule.name}: optimum vs compute", rule.name)
    if rule.transform in ("ln", "log2"):
        ax.set_yscale("log")
    elif rule.transform == "logit":
        ax.set_yscale("logit")
    ax.scatter(compute, values, s=8, color="0.75", label="runs")
    ax.scatter(compute[front], values[front], s=22, color="tab:blue", label="front")
    grid = _compute_grid(rules)
    estimate, low, high = _law_band(rule.vs_compute, grid, rule.transform)
    slope = rule.vs_compute.coef[1]
    ax.plot(grid, estimate, color="tab:red", label=f"fit, slope {slope:.3f} per ln C")
    ax.fill_between(
        grid, low, high, color="tab:red", alpha=0.2, label=f"{rules.level:.0%} interval"
    )
    _mark_observed_range(ax, rules)
    ax.legend(fontsize=8)
    figure.savefig(path)


def _plot_allocation(rules: ScalingRules, data, path: Path) -> None:
    compute, _, params = data
    figure, ax = _new_axes("Compute-optimal allocation N*(C), D*(C)", "parameters / tokens")
    ax.set_yscale("log")
    grid = _compute_grid(rules)
    axes, allocation = rules.axes, rules.allocation
    for name, key, color in (("N", axes.n_params, "tab:blue"), ("D", axes.tokens, "tab:green")):
        ax.scatter(
            compute, [float(p.get(key, np.nan)) for p in params], s=6, color=color, alpha=0.3
        )
        law = getattr(allocation, "n_params" if name == "N" else "tokens")
        if law is not None:
            estimate, low, high = _law_band(law, grid, "ln")
            ax.plot(grid, estimate, color=color, label=f"{name}*(C) ~ C^{law.coef[1]:.3f}")
            ax.fill_between(grid, low, high, color=color, alpha=0.2)
    if rules.parametric is not None and axes.compute is None:
        n_star, d_star = rules.parametric.compute_optimal(grid)
        ax.plot(grid, n_star, color="tab:blue", linestyle="--", label="N* from L(N, D)")
        ax.plot(grid, d_star, color="tab:green", linestyle="--", label="D* from L(N, D)")
    _mark_observed_range(ax, rules)
    ax.legend(fontsize=8)
    figure.savefig(path)


def _rule_row(rule: HyperparameterRule) -> str:
    if not rule.supported:
        return f"| {rule.name} | unsupported | | | {rule.reason} |"
    if rule.choice is not None:
        counts = ", ".join(f"{value}: {count}" for value, count in rule.choice.counts)
        return f"| {rule.name} | most frequent: `{rule.choice.value}` | | | {counts} |"
    law = rule.vs_compute
    slope = f"{law.coef[1]:.3f} [{law.coef_low[1]:.3f}, {law.coef_high[1]:.3f}]"
    law_text = f"{rule.transform}(x*) = a + b ln C"
    return f"| {rule.name} | {law_text} | {slope} | {law.r2:.2f} | {rule.note or ''} |"


def _markdown(rules: ScalingRules, images: list[tuple[str, str]]) -> str:
    observed = rules.observed
    lines = [
        "# Scaling rules report",
        "",
        f"Learned from {observed.n_observations} successful runs ({observed.n_front} on the "
        f"front, {observed.n_efficient} compute-efficient) spanning compute "
        f"{observed.compute_min:.3g} to {observed.compute_max:.3g} ({observed.compute_unit}). "
        f"Intervals are {rules.level:.0%} bootstrap intervals; they widen with extrapolation.",
        "",
        "## Hyperparameters",
        "",
        "| parameter | law | slope b [interval] | R^2 | note |",
        "|---|---|---|---|---|",
        *(_rule_row(rule) for rule in rules.hyperparameters),
        "",
        *_allocation_lines(rules),
        "## Predictions",
        "",
        *_prediction_lines(rules),
        "",
    ]
    lines += [f"![{caption}]({name})\n" for name, caption in images]
    return "\n".join(lines)


def _allocation_lines(rules: ScalingRules) -> list[str]:
    lines = ["## Allocation and loss", ""]
    allocation = rules.allocation
    if allocation is not None:
        for name in ("n_params", "tokens"):
            law, reason = getattr(allocation, name), getattr(allocation, f"{name}_reason")
            text = (
                reason
                if law is None
                else (f"exponent {law.coef[1]:.3f} [{law.coef_low[1]:.3f}, {law.coef_high[1]:.3f}]")
            )
            lines.append(f"- {name}*(C): {text}")
    frontier = rules.loss_frontier
    lines.append(
        f"- L*(C) = {frontier.E:.3f} + {frontier.A:.3g} / C^{frontier.gamma:.3f}"
        if frontier is not None else f"- L*(C): {rules.loss_frontier_reason}"
    )  # fmt: skip
    fit = rules.parametric
    lines.append(
        f"- L(N, D) = {fit.E:.3f} + {fit.A:.4g}/N^{fit.alpha:.3f} + {fit.B:.4g}/D^{fit.beta:.3f} "
        f"(alpha se {fit.se['alpha']:.3f}, beta se {fit.se['beta']:.3f}; N* ~ C^{fit.a:.3f})"
        if fit is not None else f"- L(N, D): {rules.parametric_reason}"
    )  # fmt: skip
    return [*lines, ""]


def _prediction_lines(rules: ScalingRules) -> list[str]:
    names = [rule.name for rule in rules.hyperparameters]
    lines = ["| compute | " + " | ".join(names) + " | loss |", "|---" * (len(names) + 2) + "|"]
    for factor in (1.0, 10.0, EXTRAPOLATE):
        prediction = rules.predict(compute=factor * rules.observed.compute_max)
        cells = [_cell(prediction.values[name]) for name in names]
        loss = prediction.loss
        loss_cell = "" if loss is None else f"{loss.estimate:.4g} [{loss.low:.4g}, {loss.high:.4g}]"
        lines.append(f"| {prediction.compute:.3g} | " + " | ".join(cells) + f" | {loss_cell} |")
    return lines


def _cell(value) -> str:
    if value.estimate is None:
        return f"{value.value}"
    return f"{value.value:.4g} [{value.low:.3g}, {value.high:.3g}]"


def write_scaling_report(
    rules: ScalingRules, observations: Sequence[Observation], out_dir: str | Path
) -> Path:
    """Write the Markdown report and its PNGs into ``out_dir``; return the .md path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _successful(rules, observations)
    images = [("front.png", "loss vs compute with the fitted frontier")]
    _plot_front(rules, data, out_dir / "front.png")
    if rules.allocation is not None:
        _plot_allocation(rules, data, out_dir / "allocation.png")
        images.append(("allocation.png", "N* and D* vs compute"))
    for rule in rules.hyperparameters:
        if rule.supported and rule.vs_compute is not None:
            name = f"hp-{rule.name}.png"
            _plot_rule(rules, rule, data, out_dir / name)
            images.append((name, f"{rule.name} vs compute"))
    path = out_dir / "scaling-report.md"
    path.write_text(_markdown(rules, images))
    return path
