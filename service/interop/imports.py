"""Past runs as a finished study: ``scaletune import`` and ``POST /studies/import``.

An imported study is stored exactly like one scaletune ran: one trial per run (COMPLETE,
or FAILED for a diverged or failed run), all in one transaction with the study, so a
refused import leaves nothing behind. Its spec is ``executor: external`` with a budget
of as many trials as runs, objective ``imported`` (a label: no worker ever runs it),
and the space given or inferred from the runs. The scheduler's next step then does
what it does to any study whose budget is spent: tells the engine every run, fits the
scaling rules and marks it COMPLETE. So rules, report, dashboard, verification (a
verification trial is handed out through ask/tell) and warm start all work on it.

Space inference, per parameter (``infer_space``): a fraction (every value inside (0, 1),
spanning a decade in odds, named like one or reaching 0.5: a warmup fraction, an Adam
beta) is searched in logit space, so no prediction leaves (0, 1); other numbers spanning
more than a decade and all positive in log space (powers of two as ``pow2``, other
integers as log ``int``), the rest linearly, with 0 as the floor when the runs never go
below it (no negative weight decay or dropout); anything else is a choice. No other
limit is set, so the rules may extrapolate past the values tried; a parameter with a
single value in every run is left out (it carries no information) and named in
``constant``. A parameter whose runs mix types (a number in one, a string or true/false
in another) is refused rather than guessed at: as a choice, a numeric sweep would lose its
order. ``describe_space`` says what was inferred, for the user to override.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Collection
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationError, field_validator
from sqlalchemy.orm import Session

from search.errors import InvalidParamsError, InvalidSpaceError
from search.space import (
    ChoiceParam,
    IntParam,
    LinearParam,
    LogitParam,
    LogParam,
    Pow2Param,
    SearchSpace,
)
from search.types import MAX_ABS_LOSS, Suggestion
from service.domain import IMPORTED_REASON, Budget, ScalingAxesSpec, StudySpec
from service.orchestration.studies import store_study
from service.storable import StorableBody
from service.storage import repository as repo
from service.storage.tables import StudyRow

IMPORTED_OBJECTIVE = "imported"
MAX_CHOICES = 50  # more distinct non-numeric values than this is an id, not a parameter
MAX_RUNS = 100_000
MAX_INT = 2**63 - 1  # an integer parameter fits in 64 bits (a float may be larger)
# Name parts that mark a value in (0, 1) as a fraction or probability, not a small rate
FRACTION_NAMES = ("frac", "ratio", "prob", "pct", "warmup", "dropout", "beta", "momentum")


class ImportRefusedError(ValueError):
    """Runs that cannot make a study; the message names the run and the field."""


ParamName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ImportedRun(StorableBody):
    """One past run (the API's body and what ``service.interop.runs_file`` reads from a file)."""

    params: dict[ParamName, bool | int | float | str] = Field(min_length=1)
    loss: float | None = Field(None, description="final loss; null: diverged")
    cost: float = Field(0.0, ge=0.0, lt=1e30, description="GPU-seconds (or FLOPs)")
    flops: float | None = Field(None, ge=0.0, lt=1e30, description="the run's training FLOPs")
    failed: bool = False
    reason: str | None = Field(None, max_length=2000)
    metrics: dict[str, float] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _integers_fit_64_bits(cls, params: dict[str, Any]) -> dict[str, Any]:
        """An integer past 64 bits is no setting any trainer takes, and past a float's
        range it breaks inference and the engine (int too large to convert to float)."""
        for name, value in params.items():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
                raise ValueError(
                    f"{name}: the integer {_digits(value)} does not fit in 64 bits "
                    f"(|value| <= {MAX_INT}); write it as a float (1e21) if it is one"
                )
        return params


class StudyImport(StorableBody):
    """``POST /studies/import``: past runs that become a finished study."""

    name: str = Field(min_length=1, max_length=200)
    runs: list[ImportedRun] = Field(min_length=1, max_length=MAX_RUNS)
    scaling: ScalingAxesSpec = Field(default_factory=ScalingAxesSpec)
    space: SearchSpace | None = Field(None, description="None: inferred from the runs")
    seed: int = Field(0, ge=0)


def _digits(value: int) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}... ({len(text.lstrip('-'))} digits)"


def infer_space(
    params: list[dict[str, Any]], *, given: Collection[str] = ()
) -> tuple[SearchSpace, list[str]]:
    """A space for the runs' parameters, and the names left out as constant. Parameters
    named in ``given`` get a spec from the caller in place of the inferred one, so their
    runs may mix types (the inferred placeholder is then a choice)."""
    names = list(dict.fromkeys(name for p in params for name in p))
    specs, constant = [], []
    for name in names:
        values = [p[name] for p in params if name in p]
        if len({_key(v) for v in values}) < 2:
            constant.append(name)
        else:
            specs.append(_infer_param(name, values, given=name in given))
    if not specs:
        raise ImportRefusedError("every parameter has one value in all runs: nothing to fit")
    return SearchSpace(params=specs), constant


def _key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__ if isinstance(value, bool | str) else "number", value)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return "string" if isinstance(value, str) else "number"


def _infer_param(name: str, values: list[Any], *, given: bool = False) -> Any:
    """The inferred spec; ``given``: a placeholder the caller replaces (no refusal)."""
    first: dict[str, Any] = {}  # the first value of each type
    for value in values:
        first.setdefault(_type_name(value), value)
    if len(first) > 1 and not given:
        (kind, value), (other, other_value) = list(first.items())[:2]
        raise ImportRefusedError(
            f"parameter {name!r} mixes types across runs: a {kind} in some ({value!r}), "
            f"a {other} in others ({other_value!r}); give every run the same type, or "
            "give the parameter's spec (a choice) in the space (scaletune import: in the "
            "mapping file's space)"
        )
    if "number" not in first or len(first) > 1:
        by_key: dict[tuple[str, Any], Any] = {}  # 1 and True are two choices, 1 and 1.0 one
        for value in values:
            by_key.setdefault(_key(value), value)
        distinct = list(by_key.values())
        if len(distinct) > MAX_CHOICES and not given:
            raise ImportRefusedError(
                f"parameter {name!r} has {len(distinct)} distinct non-numeric values: "
                "an identifier, not a hyperparameter; leave it out of the params"
            )
        center = by_key[Counter(_key(v) for v in values).most_common(1)[0][0]]
        return ChoiceParam(name=name, choices=distinct, center=center)
    low, high = min(values), max(values)
    if _is_fraction(name, low, high):
        return LogitParam(name=name, center=statistics.median(values))
    logarithmic = low > 0 and high / low >= 10.0
    if all(isinstance(v, int) for v in values):
        if low >= 1 and all(v & (v - 1) == 0 for v in values):
            center = 2 ** round(statistics.median(math.log2(v) for v in values))
            return Pow2Param(name=name, center=center)
        if logarithmic:
            center = round(math.exp(statistics.median(math.log(v) for v in values)))
            return IntParam(name=name, center=center, log=True)
        spread = max((high - low) / 4.0, 1.0)
        center = round(statistics.median(values))
        return IntParam(name=name, center=center, log=False, scale=spread, min=_floor(low))
    if logarithmic:
        return LogParam(name=name, center=math.exp(statistics.median(math.log(v) for v in values)))
    center = statistics.median(values)
    return LinearParam(name=name, center=center, scale=(high - low) / 4.0, min=_floor(low))


def _floor(low: float) -> float | None:
    """0 where the runs reach it and never go below (a weight decay, a dropout rate)."""
    return 0 if low == 0 else None


def _is_fraction(name: str, low: float, high: float) -> bool:
    """Values in (0, 1) whose odds span a decade, and either a fraction's name or values
    reaching 0.5: a learning rate's grid (all small, named like a rate) stays in log."""
    if not 0 < low < high < 1:
        return False
    odds_ratio = (high / (1 - high)) / (low / (1 - low))
    named = any(part in name.lower() for part in FRACTION_NAMES)
    return odds_ratio >= 10.0 and (named or high >= 0.5)


def describe_space(space: SearchSpace) -> str:
    """One line naming each parameter's kind and limits, as inference chose them."""
    parts = []
    for param in space.params:
        kind: str = param.kind
        if isinstance(param, IntParam) and param.log:
            kind = "log int"
        limits = [
            f"{side} {getattr(param, side):g}"
            for side in ("min", "max")
            if getattr(param, side, None) is not None
        ]
        parts.append(f"{param.name} {kind}" + (f" ({', '.join(limits)})" if limits else ""))
    return ", ".join(parts)


def import_spec(body: StudyImport) -> tuple[StudySpec, list[str]]:
    """The study's spec (space given, or inferred) and the constant parameters dropped."""
    constant: list[str] = []
    space = body.space
    try:
        if space is None:
            space, constant = infer_space([run.params for run in body.runs])
        spec = StudySpec(
            name=body.name,
            objective=IMPORTED_OBJECTIVE,
            space=space,
            scaling=body.scaling,
            budget=Budget(max_trials=len(body.runs)),
            in_flight=1,
            executor="external",
            seed=body.seed,
        )
    except (ValidationError, InvalidSpaceError) as exc:
        raise ImportRefusedError(str(exc)) from exc
    return spec, constant


def create_imported_study(
    session: Session, *, body: StudyImport, now: float, tenant_id: int | None = None
) -> tuple[StudyRow, list[str]]:
    """The study and its finished trials (one flush; the caller's transaction commits or
    rolls back all of it), and the constant parameters left out. ImportRefusedError
    names the first run whose params do not fit the space."""
    spec, constant = import_spec(body)
    space = spec.space
    assert space is not None
    runs = []
    for number, run in enumerate(body.runs, start=1):
        params = {k: v for k, v in run.params.items() if k not in constant}
        try:
            params = space.validate_params(params)
        except InvalidParamsError as exc:
            raise ImportRefusedError(f"run {number}: {exc}") from exc
        if not run.failed and (run.loss is None or not abs(run.loss) <= MAX_ABS_LOSS):
            # NaN, inf, or past what the engine models (a blown-up run's 1e38): diverged
            run = run.model_copy(update={"failed": True, "reason": f"diverged: loss {run.loss}"})
        if not run.failed and run.cost <= 0:
            raise ImportRefusedError(f"run {number}: cost must be > 0 for a completed run")
        if not run.failed and run.loss is not None and run.loss < 0:
            raise ImportRefusedError(f"run {number}: loss {run.loss} is negative")
        runs.append((params, run))
    study = store_study(session, spec=spec, now=now, tenant_id=tenant_id)
    suggestions = [
        Suggestion(suggestion_id=f"imported-{i}", params=params, reason=IMPORTED_REASON)
        for i, (params, _) in enumerate(runs)
    ]
    trials = repo.add_trials(session, study=study, suggestions=suggestions, now=now, external=True)
    for trial, (_, run) in zip(trials, runs, strict=True):
        repo.start_trial(session, trial=trial, now=now, lease_seconds=0.0)
        repo.finish_trial(
            session,
            trial=trial,
            now=now,
            failed=run.failed,
            loss=None if run.failed else run.loss,
            cost_seconds=run.cost,
            result_key=IMPORTED_REASON,
            failure_kind="config" if run.failed else None,
            failure_reason=(run.reason or "failed") if run.failed else None,
            flops=run.flops,
            metrics=run.metrics,
            worker=IMPORTED_REASON,
        )
    session.flush()
    return study, constant
