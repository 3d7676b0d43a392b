"""Extrapolation error of learned scaling rules vs study budget, on the testbed.

For each study size (runs) and sampling spread, and for three ground truths x three
seeds, a near-front study is sampled on the testbed (the sampler of
tests/search/test_scaling_testbed.py: eight budgets over three decades of compute,
configurations log-normal around the true optimum, ``spread`` scales the widths),
rules are fitted, and at 100x the largest compute the predicted optimal learning rate
and batch size are compared with the truth, as is the exponent of N*(C).

``--engine-trials K`` also drives the real engine (search.engine.ParetoSearch) on the
default testbed for K trials and reports what rules fitted to that study give.

Run:  .venv/bin/python -m bench.scaling_extrapolation [--engine-trials 150]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from datetime import date

import numpy as np

from search.errors import NotEnoughDataError
from search.scaling import fit_scaling_rules
from tests.search.test_scaling_testbed import AXES, GROUND_TRUTHS, sample_study
from workers.objectives.base import NullContext
from workers.objectives.testbed import TestbedConfig, TestbedObjective

STUDY_RUNS = (80, 160, 400, 800)
SPREADS = (0.35, 0.6)
SEEDS = (0, 1, 2)


def _errors(objective, config, rules) -> tuple[float, float, float] | None:
    """|ln(pred/true)| for lr and batch at 100x, and |exponent error| of N*(C); None when
    the rules refused one of them (it is counted, not scored)."""
    target = 100.0 * rules.observed.compute_max
    prediction = rules.predict(compute=target)
    names = ("learning_rate", "batch_size")
    if rules.allocation.n_params is None or any(not prediction.values[k].supported for k in names):
        return None
    n_star, d_star, _ = objective.testbed.compute_optimal(target)
    optimum = objective.testbed.optimal_hparams(n_star, d_star)
    lr, batch = (abs(math.log(prediction.values[k].estimate / float(optimum[k]))) for k in names)
    exponent = abs(rules.allocation.n_params.coef[1] - config.beta / (config.alpha + config.beta))
    return lr, batch, exponent


def _cell(runs: int, spread: float) -> dict[str, float]:
    rows, refused = [], 0
    for overrides, compute_min, compute_max in GROUND_TRUTHS.values():
        config = TestbedConfig(**overrides)
        for seed in SEEDS:
            objective, observations = sample_study(
                config, compute_min=compute_min, compute_max=compute_max,
                per_budget=runs // 8, spread=spread, seed=seed,
            )  # fmt: skip
            try:
                rules = fit_scaling_rules(
                    observations, objective.default_space(), AXES, seed=seed, n_bootstrap=50
                )
            except NotEnoughDataError:
                refused += 1
                continue
            errors = _errors(objective, config, rules)
            if errors is None:
                refused += 1  # a refused rule is reported, not scored
            else:
                rows.append(errors)
    errors = np.array(rows)
    return {
        "lr_median": math.exp(np.median(errors[:, 0])),
        "lr_worst": math.exp(errors[:, 0].max()),
        "batch_median": math.exp(np.median(errors[:, 1])),
        "batch_worst": math.exp(errors[:, 1].max()),
        "exponent_worst": float(errors[:, 2].max()),
        "refused": refused,
    }


def _engine_study(trials: int) -> str:
    from search.engine import ParetoSearch
    from search.settings import SearchSettings

    objective = TestbedObjective(TestbedConfig())
    space = objective.default_space()
    engine = ParetoSearch(space, SearchSettings(seed=0))
    start = time.perf_counter()
    for _ in range(trials):
        (suggestion,) = engine.ask(1)
        out = objective.run(suggestion.params, seed=0, context=NullContext())
        engine.tell(suggestion.suggestion_id, out.loss, out.cost_seconds, failed=out.failed)
    seconds = time.perf_counter() - start
    try:
        rules = fit_scaling_rules(list(engine.observations), space, AXES, n_bootstrap=50)
    except NotEnoughDataError as exc:
        return f"engine, {trials} trials ({seconds:.0f} s): rules refused: {exc}"
    unsupported = [r.name for r in rules.hyperparameters if not r.supported]
    errors = _errors(objective, TestbedConfig(), rules)
    if errors is None:
        return f"engine, {trials} trials ({seconds:.0f} s): rules refused {unsupported}"
    lr, batch, exponent = errors
    return (
        f"engine, {trials} trials ({seconds:.0f} s): compute span "
        f"{math.log10(rules.observed.compute_max / rules.observed.compute_min):.1f} decades, "
        f"lr x{math.exp(lr):.2f}, batch x{math.exp(batch):.2f}, N* exponent error "
        f"{exponent:.3f}, unsupported {unsupported}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-trials", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}; "
          f"date {date.today().isoformat()}")  # fmt: skip
    print("| runs | spread | lr factor median / worst | batch factor median / worst "
          "| N* exponent worst error | refused |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for spread in SPREADS:
        for runs in STUDY_RUNS:
            c = _cell(runs, spread)
            print(
                f"| {runs} | {spread} | {c['lr_median']:.2f} / {c['lr_worst']:.2f} "
                f"| {c['batch_median']:.2f} / {c['batch_worst']:.2f} "
                f"| {c['exponent_worst']:.3f} | {c['refused']} |",
                flush=True,
            )
    if args.engine_trials:
        print(_engine_study(args.engine_trials))


if __name__ == "__main__":
    main()
