"""The rule every request body obeys before anything of it is stored: it must fit both
backends.

Python's JSON reader takes ``NaN`` and ``Infinity``, and JSON strings may hold ``\\u0000``.
SQLite stores either; PostgreSQL refuses both (``json`` columns take no non-finite
number, ``text`` columns no NUL character), so the same body was a study on one backend
and a 500 on the other. ``StorableBody`` refuses them anywhere in a body, in nested
objects, lists, free-form dicts (``search``, ``objective_options``, ``metrics``) and
keys alike, with a 422 that names where, so both backends answer the same.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def storage_problem(value: Any) -> str | None:
    """Why ``value`` (parsed JSON) cannot be stored on every backend, naming where; or None.

    Iterative, so a deeply nested body cannot exhaust the stack.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{where or 'the body'}: {item} is not a finite number (JSON carries none)"
        if isinstance(item, str) and "\x00" in item:
            return f"{where or 'the body'}: a string holds a NUL character (\\u0000)"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{where or 'the body'}: a key holds a NUL character (\\u0000)"
                stack.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


class StorableBody(BaseModel):
    """Base of every model a request body (or a study file) is read into: no unknown
    fields, no non-finite numbers, no NUL characters, anywhere."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = storage_problem(data)
        if problem is not None:
            raise ValueError(problem)
        return data
