"""Ground truths of the budget-pacing bench (``bench.budget_pacing``), by name.

Each is a set of ``TestbedConfig`` overrides. ``chinchilla-steplaw`` is the default
testbed, on which the engine's defaults were tuned (``bench.pareto_regret``); the other
two were written for issue 18 and never tuned on: their loss exponents, irreducible loss,
learning-rate and batch-size laws, penalty widths, failure threshold and optimal warmup,
weight decay and schedule all differ from the default and from the scaling-rules bench's
truths (``bench.scaling_extrapolation.GROUND_TRUTHS``).
"""

from __future__ import annotations

from typing import Any

TUNED_ON = "chinchilla-steplaw"

BENCH_TRUTHS: dict[str, dict[str, Any]] = {
    TUNED_ON: {},
    # More data-hungry (beta > alpha), a lower optimal learning rate that falls slower
    # with N, a smaller optimal batch, cosine the better schedule, more weight decay.
    "held-out-data-hungry": {
        "loss_e": 2.0, "alpha": 0.30, "beta": 0.36,
        "lr_coef": 0.8, "lr_n_exp": -0.6, "lr_d_exp": 0.25,
        "batch_coef": 1.2, "batch_d_exp": 0.5,
        "warmup_opt": 0.02, "weight_decay_coef": 0.1,
        "lr_penalty": 0.03, "schedule_penalties": (("cosine", 0.0), ("wsd", 0.008)),
    },
    # A sharp learning-rate optimum close to the divergence edge, a steeper batch law
    # and a larger batch penalty, a low optimal weight decay.
    "held-out-sharp-lr": {
        "loss_e": 1.8, "alpha": 0.36, "beta": 0.30,
        "lr_coef": 3.0, "lr_n_exp": -0.75, "lr_d_exp": 0.33,
        "batch_coef": 0.3, "batch_d_exp": 0.62,
        "lr_penalty": 0.05, "batch_penalty": 0.03, "divergence_lr_factor": 2.5,
        "warmup_opt": 0.08, "weight_decay_coef": 0.01,
    },
}  # fmt: skip
