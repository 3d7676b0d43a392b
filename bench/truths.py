"""Held-out ground truths of the benches, by name: ``BENCH_TRUTHS`` of the budget-pacing
bench (``bench.budget_pacing``), ``ENGINE_HELD_OUT`` of the scaling-rules engine studies,
``SPREAD_HELD_OUT`` of the engine's spread points, ``SKEWED_LR``, a skewed
learning-rate bowl, ``SKEWED_HELD_OUT``, more skewed bowls, and ``PACING_UNTOUCHED``,
the budget-pacing bench's truths that no engine change was judged on.

Each is a set of ``TestbedConfig`` overrides. ``chinchilla-steplaw`` is the default
testbed, on which the engine's defaults were tuned (``bench.pareto_regret``); the other
two were written for issue 18 and never tuned on (though every engine change of issue 18
has since been judged on them, hence ``PACING_UNTOUCHED``): their loss exponents, irreducible loss,
learning-rate and batch-size laws, penalty widths, failure threshold and optimal warmup,
weight decay and schedule all differ from the default and from the scaling-rules bench's
truths (``bench.scaling_extrapolation.GROUND_TRUTHS``). ``ENGINE_HELD_OUT`` is described
where it is defined.
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

# Held-out truths of the budget-pacing bench written on 2026-12-08, after the engine
# changes of issue 18 had each been judged on the two held-out truths above (so those
# no longer test whether a default carries over), and before any run on them: they
# take the pacing bench's claims to truths no engine change has seen. They differ from
# every truth in this file in their loss exponents and laws; the first has a skewed
# learning-rate bowl and matters more in its weight decay and schedule, the second has
# wide bowls, an optimal warmup below the start point's and a strong steps penalty.
PACING_UNTOUCHED: dict[str, dict[str, Any]] = {
    # N* ~ C^0.56; lr falls gently with N, batch grows with D; lr bowl skewed.
    "untouched-skewed": {
        "loss_e": 2.2, "loss_a": 300.0, "loss_b": 900.0, "alpha": 0.30, "beta": 0.38,
        "lr_coef": 0.5, "lr_n_exp": -0.55, "lr_d_exp": 0.22, "lr_skew": 1.2,
        "batch_coef": 0.9, "batch_d_exp": 0.52,
        "warmup_opt": 0.03, "weight_decay_coef": 0.05, "weight_decay_penalty": 0.008,
        "lr_penalty": 0.025, "batch_penalty": 0.02, "divergence_lr_factor": 3.5,
        "schedule_penalties": (("cosine", 0.0), ("wsd", 0.015)),
    },
    # N* ~ C^0.43; a steep lr law, wide bowls, a short optimal warmup, many steps needed.
    "untouched-wide-bowls": {
        "loss_e": 1.5, "loss_a": 900.0, "loss_b": 350.0, "alpha": 0.40, "beta": 0.30,
        "lr_coef": 2.0, "lr_n_exp": -0.8, "lr_d_exp": 0.38,
        "batch_coef": 0.5, "batch_n_exp": 0.05, "batch_d_exp": 0.6,
        "warmup_opt": 0.004, "weight_decay_coef": 0.3,
        "lr_penalty": 0.012, "batch_penalty": 0.006, "warmup_penalty": 0.006,
        "min_steps": 800.0, "divergence_lr_factor": 5.0,
    },
}  # fmt: skip

# Held-out truths of the scaling-rules engine studies (``bench.scaling_extrapolation
# --held-out``), written for issue 16 and never used to tune the engine or the rules'
# fit: their loss exponents (so N*(C) ~ C^(beta / (alpha + beta))), irreducible loss and
# learning-rate and batch-size laws differ from the development truths
# (``bench.scaling_extrapolation.GROUND_TRUTHS``) and from the designed sweeps' held-out
# ones (``bench.designed_sweeps.HELD_OUT``). A and B are set so that D*/N* is 10-40
# near 1e19 FLOPs, as in published fits, and the reducible loss of a 3e8 model is about
# Chinchilla's.
ENGINE_HELD_OUT: dict[str, dict[str, Any]] = {
    # N and D scale alike (N* ~ C^0.5); lr falls gently with N, batch grows a little with N.
    "engine-balanced": {
        "loss_e": 1.9, "loss_a": 280.0, "loss_b": 730.0, "alpha": 0.32, "beta": 0.32,
        "lr_coef": 1.2, "lr_n_exp": -0.6, "lr_d_exp": 0.22,
        "batch_coef": 0.8, "batch_n_exp": 0.05, "batch_d_exp": 0.5,
    },
    # Parameters matter more (N* ~ C^0.42); steep lr law, steep batch law shrinking with N.
    "engine-steep-laws": {
        "loss_a": 1300.0, "loss_b": 637.0, "alpha": 0.40, "beta": 0.29,
        "lr_coef": 2.5, "lr_n_exp": -0.85, "lr_d_exp": 0.42,
        "batch_coef": 0.4, "batch_n_exp": -0.05, "batch_d_exp": 0.62,
    },
    # Data matters more (N* ~ C^0.56); shallow lr law, shallow batch law growing with N.
    "engine-shallow-laws": {
        "loss_e": 1.5, "loss_a": 150.0, "loss_b": 1346.0, "alpha": 0.29, "beta": 0.37,
        "lr_coef": 0.6, "lr_n_exp": -0.45, "lr_d_exp": 0.15,
        "batch_coef": 1.5, "batch_n_exp": 0.1, "batch_d_exp": 0.47,
    },
}  # fmt: skip

# Held-out truths of the spread points (``search.settings.RULES_SPREAD_EVERY``): written
# after their share and width were chosen on the 60 engine studies of the three sets
# above, and scored once, before against after. Their bowls differ in width from every
# truth above, which is what a fixed spread width would be tuned to.
SPREAD_HELD_OUT: dict[str, dict[str, Any]] = {
    # Wide bowls: the loss moves half as fast off each optimum as the default's.
    "spread-wide-bowls": {
        "loss_e": 1.75, "loss_a": 500.0, "loss_b": 520.0, "alpha": 0.35, "beta": 0.30,
        "lr_coef": 1.4, "lr_n_exp": -0.68, "lr_d_exp": 0.28,
        "batch_coef": 0.7, "batch_d_exp": 0.55,
        "lr_penalty": 0.01, "batch_penalty": 0.008, "warmup_penalty": 0.002,
        "weight_decay_penalty": 0.0025,
    },
    # Narrow bowls with divergence close above the learning-rate optimum.
    "spread-narrow-bowls": {
        "loss_e": 1.6, "loss_a": 350.0, "loss_b": 1170.0, "alpha": 0.31, "beta": 0.33,
        "lr_coef": 2.2, "lr_n_exp": -0.78, "lr_d_exp": 0.36,
        "batch_coef": 0.45, "batch_d_exp": 0.6,
        "lr_penalty": 0.04, "batch_penalty": 0.03, "divergence_lr_factor": 3.0,
    },
}  # fmt: skip

# The default testbed with loss rising faster above the learning-rate optimum than below
# it (``TestbedConfig.lr_skew``), as real sweeps show: what a quadratic bowl misreads.
# The rules' warp of a skewed bowl (``search.scaling.warp``) was developed on it.
SKEWED_LR: dict[str, dict[str, Any]] = {"skewed-lr": {"lr_skew": 1.5}}

# Held-out skewed truths of the engine studies: written to score the response surface's
# warp (chosen on ``skewed-lr`` and the slow engine-study test) before their first
# scoring; on them and 50 other studies the warp did not pay and was taken out
# (docs/notes/engine-experiments.md). Each takes an ENGINE_HELD_OUT truth's loss and
# laws and skews its learning-rate bowl, by a different amount each, one of them with a
# shallower bowl below the optimum than any truth the warp met.
SKEWED_HELD_OUT: dict[str, dict[str, Any]] = {
    "engine-skewed-balanced": {**ENGINE_HELD_OUT["engine-balanced"], "lr_skew": 1.0},
    "engine-skewed-steep": {
        **ENGINE_HELD_OUT["engine-steep-laws"], "lr_skew": 2.0, "lr_penalty": 0.015,
    },
    "engine-skewed-shallow": {**ENGINE_HELD_OUT["engine-shallow-laws"], "lr_skew": 0.6},
}  # fmt: skip
