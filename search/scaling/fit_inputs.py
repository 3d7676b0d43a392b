"""What one fit of scaling rules reads.

``read_table`` turns a study's successful observations into arrays (``RunTable``).
``FitInputs`` holds those runs with everything else that stays fixed for the whole fit
(the space, the axes, the size map's shape parameters and the fit's settings), so each
fitting step (``search.scaling.fitting``, ``search.scaling.hyperparameter_rules``)
takes it once and its signature names only what varies between its calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.errors import InvalidParamsError, NotEnoughDataError
from search.scaling.rules import ScalingAxes
from search.scaling.transforms import compute_of
from search.space import SearchSpace
from search.types import Observation


@dataclass(frozen=True)
class RunTable:
    """The successful observations as arrays: ``loss``, ``compute`` and, when the axes
    have them, ``n_params`` and ``tokens``, all ``(n,)``; ``params`` one dict per row."""

    loss: np.ndarray
    compute: np.ndarray
    n_params: np.ndarray | None
    tokens: np.ndarray | None
    params: list[dict[str, Any]]


@dataclass(frozen=True)
class FitInputs:
    """The study's runs (``table``), its ``space`` and ``axes``, the shape parameters of
    its size map (``shape``, empty without one), and the settings: ``seed``,
    ``n_bootstrap`` and ``level`` for every law's bootstrap, ``band_sigmas`` and
    ``min_band_fraction`` for the compute-efficient set."""

    table: RunTable
    space: SearchSpace
    axes: ScalingAxes
    shape: tuple[str, ...]
    seed: int
    n_bootstrap: int
    level: float
    band_sigmas: float
    min_band_fraction: float

    @property
    def hyperparameters(self) -> list[Any]:
        """The parameters whose optimum the surface or the cells estimate: not the axes,
        and not the shape parameters of a size map. Those set N, which the surface
        already has as an axis; as free hyperparameters beside it the surface would seek
        an optimum along directions the runs barely vary (the aspect ratio at a given N),
        extrapolate it, and count every run as far from its optimum."""
        names = self.axes.names
        return [p for p in self.space.params if p.name not in names and p.name not in self.shape]

    @property
    def compute_is_6nd(self) -> bool:
        """Whether compute is ``6 N D`` of the size and token axes (no compute axis): a
        designed sweep and the surface's iso-FLOP allocation need that."""
        return self.axes.has_size_and_tokens and self.axes.compute is None

    @property
    def bootstrap(self) -> dict[str, Any]:
        """``seed``, ``n_bootstrap`` and ``level`` as keywords of a law's fit."""
        return {"seed": self.seed, "n_bootstrap": self.n_bootstrap, "level": self.level}

    @property
    def band(self) -> dict[str, float]:
        """The keywords of ``search.scaling.efficient_set.efficient_set``'s band."""
        return {"band_sigmas": self.band_sigmas, "min_band_fraction": self.min_band_fraction}


def _axis_values(name: str, observations: Sequence[Observation], space_names: list[str]):
    if name in space_names:
        values = [obs.params[name] for obs in observations]
    elif all(name in obs.metrics for obs in observations):
        values = [obs.metrics[name] for obs in observations]
    elif name == "cost":
        values = [obs.cost for obs in observations]
    else:
        raise InvalidParamsError(
            f"scaling axis {name!r} is neither a parameter of the space ({space_names}) "
            "nor a metric every successful observation reports"
        )
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array) & (array > 0)):
        raise InvalidParamsError(f"scaling axis {name!r} must be finite and > 0 in every run")
    return array


def observation_compute(axes: ScalingAxes, observation: Observation) -> float:
    """One observation's compute: the compute axis, else ``6 N D`` FLOPs."""
    names = list(observation.params)
    if axes.compute is not None:
        return float(_axis_values(axes.compute, [observation], names)[0])
    assert axes.n_params is not None and axes.tokens is not None  # no compute axis: N and D
    n_params = _axis_values(axes.n_params, [observation], names)[0]
    return compute_of(float(n_params), float(_axis_values(axes.tokens, [observation], names)[0]))


def read_table(
    observations: Sequence[Observation], space: SearchSpace, axes: ScalingAxes
) -> RunTable:
    """The successful observations (not failed, finite positive loss) as a ``RunTable``.
    Raises NotEnoughDataError under two of them, InvalidParamsError for an axis they do
    not carry or that is not positive everywhere."""
    ok = [o for o in observations if not o.failed and math.isfinite(o.loss) and o.loss > 0]
    if len(ok) < 2:
        raise NotEnoughDataError(f"{len(ok)} successful observations; scaling rules need more")
    names = space.names
    n_params = tokens = None
    if axes.has_size_and_tokens:
        assert axes.n_params is not None and axes.tokens is not None
        n_params = _axis_values(axes.n_params, ok, names)
        tokens = _axis_values(axes.tokens, ok, names)
    if axes.compute is not None:
        compute = _axis_values(axes.compute, ok, names)
    else:
        assert n_params is not None and tokens is not None  # no compute axis: N and D
        compute = compute_of(n_params, tokens)
    loss = np.array([o.loss for o in ok])
    return RunTable(loss, compute, n_params, tokens, [dict(o.params) for o in ok])
