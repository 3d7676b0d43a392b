"""The demo study (``scaletune demo``): a testbed world in which a short engine study,
run embedded in well under a minute of CPU, identifies the laws the product is for.

The testbed's ground truth (``workers.objectives.testbed_truth``) moves the optimal learning
rate as ``N^-0.713 D^0.307`` and the batch as ``D^0.571``. The demo searches model size,
tokens, learning rate and batch freely; warmup, weight decay and schedule are held near
their optima (narrow limits; the testbed needs all seven parameters), and the loss noise
is 0.3% instead of 1%. With those, 160 trials (seed 0) give a learning-rate law whose
exponent interval excludes 0, a batch law and N*(C), in about 22 s of CPU. Two runs (the
embedded threads finish in varying order) gave C^-0.162 [-0.181, -0.143] and C^-0.150
[-0.173, -0.127], with N^-0.74/-0.72 D^+0.32/+0.33, against the truth C^-0.157 along
N*(C) and N^-0.713 D^+0.307; N*(C) ~ C^0.456 and C^0.455. With the full seven-parameter
space and the default noise, 48 trials (seed 0) identified none of them: the loss was flat in each
hyperparameter, to within the noise, over the runs a short search makes.
"""

from __future__ import annotations

from search.space import ChoiceParam, LogitParam, LogParam, Pow2Param, SearchSpace
from service.domain import Budget, ScalingAxesSpec, StudySpec

DEMO_TRIALS = 160
DEMO_IN_FLIGHT = 8
DEMO_LOSS_NOISE = 0.003


def demo_space() -> SearchSpace:
    return SearchSpace(
        params=[
            LogParam(name="n_params", center=1e7, min=1e6, max=1e10),
            LogParam(name="tokens", center=2e8, min=1e7, max=1e11),
            LogParam(name="learning_rate", center=1e-3, min=1e-5, max=1.0),
            Pow2Param(name="batch_size", center=64, min=1, max=16384),
            LogitParam(name="warmup_fraction", center=0.05, min=0.045, max=0.055),
            LogParam(name="weight_decay", center=0.03, min=0.028, max=0.032),
            ChoiceParam(name="schedule", choices=["wsd"], center="wsd"),
        ]
    )


def demo_spec(*, trials: int, in_flight: int, seed: int) -> StudySpec:
    """The demo study on the synthetic scaling testbed (see the module docstring)."""
    return StudySpec(
        name="demo",
        objective="testbed",
        space=demo_space(),
        budget=Budget(max_trials=trials),
        in_flight=in_flight,
        seed=seed,
        scaling=ScalingAxesSpec(n_params="n_params", tokens="tokens"),
        objective_options={"config": {"loss_noise_std": DEMO_LOSS_NOISE}},
    )
