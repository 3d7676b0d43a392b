"""ScalingRules: the versioned rules file (JSON is the source of truth, YAML its twin).

A rules file says, for a study's scaling axes (model size N and tokens D, or a single
compute axis C):
- for each hyperparameter, a law for its optimum in the parameter's natural transformed
  space (``ln`` for log and log-integer parameters, ``logit``, ``log2`` for powers of two,
  identity for linear ones): ``T(x*) = a + b ln C`` and, where N and D are separable in
  the data, ``T(x*) = a + b ln N + c ln D``; a choice parameter gets its most frequent
  value along the compute-efficient set;
- the compute-optimal allocation ``N*(C)``, ``D*(C)`` and the loss frontier ``L*(C)``;
- the parametric ``L(N, D) = E + A/N^alpha + B/D^beta`` where the axes allow;
- when N is a metric rather than a parameter, the size map ``ln N`` in the shape
  parameters (``search.scaling.size_map``), so a prediction at N* sets width and depth.

Every part carries its uncertainty (bootstrap) and, when the data could not support it,
``supported: false`` (or a null law) with the reason. ``predict`` turns the rules into
a full configuration at a target scale with an interval per value. Loading a file needs
only this package (pydantic + pyyaml), so a training script can read it directly;
writing and reading the file is the one piece of I/O in ``search``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from search.errors import InvalidParamsError
from search.scaling.allocation import LossFrontier
from search.scaling.backtest import Backtest
from search.scaling.chinchilla import ChinchillaFit
from search.scaling.failure_boundary import FailureBoundary
from search.scaling.laws import LinearLaw
from search.scaling.predict import predict_rules
from search.scaling.prediction import Interval, ParamPrediction, Prediction
from search.scaling.size_map import SizeMap
from search.scaling.transforms import compute_of, forward, inverse

# Re-exported: callers read the prediction models and transforms from here.
__all__ = [
    "SCHEMA_VERSION",
    "AllocationRules",
    "ChoiceSummary",
    "HyperparameterRule",
    "Interval",
    "ObservedRange",
    "ParamPrediction",
    "Prediction",
    "ScalingAxes",
    "ScalingRules",
    "compute_of",
    "forward",
    "inverse",
]

SCHEMA_VERSION: Final = 1
Kind = Literal["log", "linear", "logit", "int", "pow2", "choice"]
Transform = Literal["ln", "identity", "logit", "log2", "none"]


class ScalingAxes(BaseModel):
    """Which parameters or metrics measure model size N, tokens D, or compute C.

    Give ``n_params`` and ``tokens`` together (compute is then ``6 N D`` FLOPs unless
    ``compute`` names another axis), or ``compute`` alone for a study with no explicit
    N and D. A name is a parameter of the space or a metric the objective reports;
    ``"cost"`` names each observation's cost when no parameter or metric has that name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_params: str | None = Field(None, min_length=1)
    tokens: str | None = Field(None, min_length=1)
    compute: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check_axes(self) -> ScalingAxes:
        if (self.n_params is None) != (self.tokens is None):
            raise ValueError(
                "give n_params and tokens together (model size and training tokens), "
                "or neither and a compute axis"
            )
        if self.n_params is None and self.compute is None:
            raise ValueError("declare n_params and tokens, or a compute axis")
        names = [n for n in (self.n_params, self.tokens, self.compute) if n is not None]
        if len(set(names)) != len(names):
            raise ValueError(f"scaling axes must name different quantities, got {names}")
        return self

    @property
    def has_size_and_tokens(self) -> bool:
        return self.n_params is not None

    @property
    def names(self) -> list[str]:
        return [n for n in (self.n_params, self.tokens, self.compute) if n is not None]


class ChoiceSummary(BaseModel):
    """A choice parameter along the efficient set: its most frequent value and counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: str | int | float | bool
    frequency: float
    counts: list[tuple[str | int | float | bool, int]]


class HyperparameterRule(BaseModel):
    """How one hyperparameter's optimum scales; ``reason`` says why when unsupported.

    ``limit_min``/``limit_max`` are the parameter's declared limits in the space (a
    prediction never leaves them); ``observed_low``/``observed_high`` the range of its
    values over the near-best runs, reported with ``fallback`` when there is no law.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Kind
    transform: Transform
    multiple_of: int = 1
    supported: bool
    reason: str | None = None
    note: str | None = None
    fallback: str | int | float | bool
    limit_min: float | None = None
    limit_max: float | None = None
    observed_low: float | None = None
    observed_high: float | None = None
    vs_compute: LinearLaw | None = None
    vs_size_tokens: LinearLaw | None = None
    size_tokens_reason: str | None = None
    choice: ChoiceSummary | None = None


class AllocationRules(BaseModel):
    """``N*(C)`` and ``D*(C)`` as laws ``ln X* = ln G + a ln C`` (null with a reason);
    ``note`` says when they were fitted through the efficient runs instead of the
    surface's optima, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_params: LinearLaw | None = None
    n_params_reason: str | None = None
    tokens: LinearLaw | None = None
    tokens_reason: str | None = None
    note: str | None = None


class ObservedRange(BaseModel):
    """What the rules were learned from, so a prediction can say how far it reaches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_observations: int
    n_front: int
    n_efficient: int
    noise_sd: float
    compute_unit: str
    compute_min: float
    compute_max: float
    n_params_min: float | None = None
    n_params_max: float | None = None
    tokens_min: float | None = None
    tokens_max: float | None = None
    n_cells: int | None = None


class ScalingRules(BaseModel):
    """The rules learned from one study; see the module docstring and docs/scaling-rules.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    axes: ScalingAxes
    optima_from: Literal["surface", "cells"] = "surface"
    level: float = Field(gt=0.0, lt=1.0)
    observed: ObservedRange
    hyperparameters: list[HyperparameterRule]
    allocation: AllocationRules | None = None
    loss_frontier: LossFrontier | None = None
    loss_frontier_reason: str | None = None
    loss_frontier_backtest: Backtest | None = None
    loss_frontier_backtest_reason: str | None = None
    parametric: ChinchillaFit | None = None
    parametric_reason: str | None = None
    # Each loss law refitted below the top of the compute range, scored above it
    # (search.scaling.backtest); the loss interval beyond the data reaches as far as
    # its bias carries the estimate.
    parametric_backtest: Backtest | None = None
    parametric_backtest_reason: str | None = None
    size_map: SizeMap | None = None
    size_map_reason: str | None = None
    # Where the study's runs fail (search.scaling.failure_boundary): a prediction past it
    # is held on the safe side.
    failure_boundary: FailureBoundary | None = None
    failure_boundary_reason: str | None = None

    def rule(self, name: str) -> HyperparameterRule:
        for rule in self.hyperparameters:
            if rule.name == name:
                return rule
        raise KeyError(f"no rule for {name!r}; rules exist for {self.names}")

    @property
    def names(self) -> list[str]:
        return [rule.name for rule in self.hyperparameters]

    # -- predict --------------------------------------------------------------------------

    def predict(
        self,
        *,
        compute: float | None = None,
        n_params: float | None = None,
        tokens: float | None = None,
    ) -> Prediction:
        """The recommended configuration at ``compute`` or at ``(n_params, tokens)``.

        With ``compute`` only, N and D come from the compute-optimal allocation (when the
        axes have them). Intervals come from each law's bootstrap and widen with the
        distance from the observed range; ``extrapolation_decades`` says how far
        beyond the largest observed compute the target lies.
        """
        return predict_rules(self, compute=compute, n_params=n_params, tokens=tokens)

    # -- file format ----------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the rules as ``.json`` or ``.yaml``/``.yml``, chosen by the suffix."""
        path = Path(path)
        text = {".json": self.to_json, ".yaml": self.to_yaml, ".yml": self.to_yaml}
        if path.suffix not in text:
            raise InvalidParamsError(f"save rules as .json or .yaml, not {path.suffix!r}")
        path.write_text(text[path.suffix]())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScalingRules:
        """Read a rules file written by ``save`` (JSON or YAML, by suffix)."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(path.read_text())
        elif path.suffix == ".json":
            return cls.model_validate_json(path.read_text())
        else:
            raise InvalidParamsError(f"rules files are .json or .yaml, not {path.suffix!r}")
        return cls.model_validate(data)

    @model_validator(mode="before")
    @classmethod
    def _check_version(cls, data: Any) -> Any:
        version = data.get("schema_version", SCHEMA_VERSION) if isinstance(data, dict) else None
        if version is not None and version != SCHEMA_VERSION:
            raise ValueError(
                f"rules file schema_version {version} is not supported by this scaletune "
                f"(it reads version {SCHEMA_VERSION}); refit the rules or upgrade scaletune"
            )
        return data
