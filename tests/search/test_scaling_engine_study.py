"""Issue 3's proof on the synthetic testbed, from real engine studies.

The search engine (``ParetoSearch``, as the service runs a study with scaling axes:
default settings with ``RULES_SPREAD_EVERY``) runs a study on the testbed from
the testbed's default, off-optimum centre (a 10M-parameter model on 200M tokens, the
learning rate ~6x too low, the worse schedule), in rounds of 8 parallel trials. Rules
fitted to its observations predict, at 100x the compute of its largest run, the
optimal learning rate and batch size and the exponent of N*(C); the truth is the
testbed's ``optimal_hparams`` at its ``compute_optimal`` allocation. Three ground
truths with different loss exponents (hence N*(C)), learning-rate and batch-size laws.

Cost: the engine is told each run's GPU-seconds on hardware whose utilisation does not
depend on the batch (``half_utilisation_batch_tokens = 0``), so cost is proportional to
compute and the engine's cost-optimal runs are the compute-optimal ones the ground truth
defines (with the default hardware model the engine rightly prefers larger batches and
smaller models than those; see docs/benchmarks.md).

Budget: 448 trials per study (about 15-30 s of engine time each on an idle core),
seeds 0-4 of each ground truth, two studies at a time. One study's search is chaotic:
the same seed on another CPU (other floating-point kernels) takes another path. On one
machine seed 0 of chinchilla-steplaw predicted the learning rate x0.69 off while seeds 1
and 2 were within x1.11 (docs/benchmarks.md, "Scaling rules"); on another, with the
engine of 2026-11-28, one steeper-lr study's learning-rate rule was refused as
non-monotone while the other four were within x1.16 (such refusals were false alarms of
the turning-point check, which then read the optima at the runs' own N and D; it now
reads them along the allocation); on a third (AMD EPYC, 2026-12-05) one flatter-lr
study predicted the learning rate x2.27 off while the other four were within x1.1. So
the claim tested is about the method, over seeds, and not about one path: for each
ground truth and parameter, at most one of the five studies may stray (refuse the rule,
with its reason, or predict it more than a factor 2 off, never 3), the median of the
supported predictions is within a factor 1.25 of the truth; every study's N*(C) exponent
is within 0.03; and the intervals cover the truth at least as often as issue 16's bar
(80%) allows; they do not reach their 90% level here (``MIN_COVERAGE``).
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import pytest

from bench.scaling_extrapolation import AXES, COST_MODELS, GROUND_TRUTHS, engine_study
from search.scaling import ParamPrediction, ScalingRules, fit_scaling_rules
from workers.objectives.testbed import START_PARAMS, TestbedObjective
from workers.objectives.testbed_truth import Testbed, TestbedConfig

TRIALS = 448
FLAT_UTILISATION = COST_MODELS["flops"]  # the ground truths' engine studies, as benchmarked


# The module's fixture runs the 15 studies: about 7 minutes on an idle 2-core AMD
# machine, 10 with another process competing; the suite's default 600 s is too tight.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


SEEDS = (0, 1, 2, 3, 4)
# Studies per ground truth and parameter whose rule may be refused or more than a factor
# 2 off (never 3): one chaotic path in five, whichever way it strays.
MAX_STRAYED = 1
PARAMS = ("learning_rate", "batch_size")


def rules_of_study(truth: str, seed: int) -> ScalingRules:
    """Rules fitted to one engine study of ground truth ``truth`` (runs in a subprocess)."""
    config = TestbedConfig(**GROUND_TRUTHS[truth], **FLAT_UTILISATION)
    observations = engine_study(config, trials=TRIALS, seed=seed)
    space = TestbedObjective(config).default_space()
    return fit_scaling_rules(observations, space, AXES, n_bootstrap=100)


@dataclass(frozen=True)
class Study:
    config: TestbedConfig
    rules: ScalingRules

    def at_100x(self, name: str) -> tuple[ParamPrediction, float]:
        """The prediction of ``name`` at 100x the largest run's compute, and the truth."""
        target = 100.0 * self.rules.observed.compute_max
        prediction = self.rules.predict(compute=target)
        assert prediction.extrapolation_decades >= 2.0 - 1e-9
        testbed = Testbed(self.config)
        n_star, d_star, _ = testbed.compute_optimal(target)
        return prediction.values[name], float(testbed.optimal_hparams(n_star, d_star)[name])


@pytest.fixture(scope="module")
def studies() -> dict[str, list[Study]]:
    """Every ground truth's studies, seeds in ``SEEDS`` order."""
    jobs = [(truth, seed) for truth in sorted(GROUND_TRUTHS) for seed in SEEDS]
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        rules = list(pool.map(rules_of_study, *zip(*jobs, strict=True)))
    by_truth: dict[str, list[Study]] = {truth: [] for truth in GROUND_TRUTHS}
    for (truth, _), study_rules in zip(jobs, rules, strict=True):
        config = TestbedConfig(**GROUND_TRUTHS[truth], **FLAT_UTILISATION)
        by_truth[truth].append(Study(config, study_rules))
    return by_truth


def test_every_study_starts_off_optimum_and_walks_up_in_compute(studies):
    centre = START_PARAMS
    for truth_studies in studies.values():
        for study in truth_studies:
            best = Testbed(study.config).optimal_hparams(centre["n_params"], centre["tokens"])
            assert centre["learning_rate"] < best["learning_rate"] / 3
            # The climb is paced to a share of the spend (``search.pacing``): on the AMD
            # VM these 448-trial studies ended 116-708x above the start's compute.
            start_compute = 6 * centre["n_params"] * centre["tokens"]
            assert study.rules.observed.compute_max > 30 * start_compute


@pytest.mark.parametrize("truth", sorted(GROUND_TRUTHS))
def test_optimal_learning_rate_and_batch_at_100x_the_largest_run(studies, truth):
    for name in PARAMS:
        log_factors, refused = [], []
        for study in studies[truth]:
            value, optimum = study.at_100x(name)
            if value.supported:
                log_factors.append(math.log(value.estimate / optimum))
            else:
                assert value.source.startswith("unsupported ("), value.source
                refused.append(value.source)
        wide = [f for f in log_factors if abs(f) > math.log(2.0)]
        assert len(refused) + len(wide) <= MAX_STRAYED, (name, refused, log_factors)
        assert abs(float(np.median(log_factors))) <= math.log(1.25), (name, log_factors)
        assert max(abs(f) for f in log_factors) <= math.log(3.0), (name, log_factors)


# Issue 16's bar for the 90% intervals at 100x: they cover the truth 80-97% of the time.
# Here they do not reach their own level. Their bootstrap states what the noise does to
# the runs the search made about right, but not a bias that comes with which runs it
# made (a random effect of its path); with 448 trials and little noise that bias is a
# large share of the error, and the learning rate's errors are 1.5x the stated standard
# deviation (docs/notes/engine-experiments.md, "What the intervals at 100x miss"). On the
# AMD VM of 2026-12-07 they covered 22 and 25 of 30 on two runs of the same code, so the
# test holds them to the bar, not to their level.
MIN_COVERAGE = 0.80


def test_the_intervals_at_100x_cover_the_truth_as_often_as_the_bar(studies):
    """Pooled over the supported intervals (up to 15 studies x 2 parameters), the number
    covering the truth must be plausible for intervals covering ``MIN_COVERAGE``: a count
    this low or lower has a binomial probability of at least 1%."""
    covered, intervals = 0, 0
    for truth_studies in studies.values():
        for study in truth_studies:
            for name in PARAMS:
                value, optimum = study.at_100x(name)
                if not value.supported:
                    continue
                covered += value.low <= optimum <= value.high
                intervals += 1
    p_as_low = sum(
        math.comb(intervals, k) * MIN_COVERAGE**k * (1 - MIN_COVERAGE) ** (intervals - k)
        for k in range(covered + 1)
    )
    assert p_as_low >= 0.01, (covered, intervals)


@pytest.mark.parametrize("truth", sorted(GROUND_TRUTHS))
def test_compute_optimal_model_size_exponent(studies, truth):
    config = TestbedConfig(**GROUND_TRUTHS[truth])
    exact = config.beta / (config.alpha + config.beta)
    errors = [study.rules.allocation.n_params.coef[1] - exact for study in studies[truth]]
    assert max(abs(e) for e in errors) <= 0.03, errors
