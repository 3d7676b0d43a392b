"""The ``objective_options`` each built-in objective takes, as models of their own.

They live apart from the objectives so that checking a study's options imports nothing
heavy: the service checks them when a study is created, in a process that never imports
torch (``workers.objectives.lm`` does). The objectives read their options through these
models too, so the check at creation and the worker agree.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LMOptions(BaseModel):
    """Options of the ``lm`` objective (see ``workers.objectives.lm``)."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(
        None, description="None: the standard-library corpus; or a text/.npy/.bin path"
    )
    compile: bool | None = Field(None, description="torch.compile; None: on for CUDA")
    eval_tokens: int = Field(32768, ge=1, description="validation tokens per evaluation")
    eval_points: int = Field(5, ge=1, description="evaluations; the last one is the loss")
    micro_batch_tokens: int | None = Field(
        32768, ge=1, description="gradient accumulation above this many tokens"
    )
    num_threads: int | None = Field(None, ge=1, description="torch threads on a CPU device")
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"


class TestbedOptions(BaseModel):
    """Options of the ``testbed`` objective: ``config`` replaces ``TestbedConfig`` fields."""

    __test__ = False
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(None, description="TestbedConfig fields to replace")

    @field_validator("config")
    @classmethod
    def _a_valid_world(cls, config: dict[str, Any] | None) -> dict[str, Any] | None:
        from workers.objectives.testbed import TestbedConfig

        if config is not None:
            try:
                TestbedConfig.from_dict(config)
            except (ValueError, TypeError) as exc:  # TestbedError is a ValueError
                raise ValueError(str(exc)) from exc
        return config
