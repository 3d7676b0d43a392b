"""Past runs from a file: a plain CSV, a W&B runs-table CSV, or JSON Lines.

Every layout is read into flat rows of ``column -> value`` first:
- a CSV's columns as they are; a cell holding a JSON object (or the Python ``repr`` of a
  dict, as ``pandas.DataFrame.to_csv`` writes the ``config``/``summary`` columns of W&B's
  export recipe) is expanded into ``column.key`` columns, nested keys joined with dots;
- a JSON Lines file's objects, nested objects flattened the same way (so
  ``{"config": {"lr": 0.1}}`` gives ``config.lr``);
- W&B's ``{"value": x, "desc": ...}`` config entries become ``x``.

A ``ColumnMapping`` then says which columns hold the hyperparameters, the loss, the
cost (or FLOPs), the failed flag and the scaling axes. A column is named exactly, or
by its key without a ``config.``/``summary.``/``params.`` prefix when that names one
column only. W&B's ``State`` column counts as the failed flag (``failed``/``crashed``
are failures; ``running`` rows are skipped). A run whose loss is empty, NaN or infinite
is a failed (diverged) run. A scaling axis is a parameter of the space, except when its
column is one of the run's outcomes (``metrics.*``, ``summary.*``) rather than a
hyperparameter column: a model size the trainer counted, beside width and depth as
parameters, is a metric of each run, and the rules then size the model from N*(C)
through a size map, as in a study of the ``lm`` objective. Anything else that cannot
be read is a ``RunsFileError`` naming the row and the column; nothing is returned from a
file with an error.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from search.errors import InvalidSpaceError
from search.scaling.chinchilla import FLOPS_PER_PARAM_TOKEN
from search.space import SearchSpace
from service.domain import ScalingAxesSpec
from service.interop.imports import ImportedRun, StudyImport, infer_space

PREFIXES = ("config.", "summary.", "params.")
# Columns of what a run measured rather than what was set: an axis there is a metric.
OUTCOME_PREFIXES = ("metrics.", "summary.")
STATE_COLUMNS = ("State", "state")
FAILED_STATES = frozenset({"failed", "crashed"})
SKIPPED_STATES = frozenset({"running", "pending", "preempting"})
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f", ""})
_INT = re.compile(r"^[+-]?\d+$")


class RunsFileError(ValueError):
    """A runs file that cannot be imported; the message names the row and column."""


class ColumnMapping(BaseModel):
    """Which columns are what (flags of ``scaletune import`` or a YAML mapping file).

    ``params``: a list of columns (each parameter named by its column, prefix dropped) or
    ``{parameter: column}``; None: every ``params.*`` column, else every ``config.*`` one.
    ``space``: parameter specs (as in a study file) that replace the inferred ones.
    """

    model_config = ConfigDict(extra="forbid")

    params: list[str] | dict[str, str] | None = None
    loss: str = "loss"
    cost: str | None = None
    flops: str | None = None
    failed: str | None = None
    n_params: str | None = None
    tokens: str | None = None
    compute: str | None = None
    space: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class RunsFile:
    """What a file gave: the runs, the axes' parameter names, and what was left aside."""

    runs: list[ImportedRun]
    n_params: str | None
    tokens: str | None
    compute: str | None
    cost_unit: str
    skipped: int = 0


def load_mapping(path: Path) -> ColumnMapping:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
        return ColumnMapping.model_validate(data or {})
    except OSError as exc:
        raise RunsFileError(f"cannot read mapping file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RunsFileError(f"mapping file {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RunsFileError(f"mapping file {path}: {problems}") from exc


def read_runs(path: Path, mapping: ColumnMapping) -> RunsFile:
    """The runs of a ``.csv`` or ``.jsonl`` file under ``mapping``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunsFileError(f"cannot read runs file {path}: {exc}") from exc
    if path.suffix in (".jsonl", ".ndjson"):
        rows = list(_jsonl_rows(text))
    elif path.suffix in (".csv", ".tsv"):
        rows = list(_csv_rows(text, delimiter="\t" if path.suffix == ".tsv" else ","))
    else:
        raise RunsFileError(f"runs files are .csv, .tsv or .jsonl, not {path.name!r}")
    if not rows:
        raise RunsFileError(f"{path} holds no runs")
    return _map_rows(rows, mapping)


@dataclass(frozen=True)
class _Row:
    number: int  # 1-based data row
    line: int  # line of the file where the row starts
    cells: dict[str, Any]

    def where(self, column: str) -> str:
        return f"row {self.number} (line {self.line}), column {column!r}"


def _csv_rows(text: str, *, delimiter: str) -> Iterable[_Row]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    if len(set(header)) != len(header):
        repeated = sorted({h for h in header if header.count(h) > 1})
        raise RunsFileError(f"line 1: columns named more than once: {repeated}")
    line = 2
    for number, values in enumerate(reader, start=1):
        if not any(v.strip() for v in values):
            line = reader.line_num + 1
            continue
        if len(values) != len(header):
            raise RunsFileError(
                f"row {number} (line {line}): {len(values)} cells for {len(header)} columns"
            )
        cells: dict[str, Any] = {}
        for column, value in zip(header, values, strict=True):
            cells.update(_expand(column, value, where=f"row {number} (line {line})"))
        yield _Row(number, line, cells)
        line = reader.line_num + 1


def _jsonl_rows(text: str) -> Iterable[_Row]:
    number = 0
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        number += 1
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RunsFileError(f"row {number} (line {line}): not JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise RunsFileError(f"row {number} (line {line}): a JSON object per line, please")
        yield _Row(number, line, _flatten(data))


def _expand(column: str, value: str, *, where: str) -> dict[str, Any]:
    """A CSV cell; a dict literal (JSON or Python repr) becomes dotted columns."""
    text = value.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return {column: value}
    return _flatten(_dict_literal(text, where=f"{where}, column {column!r}"), prefix=column)


def _dict_literal(text: str, *, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # pandas writes dicts by repr: single quotes, True/False/None, bare nan and inf.
        safe = re.sub(r"(?<![\w'\"])-?(nan|NaN)(?![\w'\"])", "None", text)
        safe = re.sub(r"(?<![\w'\"])inf(?![\w'\"])", "1e999", safe)
        try:
            data = ast.literal_eval(safe)
        except (ValueError, SyntaxError) as exc:
            raise RunsFileError(f"{where}: not a JSON object or dict literal") from exc
    if not isinstance(data, dict):
        raise RunsFileError(f"{where}: not a JSON object or dict literal")
    return data


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and set(value) <= {"value", "desc"} and "value" in value:
            value = value["value"]  # W&B's raw config entry
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


# -- mapping rows to runs ---------------------------------------------------------------


def _map_rows(rows: list[_Row], mapping: ColumnMapping) -> RunsFile:
    columns = list(dict.fromkeys(c for row in rows for c in row.cells))
    find = _Finder(columns)
    params = _param_columns(mapping, find)
    axes = {
        axis: (_short(find(column, axis)), find(column, axis))
        for axis, column in (("n_params", mapping.n_params), ("tokens", mapping.tokens))
        if column is not None
    }
    if len(axes) == 1:
        raise RunsFileError("give --n-params and --tokens together (model size and tokens)")
    measured: dict[str, str] = {}  # metric name -> column: axes among the run's outcomes
    for axis, (name, column) in list(axes.items()):
        if column not in params.values() and column.startswith(OUTCOME_PREFIXES):
            axes[axis] = (_metric(column), column)
            measured[_metric(column)] = column
        else:
            params.setdefault(name, column)
    loss_column = find(mapping.loss, "loss")
    cost_column = find(mapping.cost, "cost") if mapping.cost else find.optional("cost")
    flops_column = find(mapping.flops, "flops") if mapping.flops else find.optional("flops")
    failed_column = (
        find(mapping.failed, "failed")
        if mapping.failed
        else find.optional("failed") or next((c for c in STATE_COLUMNS if c in columns), None)
    )
    compute_column = find(mapping.compute, "compute") if mapping.compute else None
    if cost_column is None and flops_column is None and not axes:
        raise RunsFileError(
            "no cost: name a cost (--cost) or FLOPs (--flops) column, or the scaling axes "
            "(--n-params, --tokens) so cost is 6 N D"
        )
    runs, skipped = [], 0
    for row in rows:
        failed, reason = _failed(row, failed_column)
        if failed is None:
            skipped += 1
            continue
        values = {name: _param(row, column) for name, column in params.items()}
        metrics = {name: _number(row, column, required=True) for name, column in measured.items()}
        sizes = values | metrics
        for name, column in axes.values():
            _positive(row, column, sizes[name])
        loss = _number(row, loss_column, required=False)
        if loss is None or not math.isfinite(loss):
            why = "no loss recorded" if loss is None else f"diverged: loss {loss}"
            failed, reason, loss = True, reason or why, None
        elif loss < 0:
            raise RunsFileError(f"{row.where(loss_column)}: loss {loss} is negative")
        flops = _number(row, flops_column, required=False) if flops_column else None
        cost = _cost(row, cost_column, flops, sizes, axes, failed)
        if compute_column is not None:
            metrics[_short(compute_column)] = _positive(
                row, compute_column, _number(row, compute_column, required=True)
            )
        try:
            run = ImportedRun(
                params=values,
                loss=loss,
                cost=cost,
                failed=failed,
                flops=flops,
                metrics=metrics,
                reason=reason if failed else None,
            )
        except ValidationError as exc:  # a NUL character, an integer past 64 bits
            raise RunsFileError(f"row {row.number} (line {row.line}): {_problems(exc)}") from exc
        runs.append(run)
    if not runs:
        raise RunsFileError("every row was skipped (W&B runs still running); nothing to import")
    names = {axis: name for axis, (name, _) in axes.items()}
    unit = "GPU-seconds" if cost_column else ("FLOPs" if flops_column else "FLOPs (6 N D)")
    return RunsFile(
        runs=runs,
        n_params=names.get("n_params"),
        tokens=names.get("tokens"),
        compute=_short(compute_column) if compute_column else None,
        cost_unit=unit,
        skipped=skipped,
    )


def _problems(exc: ValidationError) -> str:
    """A validation error in one line, ``field: message; ...``, without pydantic's
    "Value error, " prefix and documentation links."""
    return "; ".join(
        ".".join(str(part) for part in error["loc"])
        + (": " if error["loc"] else "")
        + error["msg"].removeprefix("Value error, ")
        for error in exc.errors(include_url=False)
    )


def _metric(column: str) -> str:
    """An outcome column's metric name: the column without its prefix."""
    for prefix in OUTCOME_PREFIXES:
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


class _Finder:
    """Column lookup: the exact name, or the one column whose key without a prefix is it."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns

    def optional(self, name: str) -> str | None:
        if name in self.columns:
            return name
        matches = [c for c in self.columns if c in {p + name for p in PREFIXES}]
        return matches[0] if len(matches) == 1 else None

    def __call__(self, name: str, role: str) -> str:
        found = self.optional(name)
        if found is None:
            shown = ", ".join(self.columns[:30]) + (" ..." if len(self.columns) > 30 else "")
            raise RunsFileError(f"no column {name!r} for the {role} (columns: {shown})")
        return found


def _short(column: str) -> str:
    for prefix in PREFIXES:
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


def _param_columns(mapping: ColumnMapping, find: _Finder) -> dict[str, str]:
    if isinstance(mapping.params, dict):
        return {
            name: find(column, f"parameter {name!r}") for name, column in mapping.params.items()
        }
    if mapping.params is not None:
        return {_short(find(c, "parameters")): find(c, "parameters") for c in mapping.params}
    for prefix in ("params.", "config."):
        found = {_short(c): c for c in find.columns if c.startswith(prefix)}
        if found:
            return found
    raise RunsFileError(
        "name the hyperparameter columns (--params lr,batch_size or a mapping file's "
        f"params); columns: {', '.join(find.columns[:30])}"
    )


def _failed(row: _Row, column: str | None) -> tuple[bool | None, str | None]:
    """(failed, reason); failed None: a W&B run still running (skipped)."""
    if column is None:
        return False, None
    raw = row.cells.get(column)
    if isinstance(raw, bool):
        return raw, "failed column" if raw else None
    text = "" if raw is None else str(raw).strip().lower()
    if column in STATE_COLUMNS:
        if text in SKIPPED_STATES:
            return None, None
        return (True, f"W&B state {text}") if text in FAILED_STATES else (False, None)
    if text in _TRUE:
        return True, "failed column"
    if text in _FALSE:
        return False, None
    raise RunsFileError(f"{row.where(column)}: {raw!r} is not true/false")


def _param(row: _Row, column: str) -> Any:
    raw = row.cells.get(column)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise RunsFileError(f"{row.where(column)}: empty; every run needs every parameter")
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if _INT.match(text):
        return int(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise RunsFileError(f"{row.where(column)}: {raw!r} is not a finite number")
    return value


def _number(row: _Row, column: str, *, required: bool) -> float | None:
    raw = row.cells.get(column)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            raise RunsFileError(f"{row.where(column)}: empty")
        return None
    if isinstance(raw, bool):
        raise RunsFileError(f"{row.where(column)}: {raw!r} is not a number")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise RunsFileError(f"{row.where(column)}: {raw!r} is not a number") from None


def _positive(row: _Row, column: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise RunsFileError(f"{row.where(column)}: {value!r} is not a positive number")
    return float(value)


def _cost(
    row: _Row,
    column: str | None,
    flops: float | None,
    values: dict[str, Any],
    axes: dict[str, tuple[str, str]],
    failed: bool,
) -> float:
    """GPU-seconds from the cost column, else the FLOPs column, else 6 N D."""
    if column is not None:
        cost = _number(row, column, required=not failed)
        where = column
    elif flops is not None:
        cost, where = flops, "flops"
    else:
        n, d = (values[axes[a][0]] for a in ("n_params", "tokens"))
        cost, where = FLOPS_PER_PARAM_TOKEN * float(n) * float(d), "6 N D"
    if cost is None or (failed and (not math.isfinite(cost) or cost <= 0)):
        return 0.0
    if not 0 < cost < 1e30:
        raise RunsFileError(f"{row.where(where)}: cost {cost} must be > 0 and below 1e30")
    return cost


def study_import(
    runs: RunsFile, mapping: ColumnMapping, *, name: str, seed: int = 0
) -> tuple[StudyImport, list[str]]:
    """The ``POST /studies/import`` body for ``runs``: the inferred space with the
    mapping's parameter specs in place of the inferred ones, constant parameters left
    out of the space and of every run; and the names of those constants."""
    given = {o["name"] for o in mapping.space if isinstance(o.get("name"), str)}
    space, constant = infer_space([run.params for run in runs.runs], given=given)
    # a mapping's spec (a dict, validated with the space below) replaces the inferred one
    params: dict[str, Any] = {param.name: param for param in space.params}
    for override in mapping.space:
        name_ = override.get("name")
        if name_ not in params and name_ not in constant:
            raise RunsFileError(
                f"mapping space: {name_!r} is not one of the parameters {sorted(params)}"
            )
        params[name_] = override
        if name_ in constant:
            constant.remove(name_)
    try:
        space = SearchSpace(params=list(params.values()))
    except InvalidSpaceError as exc:
        raise RunsFileError(f"mapping space: {exc}") from exc
    kept = [
        run.model_copy(
            update={"params": {k: v for k, v in run.params.items() if k not in constant}}
        )
        for run in runs.runs
    ]
    axes = ScalingAxesSpec(n_params=runs.n_params, tokens=runs.tokens, compute=runs.compute)
    try:
        body = StudyImport(name=name, runs=kept, scaling=axes, space=space, seed=seed)
    except ValidationError as exc:  # a name too long for a study (--name gives another)
        raise RunsFileError(f"cannot make a study of these runs: {_problems(exc)}") from exc
    return body, constant


def _without(params: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in names}
