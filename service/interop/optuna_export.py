"""Export a study into an Optuna storage, so ``optuna.load_study`` and optuna-dashboard open it.

The service keeps its own schema (docs/architecture.md, "Storage: our own schema"), so
Optuna tools see a *snapshot*: the study's finished trials (COMPLETE and FAILED; waiting,
running and cancelled ones are left out) written into any Optuna storage URL
(``sqlite:///study.db``, ``postgresql+psycopg://...``). The service stays the source of truth;
export again to refresh (``overwrite=True`` replaces the earlier snapshot).

What the snapshot holds:

- a two-objective study (minimize loss, minimize cost), metric names ``loss`` and
  ``cost_seconds``; study user attributes ``scaletune_study_id``, ``objective``,
  ``state``, ``spec`` (the study's spec as JSON), and ``scaletune_front`` with
  ``scaletune_front_source``: the front the service shows (``service.reads.views``:
  repeats merged, each point's trial ids, mean cost, estimated and measured loss). Optuna's
  own ``best_trials`` is the raw front of the trials' values, lucky draws included;
- per trial: params with distributions derived from the space (below), values
  ``[loss, cost_seconds]`` (COMPLETE) or state FAIL, the start and end times, the
  learning curve as intermediate values (loss by step), and user attributes
  ``scaletune_trial_id``, ``number``, ``reason``, ``attempt``, ``worker``,
  ``cost_seconds``, ``flops``, ``failure_kind``, ``failure_reason`` and ``metrics``.

Distributions: Optuna's are bounded and our spaces need not be, so each parameter's range
is its min/max where set and the range of its exported values elsewhere: log and pow2
kinds become log-scaled distributions (pow2 as ``IntDistribution(log=True)``), linear and
logit kinds linear ``FloatDistribution``s, ints keep their ``multiple_of`` as the step
(log ints step 1), choices become ``CategoricalDistribution``s.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from search.space import ChoiceParam, IntParam, LogParam, Pow2Param, SearchSpace
from service.domain import TrialState
from service.reads.views import FrontSummary, summarise
from service.storage import repository as repo
from service.storage.tables import StudyRow, TrialRow

__all__ = [
    "ExportTrial",
    "OptunaExportError",
    "export_from_api",
    "export_study",
    "export_to_optuna",
]

METRIC_NAMES = ["loss", "cost_seconds"]
_EXPORTED_STATES = (TrialState.COMPLETE, TrialState.FAILED)


class OptunaExportError(ValueError):
    """The snapshot cannot be written (a study of that name exists, a bad storage URL)."""


class OptunaStudyExistsError(OptunaExportError):
    """The storage already holds a study of that name (``overwrite`` replaces it)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"the Optuna storage already has a study named {name!r}; pass overwrite=True to "
            "replace the earlier snapshot, or choose another study name"
        )
        self.name = name


@dataclass(frozen=True)
class ExportTrial:
    """One finished trial, as read from the database (``from_row``) or the HTTP API
    (``from_public``: a ``TrialPublic`` or ``TrialDetail`` body)."""

    trial_id: int
    number: int
    state: TrialState
    params: dict[str, Any]
    loss: float | None
    cost_seconds: float | None
    reason: str = ""
    attempt: int = 0
    worker: str | None = None
    flops: float | None = None
    failure_kind: str | None = None
    failure_reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: TrialRow) -> ExportTrial:
        return cls.from_public({c: getattr(row, c) for c in _ROW_FIELDS})

    @classmethod
    def from_public(cls, body: dict[str, Any]) -> ExportTrial:
        return cls(
            trial_id=int(body["id"]),
            number=int(body["number"]),
            state=TrialState(body["state"]),
            params=dict(body["params"]),
            loss=body.get("loss"),
            cost_seconds=body.get("cost_seconds"),
            reason=body.get("reason") or "",
            attempt=int(body.get("attempt") or 0),
            worker=body.get("worker"),
            flops=body.get("flops"),
            failure_kind=body.get("failure_kind"),
            failure_reason=body.get("failure_reason"),
            started_at=body.get("dispatched_at") or body.get("created_at"),
            finished_at=body.get("finished_at"),
            metrics=dict(body.get("metrics") or {}),
            curve=list(body.get("curve") or []),
        )


_ROW_FIELDS = (  # noqa: SIM905 (one field list, readable)
    "id number state params loss cost_seconds reason attempt worker flops failure_kind "
    "failure_reason created_at dispatched_at finished_at metrics curve"
).split()


def export_to_optuna(
    session: Session,
    *,
    study_id: int,
    storage: str,
    study_name: str | None = None,
    overwrite: bool = False,
) -> str:
    """Write study ``study_id``'s finished trials into the Optuna ``storage`` URL.

    Returns the Optuna study name (default ``scaletune-<id>-<name>``), for
    ``optuna.load_study(study_name=..., storage=storage)``.
    """
    study = repo.get_study(session, study_id=study_id)
    rows = repo.trials_in_state(session, study_id=study_id, states=_EXPORTED_STATES)
    complete = repo.count_by_state(session, study_id=study_id)[TrialState.COMPLETE]
    front = summarise(session, study=study, n_complete=complete)
    return export_study(
        study=_study_public(study, front),
        trials=[ExportTrial.from_row(row) for row in sorted(rows, key=lambda r: r.number)],
        storage=storage,
        study_name=study_name,
        overwrite=overwrite,
    )


def export_from_api(
    client: Any,
    *,
    study_id: int,
    storage: str,
    study_name: str | None = None,
    overwrite: bool = False,
) -> str:
    """The same snapshot, read over HTTP through a ``service.interop.client.ScaletuneClient``
    (what ``scaletune export`` talks to); one request per trial for its curve and metrics."""
    study = client.get_study(study_id)
    states = [str(s) for s in _EXPORTED_STATES]
    bodies: list[dict[str, Any]] = []
    while True:
        page = client.list_trials(study_id, states=states, offset=len(bodies), limit=1000)
        bodies += page["data"]
        if not page["data"] or len(bodies) >= page["count"]:
            break
    trials = [ExportTrial.from_public(client.get_trial(body["id"])) for body in bodies]
    return export_study(
        study=study, trials=trials, storage=storage, study_name=study_name, overwrite=overwrite
    )


def export_study(
    *,
    study: dict[str, Any],
    trials: Sequence[ExportTrial],
    storage: str,
    study_name: str | None = None,
    overwrite: bool = False,
) -> str:
    """Write a study (a ``StudyDetail``-like body: id, name, objective, state, spec) and
    its trials into ``storage``; unfinished trials in ``trials`` are skipped."""
    import optuna

    name = study_name or f"scaletune-{study['id']}-{study['name']}"
    finished = [t for t in trials if t.state in _EXPORTED_STATES]
    distributions = optuna_distributions(_space_of(study), finished)
    rdb = optuna.storages.RDBStorage(storage)
    try:  # one storage, its pool closed at the end (no connections left to the GC)
        target = _create(optuna, name=name, storage=rdb, overwrite=overwrite)
        with warnings.catch_warnings():
            # Metric names are "experimental" since Optuna 3.2; they are what the dashboard
            # labels its axes with, and the warning is no news to the person exporting.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            target.set_metric_names(METRIC_NAMES)
        for key, value in _study_attrs(study).items():
            target.set_user_attr(key, value)
        target.add_trials([_frozen_trial(optuna, t, distributions) for t in finished])
    finally:
        rdb.engine.dispose()
    return name


def optuna_distributions(space: SearchSpace | None, trials: Sequence[ExportTrial]) -> dict:
    """One Optuna distribution per parameter that the trials use (see the module doc)."""
    names = [p.name for p in space.params] if space is not None else _names(trials)
    by_name = {p.name: p for p in space.params} if space is not None else {}
    out = {}
    for name in names:
        values = [t.params[name] for t in trials if name in t.params]
        if values:
            out[name] = _distribution(by_name.get(name), values)
    return out


def _distribution(param: Any, values: list[Any]) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(param, ChoiceParam):
        return CategoricalDistribution(list(param.choices))
    if param is None:
        return _distribution_of_values(values)
    low = min(values) if param.min is None else min(param.min, *values)
    high = max(values) if param.max is None else max(param.max, *values)
    if isinstance(param, Pow2Param):
        return IntDistribution(int(low), int(high), log=True)
    if isinstance(param, IntParam):
        if param.log:
            return IntDistribution(int(low), int(high), log=True)
        step = param.multiple_of
        return IntDistribution(_ceil_to(low, step), _floor_to(high, step), step=step)
    return FloatDistribution(float(low), float(high), log=isinstance(param, LogParam))


def _distribution_of_values(values: list[Any]) -> Any:
    """A distribution for a parameter with no spec (a study exported before its first step)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return IntDistribution(min(values), max(values))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted(set(values), key=repr))


def _ceil_to(value: int, step: int) -> int:
    return -(-int(value) // step) * step


def _floor_to(value: int, step: int) -> int:
    return int(value) // step * step


def _frozen_trial(optuna: Any, t: ExportTrial, distributions: dict) -> Any:
    loss = t.loss if t.state == TrialState.COMPLETE else None
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL if loss is None else optuna.trial.TrialState.COMPLETE,
        values=None if loss is None else [float(loss), float(t.cost_seconds or 0.0)],
        params={k: v for k, v in t.params.items() if k in distributions},
        distributions={k: d for k, d in distributions.items() if k in t.params},
        user_attrs=_trial_attrs(t),
        intermediate_values=_intermediate_values(t.curve),
    )
    if t.started_at is not None:
        trial.datetime_start = _datetime(t.started_at)
    if t.finished_at is not None:
        trial.datetime_complete = _datetime(t.finished_at)
    return trial


def _trial_attrs(t: ExportTrial) -> dict[str, Any]:
    attrs = {
        "scaletune_trial_id": t.trial_id,
        "number": t.number,
        "reason": t.reason,
        "attempt": t.attempt,
        "worker": t.worker,
        "cost_seconds": t.cost_seconds,
        "flops": t.flops,
        "failure_kind": t.failure_kind,
        "failure_reason": t.failure_reason,
        "metrics": {k: v for k, v in t.metrics.items() if _json_scalar(v)},
    }
    return {k: v for k, v in attrs.items() if v is not None and v != {}}


def _intermediate_values(curve: list[dict[str, Any]]) -> dict[int, float]:
    """Loss by step; points without both, or with a non-finite loss, are skipped."""
    values: dict[int, float] = {}
    for point in curve:
        step, loss = point.get("step"), point.get("loss")
        if isinstance(step, int | float) and isinstance(loss, int | float) and math.isfinite(loss):
            values[int(step)] = float(loss)
    return values


def _create(optuna: Any, *, name: str, storage: Any, overwrite: bool) -> Any:
    try:
        if overwrite and name in optuna.get_all_study_names(storage=storage):
            optuna.delete_study(study_name=name, storage=storage)
        return optuna.create_study(
            study_name=name, storage=storage, directions=["minimize", "minimize"]
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise OptunaStudyExistsError(name) from None


def _study_public(study: StudyRow, front: FrontSummary) -> dict[str, Any]:
    """The fields of a ``StudyDetail`` body that the snapshot keeps."""
    return {
        "id": study.id,
        "name": study.name,
        "objective": study.objective,
        "state": study.state,
        "spec": study.spec,
        "front": [
            {
                "trial_ids": list(p.trial_ids),
                "n_measurements": p.n_measurements,
                "mean_cost": p.cost,
                "estimated_loss": p.estimated_loss,
                "observed_loss": p.observed_loss,
            }
            for p in front.points
        ],
        "front_source": front.source,
    }


_FRONT_FIELDS = ("trial_ids", "n_measurements", "mean_cost", "estimated_loss", "observed_loss")


def _study_attrs(study: dict[str, Any]) -> dict[str, Any]:
    return {
        "scaletune_study_id": study["id"],
        "objective": study["objective"],
        "state": str(study["state"]),
        "spec": study.get("spec") or {},
        "scaletune_front": [
            {name: point[name] for name in _FRONT_FIELDS} for point in study.get("front", [])
        ],
        "scaletune_front_source": study.get("front_source", "observed"),
    }


def _space_of(study: dict[str, Any]) -> SearchSpace | None:
    space = (study.get("spec") or {}).get("space")
    return SearchSpace.model_validate(space) if space else None


def _names(trials: Sequence[ExportTrial]) -> list[str]:
    return list(dict.fromkeys(name for t in trials for name in t.params))


def _datetime(seconds: float) -> dt.datetime:
    # Optuna stores naive datetimes in local time (datetime.now()); match it.
    return dt.datetime.fromtimestamp(seconds)


def _json_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)
