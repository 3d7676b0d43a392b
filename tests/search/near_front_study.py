"""Near-front study data on the testbed: fixture observations for the fitting tests.

``sample_study`` draws, at ``n_budgets`` compute budgets log-spaced between
``compute_min`` and ``compute_max`` FLOPs, ``per_budget`` configurations each, with N
log-normal (sigma 0.7 * spread) around the true compute-optimal N*(C) (D = C / 6N) and
every hyperparameter log-normal around its true optimum at that (N, D) (logit-normal for
warmup), batch sizes rounded to powers of two, and runs them on the testbed with its loss
noise. Data this well placed isolate the fitting (surface, laws, allocation, intervals)
from the search: the scaling-fit tests, the rules tests and the service's report and
dashboard tests use it for that reason.
"""

from __future__ import annotations

import math

import numpy as np

from search.scaling import ScalingAxes
from search.types import Observation
from workers.objectives.base import NullContext
from workers.objectives.testbed import TestbedObjective
from workers.objectives.testbed_truth import TestbedConfig

AXES = ScalingAxes(n_params="n_params", tokens="tokens")


def _around(rng: np.random.Generator, centre: float, sigma: float) -> float:
    return float(centre * math.exp(rng.normal(0.0, sigma)))


def _config_near_optimum(
    tb, compute: float, rng: np.random.Generator, spread: float, batch_offset: float
):
    n_star, _, _ = tb.compute_optimal(compute)
    n_params = _around(rng, float(n_star), 0.7 * spread)
    tokens = compute / (6.0 * n_params)
    best = tb.optimal_hparams(n_params, tokens)
    log2_batch = math.log2(float(best["batch_size"])) + batch_offset
    batch = int(min(max(2 ** round(log2_batch + rng.normal(0.0, 0.8 * spread)), 1), 16384))
    lr = float(best["learning_rate"])
    if batch_offset:  # a study off the optimal batch tunes the lr to the batch it uses
        lr = float(tb.lr_opt_at_batch(n_params, tokens, batch * tb.config.seq_len))
    warmup_logit = math.log(0.05 / 0.95) + rng.normal(0.0, 0.7)
    return {
        "n_params": n_params,
        "tokens": tokens,
        "learning_rate": _around(rng, lr, 0.6 * spread),
        "batch_size": batch,
        "warmup_fraction": 1.0 / (1.0 + math.exp(-warmup_logit)),
        "weight_decay": _around(rng, float(best["weight_decay"]), 0.7),
        "schedule": str(rng.choice(["cosine", "wsd"])),
    }


def sample_study(
    config: TestbedConfig,
    *,
    compute_min: float = 1e15,
    compute_max: float = 1e18,
    n_budgets: int = 8,
    per_budget: int = 50,
    spread: float = 0.35,
    batch_offset: float = 0.0,
    seed: int = 0,
) -> tuple[TestbedObjective, list[Observation]]:
    """Observations of a near-front study on the testbed (see the module docstring);
    ``batch_offset`` (log2) centres the batch sizes that far from their optimum, and
    each run's learning rate then around the optimum for its own batch."""
    objective = TestbedObjective(config)
    rng = np.random.default_rng(seed)
    observations = []
    for compute in np.geomspace(compute_min, compute_max, n_budgets):
        for _ in range(per_budget):
            params = _config_near_optimum(
                objective.testbed, float(compute), rng, spread, batch_offset
            )
            out = objective.run(params, seed=seed, context=NullContext())
            loss = math.nan if out.failed else float(out.loss)
            observations.append(Observation(params, loss, out.cost_seconds, out.failed))
    return objective, observations
