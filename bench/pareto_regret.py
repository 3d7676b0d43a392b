"""Pareto regret of our engine and its peers on the synthetic scaling testbed.

Each (method, seed) run spends a compute budget in rounds of 8 trials: ask 8, run them
on the testbed, tell 8. The launch guard is the same for everyone: a suggestion whose
expected cost (the testbed's, as a practitioner estimates 6ND FLOPs at their throughput)
exceeds what is left of the budget, after the trials already launched in the round, is
refused, not run; the method is asked again, at most ``MAX_ASKS_PER_ROUND`` times per
round, and a round that launches nothing ends the run. Regret is defined in
``bench.problem``. Results go to ``bench/results/`` as JSON and Markdown.

    python -m bench.pareto_regret --quick          # smoke run, a minute or two
    python -m bench.pareto_regret                  # the table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.problem import ROUND_SIZE, RegretScale, Trial, regret_by_budget_fraction
from bench.report import markdown_table, summarise
from bench.searchers import METHODS, Searcher, make_searcher
from workers.objectives.base import NullContext
from workers.objectives.testbed import START_PARAMS, TestbedObjective

MAX_ASKS_PER_ROUND = 4 * ROUND_SIZE
CHECKPOINTS = (0.25, 0.5, 1.0)
CURVE_FRACTIONS = tuple(np.round(np.arange(0.05, 1.0001, 0.05), 2))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
_SLOWEST_FIRST = ("gp-mo", "gp", "ours", "ours-optuna", "tpe-mo", "tpe", "random")


def run_one(
    method: str,
    seed: int,
    budget_units: float,
    max_trials: int,
    engine_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One method, one seed: spend the budget, return its trials, regrets and latencies.
    Ours is told the study's limits: the budget, the trial cap and the trials in flight."""
    _single_thread()
    budget = budget_units * float(TestbedObjective().testbed.expected_cost(START_PARAMS))
    limits = {"max_cost": budget, "max_trials": max_trials, "in_flight": ROUND_SIZE}
    searcher = make_searcher(method, seed=seed, engine_settings=engine_settings, limits=limits)
    return spend_budget(searcher, method, seed, budget_units, max_trials)


def spend_budget(
    searcher: Searcher, method: str, seed: int, budget_units: float, max_trials: int
) -> dict[str, Any]:
    """Drive ``searcher`` in rounds until the budget (or the trial cap) is spent; the
    run's record: its trials, regrets by budget fraction and ask latencies."""
    objective = TestbedObjective()
    testbed = objective.testbed
    budget = budget_units * float(testbed.expected_cost(START_PARAMS))
    scale = RegretScale(testbed, budget)
    trials: list[Trial] = []
    spent_after_round: list[float] = []
    ask_seconds: list[float] = []
    refused = 0
    started = time.perf_counter()
    while len(trials) < max_trials:
        spent = spent_after_round[-1] if spent_after_round else 0.0
        want = min(ROUND_SIZE, max_trials - len(trials))
        launched, n_refused = _launch_round(searcher, testbed, budget - spent, want, ask_seconds)
        refused += n_refused
        if not launched:
            break
        round_index = len(spent_after_round)
        for handle, params in launched:
            trial = _evaluate(objective, params, seed * 1_000_003 + len(trials), round_index)
            searcher.tell(handle, loss=trial.loss, cost=trial.cost, failed=trial.failed)
            trials.append(trial)
            spent += trial.cost
        spent_after_round.append(spent)
    curve = regret_by_budget_fraction(scale, trials, spent_after_round, CURVE_FRACTIONS)
    at = regret_by_budget_fraction(scale, trials, spent_after_round, CHECKPOINTS)
    return {
        "method": method,
        "seed": seed,
        "budget_seconds": budget,
        "spent_seconds": spent_after_round[-1] if spent_after_round else 0.0,
        "n_trials": len(trials),
        "n_failed": sum(t.failed for t in trials),
        "n_refused": refused,
        "regret_at": {str(f): r for f, r in zip(CHECKPOINTS, at, strict=True)},
        "regret_curve": {str(f): r for f, r in zip(CURVE_FRACTIONS, curve, strict=True)},
        "ask_ms_per_suggestion": [1e3 * s for s in ask_seconds],
        "wall_seconds": time.perf_counter() - started,
        "trials": [t.__dict__ for t in trials],
    }


def run_in_parallel(run, tasks: list[tuple], jobs: int) -> list[dict[str, Any]]:
    """``run(*task)`` for every task in ``jobs`` processes, slowest methods first (the
    shortest wall time overall), printing each run as it ends; records in task order."""
    tasks = sorted(tasks, key=lambda task: _SLOWEST_FIRST.index(task[0]))
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run, *task) for task in tasks]
        for future in as_completed(futures):
            record = future.result()
            final = record["regret_at"]["1.0"] if "regret_at" in record else record["regret"]
            print(
                f"{record['method']:>7} seed {record['seed']} {record.get('scenario', '')}: "
                f"regret@100% {final:.4f}, {record['n_trials']} trials, "
                f"{record['wall_seconds']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        return [future.result() for future in futures]


def _launch_round(searcher, testbed, remaining: float, want: int, ask_seconds: list[float]):
    """Ask until ``want`` trials pass the launch guard or the asks run out."""
    launched: list[tuple[Any, dict[str, Any]]] = []
    committed, refused, asked = 0.0, 0, 0
    while len(launched) < want and asked < MAX_ASKS_PER_ROUND:
        n = want - len(launched)
        tic = time.perf_counter()
        batch = searcher.ask(n)
        ask_seconds.extend([(time.perf_counter() - tic) / n] * n)
        asked += n
        for handle, params in batch:
            cost = float(testbed.expected_cost(params))
            if committed + cost > remaining:
                searcher.refuse(handle)
                refused += 1
            else:
                launched.append((handle, params))
                committed += cost
    return launched, refused


def _evaluate(objective: TestbedObjective, params, trial_seed: int, round_index: int) -> Trial:
    outcome = objective.run(params, seed=trial_seed, context=NullContext())
    truth = float(objective.testbed.noiseless_loss(params))
    return Trial(
        params=_plain(params),
        loss=outcome.loss,
        cost=outcome.cost_seconds,
        failed=outcome.failed,
        true_loss=truth,
        round_index=round_index,
    )


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}


def _single_thread() -> None:
    """One BLAS/torch thread per run: runs go in parallel processes on a shared machine."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def machine() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "commit": _commit(),
    }


def _commit() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budget, 1 seed: a smoke run")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method")
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="total budget, in multiples of the start point's expected cost (~87 GPU-s)",
    )
    parser.add_argument(
        "--max-trials", type=int, default=2000, help="cap on trials per run (a safety net)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--engine-settings",
        type=_settings_json,
        default={},
        help='SearchSettings fields for "ours", as JSON, e.g. \'{"climb_share": 0.1}\'',
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.max_trials = 1, 120.0, 48
    tasks = [
        (m, s, args.budget, args.max_trials, args.engine_settings)
        for s in range(args.seeds)
        for m in args.methods
    ]
    runs = run_in_parallel(run_one, tasks, args.jobs)
    write_results("pareto_regret", args, argv, runs)


def _settings_json(text: str) -> dict[str, Any]:
    """``--engine-settings``: a JSON object of valid SearchSettings fields (not the seed)."""
    from search.settings import SearchSettings

    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(fields, dict) or "seed" in fields:
        raise argparse.ArgumentTypeError("a JSON object of SearchSettings fields, without seed")
    try:
        SearchSettings(**fields)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return fields


def write_results(
    benchmark: str,
    args: argparse.Namespace,
    argv: list[str],
    runs: list[dict[str, Any]],
    *,
    ours_label: str = "ours",
) -> None:
    """JSON and a Markdown table under ``args.out``, stamped with the date and machine."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "benchmark": benchmark,
        "date": stamp,
        "command": " ".join([f"python -m bench.{benchmark}", *argv]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "summary": summarise(runs, CHECKPOINTS),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{benchmark}_{stamp}.json").write_text(json.dumps(result, indent=1))
    table = markdown_table(result).replace("| ours |", f"| {ours_label} |")
    (args.out / f"{benchmark}_{stamp}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
