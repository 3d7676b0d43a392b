"""``ParetoSearch``: the cost-aware Pareto search engine (ask / tell / forget / front).

The engine proposes training configurations along the loss-vs-cost Pareto front, in the
manner of CARBS (Fetterman et al. 2023, arXiv 2306.08055):

1. a random phase of ``n_startup`` trials near the start point (the first trial the
   engine did not suggest itself, e.g. an enqueued one, else the search center);
2. then, per suggestion, a target cost drawn across the front's costs and one
   overshoot beyond them (above the costliest point while the trial count is the
   scarcer limit, so the search walks up in scale; below the cheapest while compute
   is), or one step above the front's costliest point once the pace allows it (climb
   pacing; both decided by ``search.pacing`` from the study's ``StudyLimits`` and what
   is spent and pending), candidates drawn
   around the front points nearest that cost within a trust-region radius, and the
   candidate with the best ``log gain + log P(success)`` near the target, the gain
   being, on alternate suggestions, the expected improvement below the Pareto surface
   at the candidate's predicted cost and the expected area it cuts from the front's
   staircase, which values filling gaps between the front's costs
   (``search.proposals``, ``search.acquisition``); both are measured against the
   *smoothed* front (the loss GP's posterior means at the observed points), so a lucky
   draw does not set the bar; beyond the
   costliest front point the loss is predicted by scaling transfer along the front
   (``search.loss_model``); nothing is suggested that the budget left cannot pay for;
3. every ``remeasure_every``-th model suggestion re-runs a front point whose loss looks
   luckier than the noise allows, within ``REMEASURE_SHARE`` of the spend;
4. with ``spread_every`` set (the service sets it for a study with scaling axes), every
   ``spread_every``-th one is a spread point: a front point moved well off it at its
   cost, so the scaling rules see each optimum's bowl (``search.proposals``).

The radius grows when a trial improves the front by more than the loss GP's noise and
shrinks after ``shrink_patience`` trials that do not. Pending trials enter the loss GP
as kriging-believer fantasies, so ``ask(n)`` returns n distinct configurations. Nothing
is silently random: a suggestion's ``reason`` is ``startup``, ``model``, ``remeasure``,
``spread`` or ``fallback: <why>``. ``front()`` is the engine's estimate of the front (repeats
merged, each loss the model's estimate); ``observations`` are the raw trials.

The engine is deterministic: the same seed and the same history give the same
suggestions. Its state is plain JSON and small (``state_dict(with_history=False)``: the
random stream, radius, counters and GP cache, whatever the number of trials); the trials
themselves are a ``search.history.History`` (observations and pending suggestions). Used
standalone, the engine keeps its history in memory (``history()``) and ``state_dict()``
saves both. A caller that keeps the trials itself (the service, in its database) saves
the small state and rebuilds the engine at each step with
``from_state_dict(state, history=...)``, as an Optuna sampler is handed the study's
trials: the engine then holds no trial of its own, and no lease of its own fires.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from search.candidates import SpaceLayout
from search.errors import HistoryMismatchError, UnknownSuggestionError
from search.history import History, checked, digest, make_observation
from search.loss_model import ScaledLossModel
from search.pacing import Pace, StudyLimits, pace
from search.pareto import (
    FrontPoint,
    RepeatGroup,
    config_key,
    estimated_front,
    group_repeats,
)
from search.proposals import (
    Proposal,
    ProposalContext,
    pick_remeasure,
    propose_fallback,
    propose_model,
    propose_spread,
    propose_startup,
)
from search.settings import SearchSettings
from search.space import SearchSpace
from search.surrogates import FittedModels, ObservationArrays, estimated_losses, fit_models
from search.threads import single_threaded
from search.types import Observation, Suggestion

# 2: the history (observations, pending, expired ids) is optional, under "history".
STATE_VERSION = 2
# Re-measurements spend at most this share of everything spent so far.
REMEASURE_SHARE = 0.1
# Suggestions that do not try to improve the front, so do not move the trust radius.
_RADIUS_NEUTRAL = ("remeasure", "spread")
# Settings fields retired since: dropped when an older state is restored.
_RETIRED_SETTINGS = ("budget", "gain")
_EXPIRED_MEMORY = 1000  # how many expired ids tell() can still name as expired
_EXHAUSTED = (
    "fallback: every candidate was already tried or pending (a small or nearly exhausted "
    "space); repeating the best of them"
)


class ParetoSearch:
    """Ask for configurations, tell their (loss, cost), read the loss-vs-cost front.

    ``limits`` are the study's own (trial cap, compute budget, trials in flight; see
    ``search.pacing``): the engine paces its spending so they run out together.
    ``clock`` returns the current time in seconds (leases are measured with it); tests
    pass a fake one. Not thread-safe: one engine per study, driven by one caller.
    """

    def __init__(
        self,
        space: SearchSpace,
        settings: SearchSettings | None = None,
        *,
        limits: StudyLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.space = space
        self.settings = settings or SearchSettings()
        self.limits = limits or StudyLimits()
        self._clock = clock
        self._layout = SpaceLayout.of(space)
        self._rng = np.random.default_rng(self.settings.seed)
        self._observations: list[Observation] = []
        self._x = np.zeros((0, space.dim))
        self._loss = np.zeros(0)
        self._log_cost = np.zeros(0)
        self._failed = np.zeros(0, dtype=bool)
        self._pending: dict[str, Suggestion] = {}
        self._pending_rows: dict[str, np.ndarray] = {}  # see _pending_x
        self._expired: list[str] = []
        self._radius = self.settings.initial_radius
        self._misses = 0
        self._n_taken_in = 0  # observations the radius has moved on (_take_in)
        self._n_issued = 0
        self._n_since_remeasure = 0
        self._hyper_cache: dict[str, Any] = {}
        self._models: FittedModels | None = None
        self._noise_std = 0.0  # the loss GP's noise at its last fit (radius updates)

    # -- reading ----------------------------------------------------------------------

    @property
    def observations(self) -> tuple[Observation, ...]:
        return tuple(self._observations)

    @property
    def radius(self) -> float:
        """The current trust-region radius, in internal units."""
        return self._radius

    def pending(self) -> list[Suggestion]:
        """Suggestions issued and neither told, forgotten nor expired, oldest first."""
        self._expire_leases()
        return list(self._pending.values())

    def front(self) -> list[Observation]:
        """The engine's estimate of the loss-vs-cost Pareto front, by increasing cost.

        A configuration measured more than once counts once, with its mean cost
        (``metrics["n_measurements"]`` says how many). Each configuration's ``loss`` is
        the loss GP's posterior mean there, which weighs its own measurements against
        what its neighbourhood says (``metrics["observed_loss"]`` keeps the mean of its
        measurements), and the front is taken on those estimates: a lucky draw does not
        stay on it. Before the model can be fitted (fewer than 2 successes, or a failed
        fit) the estimate is the observed mean. The raw trials are ``observations``.
        Grouping and the front are ``search.pareto.group_repeats`` and
        ``estimated_front``, the definition the service shows too.
        """
        observations = self._observations
        groups = group_repeats(
            [config_key(o.params) for o in observations],
            np.array([math.nan if o.failed else o.loss for o in observations]),
            np.array([o.cost for o in observations]),
        )
        if not groups:
            return []
        params = [observations[g.members[0]].params for g in groups]
        points = estimated_front(groups, self._estimated_losses(groups, params))
        return [self._front_observation(point) for point in points]

    def _front_observation(self, point: FrontPoint) -> Observation:
        """A front point as an observation: its first measurement's params, suggestion
        and metrics, the estimated loss, the mean cost."""
        first = self._observations[point.members[0]]
        return Observation(
            params=first.params,
            loss=point.estimated_loss,
            cost=point.cost,
            suggestion_id=first.suggestion_id,
            metrics={
                **first.metrics,
                "observed_loss": point.observed_loss,
                "n_measurements": float(point.n_measurements),
            },
        )

    def _estimated_losses(
        self, groups: list[RepeatGroup], params: list[dict[str, Any]]
    ) -> np.ndarray:
        """The loss GP's posterior means at each group's ``params``, or their observed
        means. Read only: models fitted here are not kept and the GP cache is copied, so
        calling ``front()`` never changes what the engine suggests next."""
        observed = np.array([g.observed_loss for g in groups])
        if int(np.sum(~self._failed)) < 2:
            return observed
        models = self._models
        if models is None:
            cache = json.loads(json.dumps(self._hyper_cache))
            with single_threaded():
                models = fit_models(self._arrays(), settings=self.settings, cache=cache)
        if models.loss_gp is None:
            return observed
        return estimated_losses(models, self._arrays(), self.space.to_internal_many(params))

    # -- asking -----------------------------------------------------------------------

    def ask(self, n: int = 1) -> list[Suggestion]:
        """``n`` new suggestions (distinct from each other and from pending ones)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"ask(n) needs a positive integer n, got {n!r}")
        self._expire_leases()
        with single_threaded():
            return self._ask(n)

    def _ask(self, n: int) -> list[Suggestion]:
        out: list[Suggestion] = []
        loss_model: ScaledLossModel | None = None
        for _ in range(n):
            if self._in_startup():
                proposal = propose_startup(self._context())
            else:
                models = self._fitted_models()
                if loss_model is None and models.scaled_loss is not None:
                    loss_model = self._with_pending_fantasies(models.scaled_loss)
                proposal = self._propose(models, loss_model)
                if proposal.reason == "model" and loss_model is not None:
                    x = proposal.x_internal[None, :]
                    loss_model = loss_model.condition_on(x, loss_model.predict(x)[0])
            if proposal.repeat_of is None and self._already_taken(proposal.x_internal):
                proposal = dataclasses.replace(proposal, reason=_EXHAUSTED)
            out.append(self._issue(proposal))
        return out

    def _already_taken(self, x_internal: np.ndarray) -> bool:
        taken = np.vstack([self._x, self._pending_x()])
        return bool(np.any(np.all(np.abs(taken - x_internal) <= 1e-9, axis=1)))

    def _propose(self, models: FittedModels, loss_model: ScaledLossModel | None) -> Proposal:
        ctx = self._context()
        if models.problem is not None or loss_model is None:
            return propose_fallback(ctx, models, self._arrays())
        every = self.settings.remeasure_every
        if every and self._n_since_remeasure >= every:
            repeat = pick_remeasure(
                ctx, models, self._arrays(), self._repeat_counts(), max_cost=self._remeasure_left()
            )
            if repeat is not None:
                self._n_since_remeasure = 0
                return repeat
        self._n_since_remeasure += 1
        spread_every = self.settings.spread_every
        if spread_every and self._n_issued % spread_every == 0:
            spread = propose_spread(ctx, models, self._arrays())
            if spread is not None:
                return spread
        return propose_model(ctx, models, loss_model, self._arrays())

    def _in_startup(self) -> bool:
        return len(self._observations) + len(self._pending) < self.settings.n_startup

    def _context(self) -> ProposalContext:
        pending_x = self._pending_x()
        return ProposalContext(
            space=self.space,
            layout=self._layout,
            settings=self.settings,
            radius=self._radius,
            rng=self._rng,
            taken_x=np.vstack([self._x, pending_x]),
            pending_x=pending_x,
            pace=self._pace(),
            anchor=self._start_point(),
            sequence_index=self._n_issued,
        )

    def _pace(self) -> Pace:
        spent = float(np.exp(self._log_cost).sum())
        typical = float(np.exp(np.median(self._log_cost))) if self._log_cost.size else 0.0
        pending_cost = sum(
            typical if s.predicted_cost is None else s.predicted_cost
            for s in self._pending.values()
        )
        return pace(
            self.limits,
            spent=spent,
            pending_cost=pending_cost,
            n_used=len(self._observations) + len(self._pending),
            climb_share=self.settings.climb_share,
        )

    def _start_point(self) -> np.ndarray:
        """Internal coordinates of the first trial the engine did not suggest (observed,
        or held pending as ``external``), else the center: where the study starts."""
        for i, observation in enumerate(self._observations):
            if observation.suggestion_id is None:
                return self._x[i]
        for suggestion in self._pending.values():
            if suggestion.reason == "external":
                return self.space.to_internal(suggestion.params)
        return np.zeros(self.space.dim)

    def set_limits(self, limits: StudyLimits) -> None:
        """Replace the study's limits (its budget was changed)."""
        self.limits = limits

    def _pending_x(self) -> np.ndarray:
        """The pending suggestions' internal coordinates, oldest first. Each is encoded
        once and kept by id: asking a batch re-reads them for every new suggestion, and
        re-encoding (validating) all of them each time made ``ask(n)`` quadratic."""
        if not self._pending:
            return np.zeros((0, self.space.dim))
        known = self._pending_rows
        self._pending_rows = {
            sid: known[sid] if sid in known else self.space.to_internal(suggestion.params)
            for sid, suggestion in self._pending.items()
        }
        return np.vstack(list(self._pending_rows.values()))

    def _with_pending_fantasies(self, loss_model: ScaledLossModel) -> ScaledLossModel:
        """The loss model conditioned on every pending trial at its posterior mean."""
        x_pending = self._pending_x()
        if x_pending.shape[0] == 0:
            return loss_model
        return loss_model.condition_on(x_pending, loss_model.predict(x_pending)[0])

    def _issue(self, proposal: Proposal) -> Suggestion:
        if proposal.repeat_of is not None:  # the very same values, not a round trip
            params = dict(self._observations[proposal.repeat_of].params)
        else:
            params = self.space.from_internal(proposal.x_internal)
        digest = hashlib.sha256(
            json.dumps([self.settings.seed, self._n_issued, params], sort_keys=True).encode()
        ).hexdigest()[:10]
        suggestion = Suggestion(
            suggestion_id=f"s{self._n_issued}-{digest}",
            params=params,
            reason=proposal.reason,
            predicted_loss=proposal.predicted_loss,
            predicted_cost=proposal.predicted_cost,
            probability_of_success=proposal.probability_of_success,
            expires_at=self._clock() + self.settings.lease_seconds,
            extra=dict(proposal.extra),
        )
        self._n_issued += 1
        self._pending[suggestion.suggestion_id] = suggestion
        return suggestion

    def _fitted_models(self) -> FittedModels:
        if self._models is None:
            self._models = fit_models(
                self._arrays(), settings=self.settings, cache=self._hyper_cache
            )
            if self._models.loss_gp is not None:
                self._noise_std = self._models.loss_gp.noise_std
        return self._models

    def _remeasure_left(self) -> float:
        """What re-measurement may still spend under a compute budget: ``REMEASURE_SHARE``
        of the spend so far, less what repeats of a configuration (its measurements after
        the first) took. Without one, ``remeasure_every`` alone bounds its share of the
        trials (capping it there changed the issue-3 engine study's paths and refusals)."""
        if self.limits.max_cost is None:
            return math.inf
        cost = np.exp(self._log_cost)
        _, first = np.unique(self._x.round(12), axis=0, return_index=True)
        repeats_cost = float(cost.sum() - cost[first].sum())
        return REMEASURE_SHARE * float(cost.sum()) - repeats_cost

    # -- telling ----------------------------------------------------------------------

    def tell(
        self,
        suggestion_id: str,
        loss: float | None,
        cost: float,
        *,
        failed: bool = False,
        metrics: Mapping[str, Any] | None = None,
    ) -> Observation:
        """Record the outcome of a pending suggestion and close it.

        ``loss`` may be None only when ``failed``; ``cost`` is what the trial spent
        (positive and finite, failed or not).
        """
        self._expire_leases()
        suggestion = self._pending.get(suggestion_id)
        if suggestion is None:
            raise UnknownSuggestionError(self._unknown_message(suggestion_id))
        observation = make_observation(
            suggestion.params,
            loss,
            cost,
            failed=failed,
            suggestion_id=suggestion_id,
            reason=suggestion.reason,
            metrics=metrics,
        )
        del self._pending[suggestion_id]
        self._append([observation])
        self._take_in()
        return observation

    def observe(
        self,
        params: Mapping[str, Any],
        loss: float | None,
        cost: float,
        *,
        failed: bool = False,
        metrics: Mapping[str, Any] | None = None,
    ) -> Observation:
        """Record a trial that was not suggested by this engine (imports, warm starts)."""
        normalised = self.space.validate_params(params)
        observation = make_observation(normalised, loss, cost, failed=failed, metrics=metrics)
        self._append([observation])
        self._take_in()
        return observation

    def forget(self, suggestion_id: str) -> None:
        """Close a pending suggestion that will never be told (cancelled, lost)."""
        self._expire_leases()
        if suggestion_id not in self._pending:
            raise UnknownSuggestionError(self._unknown_message(suggestion_id))
        del self._pending[suggestion_id]

    def _take_in(self) -> None:
        """Move the radius on each observation not yet taken in, in order: once per trial,
        on its arrival, and only on the engine's own suggestions (not re-measurements).
        A rebuilt engine takes in the new part of its history here, as ``tell`` would
        have, one observation after another."""
        for i in range(self._n_taken_in, len(self._observations)):
            observation = self._observations[i]
            engine_made = observation.suggestion_id is not None
            moves = engine_made and observation.reason not in _RADIUS_NEUTRAL
            if moves and i + 1 > self.settings.n_startup:
                self._update_radius(improved=self._improves_front(i))
        self._n_taken_in = len(self._observations)

    def _append(self, observations: list[Observation]) -> None:
        """Add observations to the list and to the arrays the models read."""
        if not observations:
            return
        self._observations.extend(observations)
        x = self.space.to_internal_many([o.params for o in observations])
        self._x = np.vstack([self._x, x])
        self._loss = np.append(self._loss, [o.loss for o in observations])
        self._log_cost = np.append(self._log_cost, np.log([o.cost for o in observations]))
        self._failed = np.append(self._failed, [o.failed for o in observations])
        self._models = None

    def _improves_front(self, i: int) -> bool:
        """Whether observation ``i`` beats every earlier success at its cost or below by
        more than the loss GP's noise standard deviation: a lucky draw within the noise
        is not a reason to widen the search around it."""
        if self._failed[i]:
            return False
        earlier = np.flatnonzero(~self._failed[:i])
        cheaper = earlier[self._log_cost[earlier] <= self._log_cost[i]]
        if cheaper.size == 0:
            return True
        return bool(self._loss[i] + self._noise_std < self._loss[cheaper].min())

    def _update_radius(self, *, improved: bool) -> None:
        s = self.settings
        if improved:
            self._radius = min(self._radius * s.radius_grow, s.max_radius)
            self._misses = 0
            return
        self._misses += 1
        if self._misses >= s.shrink_patience:
            self._radius = max(self._radius * s.radius_shrink, s.min_radius)
            self._misses = 0

    def _expire_leases(self) -> None:
        now = self._clock()
        for suggestion_id, suggestion in list(self._pending.items()):
            if suggestion.expires_at is not None and suggestion.expires_at <= now:
                del self._pending[suggestion_id]
                self._expired = [*self._expired, suggestion_id][-_EXPIRED_MEMORY:]

    def _unknown_message(self, suggestion_id: str) -> str:
        if suggestion_id in self._expired:
            return (
                f"suggestion {suggestion_id!r} expired (its lease of "
                f"{self.settings.lease_seconds:g} s ran out); record its result with "
                "observe(params, ...) instead"
            )
        return (
            f"suggestion {suggestion_id!r} is not pending: never issued, or already told "
            "or forgotten"
        )

    # -- helpers over the observations ------------------------------------------------

    def _arrays(self) -> ObservationArrays:
        return ObservationArrays(self._x, self._loss, self._log_cost, self._failed)

    def _repeat_counts(self) -> np.ndarray:
        """(n,) how many observations share each observation's configuration."""
        _, inverse, counts = np.unique(
            self._x.round(12), axis=0, return_inverse=True, return_counts=True
        )
        return counts[inverse.reshape(-1)]

    # -- state ------------------------------------------------------------------------

    def history(self) -> History:
        """The trials the engine holds: its observations and pending suggestions."""
        self._expire_leases()
        return self._held()

    def _held(self) -> History:
        return History(observations=self.observations, pending=tuple(self._pending.values()))

    def state_dict(self, *, with_history: bool = True) -> dict[str, Any]:
        """The engine as JSON-able data (``json.dumps`` works on it).

        ``with_history=False`` leaves out the trials (``history()``): what is left does
        not grow with them, and ``from_state_dict(state, history=...)`` needs them back.
        """
        rng_state = self._rng.bit_generator.state
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "settings": self.settings.model_dump(mode="json"),
            "limits": self.limits.model_dump(mode="json"),
            "space": self.space.model_dump(mode="json"),
            "rng": {
                "state": str(rng_state["state"]["state"]),
                "inc": str(rng_state["state"]["inc"]),
                "has_uint32": int(rng_state["has_uint32"]),
                "uinteger": int(rng_state["uinteger"]),
            },
            "radius": self._radius,
            "misses": self._misses,
            "n_issued": self._n_issued,
            "n_since_remeasure": self._n_since_remeasure,
            "gp_hyperparameters": json.loads(json.dumps(self._hyper_cache)),
            "noise_std": self._noise_std,
            "taken_in": self._taken_in_mark(),
        }
        if with_history:
            state["history"] = {**self._held().to_dict(), "expired": list(self._expired)}
        return state

    def _taken_in_mark(self) -> dict[str, Any]:
        """How many observations the engine has taken in, and their digest."""
        n = self._n_taken_in
        return {"count": n, "digest": digest(self._observations[:n])}

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Any],
        *,
        history: History | None = None,
        clock: Callable[[], float] = time.time,
    ) -> ParetoSearch:
        """Rebuild an engine from ``state_dict()``; it suggests what the original would.

        ``history`` replaces any history the state holds; it must start with the
        observations the state has taken in, in the same order (``HistoryMismatchError``
        if not). The observations after them are taken in now, in order, as if told.
        """
        state = _upgraded(state)
        space = SearchSpace.model_validate(state["space"])
        fields = {k: v for k, v in state["settings"].items() if k not in _RETIRED_SETTINGS}
        limits = StudyLimits.model_validate(state.get("limits", {}))
        engine = cls(space, SearchSettings.model_validate(fields), limits=limits, clock=clock)
        saved = state.get("history")
        if history is None:
            history = History.from_dict(saved or {})
            engine._expired = list((saved or {}).get("expired", []))
        engine._load(history)
        rng = state["rng"]
        engine._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(rng["state"]), "inc": int(rng["inc"])},
            "has_uint32": rng["has_uint32"],
            "uinteger": rng["uinteger"],
        }
        engine._radius = float(state["radius"])
        engine._misses = int(state["misses"])
        engine._n_issued = int(state["n_issued"])
        engine._n_since_remeasure = int(state["n_since_remeasure"])
        engine._hyper_cache = json.loads(json.dumps(state["gp_hyperparameters"]))
        engine._noise_std = float(state.get("noise_std", 0.0))
        engine._n_taken_in = _checked_mark(state["taken_in"], engine._observations)
        engine._take_in()
        return engine

    def _load(self, history: History) -> None:
        """Hold ``history``'s observations and pending suggestions (checked)."""
        self._append([checked(o) for o in history.observations])
        for suggestion in history.pending:
            if suggestion.suggestion_id in self._pending:
                raise ValueError(f"suggestion {suggestion.suggestion_id!r} is pending twice")
            self._pending[suggestion.suggestion_id] = suggestion
        self._pending_x()  # validates the pending params


def _upgraded(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """A version-1 state (the trials at the top level, all taken in) as version 2."""
    version = state.get("version")
    if version == STATE_VERSION:
        return state
    if version != 1:
        raise ValueError(f"engine state version {version!r} is not {STATE_VERSION} (or 1)")
    observations = [Observation.from_dict(o) for o in state["observations"]]
    rest = {k: v for k, v in state.items() if k not in ("observations", "pending", "expired")}
    return {
        **rest,
        "version": STATE_VERSION,
        "taken_in": {"count": len(observations), "digest": digest(observations)},
        "history": {k: state.get(k, []) for k in ("observations", "pending", "expired")},
    }


def _checked_mark(mark: Mapping[str, Any], observations: Sequence[Observation]) -> int:
    """The number of observations taken in, once ``observations`` are seen to start
    with them (same outcomes, same order): else taking in would skip or repeat some."""
    count = int(mark["count"])
    if count > len(observations):
        raise HistoryMismatchError(
            f"the engine has taken in {count} observations but the history holds "
            f"{len(observations)}: pass every finished trial it learned from"
        )
    if digest(observations[:count]) != mark["digest"]:
        raise HistoryMismatchError(
            f"the first {count} observations of the history are not the ones the engine "
            "took in: pass the observations in the order they finished, new ones last, "
            "with the loss and cost they were learned with"
        )
    return count
