"""Issue 18: does each method spend the budget it is given, and report the front it gets?

Scenarios (``Scenario``) vary the compute budget (300x, 2,000x, 20,000x the start point's
cost), the trial cap (none, or 240), the trials in flight (rounds of 8 or 32), the ground
truth (``bench.truths.BENCH_TRUTHS``: the default testbed and two written as held out;
or by name only, ``PACING_UNTOUCHED``, two on which no engine change was judged), the loss noise
(1% or 3% of the start point's reducible loss, its loss minus the irreducible E) and the
box (the practitioner's, or the wide one of ``bench.problem.WIDE_BOX``), and, optionally
(not in ``--list``), a per-trial cost ceiling, in multiples of the start point's cost as
the budget is: our engine gets it as ``max_suggestion_cost``, as the service sets it from
a study's ``max_trial_cost``; the peers, which have no such notion, are not held to it.
A scenario name with one ends in ``:ceilXx``. Each (method,
seed, scenario) run spends the budget in rounds of ``in_flight`` trials with the launch
guard of ``bench.pareto_regret`` (a trial the budget left cannot pay for is refused),
until the budget or the cap is spent; without a cap, ``SAFETY_TRIALS`` stops a run.

Per run: the Pareto regret of the front the method *reports* (ours: ``ParetoSearch.front()``,
model-estimated losses with repeats merged; Optuna's samplers: the observed trials'
front), the share of the budget spent and whether the cap bound, and the front's bias:
the mean over the reported front's points of (true loss - reported loss), in noise
standard deviations; and the box floor (``bench.problem.box_floor``), the regret of
the best front the search box allows, which every method pays wherever the regret's
cost range reaches past the box's dearest efficient trial, with ours' regret above it
as a ratio of the best peer's. Ours is told the study's limits (``search.pacing.StudyLimits``);
the peers (``tpe-mo``, ``gp-mo`` on loss and log cost) are held to them by the guard.
``ours-optuna`` is ``integrations.optuna.ParetoCostSampler`` in a plain Optuna study, told the
limits, reporting the observed front like the peers.

    python -m bench.budget_pacing --list                      # the scenario names
    python -m bench.budget_pacing --scenarios NAME ... --methods ours tpe-mo --seeds 2
    python -m bench.budget_pacing --scenarios NAME:ceil3.75x --methods ours --seeds 1
    python -m bench.budget_pacing --scenarios NAME ... --methods ours --first-seed 1 --seeds 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.optuna_sampler import SamplerSearcher
from bench.pareto_regret import (
    RESULTS_DIR,
    _evaluate,
    _launch_round,
    _single_thread,
    machine,
    run_in_parallel,
)
from bench.problem import FrontPoint, RegretScale, Trial, box_floor
from bench.searchers import METHODS, make_searcher
from bench.truths import BENCH_TRUTHS, PACING_UNTOUCHED
from workers.objectives.testbed import START_PARAMS, TestbedObjective
from workers.objectives.testbed_truth import TestbedConfig

SAFETY_TRIALS = 1500
OURS_IN_OPTUNA = "ours-optuna"  # integrations.optuna.ParetoCostSampler in a plain Optuna study
BUDGETS = (300.0, 2000.0, 20000.0)
CAPS = (None, 240)
IN_FLIGHT = (8, 32)
NOISES = (0.01, 0.03)
BOX_NAMES = ("practitioner", "wide")
WIDE_DOMAIN = {"tokens_max": 1e12, "batch_size_max": 65536}
# Every truth a scenario may name: the matrix's (``all_scenarios``, ``--list``) and the
# ones no engine change was judged on, run by name only.
TRUTHS = {**BENCH_TRUTHS, **PACING_UNTOUCHED}


@dataclass(frozen=True)
class Scenario:
    budget: float  # in multiples of the start point's expected cost
    cap: int | None  # trial cap; None for none
    in_flight: int
    truth: str
    noise: float  # loss noise std, as a fraction of the start point's reducible loss
    box: str
    trial_ceiling: float | None = None  # per-trial cost ceiling, as the budget; None: none

    @property
    def name(self) -> str:
        cap = "nocap" if self.cap is None else f"cap{self.cap}"
        ceiling = "" if self.trial_ceiling is None else f":ceil{self.trial_ceiling:g}x"
        return (
            f"{self.truth}:{self.box}:{self.budget:g}x:{cap}:"
            f"{self.in_flight}fl:noise{round(100 * self.noise)}{ceiling}"
        )

    @classmethod
    def parse(cls, name: str) -> Scenario:
        truth, box, budget, cap, in_flight, noise, *rest = name.split(":")
        if len(rest) > 1 or (rest and not rest[0].startswith("ceil")):
            raise ValueError(f"{name!r}: after the noise, only a ceiling (ceilXx) may follow")
        if truth not in TRUTHS:
            raise ValueError(f"{name!r}: unknown truth {truth!r}; choose from {list(TRUTHS)}")
        return cls(
            budget=float(budget.removesuffix("x")),
            cap=None if cap == "nocap" else int(cap.removeprefix("cap")),
            in_flight=int(in_flight.removesuffix("fl")),
            truth=truth,
            noise=int(noise.removeprefix("noise")) / 100,
            box=box,
            trial_ceiling=float(rest[0].removeprefix("ceil").removesuffix("x")) if rest else None,
        )

    def config(self) -> TestbedConfig:
        base = TestbedConfig(**TRUTHS[self.truth])
        reducible = float(TestbedObjective(base).testbed.noiseless_loss(START_PARAMS))
        reducible -= base.loss_e
        domain = WIDE_DOMAIN if self.box == "wide" else {}
        return TestbedConfig(**TRUTHS[self.truth], **domain, loss_noise_std=self.noise * reducible)


def all_scenarios() -> list[Scenario]:
    return [
        Scenario(budget, cap, in_flight, truth, noise, box)
        for budget, cap, in_flight, truth, noise, box in itertools.product(
            BUDGETS, CAPS, IN_FLIGHT, BENCH_TRUTHS, NOISES, BOX_NAMES
        )
    ]


def run_one(method: str, seed: int, scenario_name: str) -> dict[str, Any]:
    """One method, one seed, one scenario: the run's record (no trials, to stay small)."""
    _single_thread()
    scenario = Scenario.parse(scenario_name)
    config = scenario.config()
    objective = TestbedObjective(config)
    testbed = objective.testbed
    start_cost = float(testbed.expected_cost(START_PARAMS))
    budget = scenario.budget * start_cost
    limits = {"max_trials": scenario.cap, "max_cost": budget, "in_flight": scenario.in_flight}
    settings = {}
    if scenario.trial_ceiling is not None:
        settings["max_suggestion_cost"] = scenario.trial_ceiling * start_cost
    if method == OURS_IN_OPTUNA:
        searcher = SamplerSearcher(seed=seed, box=scenario.box, limits=limits, settings=settings)
    else:
        searcher = make_searcher(
            method, seed=seed, limits=limits, box=scenario.box, engine_settings=settings
        )
    cap = scenario.cap or SAFETY_TRIALS
    trials: list[Trial] = []
    ask_seconds: list[float] = []
    spent, refused, rounds = 0.0, 0, 0
    started = time.perf_counter()
    while len(trials) < cap:
        want = min(scenario.in_flight, cap - len(trials))
        launched, n_refused = _launch_round(searcher, testbed, budget - spent, want, ask_seconds)
        refused += n_refused
        if not launched:
            break
        for handle, params in launched:
            trial = _evaluate(objective, params, seed * 1_000_003 + len(trials), rounds)
            searcher.tell(handle, loss=trial.loss, cost=trial.cost, failed=trial.failed)
            trials.append(trial)
            spent += trial.cost
        rounds += 1
    front = _reported_front(searcher, testbed, trials)
    scale = RegretScale(testbed, budget)
    observed = [FrontPoint(t.loss, t.cost, t.true_loss) for t in trials if not t.failed]  # type: ignore[arg-type]
    observed_front = [observed[i] for i in _front_of(observed)]
    bias = [p.true_loss - p.reported_loss for p in front]
    return {
        "method": method,
        "seed": seed,
        "scenario": scenario.name,
        "noise_std": config.loss_noise_std,
        "budget_seconds": budget,
        "spent_fraction": spent / budget,
        "n_trials": len(trials),
        "cap_bound": scenario.cap is not None and len(trials) >= scenario.cap,
        "safety_stop": scenario.cap is None and len(trials) >= SAFETY_TRIALS,
        "n_failed": sum(t.failed for t in trials),
        "n_refused": refused,
        "regret": scale.regret_of_front(front),
        "box_floor": box_floor(scale, scenario.box),
        "regret_observed_front": scale.regret_of_front(observed_front),
        "front_bias_in_noise_sd": float(np.mean(bias)) / config.loss_noise_std if bias else None,
        "observed_front_bias_in_noise_sd": float(
            np.mean([p.true_loss - p.reported_loss for p in observed_front])
        )
        / config.loss_noise_std
        if observed_front
        else None,
        "ask_ms_p95": float(np.percentile(1e3 * np.array(ask_seconds), 95)),
        "wall_seconds": time.perf_counter() - started,
    }


def _reported_front(searcher, testbed, trials: list[Trial]) -> list[FrontPoint]:
    reported = searcher.front()
    if reported is None:
        ok = [FrontPoint(t.loss, t.cost, t.true_loss) for t in trials if not t.failed]  # type: ignore[arg-type]
        return [ok[i] for i in _front_of(ok)]
    return [
        FrontPoint(loss, cost, float(testbed.noiseless_loss(params)))
        for params, loss, cost in reported
    ]


def _front_of(points: list[FrontPoint]) -> list[int]:
    from search.pareto import front_indices

    if not points:
        return []
    loss = np.array([p.reported_loss for p in points])
    cost = np.array([p.cost for p in points])
    return [int(i) for i in front_indices(loss, cost)]


def summary_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: one row per (scenario, method), means over seeds."""
    lines = [
        "| scenario | method | seeds | regret | regret / best peer | box floor | "
        "above it / best peer | spent | trials | cap bound | front bias (noise sd) | "
        "ask p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_scenario: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        by_scenario.setdefault(run["scenario"], {}).setdefault(run["method"], []).append(run)
    for scenario, methods in by_scenario.items():
        peers = [
            np.mean([r["regret"] for r in rs])
            for m, rs in methods.items()
            if not m.startswith("ours")
        ]
        best_peer = min(peers) if peers else None
        floor = float(np.mean([r["box_floor"] for rs in methods.values() for r in rs]))
        for method, rs in sorted(methods.items()):
            regret = float(np.mean([r["regret"] for r in rs]))
            ours = method.startswith("ours")
            ratio = above = ""
            if best_peer is not None and ours:
                ratio = f"{regret / best_peer:.2f}"
                if best_peer > floor:
                    above = f"{(regret - floor) / (best_peer - floor):.2f}"
            biases = [r["front_bias_in_noise_sd"] for r in rs if r["front_bias_in_noise_sd"]]
            lines.append(
                f"| {scenario} | {method} | {len(rs)} | {regret:.3f} | {ratio} | "
                f"{floor:.3f} | {above} | "
                f"{100 * np.mean([r['spent_fraction'] for r in rs]):.0f}% | "
                f"{np.mean([r['n_trials'] for r in rs]):.0f} | "
                f"{sum(r['cap_bound'] for r in rs)}/{len(rs)} | "
                f"{np.mean(biases):+.2f} | {np.mean([r['ask_ms_p95'] for r in rs]):.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print every scenario's name")
    parser.add_argument("--scenarios", nargs="+", default=[], help="scenario names to run")
    parser.add_argument(
        "--methods", nargs="+", default=["ours", "tpe-mo"], choices=[*METHODS, OURS_IN_OPTUNA]
    )
    parser.add_argument("--seeds", type=int, default=2, help="how many seeds per run")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="the first of them (to add seeds to a record)"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(s.name for s in all_scenarios()))
        return
    names = [Scenario.parse(name).name for name in args.scenarios]  # validates them
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tasks = [(m, s, name) for name in names for s in seeds for m in args.methods]
    runs = run_in_parallel(run_one, tasks, args.jobs)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    table = summary_table(runs)
    result = {
        "benchmark": "budget_pacing",
        "date": stamp,
        "command": " ".join(["python -m bench.budget_pacing", *argv]),
        "machine": machine(),
        "scenarios": [asdict(Scenario.parse(name)) for name in names],
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"budget_pacing_{stamp}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"budget_pacing_{stamp}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
