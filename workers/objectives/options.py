"""What each built-in objective takes: its ``objective_options``, as a model of their own,
and the names of the parameters (``params``) it runs.

They live apart from the objectives so that checking a study imports nothing heavy: the
service checks them when a study is created, in a process that never imports torch
(``workers.objectives.lm`` does). The objectives read their options and parameter names
from here too, so the check at creation and the worker agree.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workers.objectives.testbed import METRIC_NAMES
from workers.objectives.testbed_truth import PARAM_NAMES, TestbedConfig

# What LMObjective reports on every trial (workers.objectives.lm imports torch).
LM_METRICS = (
    "n_params",
    "n_params_total",
    "tokens",
    "steps",
    "flops_per_token",
    "tokens_per_second",
    "mfu",
    "train_seconds",
    "device_name",
    # the trial's wall time, split (what is not training: bench/real_scaling's overheads)
    "wall_seconds",
    "data_seconds",
    "setup_seconds",
    "step_seconds",
    "eval_seconds",
)


class ObjectiveOptions(BaseModel):
    """An objective's options (fields) and the parameter names it takes (class variables).

    ``parameters``: every name a trial's params may hold (None: not declared, nothing is
    checked); ``required_parameters``: those it must hold; ``metrics``: the metrics every
    successful trial reports, which a study's scaling axes may name besides its
    parameters (None: not declared, axes are not checked).
    """

    model_config = ConfigDict(extra="forbid")

    parameters: ClassVar[frozenset[str] | None] = None
    required_parameters: ClassVar[frozenset[str]] = frozenset()
    metrics: ClassVar[frozenset[str] | None] = None


class LMOptions(ObjectiveOptions):
    """Options of the ``lm`` objective (see ``workers.objectives.lm``); every parameter is
    optional (``lm.DEFAULT_PARAMS``)."""

    parameters: ClassVar[frozenset[str] | None] = frozenset(
        {"d_model", "n_layers", "n_heads", "head_dim", "seq_len", "tokens", "batch_size"}
        | {"learning_rate", "warmup_fraction", "weight_decay", "schedule"}
    )
    metrics: ClassVar[frozenset[str] | None] = frozenset(LM_METRICS)

    data: str | None = Field(
        None, description="None: the standard-library corpus; or a text/.npy/.bin path"
    )
    compile: bool | None = Field(None, description="torch.compile; None: on for CUDA")
    eval_tokens: int = Field(32768, ge=1, description="validation tokens per evaluation")
    eval_points: int = Field(5, ge=1, description="evaluations; the last one is the loss")
    eval_at_start: bool = Field(
        True, description="also evaluate the untrained model; off saves one evaluation"
    )
    micro_batch_tokens: int | None = Field(
        32768, ge=1, description="gradient accumulation above this many tokens"
    )
    num_threads: int | None = Field(None, ge=1, description="torch threads on a CPU device")
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    cost_unit: Literal["seconds", "tflop"] = Field(
        "seconds",
        description="a trial's cost: its wall seconds, or its training FLOPs / 1e12 "
        "(independent of how busy the machine is)",
    )


class TestbedOptions(ObjectiveOptions):
    """Options of the ``testbed`` objective: ``config`` replaces ``TestbedConfig`` fields.
    A trial needs exactly its seven parameters."""

    __test__ = False
    parameters: ClassVar[frozenset[str] | None] = frozenset(PARAM_NAMES)
    required_parameters: ClassVar[frozenset[str]] = frozenset(PARAM_NAMES)
    metrics: ClassVar[frozenset[str] | None] = frozenset(METRIC_NAMES)

    config: dict[str, Any] | None = Field(None, description="TestbedConfig fields to replace")

    @field_validator("config")
    @classmethod
    def _a_valid_world(cls, config: dict[str, Any] | None) -> dict[str, Any] | None:
        if config is not None:
            try:
                TestbedConfig.from_dict(config)
            except (ValueError, TypeError) as exc:  # TestbedError is a ValueError
                raise ValueError(str(exc)) from exc
        return config
