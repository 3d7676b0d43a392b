"""Coverage of the rules' 90% intervals at 100x on engine studies of the testbed.

Reads the engine studies that ``bench.scaling_extrapolation`` keeps under
bench/results/scaling_studies/ (run it first, e.g. ``--budgets 240 --seeds 0,1,2``),
fits rules to the first ``--trials`` observations of each, and scores the intervals of
the learning rate, batch size, N*, D* and loss at 100x the largest run's compute
against the ground truth (``bench.designed_sweeps.coverage_at_100x``, the same scoring
as the designed sweeps').

Run:  nice -n 10 .venv/bin/python -m bench.rules_coverage [--trials 240]
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from bench.designed_sweeps import coverage_at_100x
from bench.scaling_extrapolation import AXES, COST_MODELS, GROUND_TRUTHS, STUDIES
from search.errors import NotEnoughDataError
from search.scaling import fit_scaling_rules
from search.types import Observation
from workers.objectives.testbed import TestbedObjective
from workers.objectives.testbed_truth import TestbedConfig

NAMES = ("learning_rate", "batch_size", "n_star", "d_star", "loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=240)
    args = parser.parse_args()
    rows = []
    for path in sorted(STUDIES.glob("*.json")):
        truth, cost, stored, seed = path.stem.rsplit("_", 3)
        if int(stored) < args.trials or truth not in GROUND_TRUTHS:
            continue
        config = TestbedConfig(**GROUND_TRUTHS[truth], **COST_MODELS[cost])
        observations = [Observation.from_dict(o) for o in json.loads(path.read_text())]
        space = TestbedObjective(config).default_space()
        try:
            rules = fit_scaling_rules(
                observations[: args.trials], space, AXES, seed=int(seed), n_bootstrap=100
            )
        except NotEnoughDataError as exc:
            rows.append({"study": path.stem, "refused": str(exc)})
            continue
        rows.append({"study": path.stem, "coverage": coverage_at_100x(config, rules)})
        print(json.dumps(rows[-1]), flush=True)
    print("| interval at 100x | studies | coverage | median width (dex) | median abs error (dex) |")
    print("|---|---|---|---|---|")
    for name in NAMES:
        got = [r["coverage"][name] for r in rows if "coverage" in r and r["coverage"][name]]
        covered = sum(g["covered"] for g in got)
        width = np.median([g["width_dex"] for g in got]) if got else math.nan
        error = np.median([abs(g["error_dex"]) for g in got]) if got else math.nan
        print(f"| {name} | {len(got)} | {covered}/{len(got)} | {width:.3f} | {error:.3f} |")
    print(f"refused: {sum('refused' in r for r in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
