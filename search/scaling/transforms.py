"""The spaces laws live in, and the small conversions shared by fitting and predicting.

A hyperparameter's law is linear in its natural transformed space: ``ln`` for log and
log-integer parameters, ``logit`` for probabilities, ``log2`` for powers of two, identity
for linear ones. Kept apart from the rules model and from ``predict`` so that neither
imports the other for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from search.scaling.chinchilla import FLOPS_PER_PARAM_TOKEN

_FORWARD: dict[str, Callable[[np.ndarray], Any]] = {
    "ln": np.log,
    "identity": lambda v: np.asarray(v, dtype=float),
    "logit": lambda v: np.log(v) - np.log1p(-np.asarray(v, dtype=float)),
    "log2": np.log2,
}
_INVERSE: dict[str, Callable[[np.ndarray], Any]] = {
    "ln": np.exp,
    "identity": lambda y: np.asarray(y, dtype=float),
    "logit": lambda y: 1.0 / (1.0 + np.exp(-np.asarray(y, dtype=float))),
    "log2": np.exp2,
}


_TRANSFORMS = {"log": "ln", "linear": "identity", "logit": "logit", "pow2": "log2"}


def transform_of(param: Any) -> str:
    """The space a parameter's law is fitted in (``ln``, ``identity``, ``logit``, ``log2``)."""
    if param.kind == "int":
        return "ln" if param.log else "identity"
    return _TRANSFORMS[param.kind]


def forward(transform: str, values: Any) -> np.ndarray:
    """Map values into the transformed space a law is fitted in."""
    return _FORWARD[transform](np.asarray(values, dtype=float))


def inverse(transform: str, y: Any) -> np.ndarray:
    return _INVERSE[transform](np.asarray(y, dtype=float))


def snap(kind: str, multiple_of: int, value: float) -> int | float:
    """A continuous value onto its parameter's grid (ints, powers of two)."""
    if kind == "pow2":
        return int(2 ** round(math.log2(max(value, 1.0))))
    if kind == "int":
        return int(round(value / multiple_of) * multiple_of)
    return float(value)


def compute_of(n_params: float, tokens: float) -> float:
    """``C = 6 N D`` FLOPs (Kaplan et al. 2020; Hoffmann et al. 2022)."""
    return FLOPS_PER_PARAM_TOKEN * n_params * tokens
