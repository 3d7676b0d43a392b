"""Through Optuna: ``search.optuna.ParetoCostSampler`` against Optuna's own samplers.

The same problem, budget, rounds of 8 trials in flight, launch guard and Pareto regret as
``bench.pareto_regret`` (see ``bench.problem``), but our engine runs *inside a plain Optuna
study*: ``optuna.create_study(directions=["minimize", "minimize"],
sampler=ParetoCostSampler(seed=s))`` told (loss, cost), asked with ``study.ask`` on the
same distributions the peers get (``bench.searchers``), with the start point enqueued as
for them. The sampler derives its space from those distributions (centers at the box's
mid, which is the start point for this box). A failed trial is told as FAIL with its cost
in the user attribute ``cost``; a refused one as FAIL without a cost (it never ran).

Peers, set up exactly as in ``bench.pareto_regret``: ``tpe`` (TPE on the loss), ``tpe-mo``
(TPE on loss and log cost), ``gp`` (GPSampler on the loss), ``random``. ``gp-mo`` takes
minutes per run and is left out by default.

    python -m bench.optuna_sampler --quick    # smoke run, a minute or two
    python -m bench.optuna_sampler            # the table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.pareto_regret import (
    _SLOWEST_FIRST,
    CHECKPOINTS,
    CURVE_FRACTIONS,
    RESULTS_DIR,
    _evaluate,
    _launch_round,
    _single_thread,
    write_results,
)
from bench.problem import ROUND_SIZE, RegretScale, Trial, regret_by_budget_fraction
from bench.searchers import OptunaSearcher, Searcher, _decode, _optuna_box
from workers.objectives.testbed import START_PARAMS, TestbedObjective

METHODS = ("ours", "tpe", "tpe-mo", "gp", "gp-mo", "random")
DEFAULT_METHODS = ("ours", "tpe", "tpe-mo", "gp", "random")
OURS_LABEL = "ours: ParetoCostSampler in Optuna"


class SamplerSearcher:
    """``ParetoCostSampler`` in a plain two-objective Optuna study, driven like the peers."""

    def __init__(self, *, seed: int) -> None:
        import optuna

        from search.optuna import ParetoCostSampler, UnusableTrialWarning

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Refused trials never ran: told as FAIL without a cost, the sampler leaves them
        # out (and says so with this warning, which is expected here).
        warnings.filterwarnings("ignore", category=UnusableTrialWarning)
        self._distributions, encoders = _optuna_box()
        self.study = optuna.create_study(
            directions=["minimize", "minimize"], sampler=ParetoCostSampler(seed=seed)
        )
        self.study.enqueue_trial({key: encode(START_PARAMS) for key, encode in encoders.items()})

    def ask(self, n: int) -> list[tuple[Any, dict[str, Any]]]:
        trials = [self.study.ask(self._distributions) for _ in range(n)]
        return [(trial, _decode(trial.params)) for trial in trials]

    def tell(self, handle: Any, *, loss: float | None, cost: float, failed: bool) -> None:
        from optuna.trial import TrialState

        if failed:
            handle.set_user_attr("cost", cost)
            self.study.tell(handle, state=TrialState.FAIL)
        else:
            self.study.tell(handle, [loss, cost])

    def refuse(self, handle: Any) -> None:
        from optuna.trial import TrialState

        self.study.tell(handle, state=TrialState.FAIL)


def make_searcher(method: str, *, seed: int) -> Searcher:
    if method == "ours":
        return SamplerSearcher(seed=seed)
    return OptunaSearcher(method, seed=seed)


def run_one(method: str, seed: int, budget_units: float, max_trials: int) -> dict[str, Any]:
    """One method, one seed, as ``bench.pareto_regret.run_one`` (same loop and guard)."""
    _single_thread()
    objective = TestbedObjective()
    budget = budget_units * float(objective.testbed.expected_cost(START_PARAMS))
    scale = RegretScale(objective.testbed, budget)
    searcher = make_searcher(method, seed=seed)
    trials: list[Trial] = []
    spent_after_round: list[float] = []
    ask_seconds: list[float] = []
    refused = 0
    started = time.perf_counter()
    while len(trials) < max_trials:
        spent = spent_after_round[-1] if spent_after_round else 0.0
        want = min(ROUND_SIZE, max_trials - len(trials))
        launched, n_refused = _launch_round(
            searcher, objective.testbed, budget - spent, want, ask_seconds
        )
        refused += n_refused
        if not launched:
            break
        for handle, params in launched:
            trial = _evaluate(
                objective, params, seed * 1_000_003 + len(trials), len(spent_after_round)
            )
            searcher.tell(handle, loss=trial.loss, cost=trial.cost, failed=trial.failed)
            trials.append(trial)
            spent += trial.cost
        spent_after_round.append(spent)
    return _run_record(
        method, seed, scale, trials, spent_after_round, ask_seconds, refused, started
    )


def _run_record(method, seed, scale, trials, spent_after_round, ask_seconds, refused, started):
    curve = regret_by_budget_fraction(scale, trials, spent_after_round, CURVE_FRACTIONS)
    at = regret_by_budget_fraction(scale, trials, spent_after_round, CHECKPOINTS)
    return {
        "method": method,
        "seed": seed,
        "budget_seconds": scale.budget,
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budget, 1 seed: a smoke run")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=8, help="seeds per method")
    # Budget and trial cap as in bench.pareto_regret (the cap is only a safety net).
    parser.add_argument(
        "--budget", type=float, default=300.0, help="in multiples of the start point's cost"
    )
    parser.add_argument("--max-trials", type=int, default=2000, help="cap on trials per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.max_trials = 1, 120.0, 48
    tasks = [(m, s, args.budget, args.max_trials) for s in range(args.seeds) for m in args.methods]
    tasks.sort(key=lambda task: _SLOWEST_FIRST.index(task[0]))  # shortest wall time overall
    runs = []
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        for future in as_completed([pool.submit(run_one, *task) for task in tasks]):
            run = future.result()
            runs.append(run)
            print(
                f"{run['method']:>7} seed {run['seed']}: regret@100% "
                f"{run['regret_at']['1.0']:.4f}, {run['n_trials']} trials, "
                f"{run['wall_seconds']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    runs = sorted(runs, key=lambda r: (r["method"], r["seed"]))
    write_results("optuna_sampler", args, argv, runs, ours_label=OURS_LABEL)


if __name__ == "__main__":
    main()
