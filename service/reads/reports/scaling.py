"""The scaling report: Markdown with PNG plots of the rules and the data behind them.

``write_scaling_report(rules, observations, out_dir)`` writes ``scaling-report.md``
beside ``front.png`` (loss vs compute with the fitted L*(C)), ``allocation.png``
(N* and D* vs C) and one ``hp-<name>.png`` per fitted hyperparameter (its values along
the front, the law and its interval, extended to 100x the largest compute observed).
Pure files: it needs the rules and the observations, never a database.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search.scaling import ScalingRules
from search.scaling.fit_inputs import observation_compute
from search.scaling.rules import HyperparameterRule
from search.types import Observation
from service.reads.reports.plots import (
    EXTRAPOLATE,
    RunData,
    plot_allocation,
    plot_front,
    plot_rule,
    run_data,
)
from service.reads.reports.rules_text import allocation_texts, rule_laws

REPORT_NAME = "scaling-report.md"


def _successful(rules: ScalingRules, observations: Sequence[Observation]) -> RunData:
    """The successful observations' compute, loss and params, with the front marked;
    an axis the objective reports as a metric (the ``lm`` objective's model size) joins
    the params, so the allocation plot shows the runs' N as well as their D."""
    ok = [o for o in observations if not o.failed and math.isfinite(o.loss)]
    compute = np.array([observation_compute(rules.axes, o) for o in ok])
    metric_axes = [a for a in (rules.axes.n_params, rules.axes.tokens) if a is not None]
    params = [{**{a: o.metrics[a] for a in metric_axes if a in o.metrics}, **o.params} for o in ok]
    return run_data(compute, np.array([o.loss for o in ok]), params)


def _rule_row(rule: HyperparameterRule) -> str:
    if not rule.supported:
        return f"| {rule.name} | unsupported | | {rule.reason} |"
    if rule.choice is not None:
        counts = ", ".join(f"{value}: {count}" for value, count in rule.choice.counts)
        return f"| {rule.name} | most frequent: `{rule.choice.value}` | | {counts} |"
    laws = rule_laws(rule)
    size_tokens = laws[1] if len(laws) > 1 else (rule.size_tokens_reason or "")
    return f"| {rule.name} | {laws[0]} | {size_tokens} | {rule.note or ''} |"


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
        "Each law gives the optimum's exponents with their intervals "
        "(C compute, N parameters, D tokens).",
        "",
        "| parameter | law vs compute | law vs size and tokens | note |",
        "|---|---|---|---|",
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


def _frontier_line(rules: ScalingRules) -> str:
    """``L*(C)``; where the front does not identify its floor E (fitted at ~0, in every
    bootstrap draw alike), the pure power law it is and why, instead of ``E = 0.000``."""
    frontier = rules.loss_frontier
    if frontier is None:
        return f"- L*(C): {rules.loss_frontier_reason}"
    decay = f"{frontier.A:.3g} / C^{frontier.gamma:.3f}"
    if frontier.E_reason is not None:
        return f"- L*(C) = {decay}; its floor E is {frontier.E_reason}"
    return f"- L*(C) = {frontier.E:.3f} + {decay}"


def _allocation_lines(rules: ScalingRules) -> list[str]:
    lines = ["## Allocation and loss", ""]
    lines += [f"- {name}: {text}" for name, text in allocation_texts(rules)]
    lines.append(_frontier_line(rules))
    fit = rules.parametric
    lines.append(
        f"- L(N, D) = {fit.E:.3f} + {fit.A:.4g}/N^{fit.alpha:.3f} + {fit.B:.4g}/D^{fit.beta:.3f} "
        f"(alpha se {fit.se['alpha']:.3f}, beta se {fit.se['beta']:.3f}; N* ~ C^{fit.a:.3f})"
        if fit is not None else f"- L(N, D): {rules.parametric_reason}"
    )  # fmt: skip
    for law, backtest, reason in (
        ("L*(C)", rules.loss_frontier_backtest, rules.loss_frontier_backtest_reason),
        ("L(N, D)", rules.parametric_backtest, rules.parametric_backtest_reason),
    ):
        if backtest is not None:
            lines.append(
                f"- {law} backtest: refitted to its {backtest.n_fit} points below "
                f"{backtest.cut_compute:.3g}, it predicted the {backtest.n_held_out} above "
                f"{backtest.bias_per_decade:+.1%} (se {backtest.bias_se:.1%}) per decade "
                "beyond them (positive: too high); loss intervals beyond the data reach "
                "that far"
            )
        elif reason:
            lines.append(f"- {law} backtest: none ({reason})")
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
    """Write the Markdown report and its PNGs into ``out_dir``; return the .md path.

    All or nothing: the files are drawn in a scratch directory beside ``out_dir`` and
    moved in (each an atomic rename) only once every one of them was written, the
    Markdown last; a failure leaves ``out_dir`` as it was.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        names = _draw(rules, _successful(rules, observations), scratch)
        for name in names:  # the Markdown is last: it appears only with its plots
            (scratch / name).replace(out_dir / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir / REPORT_NAME


def _draw(rules: ScalingRules, data: RunData, out: Path) -> list[str]:
    """Every file of the report, written into ``out``; their names, Markdown last."""
    images = [("front.png", "loss vs compute with the fitted frontier")]
    plot_front(rules, data, out / "front.png")
    if rules.axes.has_size_and_tokens:
        plot_allocation(rules, data, out / "allocation.png")
        images.append(("allocation.png", "N* and D* vs compute"))
    for rule in rules.hyperparameters:
        if rule.supported and rule.vs_compute is not None:
            name = f"hp-{rule.name}.png"
            plot_rule(rules, rule, data, out / name)
            images.append((name, f"{rule.name} vs compute"))
    (out / REPORT_NAME).write_text(_markdown(rules, images))
    return [name for name, _ in images] + [REPORT_NAME]
