"""Search spaces: parameter specs and the map to the engine's internal space.

A parameter's value ``v`` lives in the user's space (``params``); the engine works on
``x_internal``, one float per internal dimension:

    x = (T(v) - T(center)) / scale

with ``T`` = ln (log, int with ``log=True``), identity (linear, int with ``log=False``),
logit (probabilities) or log2 (powers of two). The center maps to 0 and one unit is one
``scale``, so a step of the same size means the same relative change for every parameter,
and the engine's search radius is in these units. Categorical parameters are one-hot
blocks (``len(choices)`` dims, each in [0, 1]; the argmax is the choice).

The internal space is unbounded, as in CARBS's "basic" space (Fetterman et al. 2023,
arXiv 2306.08055): scaling up moves the best learning rate, batch size and width by
amounts nobody knows in advance, so the search must be free to walk past any box a
practitioner would draw. ``min``/``max`` are optional hard limits (memory, stability);
``from_internal`` snaps any internal vector, however far out, onto the feasible set by
clipping to the limits, rounding ints to their ``multiple_of`` grid, powers of two to the
nearest power (in log2) and choices to the argmax of their block.

Representable range: so that every round trip is exact in float64, values must be finite
and lie within ``LINEAR_LIMIT`` (linear), [``LOG_MIN``, ``LOG_MAX``] (log), [``LOG_MIN``,
1) (logit), ``INT_LIMIT`` and ``INT_GRID_LIMIT`` grid steps (ints), 2^0..2^``POW2_MAX_EXPONENT``
(powers of two); scales lie in [``SCALE_MIN``, ``SCALE_MAX``]. Unbounded parameters are
snapped into this range.

Round trip: ``from_internal(to_internal(p)) == p`` for every valid ``p``: ints, powers of
two and choices exactly; floats within 1e-12 relative. For linear parameters the error is
relative to ``max(|v|, |center|)``, since ``v - center`` cancels digits of a small ``v``,
plus ``1e-300 * scale`` where a tiny ``(v - center) / scale`` underflows.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from search.errors import InvalidParamsError, InvalidSpaceError

__all__ = [
    "INT_GRID_LIMIT",
    "INT_LIMIT",
    "LINEAR_LIMIT",
    "LOG_MAX",
    "LOG_MIN",
    "POW2_MAX_EXPONENT",
    "SCALE_MAX",
    "SCALE_MIN",
    "ChoiceParam",
    "IntParam",
    "LinearParam",
    "LogParam",
    "LogitParam",
    "Param",
    "Pow2Param",
    "SearchSpace",
]

LINEAR_LIMIT = 1e150
LOG_MIN, LOG_MAX = 1e-300, 1e300
LOGIT_MAX = float(np.nextafter(1.0, 0.0))  # the largest float below 1
INT_LIMIT = 10**15  # below 2**53, and rounding error stays far under half a grid step
INT_GRID_LIMIT = 10**12  # at most this many multiple_of steps from 0
POW2_MAX_EXPONENT = 62  # 2**62 still fits an int64
SCALE_MIN, SCALE_MAX = 1e-150, 1e150


def _is_number(value: Any) -> bool:
    """Python ints and floats (after ``_plain``); bools are not numbers here."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (np.float32 vs 1e300 would overflow in comparisons)."""
    return value.item() if isinstance(value, np.generic) else value


def _show(value: Any) -> str:
    """repr() for messages, cut short (a 400-digit int is not worth printing)."""
    text = repr(_plain(value))
    return text if len(text) <= 40 else text[:37] + "..."


def _as_spec_float(value: Any) -> Any:
    value = _plain(value)
    if value is None:
        return None
    if not _is_number(value):
        raise ValueError(f"expected a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:  # a Python int beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {_show(value)}")
    return number


def _as_spec_int(value: Any) -> Any:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if _is_number(value) and float(value).is_integer():  # 256.0 is 256; inf and nan are not
        return int(value)
    raise ValueError(f"expected an integer, got {_show(value)}")


SpecFloat = Annotated[float, BeforeValidator(_as_spec_float)]
SpecInt = Annotated[int, BeforeValidator(_as_spec_int)]
ChoiceValue = bool | int | float | str


def _error_lines(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(part) for part in err["loc"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


class _ParamValueError(Exception):
    """One parameter's value is invalid; SearchSpace adds the name and collects them."""


@contextmanager
def _spec_errors() -> Iterator[None]:
    """pydantic's ValidationError as the ``InvalidSpaceError`` the package promises."""
    try:
        yield
    except ValidationError as exc:
        raise InvalidSpaceError(_error_lines(exc)) from None


class _SpecModel(BaseModel):
    """A spec built directly (``Cls(...)``, ``Cls.model_validate[_json](...)``) raises
    ``InvalidSpaceError``, a ValueError. Nested in another model (a study spec), its
    errors are part of that model's ValidationError, located by field as usual."""

    def __init__(self, /, **data: Any) -> None:
        with _spec_errors():
            super().__init__(**data)

    # Only validates, as BaseModel's does: pydantic's marker (RootModel sets it too) keeps
    # nested validation from calling it, so a study spec's errors stay ValidationErrors.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        with _spec_errors():
            return super().model_validate(obj, *args, **kwargs)

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        with _spec_errors():
            return super().model_validate_json(json_data, *args, **kwargs)


class _ParamBase(_SpecModel):
    """Fields and checks every kind shares; the subclasses implement the transforms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    name: str

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_parameter(cls, data: Any, handler: Any) -> Any:
        """Prefix every spec error with the parameter's name, so a user knows which to fix."""
        try:
            param = handler(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, Mapping) else getattr(data, "name", None)
            raise ValueError(f"parameter {name!r}: {_error_lines(exc)}") from None
        try:
            param._validate_spec()
        except ValueError as exc:
            raise ValueError(f"parameter {param.name!r}: {exc}") from None
        return param

    def _validate_spec(self) -> None:
        """Checks across fields; subclasses extend it. Raises ValueError saying what to fix."""
        if not self.name.strip():
            raise ValueError("name must be a non-empty string")

    @property
    def n_dims(self) -> int:
        """Number of internal dimensions this parameter occupies."""
        return 1

    def _project(self, x_block: np.ndarray) -> np.ndarray:
        """(n, n_dims) -> (n, n_dims): the internal coordinates of the snapped values."""
        return self._encode(self._decode(x_block))

    def _encode(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, x_block: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _ScalarParam(_ParamBase):
    """A one-dimensional parameter with x = (T(v) - T(center)) / scale and optional limits.

    Subclasses set ``_transform`` / ``_inverse`` and ``_limits()``, the representable
    value range before the user's min/max.
    """

    scale: SpecFloat = 1.0
    if TYPE_CHECKING:  # each kind declares them, as floats or as ints
        center: float
        min: float | None
        max: float | None

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return values

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return y

    def _limits(self) -> tuple[float, float]:
        raise NotImplementedError

    def _value_bounds(self) -> tuple[float, float]:
        """The feasible value range: the user's min/max within the representable range."""
        lo, hi = self._limits()
        lo = lo if self.min is None else max(lo, self.min)
        hi = hi if self.max is None else min(hi, self.max)
        return lo, hi

    def _to_x(self, values: Any) -> np.ndarray:
        t_center = self._transform(np.asarray(self.center, dtype=np.float64))
        return (self._transform(np.asarray(values, dtype=np.float64)) - t_center) / self.scale

    def _from_x(self, x: np.ndarray, x_lo: float, x_hi: float) -> np.ndarray:
        """Inverse map after clipping x to [x_lo, x_hi] (keeps every step finite)."""
        t_center = self._transform(np.asarray(self.center, dtype=np.float64))
        return self._inverse(np.clip(x, x_lo, x_hi) * self.scale + t_center)

    def _encode(self, values: np.ndarray) -> np.ndarray:
        return self._to_x(values)[:, None]

    def _internal_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = -np.inf if self.min is None else float(self._to_x(self.min))
        hi = np.inf if self.max is None else float(self._to_x(self.max))
        return np.array([lo]), np.array([hi])

    def _domain(self) -> str:
        """The representable range in words, for error messages."""
        raise NotImplementedError

    def _range_problem(self, value: float) -> str | None:
        """Why ``value`` is outside the representable range or min/max, or None."""
        lo, hi = self._limits()
        if not lo <= value <= hi:  # also catches nan
            return f"{_show(value)} is outside {self._domain()}"
        if self.min is not None and value < self.min:
            return f"{_show(value)} is below min={self.min!r}"
        if self.max is not None and value > self.max:
            return f"{_show(value)} is above max={self.max!r}"
        return None

    def _check_spec(self) -> None:
        """Shared spec checks: scale range, every number representable, min < max, center inside."""
        if not SCALE_MIN <= self.scale <= SCALE_MAX:
            raise ValueError(f"scale must be in [{SCALE_MIN:g}, {SCALE_MAX:g}], got {self.scale}")
        lo, hi = self._limits()
        for field in ("center", "min", "max"):
            value = getattr(self, field)
            if value is not None and not lo <= value <= hi:
                raise ValueError(f"{field} {value!r} is outside {self._domain()}")
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be < max ({self.max})")
        if self.min is not None and self.center < self.min:
            raise ValueError(f"center {self.center} is below min {self.min}")
        if self.max is not None and self.center > self.max:
            raise ValueError(f"center {self.center} is above max {self.max}")


class _FloatParam(_ScalarParam):
    """Float kinds: values are clipped to their bounds, never rounded."""

    center: SpecFloat
    min: SpecFloat | None = None
    max: SpecFloat | None = None

    def _validate_spec(self) -> None:
        super()._validate_spec()
        self._check_spec()

    def _x_limits(self) -> tuple[float, float]:
        lo, hi = self._value_bounds()
        return float(self._to_x(lo)), float(self._to_x(hi))

    def _decode(self, x_block: np.ndarray) -> np.ndarray:
        lo, hi = self._value_bounds()
        return np.clip(self._from_x(x_block[:, 0], *self._x_limits()), lo, hi)

    def _project(self, x_block: np.ndarray) -> np.ndarray:
        # Clipping is what the round trip does, without its float rounding: exactly idempotent.
        return np.clip(x_block, *self._x_limits())

    def _check(self, value: Any) -> float:
        if not _is_number(value):
            raise _ParamValueError(
                f"expected a number, got {_show(value)} ({type(value).__name__})"
            )
        problem = self._range_problem(value)  # Python compares ints with floats exactly
        if problem:
            raise _ParamValueError(problem)
        return float(value)


class LogParam(_FloatParam):
    """A positive float searched in log space (learning rate, weight decay); scale in ln units."""

    kind: Literal["log"] = "log"

    def _domain(self) -> str:
        return f"the log range [{LOG_MIN:g}, {LOG_MAX:g}] (values in a log space must be > 0)"

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return np.log(values)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return np.exp(y)

    def _limits(self) -> tuple[float, float]:
        return LOG_MIN, LOG_MAX


class LinearParam(_FloatParam):
    """A float searched on a linear scale (dropout-free mixes, ratios, offsets)."""

    kind: Literal["linear"] = "linear"

    def _domain(self) -> str:
        return f"the representable range [-{LINEAR_LIMIT:g}, {LINEAR_LIMIT:g}]"

    def _limits(self) -> tuple[float, float]:
        return -LINEAR_LIMIT, LINEAR_LIMIT


class LogitParam(_FloatParam):
    """A probability in (0, 1) searched in logit space (Adam betas, EMA decay, dropout)."""

    kind: Literal["logit"] = "logit"

    def _domain(self) -> str:
        return f"the logit range [{LOG_MIN:g}, 1) (values in a logit space must be in (0, 1))"

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) - np.log1p(-values)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        # Stable sigmoid: never exp of a large positive number.
        z = np.exp(-np.abs(y))
        return np.where(y >= 0, 1.0 / (1.0 + z), z / (1.0 + z))

    def _limits(self) -> tuple[float, float]:
        return LOG_MIN, LOGIT_MAX


class _GridParam(_ScalarParam):
    """Integer kinds: values are snapped to a grid of integers, then to its bounded part."""

    center: SpecInt
    min: SpecInt | None = None
    max: SpecInt | None = None

    def _value_bounds(self) -> tuple[int, int]:
        lo, hi = super()._value_bounds()
        return int(lo), int(hi)

    def _grid_bounds(self) -> tuple[int, int]:
        raise NotImplementedError

    def _check(self, value: Any) -> int:
        try:
            value = _as_spec_int(value)
        except ValueError as exc:
            raise _ParamValueError(f"{exc} ({type(value).__name__})") from None
        problem = self._range_problem(value)
        if problem:
            raise _ParamValueError(problem)
        self._check_grid(value)
        return value

    def _check_grid(self, value: int) -> None:
        raise NotImplementedError


class IntParam(_GridParam):
    """An integer on a ``multiple_of`` grid (hidden sizes, steps), in log space by default.

    ``scale`` is in ln units when ``log`` is true, in value units otherwise.
    """

    kind: Literal["int"] = "int"
    log: bool = True
    multiple_of: SpecInt = 1

    def _validate_spec(self) -> None:
        super()._validate_spec()
        if not 1 <= self.multiple_of <= INT_LIMIT:
            raise ValueError(f"multiple_of must be in [1, {INT_LIMIT}], got {self.multiple_of}")
        self._check_spec()
        if self.center % self.multiple_of:
            raise ValueError(
                f"center {self.center} is not a multiple of multiple_of={self.multiple_of}; "
                f"use {_nearest_multiples(self.center, self.multiple_of)}"
            )

    def _domain(self) -> str:
        lo, hi = self._limits()
        if self.log:
            return f"the log int range [{lo}, {hi}] (values in a log space must be > 0)"
        return f"the representable int range [{lo}, {hi}] (at most {INT_GRID_LIMIT:.0e} steps)"

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.log else values

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return np.exp(y) if self.log else y

    def _limits(self) -> tuple[int, int]:
        limit = min(INT_LIMIT, INT_GRID_LIMIT * self.multiple_of)
        return (1 if self.log else -limit), limit

    def _grid_bounds(self) -> tuple[int, int]:
        """First and last grid index (value / multiple_of) inside the bounds."""
        lo, hi = self._value_bounds()
        return -(-lo // self.multiple_of), hi // self.multiple_of

    def _decode(self, x_block: np.ndarray) -> np.ndarray:
        k_lo, k_hi = self._grid_bounds()
        m = self.multiple_of
        x_lo, x_hi = (float(self._to_x(k * m)) for k in (k_lo, k_hi))
        values = self._from_x(x_block[:, 0], x_lo, x_hi)
        return np.clip(np.rint(values / m), k_lo, k_hi).astype(np.int64) * m

    def _check_grid(self, value: int) -> None:
        if value % self.multiple_of:
            raise _ParamValueError(
                f"{value} is not a multiple of {self.multiple_of}; "
                f"use {_nearest_multiples(value, self.multiple_of)}"
            )


class Pow2Param(_GridParam):
    """A power of two 2^k, k >= 0 (batch sizes, widths); scale in log2 units (doublings)."""

    kind: Literal["pow2"] = "pow2"

    def _validate_spec(self) -> None:
        super()._validate_spec()
        self._check_spec()
        for field in ("center", "min", "max"):
            value = getattr(self, field)
            if value is not None and not _is_pow2(value):
                raise ValueError(
                    f"{field} {value} is not a power of two; use {_nearest_pow2(value)}"
                )

    def _domain(self) -> str:
        return f"the powers of two [1, 2^{POW2_MAX_EXPONENT}]"

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return np.log2(values)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return y  # decoding stays in log2 units: the exponent is what gets rounded

    def _limits(self) -> tuple[int, int]:
        return 1, 2**POW2_MAX_EXPONENT

    def _grid_bounds(self) -> tuple[int, int]:
        """Smallest and largest exponent inside the bounds."""
        lo, hi = self._value_bounds()
        return lo.bit_length() - 1, hi.bit_length() - 1

    def _decode(self, x_block: np.ndarray) -> np.ndarray:
        k_lo, k_hi = self._grid_bounds()
        x_lo, x_hi = (float(self._to_x(2**k)) for k in (k_lo, k_hi))
        exponents = np.clip(np.rint(self._from_x(x_block[:, 0], x_lo, x_hi)), k_lo, k_hi)
        return np.left_shift(np.int64(1), exponents.astype(np.int64))

    def _check_grid(self, value: int) -> None:
        if not _is_pow2(value):
            raise _ParamValueError(f"{value} is not a power of two; use {_nearest_pow2(value)}")


def _nearest_multiples(value: int, multiple_of: int) -> str:
    below = value // multiple_of * multiple_of
    return f"{below} or {below + multiple_of}"


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _nearest_pow2(value: int) -> str:
    if value < 1:
        return "1"
    below = 1 << (value.bit_length() - 1)
    return f"{below} or {2 * below}"


def _choice_key(value: Any) -> tuple[str, Any] | None:
    """Equality key for choices: bools and strings match only themselves, numbers by value."""
    value = _plain(value)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, int | float):
        return ("num", value)  # 1 == 1.0 and hash(1) == hash(1.0): one key
    return None


class ChoiceParam(_ParamBase):
    """A categorical parameter: one-hot in the internal space, argmax on the way back."""

    kind: Literal["choice"] = "choice"
    choices: list[ChoiceValue]
    center: ChoiceValue

    _index: dict[tuple[str, Any] | None, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_center(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "center" in data or "choices" not in data:
            return data
        if not data["choices"]:
            raise ValueError("choices must not be empty")
        return {**data, "center": data["choices"][0]}

    def _validate_spec(self) -> None:
        super()._validate_spec()
        if not self.choices:
            raise ValueError("choices must not be empty")
        for choice in self.choices:
            if isinstance(choice, float) and not math.isfinite(choice):
                raise ValueError(f"choices must be finite, got {choice}")
        keys = [_choice_key(choice) for choice in self.choices]
        if len(set(keys)) != len(keys):
            raise ValueError(f"choices must be unique (1 and 1.0 count as equal): {self.choices}")
        if _choice_key(self.center) not in keys:
            raise ValueError(f"center {self.center!r} is not one of the choices {self.choices}")

    def model_post_init(self, context: Any) -> None:
        self._index = {_choice_key(choice): i for i, choice in enumerate(self.choices)}

    @property
    def n_dims(self) -> int:
        return len(self.choices)

    def _internal_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n_dims), np.ones(self.n_dims)

    def _encode(self, indices: np.ndarray) -> np.ndarray:
        return np.eye(self.n_dims)[np.asarray(indices, dtype=np.int64)]

    def _decode(self, x_block: np.ndarray) -> np.ndarray:
        return np.argmax(x_block, axis=1)

    def _check(self, value: Any) -> Any:
        index = self._index.get(_choice_key(value))
        if index is None:
            raise _ParamValueError(f"{_show(value)} is not one of the choices {self.choices}")
        return self.choices[index]


Param = Annotated[
    LogParam | LinearParam | LogitParam | IntParam | Pow2Param | ChoiceParam,
    Field(discriminator="kind"),
]
_KINDS = ("log", "linear", "logit", "int", "pow2", "choice")


class SearchSpace(_SpecModel):
    """An ordered list of parameters and the map between ``params`` dicts and ``x_internal``.

    Internal vectors are float64, ``(dim,)`` for one configuration or ``(n, dim)`` for many;
    parameters occupy consecutive dims in the order of ``params``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    params: list[Param]

    _slices: list[slice] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _check_kinds(cls, data: Any) -> Any:
        """Name the parameter whose ``kind`` is missing or unknown (pydantic would not)."""
        raw = data.get("params") if isinstance(data, Mapping) else None
        for i, spec in enumerate(raw if isinstance(raw, list | tuple) else ()):
            if isinstance(spec, Mapping) and spec.get("kind") not in _KINDS:
                raise ValueError(
                    f"parameter {spec.get('name', i)!r}: kind must be one of {list(_KINDS)}, "
                    f"got {spec.get('kind')!r}"
                )
        return data

    @model_validator(mode="after")
    def _check_names(self) -> SearchSpace:
        if not self.params:
            raise ValueError("a search space needs at least one parameter")
        seen: set[str] = set()
        for param in self.params:
            if param.name in seen:
                raise ValueError(f"parameter {param.name!r} is defined twice; names must be unique")
            seen.add(param.name)
        return self

    def model_post_init(self, context: Any) -> None:
        start = 0
        for param in self.params:
            self._slices.append(slice(start, start + param.n_dims))
            start += param.n_dims

    # -- layout ---------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [param.name for param in self.params]

    @property
    def dim(self) -> int:
        """Internal dimension: one per parameter, ``len(choices)`` per choice parameter."""
        return self._slices[-1].stop

    @property
    def continuous_mask(self) -> np.ndarray:
        """Bool ``(dim,)``: False on one-hot dims, True elsewhere (ints and pow2 included)."""
        mask = np.ones(self.dim, dtype=bool)
        for block in self.choice_blocks:
            mask[block] = False
        return mask

    @property
    def choice_blocks(self) -> list[slice]:
        """The one-hot block of each choice parameter, in order."""
        return [
            block
            for param, block in zip(self.params, self._slices, strict=True)
            if isinstance(param, ChoiceParam)
        ]

    def internal_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ``(dim,)`` bounds: the image of min/max, +-inf where unbounded,
        [0, 1] on one-hot dims."""
        bounds = [param._internal_bounds() for param in self.params]
        return np.concatenate([lo for lo, _ in bounds]), np.concatenate([hi for _, hi in bounds])

    # -- params ---------------------------------------------------------------------------

    def center(self) -> dict[str, Any]:
        """The center configuration (maps to the internal origin, one-hot for choices)."""
        return {param.name: param.center for param in self.params}

    def validate_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A normalised copy of ``params`` in this space's order, or InvalidParamsError.

        Normalised: floats as float, ints and powers of two as int (256.0 -> 256), choices
        as the stored choice. Every problem is reported at once.
        """
        _require_mapping(params)
        problems = _name_problems(self.names, params)
        normalised: dict[str, Any] = {}
        for param in self.params:
            if param.name not in params:
                continue
            try:
                normalised[param.name] = param._check(_plain(params[param.name]))
            except _ParamValueError as exc:
                problems.append(f"{param.name!r} ({param.kind}): {exc}")
        if problems:
            raise InvalidParamsError("invalid params: " + "; ".join(problems))
        return normalised

    def with_center(self, params: Mapping[str, Any]) -> SearchSpace:
        """The same space with new centers (warm starts); names not given keep their center."""
        _require_mapping(params)
        unknown = [name for name in params if name not in self.names]
        if unknown:
            raise InvalidParamsError(f"unknown parameter(s) {unknown}; the space has {self.names}")
        full = self.validate_params({**self.center(), **params})
        specs = [param.model_dump() | {"center": full[param.name]} for param in self.params]
        return SearchSpace.model_validate({"params": specs})

    # -- transforms -----------------------------------------------------------------------

    def to_internal(self, params: Mapping[str, Any]) -> np.ndarray:
        """Validate ``params`` and map them to ``x_internal`` of shape ``(dim,)``."""
        return self.to_internal_many([params])[0]

    def to_internal_many(self, params_list: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validate each configuration and map them to ``(n, dim)`` internal coordinates."""
        rows = [self.validate_params(params) for params in params_list]
        x_internal = np.empty((len(rows), self.dim))
        for param, block in zip(self.params, self._slices, strict=True):
            column = [row[param.name] for row in rows]
            if isinstance(param, ChoiceParam):
                column = [param._index[_choice_key(value)] for value in column]
            x_internal[:, block] = param._encode(np.asarray(column).reshape(len(rows)))
        return x_internal

    def from_internal(self, x_internal: np.ndarray) -> dict[str, Any]:
        """Snap ``(dim,)`` internal coordinates onto the feasible set and return the params."""
        x = self._check_x(x_internal, ndim=1)
        return self.from_internal_many(x[None, :])[0]

    def from_internal_many(self, x_internal: np.ndarray) -> list[dict[str, Any]]:
        """Snap ``(n, dim)`` internal coordinates; one params dict per row (Python types)."""
        x = self._check_x(x_internal, ndim=2)
        columns = []
        for param, block in zip(self.params, self._slices, strict=True):
            decoded = param._decode(x[:, block]).tolist()  # tolist(): Python int/float
            if isinstance(param, ChoiceParam):
                decoded = [param.choices[i] for i in decoded]
            columns.append(decoded)
        names = self.names
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

    def project_internal(self, x_internal: np.ndarray) -> np.ndarray:
        """``to_internal(from_internal(x))`` for ``(dim,)`` or ``(n, dim)`` x, vectorised.

        Float dims are clipped to their feasible range rather than round-tripped, which is
        the same up to float rounding and makes the projection exactly idempotent.
        """
        x = np.asarray(x_internal, dtype=np.float64)
        x2 = self._check_x(x, ndim=x.ndim if x.ndim in (1, 2) else 2).reshape(-1, self.dim)
        projected = np.empty_like(x2)
        for param, block in zip(self.params, self._slices, strict=True):
            projected[:, block] = param._project(x2[:, block])
        return projected.reshape(x.shape)

    def _check_x(self, x_internal: np.ndarray, *, ndim: int) -> np.ndarray:
        x = np.asarray(x_internal, dtype=np.float64)
        if x.ndim != ndim or x.shape[-1] != self.dim:
            want = f"({self.dim},)" if ndim == 1 else f"(n, {self.dim})"
            raise InvalidParamsError(f"internal vector must have shape {want}, got {x.shape}")
        if np.isnan(x).any():
            raise InvalidParamsError("internal vector contains NaN; it has no place in the space")
        return x


def _require_mapping(params: Any) -> None:
    if not isinstance(params, Mapping):
        raise InvalidParamsError(
            f"params must be a mapping of name -> value, got {type(params).__name__}"
        )


def _name_problems(names: list[str], params: Mapping[str, Any]) -> list[str]:
    """Messages for unknown and missing names (with close matches, to catch typos)."""
    problems = []
    unknown = [key for key in params if key not in names]
    missing = [name for name in names if name not in params]
    for key in unknown:
        close = difflib.get_close_matches(str(key), missing or names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known names: {names}"
        problems.append(f"unknown parameter {key!r}{hint}")
    if missing:
        problems.append(f"missing value for {missing}; every parameter needs one")
    return problems
