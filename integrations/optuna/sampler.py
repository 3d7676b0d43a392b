"""``ParetoCostSampler``: the Pareto search engine as an Optuna sampler.

Use it in a plain Optuna study whose objectives are (loss, cost), both minimised::

    sampler = ParetoCostSampler(seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=100)  # objective returns (loss, cost)

or with a single objective (the loss) and the cost from a callable or a user attribute::

    sampler = ParetoCostSampler(seed=0)            # reads trial.user_attrs["cost"]
    sampler = ParetoCostSampler(cost=lambda t: t.user_attrs["gpu_seconds"])
    study = optuna.create_study(direction="minimize", sampler=sampler)

Importing ``search`` never imports optuna; only this package does.

Distributions -> engine space (``search.space``), bounds kept as min/max:

==================================  ==================================================
Optuna distribution                 engine parameter
==================================  ==================================================
``FloatDistribution(log=True)``     ``LogParam``, center at the geometric mid
``FloatDistribution()``             ``LinearParam``, center at the arithmetic mid
``FloatDistribution(step=s)``       ``IntParam`` over the grid index k (value = low + k s)
``IntDistribution(log=True)``       ``IntParam(log=True)``, center at the geometric mid
``IntDistribution(step=s)``         ``IntParam(log=False, multiple_of=s)``, shifted by
                                    ``low % s`` so the grid is Optuna's
``CategoricalDistribution``         ``ChoiceParam`` (index choices where a choice is not
                                    a bool, int, float or str, e.g. None)
single-valued distributions         left to Optuna (it never samples them)
==================================  ==================================================

Scales are set so the box spans ``2 * HALF_BOX_IN_SCALES`` (= 4) scales (in ln units for log
kinds), so the engine's default radii cover a box of any width. ``center=`` moves the
centers (values in Optuna's terms); ``space=`` replaces the mapping of the parameters it
names (e.g. a ``Pow2Param`` for a batch size, a ``LogitParam`` for a probability), limited
to the distribution's bounds.

Trial states -> engine:

- RUNNING (and WAITING with enqueued params): pending, so trials asked in parallel, by
  this process or another worker on the same storage, get distinct points;
- COMPLETE: told (loss, cost); a non-finite loss is told as a failure (a diverged run);
- FAIL and PRUNED: told as failures with their cost (the failure model then steers away
  from them; a pruned run was judged not worth finishing). Optuna keeps no values for
  them, so the cost comes from the ``cost`` callable or the user attribute ``cost_attr``;
  a trial with neither is left out with an ``UnusableTrialWarning``.

Cost: in a two-objective study the second value; in a single-objective study
``cost(trial)`` if given, else ``trial.user_attrs[cost_attr]``. It must be positive and
finite (the engine models log cost): a cost that is not raises ``InvalidObservationError``.

The search space of a trial is inferred like Optuna's intersection search space (the
parameters every COMPLETE trial has, with equal distributions), or, before any trial
completes, from the running ones, so parallel asks are relative from the second trial on.
The first trial, and parameters outside that space, go to ``independent_sampler``
(``RandomSampler`` by default); enqueue a trial (``study.enqueue_trial``) to start at a
point of your choosing: the engine's start-up trials are then drawn around it, not around
the box's mid, so they cost about what it costs. Enqueued trials are never asked of the
engine. Pass ``limits=StudyLimits(max_trials=..., max_cost=..., in_flight=...)`` when the
study has a budget: the engine paces its climb in cost to spend it.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from integrations.optuna.space_mapping import HALF_BOX_IN_SCALES, Codec, space_from_distributions
from search.engine import ParetoSearch
from search.errors import (
    InvalidObservationError,
    InvalidParamsError,
    SearchError,
    UnknownSuggestionError,
)
from search.history import History
from search.pacing import StudyLimits
from search.settings import SearchSettings
from search.space import SearchSpace
from search.types import Suggestion

__all__ = ["ParetoCostSampler", "UnsupportedStudyError", "UnusableTrialWarning", "box_settings"]

_FOREIGN_PREFIX = "optuna-trial-"
_SYSTEM_ATTR = "scaletune:suggestion"
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class UnsupportedStudyError(SearchError, ValueError):
    """The study's directions are not (minimize loss[, minimize cost])."""


class UnusableTrialWarning(UserWarning):
    """A finished trial the engine cannot learn from (no cost known); it is left out."""


@dataclass
class _EngineRun:
    """One engine searching one study in one search space, and what it has been told.

    ``pending`` maps Optuna trial ids to the engine's pending suggestion ids: the
    engine's own suggestions and the ``optuna-trial-<id>`` entries held for other
    trials. ``done`` holds the ids of trials the engine has recorded or left out.
    """

    key: tuple[Any, ...]
    engine: ParetoSearch
    codecs: dict[str, Codec]
    pending: dict[int, str] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)


def box_settings() -> SearchSettings:
    """The engine's defaults, with the trust radius's maximum sized for an Optuna box.

    A box maps onto ``2 * HALF_BOX_IN_SCALES`` scales, so the engine's default maximum
    (tuned for unbounded spaces around a practitioner's start point) would explore only
    part of it; this lets the region grow to the whole box. The initial radius stays
    the engine's: the start-up draws within it of the start point, before any cost is
    known, and in a wide box a larger one put start-up trials at 100x the start point's
    cost (issue 18).
    """
    return SearchSettings(max_radius=1.5 * HALF_BOX_IN_SCALES)


class ParetoCostSampler(BaseSampler):
    """Cost-aware Pareto search (``search.engine.ParetoSearch``) behind Optuna's sampler API.

    Args:
        seed: seed of the engine and of the independent sampler; None draws one.
        settings: engine settings (``SearchSettings``); ``seed`` overrides its seed.
        space: engine parameters for some or all names (kinds, centers, scales), used
            instead of the ones derived from the distributions.
        center: search centers, name -> value in Optuna's terms (default: box mid).
        cost: ``cost(frozen_trial) -> float | None`` for single-objective studies (and
            for failed or pruned trials); None falls back to the user attribute.
        cost_attr: the user attribute holding a trial's cost.
        independent_sampler: samples what the engine does not (the first trial,
            parameters outside the relative search space).
        clock: the engine's clock (seconds) for suggestion leases.
        limits: the study's budget (``StudyLimits``: trial cap, total cost, trials in
            flight), which the engine paces its spending against; None for none known.

    Not picklable across processes in any useful way: each process (each Optuna worker)
    builds its own engine from the shared storage, holding the others' running trials
    as pending.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        settings: SearchSettings | None = None,
        space: SearchSpace | None = None,
        center: Mapping[str, Any] | None = None,
        cost: Callable[[FrozenTrial], float | None] | None = None,
        cost_attr: str = "cost",
        independent_sampler: BaseSampler | None = None,
        clock: Callable[[], float] = time.time,
        limits: StudyLimits | None = None,
    ) -> None:
        base = settings or box_settings()
        self._limits = limits
        if seed is None and settings is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._settings = base if seed is None else base.model_copy(update={"seed": seed})
        self._space = space
        self._center = dict(center or {})
        self._cost = cost
        self._cost_attr = cost_attr
        self._independent = independent_sampler or RandomSampler(seed=self._settings.seed)
        self._clock = clock
        self._lock = threading.Lock()
        self._run: _EngineRun | None = None
        self._warned: set[int] = set()

    @property
    def engine(self) -> ParetoSearch | None:
        """The engine of the current study (None before the first relative sample)."""
        return None if self._run is None else self._run.engine

    # -- Optuna's sampler API ---------------------------------------------------------

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent.after_trial(study, trial, state, values)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Optuna's intersection search space, or the running trials' before any completes."""
        others = [
            t
            for t in study.get_trials(deepcopy=False)
            if t._trial_id != trial._trial_id and t.distributions
        ]
        complete = [t for t in others if t.state == TrialState.COMPLETE]
        if complete:
            space = _intersection(complete)
        else:
            space = _union([t for t in others if t.state in (TrialState.RUNNING, *_FINISHED)])
        return {name: d for name, d in sorted(space.items()) if not d.single()}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or trial.system_attrs.get("fixed_params"):
            return {}  # nothing relative, or an enqueued trial: Optuna uses its params
        _check_directions(study)
        with self._lock:
            run = self._run_for(study, search_space)
            self._sync(run, study, current=trial._trial_id)
            suggestion = run.engine.ask(1)[0]
            run.pending[trial._trial_id] = suggestion.suggestion_id
        study._storage.set_trial_system_attr(trial._trial_id, _SYSTEM_ATTR, _summary(suggestion))
        return {name: run.codecs[name].to_optuna(v) for name, v in suggestion.params.items()}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    # -- keeping the engine in step with the study ------------------------------------

    def _run_for(self, study: Study, search_space: dict[str, BaseDistribution]) -> _EngineRun:
        """The current engine, or a new one if the study or its search space changed."""
        key = (id(study._storage), study._study_id, tuple(search_space.items()))
        if self._run is None or self._run.key != key:
            space, codecs = space_from_distributions(
                search_space, space=self._space, center=self._center
            )
            engine = ParetoSearch(space, self._settings, limits=self._limits, clock=self._clock)
            self._run = _EngineRun(key=key, engine=engine, codecs=codecs)
        return self._run

    def _sync(self, run: _EngineRun, study: Study, *, current: int) -> None:
        """Record newly finished trials and hold every other live trial as pending."""
        live_ids = {s.suggestion_id for s in run.engine.pending()}
        to_hold: dict[int, dict[str, Any]] = {}
        for t in study.get_trials(deepcopy=False):
            if t._trial_id == current or t._trial_id in run.done:
                continue
            if t.state in _FINISHED:
                self._record(run, study, t)
                run.done.add(t._trial_id)
            elif run.pending.get(t._trial_id) not in live_ids:
                params = self._planned_params(run, t)
                if params is not None:
                    to_hold[t._trial_id] = params
        if to_hold:
            run.engine = _with_held(run.engine, to_hold, clock=self._clock)
            run.pending.update({tid: _FOREIGN_PREFIX + str(tid) for tid in to_hold})

    def _planned_params(self, run: _EngineRun, t: FrozenTrial) -> dict[str, Any] | None:
        """A live trial's params in engine terms: set ones, else enqueued ones (or None)."""
        for values in (t.params, t.system_attrs.get("fixed_params") or {}):
            params = self._engine_params(run, values)
            if params is not None:
                return params
        return None

    def _engine_params(self, run: _EngineRun, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """``values`` (Optuna's terms) in engine terms, or None if they are not in its space."""
        if not all(name in values for name in run.codecs):
            return None
        try:
            params = {name: c.to_engine(values[name]) for name, c in run.codecs.items()}
            return run.engine.space.validate_params(params)
        except (ValueError, TypeError, InvalidParamsError):
            return None

    def _record(self, run: _EngineRun, study: Study, t: FrozenTrial) -> None:
        """Tell the engine a finished trial: its own suggestion by id, anything else observed."""
        suggestion_id = run.pending.pop(t._trial_id, None)
        params = self._engine_params(run, t.params)
        outcome = self._outcome(study, t) if params is not None else None
        engine = run.engine
        if suggestion_id is not None and (
            outcome is None
            or suggestion_id.startswith(_FOREIGN_PREFIX)
            or not _same_suggestion(engine, suggestion_id, params)
        ):
            _forget(engine, suggestion_id)
            suggestion_id = None
        if outcome is None or params is None:  # params is None: outcome is too
            return
        loss, cost, failed = outcome
        metrics = {k: float(v) for k, v in t.user_attrs.items() if _is_number(v)}
        if suggestion_id is not None:
            try:
                engine.tell(suggestion_id, loss, cost, failed=failed, metrics=metrics)
                return
            except UnknownSuggestionError:  # its lease ran out: record it all the same
                pass
        engine.observe(params, loss, cost, failed=failed, metrics=metrics)

    def _outcome(self, study: Study, t: FrozenTrial) -> tuple[float | None, float, bool] | None:
        """(loss, cost, failed) of a finished trial, or None (with a warning) if unusable."""
        complete = t.state == TrialState.COMPLETE
        cost = self._trial_cost(study, t)
        if cost is None:
            if complete:
                raise InvalidObservationError(
                    _NO_COST.format(number=t.number, attr=self._cost_attr)
                )
            self._warn_once(t, f"{t.state.name} trial {t.number} has no cost ({_HOW_TO_COST})")
            return None
        cost = _checked_cost(cost, t)
        if not complete or t.values is None or not math.isfinite(t.values[0]):
            return None, cost, True
        return float(t.values[0]), cost, False

    def _trial_cost(self, study: Study, t: FrozenTrial) -> Any:
        if len(study.directions) == 2 and t.state == TrialState.COMPLETE and t.values:
            return t.values[1]
        if self._cost is not None:
            value = self._cost(t)
            if value is not None:
                return value
        return t.user_attrs.get(self._cost_attr)

    def _warn_once(self, t: FrozenTrial, message: str) -> None:
        if t._trial_id not in self._warned:
            self._warned.add(t._trial_id)
            warnings.warn(message, UnusableTrialWarning, stacklevel=4)


_HOW_TO_COST = "set trial.set_user_attr('cost', ...) before it fails, or pass cost= to the sampler"
_NO_COST = (
    "trial {number} completed without a cost: a single-objective study needs cost=callable "
    "on ParetoCostSampler or the user attribute {attr!r} on every trial (or make the study "
    "two-objective, returning (loss, cost))"
)


def _check_directions(study: Study) -> None:
    directions = study.directions
    if len(directions) > 2 or any(d != StudyDirection.MINIMIZE for d in directions):
        names = [d.name.lower() for d in directions]
        raise UnsupportedStudyError(
            f"ParetoCostSampler needs directions ['minimize', 'minimize'] (loss, cost) or "
            f"['minimize'] (loss, with the cost from cost= or a user attribute), got {names}; "
            "negate a score to minimise it"
        )


def _checked_cost(cost: Any, t: FrozenTrial) -> float:
    value = float(cost) if _is_number(cost) else math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidObservationError(
            f"trial {t.number} has cost {cost!r}; the cost must be a positive finite number "
            "(what the trial spent, e.g. GPU-seconds; not its log)"
        )
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _intersection(trials: list[FrozenTrial]) -> dict[str, BaseDistribution]:
    space = dict(trials[0].distributions)
    for t in trials[1:]:
        space = {k: d for k, d in space.items() if t.distributions.get(k) == d}
    return space


def _union(trials: list[FrozenTrial]) -> dict[str, BaseDistribution]:
    """Every parameter the trials have, except one whose distributions disagree."""
    space: dict[str, BaseDistribution] = {}
    conflicts: set[str] = set()
    for t in trials:
        for name, d in t.distributions.items():
            if space.setdefault(name, d) != d:
                conflicts.add(name)
    return {k: d for k, d in space.items() if k not in conflicts}


def _with_held(
    engine: ParetoSearch, params_by_trial: dict[int, dict[str, Any]], *, clock: Callable[[], float]
) -> ParetoSearch:
    """The engine with other trials' params held as pending suggestions.

    The engine takes pending suggestions only with a history, so this rebuilds it from
    its small state and its history plus them (its rng, radius and GP cache carry over).
    """
    expires_at = clock() + engine.settings.lease_seconds
    held = {
        _FOREIGN_PREFIX + str(trial_id): Suggestion(
            suggestion_id=_FOREIGN_PREFIX + str(trial_id),
            params=params,
            reason="external",
            expires_at=expires_at,
        )
        for trial_id, params in params_by_trial.items()
    }
    history = engine.history()
    pending = [s for s in history.pending if s.suggestion_id not in held]
    return ParetoSearch.from_state_dict(
        engine.state_dict(with_history=False),
        history=History(history.observations, (*pending, *held.values())),
        clock=clock,
    )


def _same_suggestion(engine: ParetoSearch, suggestion_id: str, params: Any) -> bool:
    """Whether the trial ran the engine's suggestion (Optuna may have sampled otherwise)."""
    return any(s.suggestion_id == suggestion_id and s.params == params for s in engine.pending())


def _forget(engine: ParetoSearch, suggestion_id: str) -> None:
    with contextlib.suppress(UnknownSuggestionError):  # its lease already ran out
        engine.forget(suggestion_id)


def _summary(suggestion: Suggestion) -> dict[str, Any]:
    return {
        "reason": suggestion.reason,
        "predicted_loss": suggestion.predicted_loss,
        "predicted_cost": suggestion.predicted_cost,
        "probability_of_success": suggestion.probability_of_success,
    }
