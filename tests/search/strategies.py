"""Hypothesis strategies for search spaces: valid specs of every kind and valid values.

Values reach the ends of the representable ranges (``search.space`` constants) so the
round-trip properties are checked where float64 is tightest, not only at everyday sizes.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from search.space import (
    INT_GRID_LIMIT,
    INT_LIMIT,
    LINEAR_LIMIT,
    LOG_MAX,
    LOG_MIN,
    POW2_MAX_EXPONENT,
    SCALE_MAX,
    SCALE_MIN,
    ChoiceParam,
    IntParam,
    LinearParam,
    LogitParam,
    LogParam,
    Pow2Param,
    SearchSpace,
)

LOGIT_MAX = math.nextafter(1.0, 0.0)
_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats in [lo, hi] (0 < lo < hi), spread over magnitudes, with hypothesis's edge cases."""
    spread = st.floats(math.log(lo), math.log(hi)).map(lambda e: min(max(math.exp(e), lo), hi))
    return st.one_of(st.floats(lo, hi), spread)


def signed_spread(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats in [lo, hi] of any sign, spread over magnitudes."""
    magnitudes = st.floats(-300.0, math.log10(LINEAR_LIMIT)).map(lambda e: 10.0**e)
    spread = st.tuples(st.sampled_from([-1.0, 1.0]), magnitudes).map(
        lambda t: min(max(t[0] * t[1], lo), hi)
    )
    return st.one_of(st.floats(lo, hi), spread)


scales = st.one_of(st.just(1.0), log_uniform(1e-3, 1e3), log_uniform(SCALE_MIN, SCALE_MAX))


@st.composite
def log_params(draw: st.DrawFn, name: str = "p") -> LogParam:
    center = draw(log_uniform(LOG_MIN, LOG_MAX))
    minimum = draw(st.one_of(st.none(), log_uniform(LOG_MIN, center)))
    maximum = draw(st.one_of(st.none(), log_uniform(center, LOG_MAX)))
    minimum, maximum = _separate(minimum, maximum)
    return LogParam(name=name, center=center, scale=draw(scales), min=minimum, max=maximum)


@st.composite
def linear_params(draw: st.DrawFn, name: str = "p") -> LinearParam:
    center = draw(signed_spread(-LINEAR_LIMIT, LINEAR_LIMIT))
    minimum = draw(st.one_of(st.none(), signed_spread(-LINEAR_LIMIT, center)))
    maximum = draw(st.one_of(st.none(), signed_spread(center, LINEAR_LIMIT)))
    minimum, maximum = _separate(minimum, maximum)
    return LinearParam(name=name, center=center, scale=draw(scales), min=minimum, max=maximum)


@st.composite
def logit_params(draw: st.DrawFn, name: str = "p") -> LogitParam:
    near_one = st.floats(-16.0, -1e-3).map(lambda e: 1.0 - 10.0**e)
    center = draw(st.one_of(log_uniform(LOG_MIN, 0.5), near_one, st.just(LOGIT_MAX)))
    minimum = draw(st.one_of(st.none(), log_uniform(LOG_MIN, center)))
    maximum = draw(st.one_of(st.none(), st.floats(center, LOGIT_MAX)))
    minimum, maximum = _separate(minimum, maximum)
    return LogitParam(name=name, center=center, scale=draw(scales), min=minimum, max=maximum)


@st.composite
def int_params(draw: st.DrawFn, name: str = "p") -> IntParam:
    log = draw(st.booleans())
    multiple_of = draw(
        st.one_of(st.just(1), st.sampled_from([2, 8, 64, 1000]), st.integers(1, 10**6))
    )
    limit = min(INT_LIMIT, INT_GRID_LIMIT * multiple_of) // multiple_of  # in grid steps
    steps = st.integers(1 if log else -limit, limit)
    center = draw(steps) * multiple_of
    minimum = draw(st.one_of(st.none(), st.integers(1 if log else -limit * multiple_of, center)))
    maximum = draw(st.one_of(st.none(), st.integers(center, limit * multiple_of)))
    minimum, maximum = _separate(minimum, maximum)
    scale = draw(scales if log else st.one_of(scales, log_uniform(1.0, 1e9)))
    return IntParam(
        name=name, center=center, scale=scale, min=minimum, max=maximum,
        log=log, multiple_of=multiple_of,
    )  # fmt: skip


@st.composite
def pow2_params(draw: st.DrawFn, name: str = "p") -> Pow2Param:
    k = draw(st.integers(0, POW2_MAX_EXPONENT))
    k_min = draw(st.one_of(st.none(), st.integers(0, k)))
    k_max = draw(st.one_of(st.none(), st.integers(k, POW2_MAX_EXPONENT)))
    k_min, k_max = _separate(k_min, k_max)
    return Pow2Param(
        name=name, center=2**k, scale=draw(scales),
        min=None if k_min is None else 2**k_min, max=None if k_max is None else 2**k_max,
    )  # fmt: skip


choice_values = st.one_of(
    st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)  # fmt: skip


def choice_key(value: Any) -> tuple[str, Any]:
    """Choices are equal when their values are, except that bools and strings match only
    their own type (so 1 and 1.0 are the same choice, 1 and True are not)."""
    kind = "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "num"
    return (kind, value)


@st.composite
def choice_params(draw: st.DrawFn, name: str = "p") -> ChoiceParam:
    choices = draw(st.lists(choice_values, min_size=1, max_size=6, unique_by=choice_key))
    return ChoiceParam(name=name, choices=choices, center=draw(st.sampled_from(choices)))


KIND_STRATEGIES = {
    "log": log_params,
    "linear": linear_params,
    "logit": logit_params,
    "int": int_params,
    "pow2": pow2_params,
    "choice": choice_params,
}


def params_of_kind(kind: str, name: str = "p") -> st.SearchStrategy[Any]:
    return KIND_STRATEGIES[kind](name=name)


@st.composite
def spaces(draw: st.DrawFn, max_params: int = 6) -> SearchSpace:
    names = draw(st.lists(_NAMES, min_size=1, max_size=max_params, unique=True))
    kinds = draw(
        st.lists(st.sampled_from(sorted(KIND_STRATEGIES)), min_size=len(names), max_size=len(names))
    )
    return SearchSpace(
        params=[draw(params_of_kind(k, n)) for k, n in zip(kinds, names, strict=True)]
    )


def values_of(param: Any) -> st.SearchStrategy[Any]:
    """Valid values of one parameter, ends of its range included."""
    if isinstance(param, ChoiceParam):
        return st.sampled_from(param.choices)
    if isinstance(param, Pow2Param):
        lo = 0 if param.min is None else param.min.bit_length() - 1
        hi = POW2_MAX_EXPONENT if param.max is None else param.max.bit_length() - 1
        return st.integers(lo, hi).map(lambda k: 2**k)
    if isinstance(param, IntParam):
        m = param.multiple_of
        limit = min(INT_LIMIT, INT_GRID_LIMIT * m)
        lo = (1 if param.log else -limit) if param.min is None else param.min
        hi = limit if param.max is None else param.max
        return st.integers(-(-lo // m), hi // m).map(lambda k: k * m)
    limits = {
        "log": (LOG_MIN, LOG_MAX),
        "logit": (LOG_MIN, LOGIT_MAX),
        "linear": (-LINEAR_LIMIT, LINEAR_LIMIT),
    }[param.kind]
    lo = limits[0] if param.min is None else param.min
    hi = limits[1] if param.max is None else param.max
    ends = st.sampled_from([lo, hi, param.center])
    inside = signed_spread(lo, hi) if param.kind == "linear" else log_uniform(lo, hi)
    return st.one_of(ends, inside)


@st.composite
def space_and_params(draw: st.DrawFn) -> tuple[SearchSpace, dict[str, Any]]:
    space = draw(spaces())
    return space, {p.name: draw(values_of(p)) for p in space.params}


def _separate(lo: Any, hi: Any) -> tuple[Any, Any]:
    """Drop max when it equals min (a spec needs min < max)."""
    return (lo, None) if lo is not None and lo == hi else (lo, hi)
