"""Objectives for the worker tests, installed as a plugin through entry points.

This directory holds a ``.dist-info`` with an ``entry_points.txt``: putting it on
``sys.path`` (or ``PYTHONPATH`` of a worker process) registers these objectives the same
way a user's package would, so the tests also prove entry-point discovery.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from search.space import SearchSpace
from workers.objectives.base import InfrastructureError, Objective, ObjectiveOutcome, TrialContext

_SPACE = {"params": [{"kind": "linear", "name": "x", "center": 0.0}]}


class _TestObjective(Objective):
    def default_space(self) -> SearchSpace:
        return SearchSpace.model_validate(_SPACE)


class SleepObjective(_TestObjective):
    """Sleeps ``seconds``, reporting progress; stops early when asked unless ``ignore_stop``."""

    name = "t_sleep"

    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < params.get("seconds", 0.1):
            if not params.get("ignore_stop") and context.should_stop():
                break
            time.sleep(0.05)
            step += 1
            context.report(step=step, loss=1.0 / step)
        return ObjectiveOutcome(
            loss=params.get("loss", 0.5),
            cost_seconds=time.monotonic() - started,
            metrics={"steps": step},
        )


class OutOfMemoryObjective(_TestObjective):
    """Raises torch's CUDA out-of-memory error, as a too-large configuration would."""

    name = "t_oom"

    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")


class NaNObjective(_TestObjective):
    """Returns a NaN loss after spending ``cost_seconds`` (reported, not slept)."""

    name = "t_nan"

    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        return ObjectiveOutcome(loss=float("nan"), cost_seconds=params.get("cost_seconds", 1.5))


class NaNOptions(BaseModel):
    """``t_nan`` declares its options (none) under ``scaletune.objective_options``."""

    model_config = ConfigDict(extra="forbid")


class FlakyObjective(_TestObjective):
    """Raises InfrastructureError on its first ``fail_times`` runs (counted in a file)."""

    name = "t_flaky"

    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        counter = Path(params["counter_file"])
        runs = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(runs))
        if runs <= params["fail_times"]:
            raise InfrastructureError(f"data volume not mounted (run {runs})")
        return ObjectiveOutcome(loss=0.25, cost_seconds=0.01, metrics={"runs": runs})


class CrashObjective(_TestObjective):
    """A bug: raises an unexpected exception."""

    name = "t_crash"

    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        raise ZeroDivisionError("division by zero in user code")
