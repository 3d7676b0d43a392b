"""Through Optuna: ``integrations.optuna.ParetoCostSampler`` against Optuna's own samplers.

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
import warnings
from pathlib import Path
from typing import Any

from bench.pareto_regret import (
    RESULTS_DIR,
    _single_thread,
    run_in_parallel,
    spend_budget,
    write_results,
)
from bench.searchers import OptunaSearcher, Searcher, _decode, _optuna_box
from workers.objectives.testbed import START_PARAMS

METHODS = ("ours", "tpe", "tpe-mo", "gp", "gp-mo", "random")
DEFAULT_METHODS = ("ours", "tpe", "tpe-mo", "gp", "random")
OURS_LABEL = "ours: ParetoCostSampler in Optuna"


class SamplerSearcher:
    """``ParetoCostSampler`` in a plain two-objective Optuna study, driven like the peers."""

    def __init__(
        self,
        *,
        seed: int,
        box: str = "practitioner",
        limits: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """``settings``: SearchSettings fields over the sampler's default (``box_settings``)."""
        import optuna

        from integrations.optuna import ParetoCostSampler, UnusableTrialWarning, box_settings
        from search.pacing import StudyLimits

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Refused trials never ran: told as FAIL without a cost, the sampler leaves them
        # out (and says so with this warning, which is expected here).
        warnings.filterwarnings("ignore", category=UnusableTrialWarning)
        self._distributions, encoders = _optuna_box(box)
        sampler = ParetoCostSampler(
            seed=seed,
            settings=box_settings().model_copy(update=settings or {}),
            limits=StudyLimits(**(limits or {})),
        )
        self.study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
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

    def front(self) -> None:
        return None  # the observed trials' front, as for the peers


def make_searcher(method: str, *, seed: int) -> Searcher:
    if method == "ours":
        return SamplerSearcher(seed=seed)
    return OptunaSearcher(method, seed=seed)


def run_one(method: str, seed: int, budget_units: float, max_trials: int) -> dict[str, Any]:
    """One method, one seed, through ``bench.pareto_regret.spend_budget`` (same loop and
    guard)."""
    _single_thread()
    return spend_budget(make_searcher(method, seed=seed), method, seed, budget_units, max_trials)


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
    runs = run_in_parallel(run_one, tasks, args.jobs)
    write_results("optuna_sampler", args, argv, runs, ours_label=OURS_LABEL)


if __name__ == "__main__":
    main()
