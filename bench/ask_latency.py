"""Latency of our engine's ask(1) with 500 and 5,000 observations already told.

The engine is loaded with a study's worth of testbed trials around the start point
(``observe``), then each measured ``ask(1)`` follows a ``tell`` of the previous
suggestion, so the time includes refitting after new data, as in a live study. The first
ask (the cold fit) is reported apart from the steady-state percentiles. After each tell
``front()`` is timed too: the service computes the engine's front each time it saves a
study with new results (``service.orchestration.front_estimate``), so a step of a live
study costs about an ask plus a front.

    python -m bench.ask_latency --quick
    python -m bench.ask_latency                    # the table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.pareto_regret import RESULTS_DIR, machine
from bench.problem import bench_space
from workers.objectives.base import NullContext
from workers.objectives.testbed import TestbedObjective


def loaded_engine(n_observations: int, *, seed: int):
    """An engine that has been told ``n_observations`` testbed trials near the start."""
    from search.engine import ParetoSearch
    from search.pacing import StudyLimits
    from search.settings import SearchSettings

    space = bench_space()
    # A study with both limits, so every pacing decision is taken on each ask.
    limits = StudyLimits(max_trials=2 * n_observations + 100, max_cost=1e12, in_flight=8)
    engine = ParetoSearch(space, SearchSettings(seed=seed), limits=limits)
    objective = TestbedObjective()
    rng = np.random.default_rng(seed)
    for i, params in enumerate(
        space.from_internal_many(rng.normal(size=(n_observations, space.dim)))
    ):
        outcome = objective.run(params, seed=i, context=NullContext())
        engine.observe(params, outcome.loss, outcome.cost_seconds, failed=outcome.failed)
    return engine, objective


def measure(n_observations: int, n_asks: int, *, seed: int) -> dict[str, Any]:
    engine, objective = loaded_engine(n_observations, seed=seed)
    seconds, cpu_seconds, front_seconds = [], [], []
    for i in range(n_asks + 1):
        tic, cpu_tic = time.perf_counter(), time.process_time()
        (suggestion,) = engine.ask(1)
        seconds.append(time.perf_counter() - tic)
        cpu_seconds.append(time.process_time() - cpu_tic)
        outcome = objective.run(suggestion.params, seed=10**6 + i, context=NullContext())
        engine.tell(
            suggestion.suggestion_id, outcome.loss, outcome.cost_seconds, failed=outcome.failed
        )
        tic = time.perf_counter()
        engine.front()  # read only: it changes nothing the engine suggests next
        front_seconds.append(time.perf_counter() - tic)
    steady_ms = 1e3 * np.array(seconds[1:])
    front_ms = 1e3 * np.array(front_seconds[1:])
    cpu_ms = 1e3 * np.array(cpu_seconds[1:])
    return {
        "n_observations": n_observations,
        "n_asks": n_asks,
        "first_ask_ms": 1e3 * seconds[0],
        "p50_ms": float(np.percentile(steady_ms, 50)),
        "p95_ms": float(np.percentile(steady_ms, 95)),
        "max_ms": float(steady_ms.max()),
        # CPU time of this process: what the ask costs when the machine is shared.
        "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
        "cpu_p95_ms": float(np.percentile(cpu_ms, 95)),
        "front_p50_ms": float(np.percentile(front_ms, 50)),
        "front_p95_ms": float(np.percentile(front_ms, 95)),
        "ask_ms": steady_ms.tolist(),
    }


def markdown_table(result: dict[str, Any]) -> str:
    mach = result["machine"]
    lines = [
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), Python {mach['python']}, "
        f"commit {mach.get('commit', 'unknown')}; "
        f"date {result['date']}; torch threads {result['torch_threads']}.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| observations told | asks measured | first ask ms | p50 ms | p95 ms | max ms "
        "| CPU p50 ms | CPU p95 ms | front() p50 ms | front() p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['n_observations']} | {row['n_asks']} | {row['first_ask_ms']:.0f} "
            f"| {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['max_ms']:.0f} "
            f"| {row['cpu_p50_ms']:.0f} | {row['cpu_p95_ms']:.0f} "
            f"| {row['front_p50_ms']:.0f} | {row['front_p95_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer asks: a smoke run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--asks", type=int, default=40, help="measured asks per size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.asks = 5
    import torch

    torch.set_num_threads(args.threads)
    rows = [measure(n, args.asks, seed=args.seed) for n in args.sizes]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "benchmark": "ask_latency",
        "date": stamp,
        "command": " ".join(["python -m bench.ask_latency", *argv]),
        "machine": machine(),
        "torch_threads": args.threads,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ask_latency_{stamp}.json").write_text(json.dumps(result, indent=1))
    table = markdown_table(result)
    (args.out / f"ask_latency_{stamp}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
