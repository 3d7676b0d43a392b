"""Optuna distributions -> the engine's search space (for ``integrations.optuna.sampler``).

See ``integrations.optuna.sampler`` for the mapping table. Each parameter gets a ``Codec``
that turns its values from Optuna's terms into the engine's and back (identity for most
kinds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search.errors import InvalidParamsError, InvalidSpaceError
from search.space import (
    ChoiceParam,
    IntParam,
    LinearParam,
    LogitParam,
    LogParam,
    Param,
    Pow2Param,
    SearchSpace,
)

__all__ = ["HALF_BOX_IN_SCALES", "Codec", "space_from_distributions"]

# The box [low, high] spans twice this many scales (ln units for log kinds), so the
# engine's default radii (1 to 3 scales) cover a box of any width.
HALF_BOX_IN_SCALES = 2.0


@dataclass(frozen=True)
class Codec:
    """Values of one parameter between Optuna's terms and the engine's.

    ``offset`` shifts ints onto the engine's ``multiple_of`` grid; ``step`` (stepped
    floats) makes the engine value a grid index; ``choices`` (index categoricals) makes
    it a position in the choices.
    """

    offset: float = 0
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def to_engine(self, value: Any) -> Any:
        if self.choices is not None:
            return self.choices.index(value)
        if self.step is not None:
            return round((value - self.offset) / self.step)
        if self.offset:
            return value - self.offset
        return value

    def to_optuna(self, value: Any) -> Any:
        if self.choices is not None:
            return self.choices[value]
        if self.step is not None:
            return float(self.offset + value * self.step)
        if self.offset:
            return value + self.offset
        return value


def space_from_distributions(
    distributions: Mapping[str, BaseDistribution],
    *,
    space: SearchSpace | None = None,
    center: Mapping[str, Any] | None = None,
) -> tuple[SearchSpace, dict[str, Codec]]:
    """The engine space for Optuna ``distributions`` and each parameter's value codec.

    Raises ``InvalidSpaceError`` when ``space`` names a parameter with a kind the
    distribution cannot hold, or a center does not fit.
    """
    given = {p.name: p for p in space.params} if space is not None else {}
    params: list[Param] = []
    codecs: dict[str, Codec] = {}
    for name, distribution in distributions.items():
        if name in given:
            params.append(_bounded_user_param(given[name], distribution))
            codecs[name] = Codec()
        else:
            param, codecs[name] = _derived_param(name, distribution)
            params.append(param)
    try:
        derived = SearchSpace(params=params)
        moved = {k: codecs[k].to_engine(v) for k, v in (center or {}).items() if k in codecs}
        return (derived.with_center(moved) if moved else derived), codecs
    except (ValueError, InvalidParamsError) as exc:
        raise InvalidSpaceError(f"cannot map the Optuna search space: {exc}") from None


def _derived_param(name: str, dist: BaseDistribution) -> tuple[Param, Codec]:
    if isinstance(dist, CategoricalDistribution):
        return _choice_param(name, dist)
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n_steps = round((dist.high - dist.low) / dist.step)
        grid = IntParam(
            name=name, log=False, center=n_steps // 2, min=0, max=n_steps, scale=_scale(n_steps)
        )
        return grid, Codec(offset=dist.low, step=dist.step)
    if isinstance(dist, FloatDistribution):
        if dist.log:
            mid = math.sqrt(dist.low * dist.high)
            span = math.log(dist.high / dist.low)
            return LogParam(
                name=name, center=mid, min=dist.low, max=dist.high, scale=_scale(span)
            ), Codec()
        mid = 0.5 * (dist.low + dist.high)
        return LinearParam(
            name=name, center=mid, min=dist.low, max=dist.high, scale=_scale(dist.high - dist.low)
        ), Codec()
    if isinstance(dist, IntDistribution):
        return _int_param(name, dist)
    raise InvalidSpaceError(f"parameter {name!r}: unsupported distribution {dist!r}")


def _int_param(name: str, dist: IntDistribution) -> tuple[Param, Codec]:
    if dist.log:
        mid = min(max(round(math.sqrt(dist.low * dist.high)), dist.low), dist.high)
        span = math.log(dist.high / dist.low)
        return IntParam(
            name=name, log=True, center=mid, min=dist.low, max=dist.high, scale=_scale(span)
        ), Codec()
    offset = dist.low % dist.step
    low, high = dist.low - offset, dist.high - offset
    mid = round((low + high) / 2 / dist.step) * dist.step
    param = IntParam(
        name=name,
        log=False,
        multiple_of=dist.step,
        center=mid,
        min=low,
        max=high,
        scale=_scale(high - low),
    )
    return param, Codec(offset=offset)


def _choice_param(name: str, dist: CategoricalDistribution) -> tuple[Param, Codec]:
    choices = list(dist.choices)
    try:
        return ChoiceParam(name=name, choices=choices, center=choices[0]), Codec()
    except ValueError:  # None, non-finite floats, 1 and True together...: use positions
        indices = list(range(len(choices)))
        return ChoiceParam(name=name, choices=indices, center=0), Codec(choices=tuple(choices))


def _scale(span: float) -> float:
    return span / (2.0 * HALF_BOX_IN_SCALES)


_FLOAT_KINDS = (LogParam, LinearParam, LogitParam)
_INT_KINDS = (IntParam, Pow2Param)


def _bounded_user_param(param: Param, dist: BaseDistribution) -> Param:
    """The user's parameter, checked against its distribution and limited to its box."""
    name = param.name
    if isinstance(dist, CategoricalDistribution):
        if not isinstance(param, ChoiceParam) or list(param.choices) != list(dist.choices):
            raise InvalidSpaceError(
                f"parameter {name!r}: a CategoricalDistribution needs a ChoiceParam with the "
                f"same choices {list(dist.choices)}"
            )
        return param
    float_ok = isinstance(dist, FloatDistribution) and dist.step is None
    if not (
        (float_ok and isinstance(param, _FLOAT_KINDS))
        or (isinstance(dist, IntDistribution) and isinstance(param, _INT_KINDS))
    ):
        raise InvalidSpaceError(
            f"parameter {name!r}: {type(param).__name__} cannot hold {dist!r}; floats take "
            "log/linear/logit params (stepped floats: leave them out of space=), ints take "
            "int/pow2 params"
        )
    assert isinstance(dist, FloatDistribution | IntDistribution)  # checked just above
    low = dist.low if param.min is None else max(param.min, dist.low)
    high = dist.high if param.max is None else min(param.max, dist.high)
    try:
        return type(param).model_validate(param.model_dump() | {"min": low, "max": high})
    except ValueError as exc:
        raise InvalidSpaceError(
            f"parameter {name!r} limited to the distribution's [{dist.low}, {dist.high}]: {exc}"
        ) from None
