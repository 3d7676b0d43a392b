"""The testbed objective: one simulated training trial on the testbed's ground truth.

``TestbedObjective`` (registered as ``testbed``) is the way to try scaletune without a
GPU, and the yardstick of search quality: it runs a configuration against a ``Testbed``
(``workers.objectives.testbed_truth``, the true loss surface, optima and noise scales)
and reports what a training run would: a short loss curve with seeded noise, the cost
spent, and the failure (out of memory, divergence) where the configuration fails.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workers.objectives.base import Objective, ObjectiveOutcome, TrialContext
from workers.objectives.testbed_truth import Testbed, TestbedConfig

if TYPE_CHECKING:
    from search.space import SearchSpace

__all__ = ["METRIC_NAMES", "START_PARAMS", "TestbedObjective"]

# The metrics every trial reports (``TestbedObjective._metrics``): scaling axes may name them.
METRIC_NAMES = (
    "n_params",
    "tokens",
    "flops",
    "batch_tokens",
    "steps",
    "utilisation",
    "expected_cost_seconds",
    "cost_seconds",
)

# Where a practitioner would start at small scale: a ~10M-parameter model on 20 tokens per
# parameter with common defaults. Deliberately off the optimum (the learning rate is ~6x
# too low, warmup too short, weight decay too high, the worse schedule).
START_PARAMS: dict[str, Any] = {
    "n_params": 1e7,
    "tokens": 2e8,
    "learning_rate": 1e-3,
    "batch_size": 64,
    "warmup_fraction": 0.01,
    "weight_decay": 0.1,
    "schedule": "cosine",
}


class TestbedObjective(Objective):
    """Runs one simulated training trial on a ``Testbed``: seeded noise, a short curve."""

    __test__ = False
    name: ClassVar[str] = "testbed"
    curve_points: ClassVar[int] = 8

    def __init__(self, config: TestbedConfig | dict[str, Any] | None = None) -> None:
        """``config``: a ``TestbedConfig``, or (as ``objective_options``) fields to replace."""
        if isinstance(config, dict):
            config = TestbedConfig.from_dict(config)
        self.testbed = Testbed(config)

    def default_space(self) -> SearchSpace:
        """N, D and five hyperparameters, centred on ``START_PARAMS`` within the domain."""
        from search.space import ChoiceParam, LogitParam, LogParam, Pow2Param, SearchSpace

        cfg, start = self.testbed.config, START_PARAMS
        return SearchSpace(
            params=[
                LogParam(
                    name="n_params",
                    center=start["n_params"],
                    min=cfg.n_params_min,
                    max=cfg.n_params_max,
                ),
                LogParam(
                    name="tokens", center=start["tokens"], min=cfg.tokens_min, max=cfg.tokens_max
                ),
                LogParam(name="learning_rate", center=start["learning_rate"], min=1e-5, max=1.0),
                Pow2Param(
                    name="batch_size",
                    center=start["batch_size"],
                    min=cfg.batch_size_min,
                    max=cfg.batch_size_max,
                ),
                LogitParam(
                    name="warmup_fraction", center=start["warmup_fraction"], min=1e-3, max=0.5
                ),
                LogParam(name="weight_decay", center=start["weight_decay"], min=1e-4, max=1.0),
                ChoiceParam(
                    name="schedule",
                    choices=[name for name, _ in cfg.schedule_penalties],
                    center=start["schedule"],
                ),
            ]
        )

    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        """Simulate one run; the noise depends on ``seed`` and on the params only."""
        tb, cfg = self.testbed, self.testbed.config
        failure = tb.failure(params)
        rng = np.random.default_rng(np.random.SeedSequence([seed, _params_hash(params)]))
        cost = tb.sample_cost(params, rng)
        metrics = self._metrics(params, cost)
        if failure == "oom":
            reason = f"out of memory: n_params * batch_tokens > {cfg.oom_limit:.3g}"
            return ObjectiveOutcome(None, cost, 0.0, True, reason, metrics=metrics)
        curve = self._curve(params, rng, context, diverged=failure == "diverged")
        flops = float(tb.flops(params))
        if failure == "diverged":
            reason = f"diverged: learning rate above {cfg.divergence_lr_factor}x its optimum"
            flops *= cfg.divergence_at_fraction
            return ObjectiveOutcome(None, cost, flops, True, reason, curve, metrics)
        return ObjectiveOutcome(curve[-1]["loss"], cost, flops, False, None, curve, metrics)

    def _curve(self, params, rng, context, *, diverged: bool) -> list[dict[str, float]]:
        """Loss vs tokens seen: the final law at each fraction of D, plus noise.

        A diverging run reports up to ``divergence_at_fraction`` of training and ends on a
        loss spike.
        """
        tb, cfg = self.testbed, self.testbed.config
        fractions = np.arange(1, self.curve_points + 1) / self.curve_points
        if diverged:
            fractions = np.linspace(0, cfg.divergence_at_fraction, 4)[1:]
        loss_final = float(tb.loss_ignoring_failure(params))
        tokens = float(params["tokens"])
        steps_total = tokens / (float(params["batch_size"]) * cfg.seq_len)
        curve = []
        for fraction in fractions:
            ratio = float(tb.chinchilla_loss(params["n_params"], fraction * tokens))
            ratio /= float(tb.chinchilla_loss(params["n_params"], tokens))
            noise_sd = float(tb.loss_noise_sd(params["n_params"], fraction * tokens))
            loss = loss_final * ratio + noise_sd * rng.standard_normal()
            point = {"step": round(fraction * steps_total), "tokens": float(fraction * tokens)}
            curve.append({**point, "loss": loss})
        if diverged:
            curve[-1]["loss"] = 2.0 * curve[0]["loss"]
        for point in curve:
            context.report(step=point["step"], loss=point["loss"], tokens=point["tokens"])
        return curve

    def _metrics(self, params: dict[str, Any], cost: float) -> dict[str, Any]:
        tb, cfg = self.testbed, self.testbed.config
        batch_tokens = float(params["batch_size"]) * cfg.seq_len
        return {
            "n_params": float(params["n_params"]),
            "tokens": float(params["tokens"]),
            "flops": float(tb.flops(params)),
            "batch_tokens": batch_tokens,
            "steps": float(params["tokens"]) / batch_tokens,
            "utilisation": float(tb.utilisation(batch_tokens)),
            "expected_cost_seconds": float(tb.expected_cost(params)),
            "cost_seconds": cost,
        }


def _params_hash(params: dict[str, Any]) -> int:
    """A stable 32-bit digest of a configuration, so equal seeds on different params differ."""
    return zlib.crc32(json.dumps(params, sort_keys=True, default=str).encode())
