"""Coverage of the rules' 90% intervals at 100x on engine studies of the testbed.

Reads the engine studies that ``bench.scaling_extrapolation`` keeps under
bench/results/scaling_studies/ (run it first, e.g. ``--budgets 240 --seeds 0,1,2``;
every truth and noise found there is scored, pooled),
fits rules to the first ``--trials`` observations of each, and scores the intervals of
the learning rate, batch size, N*, D* and loss at 100x the largest run's compute
against the ground truth (``bench.designed_sweeps.coverage_at_100x``, the same scoring
as the designed sweeps').

Run:  nice -n 10 .venv/bin/python -m bench.rules_coverage [--trials 240]
"""

from __future__ import annotations

import argparse
import json

from bench.designed_sweeps import coverage_at_100x, prediction_at_100x
from bench.scaling_extrapolation import (
    AXES,
    STUDIES,
    TRUTHS,
    coverage_table,
    parse_study_path,
    truth_config,
)
from search.errors import NotEnoughDataError
from search.scaling import fit_scaling_rules
from search.types import Observation
from workers.objectives.testbed import TestbedObjective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=240)
    args = parser.parse_args()
    rows = []
    for path in sorted(STUDIES.glob("*.json")):
        truth, cost, noise_share, stored, seed = parse_study_path(path)
        if stored < args.trials or truth not in TRUTHS:
            continue
        config = truth_config(truth, cost, noise_share)
        observations = [Observation.from_dict(o) for o in json.loads(path.read_text())]
        space = TestbedObjective(config).default_space()
        try:
            rules = fit_scaling_rules(
                observations[: args.trials], space, AXES, seed=seed, n_bootstrap=100
            )
        except NotEnoughDataError as exc:
            rows.append({"study": path.stem, "refused": str(exc)})
            continue
        rows.append(
            {"study": path.stem, "coverage": coverage_at_100x(config, prediction_at_100x(rules))}
        )
        print(json.dumps(rows[-1]), flush=True)
    print(coverage_table(rows))
    print(f"refused: {sum('refused' in r for r in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
