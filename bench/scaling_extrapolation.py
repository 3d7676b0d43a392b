"""Extrapolation error of learned scaling rules vs study budget, from real engine studies.

For each ground truth and seed, the search engine (``search.engine.ParetoSearch``,
default settings) runs one study on the testbed from the testbed's default, off-optimum
centre, in rounds of 8 parallel trials, up to the largest budget; a smaller budget is
the same study stopped earlier (its first trials). Rules are fitted to the
observations of each budget; at 100x the largest compute of any run, the predicted
optimal learning rate and batch size are compared with the truth
(``Testbed.optimal_hparams`` at the true ``compute_optimal``), as is the exponent of
N*(C) (``beta / (alpha + beta)``).

``--cost flops`` (default) tells the engine each run's cost in GPU-seconds at a
utilisation that does not depend on the batch (``half_utilisation_batch_tokens = 0``),
so cost is proportional to compute and the engine's cost-optimal runs are the
compute-optimal ones the ground truth defines. ``--cost seconds`` keeps the testbed's
default hardware model, where small batches under-use the GPU: the engine then (rightly)
favours larger batches and smaller models than the compute-optimal ones, and its runs
may not bracket the compute-optimal allocation.

Run:  .venv/bin/python -m bench.scaling_extrapolation [--budgets 152,304,600]
      [--seeds 0,1,2] [--cost flops|seconds] [--jobs 2]
Studies are kept as JSON under bench/results/scaling_studies/ and reused by later runs
(delete them to rerun the engine); the results go to
bench/results/scaling_extrapolation_<UTC time>.json, and a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from search.engine import ParetoSearch
from search.errors import NotEnoughDataError
from search.scaling import ScalingAxes, fit_scaling_rules
from search.settings import SearchSettings
from search.types import Observation
from workers.objectives.base import NullContext
from workers.objectives.testbed import TestbedObjective
from workers.objectives.testbed_truth import TestbedConfig

AXES = ScalingAxes(n_params="n_params", tokens="tokens")
RESULTS = Path(__file__).parent / "results"
STUDIES = RESULTS / "scaling_studies"
ROUND = 8
# Ground truths: the default testbed (Chinchilla loss, step-law learning rate and batch
# size) and two others whose loss exponents (so N*(C)), learning-rate and batch-size laws
# all differ.
GROUND_TRUTHS: dict[str, dict[str, float]] = {
    "chinchilla-steplaw": {},
    "flatter-lr": {
        "lr_n_exp": -0.5, "lr_d_exp": 0.2, "batch_d_exp": 0.45, "alpha": 0.30, "beta": 0.33,
    },
    "steeper-lr": {
        "lr_n_exp": -0.8, "lr_d_exp": 0.4, "batch_d_exp": 0.65, "batch_n_exp": -0.1,
        "alpha": 0.38, "beta": 0.26,
    },
}  # fmt: skip
COST_MODELS = {"flops": {"half_utilisation_batch_tokens": 0.0}, "seconds": {}}


def engine_study(config: TestbedConfig, *, trials: int, seed: int) -> list:
    """The observations of ``trials`` engine trials on the testbed, ``ROUND`` at a time."""
    objective = TestbedObjective(config)
    engine = ParetoSearch(objective.default_space(), SearchSettings(seed=seed))
    done = 0
    while done < trials:
        for suggestion in engine.ask(min(ROUND, trials - done)):
            out = objective.run(
                suggestion.params, seed=seed * 100_000 + done, context=NullContext()
            )
            engine.tell(suggestion.suggestion_id, out.loss, out.cost_seconds, failed=out.failed)
            done += 1
    return list(engine.observations)


def extrapolation_errors(config: TestbedConfig, rules) -> dict[str, float] | None:
    """Factors pred/true for lr and batch at 100x the largest compute, and the N*(C)
    exponent error; None when the rules refused one of them (counted, not scored)."""
    target = 100.0 * rules.observed.compute_max
    prediction = rules.predict(compute=target)
    names = ("learning_rate", "batch_size")
    allocation = rules.allocation
    if allocation is None or allocation.n_params is None:
        return None
    if any(prediction.values[k].estimate is None for k in names):
        return None
    testbed = TestbedObjective(config).testbed
    n_star, d_star, _ = testbed.compute_optimal(target)
    optimum = testbed.optimal_hparams(n_star, d_star)
    out = {k: prediction.values[k].estimate / float(optimum[k]) for k in names}
    out["exponent_error"] = allocation.n_params.coef[1] - config.beta / (config.alpha + config.beta)
    return out


def cached_study(config: TestbedConfig, name: str, *, trials: int, seed: int) -> list:
    """``engine_study``, kept as JSON under ``STUDIES`` (keyed by ``name``)."""
    path = STUDIES / f"{name}_{trials}_{seed}.json"
    if path.exists():
        return [Observation.from_dict(o) for o in json.loads(path.read_text())]
    observations = engine_study(config, trials=trials, seed=seed)
    STUDIES.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([o.to_dict() for o in observations]))
    return observations


def _one(job: tuple[str, str, list[int], int]) -> list[dict]:
    truth, cost, budgets, seed = job
    config = TestbedConfig(**GROUND_TRUTHS[truth], **COST_MODELS[cost])
    start = time.perf_counter()
    observations = cached_study(config, f"{truth}_{cost}", trials=max(budgets), seed=seed)
    engine_seconds = time.perf_counter() - start
    space = TestbedObjective(config).default_space()
    rows = []
    for trials in budgets:
        row = {"truth": truth, "cost": cost, "trials": trials, "seed": seed}
        row["engine_seconds_all_budgets"] = engine_seconds
        try:
            rules = fit_scaling_rules(
                observations[:trials], space, AXES, seed=seed, n_bootstrap=100
            )
        except NotEnoughDataError as exc:
            rows.append(row | {"refused": str(exc)})
            continue
        row["compute_max"] = rules.observed.compute_max
        row["unsupported"] = [r.name for r in rules.hyperparameters if not r.supported]
        errors = extrapolation_errors(config, rules)
        rows.append(row | ({"refused": "a rule refused"} if errors is None else errors))
    return rows


def _factor(values: list[float]) -> str:
    logs = np.abs(np.log(values))
    return f"{math.exp(np.median(logs)):.2f} / {math.exp(logs.max()):.2f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| trials | cost | lr factor median / worst | batch factor median / worst "
        "| N* exponent error median / worst | within all three | refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for trials, cost in sorted({(r["trials"], r["cost"]) for r in rows}):
        cell = [r for r in rows if r["trials"] == trials and r["cost"] == cost]
        scored = [r for r in cell if "refused" not in r]
        if not scored:
            lines.append(f"| {trials} | {cost} | - | - | - | 0/{len(cell)} | {len(cell)} |")
            continue
        exponent = np.abs([r["exponent_error"] for r in scored])
        ok = sum(
            max(abs(math.log(r["learning_rate"])), abs(math.log(r["batch_size"]))) <= math.log(1.25)
            and abs(r["exponent_error"]) <= 0.03
            for r in scored
        )
        lines.append(
            f"| {trials} | {cost} | {_factor([r['learning_rate'] for r in scored])} "
            f"| {_factor([r['batch_size'] for r in scored])} "
            f"| {np.median(exponent):.3f} / {exponent.max():.3f} | {ok}/{len(cell)} "
            f"| {len(cell) - len(scored)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="152,304,600")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cost", choices=sorted(COST_MODELS), default="flops")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    budgets = sorted(int(trials) for trials in args.budgets.split(","))
    jobs = [
        (truth, args.cost, budgets, int(seed))
        for truth in GROUND_TRUTHS
        for seed in args.seeds.split(",")
    ]
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for study_rows in pool.map(_one, jobs):
            rows.extend(study_rows)
            for row in study_rows:
                print(json.dumps(row), flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {platform.system()}"
    (RESULTS / f"scaling_extrapolation_{stamp}.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=1)
    )
    print(f"machine: {machine}; {stamp}")
    print(table(rows))


if __name__ == "__main__":
    main()
