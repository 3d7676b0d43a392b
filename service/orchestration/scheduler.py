"""The scheduler: keeps each study's trials in flight, within its budget.

One ``Scheduler`` per process that owns engines (the control worker, the embedded
runner). Each public method is one transaction under the study's row lock, so several
replicas can call them concurrently without dispatching a slot twice or overshooting
the budget by more than the trials already in flight.

A step, in order:
1. reclaim: RUNNING trials whose lease ran out are requeued (infrastructure: the worker
   went silent) or failed (past their hard time limit: the configuration's fault). A
   trial no worker ever took is not silent but waiting: it keeps its place while its
   queue's workers are busy or absent (a study whose queue no live worker consumes is
   logged once), and is sent again, without counting an attempt, only when an idle
   worker of its queue should have taken it (its message was lost). A reclaimed
   attempt is retired (``service.orchestration.fleet``), so a worker handed it later drops it;
2. dispatch: WAITING trials (retries first, then the proposal buffer), up to
   ``in_flight`` running and the budget; the engine is touched only if the buffer is
   short; tasks are sent after the commit, so a freed worker never waits for a GP fit;
3. sync and refill (a second transaction, once the buffer is down to half of
   ``proposal_buffer``): tell the engine every final trial it has not seen (results are recorded by
   ``service.orchestration.results`` without the engine, possibly in another process), ask up to
   ``proposal_buffer`` suggestions ahead of need, complete a study whose budget is spent, and save
   the engine once.

Engines are cached per study and rebuilt from ``state_dict`` JSON whenever the row's
``engine_version`` moved on (another process wrote it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from search.engine import ParetoSearch
from search.errors import InvalidObservationError, UnknownSuggestionError
from search.pacing import StudyLimits
from search.settings import SearchSettings
from search.space import SearchSpace
from service.config import Settings
from service.domain import (
    FINAL_STUDY_STATES,
    StudySpec,
    StudyState,
    TrialState,
    trial_observation,
)
from service.orchestration.budget import trials_left
from service.orchestration.results import IngestOutcome, ingest_results
from service.orchestration.studies import create_study_row
from service.orchestration.verification import waiting_verifications
from service.reads.study_rules import fit_rules
from service.storage import repository as repo
from service.storage.db import transaction
from service.storage.tables import StudyRow, TrialRow
from workers.contracts import TrialRequest, TrialResult, attempt_task_id
from workers.heartbeat import QueueConsumers

logger = logging.getLogger(__name__)

# The service owns leases (per trial, in the database); the engine's own must never fire.
ENGINE_LEASE_SECONDS = 1e12
# A failed trial still cost something; the engine needs a positive cost to learn from it.
MIN_FAILED_COST = 1e-6


class Dispatcher(Protocol):
    """Sends one trial attempt to a worker pool (Celery queue or in-process pool)."""

    def send(self, request: TrialRequest, *, queue: str) -> None: ...


@runtime_checkable
class BatchingDispatcher(Dispatcher, Protocol):
    """A dispatcher whose sends inside ``batch()`` leave together when it closes."""

    def batch(self) -> AbstractContextManager[None]: ...


HeartbeatSource = Callable[[list[TrialRow]], dict[int, float]]


class Fleet(Protocol):
    """What the scheduler learns of the trial workers besides heartbeats, and where it
    retires reclaimed attempts (``service.orchestration.fleet.RedisFleet``); None answers:
    unknown."""

    def consumers(self) -> dict[str, QueueConsumers] | None: ...

    def started(self, task_ids: list[str]) -> set[str] | None: ...

    def retire(self, task_ids: list[str]) -> None: ...


@dataclass
class StepReport:
    """What one step did, for logs and progress bars."""

    study_id: int
    state: StudyState
    dispatched: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    told: int = 0
    outcomes: list[IngestOutcome] = field(default_factory=list)


def load_spec(study: StudyRow) -> StudySpec:
    return StudySpec.model_validate(study.spec)


def search_settings(spec: StudySpec) -> SearchSettings:
    """The engine's settings: the study's ``search`` fields, plus what the study itself
    decides (its seed and trial-cost ceiling)."""
    return SearchSettings(
        seed=spec.seed,
        max_suggestion_cost=spec.max_trial_cost,
        lease_seconds=ENGINE_LEASE_SECONDS,
        **spec.search,
    )


def study_limits(spec: StudySpec) -> StudyLimits:
    """The study's budget and trials in flight, which the engine paces itself against."""
    return StudyLimits(
        max_trials=spec.budget.max_trials,
        max_cost=spec.budget.max_cost,
        in_flight=spec.in_flight,
    )


def resolve_space(spec: StudySpec) -> SearchSpace:
    """The study's space, or its objective's default one (imports the objective)."""
    if spec.space is not None:
        return spec.space
    from workers.objectives.registry import create_objective

    return create_objective(spec.objective, spec.objective_options).default_space()


class Scheduler:
    """Asks, dispatches, syncs and reclaims for every study in one database."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        settings: Settings,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], float] = time.time,
        heartbeats: HeartbeatSource | None = None,
        ask_timer: Callable[[float], None] | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.dispatcher = dispatcher
        self.clock = clock
        self.heartbeats = heartbeats
        self.ask_timer = ask_timer  # told the wall seconds of every engine.ask
        self.fleet = fleet  # None (embedded): every dispatched trial counts as taken
        self._engines: dict[int, tuple[int, ParetoSearch]] = {}
        self._unserved: set[tuple[int, str]] = set()  # (study, queue) already warned of

    # -- studies ---------------------------------------------------------------------

    def create_study(self, spec: StudySpec) -> int:
        """Store a study; its engine is built on the first step (``_engine``)."""
        with transaction(self.sessions) as session:
            return create_study_row(session, spec=spec, now=self.clock()).id

    def set_state(self, study_id: int, state: StudyState) -> None:
        """Pause, resume or stop; stopping cancels the proposal buffer."""
        with self._locked(study_id) as (session, study):
            repo.set_study_state(session, study=study, state=state, now=self.clock())
            if state in FINAL_STUDY_STATES:
                self._cancel_waiting(session, study)

    def step_each(self, study_ids: Sequence[int]) -> None:
        """Step each study on its own: one whose step fails is logged and the rest still
        run (a tick must not leave every later study's silent trials unreclaimed).

        A study whose stored spec no longer validates (a check added after the study was
        created) would fail on every tick: it is stopped, with the reason as its message.
        """
        for study_id in study_ids:
            try:
                self.step(study_id)
            except ValidationError as exc:
                self._stop_unrunnable(study_id, exc)
            except Exception:
                logger.exception("step of study %s failed; the others still run", study_id)

    def _stop_unrunnable(self, study_id: int, error: ValidationError) -> None:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        logger.error("study %s stopped: its stored spec is invalid (%s)", study_id, reason)
        with self._locked(study_id) as (session, study):
            repo.set_study_state(
                session,
                study=study,
                state=StudyState.STOPPED,
                now=self.clock(),
                message=f"stopped: its stored spec is no longer valid ({reason})",
            )
            self._cancel_waiting(session, study)

    # -- the step ----------------------------------------------------------------------

    def step(
        self, study_id: int, *, reclaim: bool = True, results: Sequence[TrialResult] = ()
    ) -> StepReport:
        """Record ``results``, reclaim and dispatch from the buffer, send, then tell the
        engine and refill.

        The first transaction records the results (idempotently, ``service.orchestration.results``)
        and fills the slots they freed; it touches the engine only when the buffer cannot cover the
        free slots, so a freed worker's next trial leaves at database speed. The second (skipped
        while the buffer is above its low watermark) tells the engine every new result and asks
        ahead, with one engine save. ``reclaim=False`` leaves lease checks to the periodic tick (the
        path a recorded result takes).
        """
        requests: list[tuple[TrialRequest, str]] = []
        retired: list[str] = []
        consumers = self._consumers() if reclaim else None
        with self._locked(study_id) as (session, study):
            report = StepReport(study_id=study_id, state=StudyState(study.state))
            report.outcomes = ingest_results(
                session,
                study_id=study_id,
                results=results,
                now=self.clock(),
                max_attempts=self.settings.max_attempts,
            )
            if reclaim:
                report.requeued = self._reclaim(
                    session, study, consumers=consumers, retired=retired
                )
            tally = repo.tally(session, study_id=study.id)
            if reclaim:
                self._warn_if_unserved(study, tally, consumers)
            if study.state == StudyState.RUNNING and load_spec(study).executor == "workers":
                requests = self._dispatch(session, study, tally)
            elif study.state == StudyState.COMPLETE and load_spec(study).executor == "workers":
                requests = self._dispatch_verification(session, study)
            skip_sync = self._buffer_is_full_enough(
                session, study, _after_dispatch(tally, [r for r, _ in requests])
            )
        if retired and self.fleet is not None:
            self.fleet.retire(retired)
        self._send(requests)
        report.dispatched = [request.trial_id for request, _ in requests]
        if not skip_sync:
            report.told, report.state = self._sync_and_refill(study_id)
        return report

    def _sync_and_refill(self, study_id: int) -> tuple[int, StudyState]:
        """Tell the engine new results, complete a spent study, keep the buffer full.

        While a running study's buffer is above its low watermark (half of
        ``proposal_buffer``), results stay recorded but untold: the engine is told in
        batches, right before it next asks, and a burst of results costs one engine save.
        """
        with self._locked(study_id) as (session, study):
            # One tally serves the whole transaction: telling changes no trial's state,
            # and asking adds WAITING trials, which count neither as spent nor running.
            tally = repo.tally(session, study_id=study_id)
            if self._buffer_is_full_enough(session, study, tally):
                return 0, StudyState(study.state)
            left = trials_left(session, study=study, tally=tally)
            fresh = not repo.has_engine_state(study)
            engine = self._engine(study)
            told = self._sync(session, study, engine)
            asked = self._refill(
                session, study, engine, waiting=tally.by_state[TrialState.WAITING], left=left
            )
            self._maybe_complete(
                session,
                study,
                left=left,
                unfinished=tally.by_state[TrialState.RUNNING] + tally.requeued,
            )
            if fresh or told or asked or study.state == StudyState.COMPLETE:
                self._save(session, study, engine)
            return told, StudyState(study.state)

    def _buffer_is_full_enough(self, session: Session, study: StudyRow, tally: repo.Tally) -> bool:
        """Whether the engine can wait: the buffer is above its low watermark or covers
        the rest of the budget, or the budget is used up and trials still run (the study
        completes, with one sync, after the last of them)."""
        if study.state != StudyState.RUNNING or not repo.has_engine_state(study):
            return False
        waiting = tally.by_state[TrialState.WAITING]
        left = trials_left(session, study=study, tally=tally)
        if left == 0:
            return tally.by_state[TrialState.RUNNING] + tally.requeued > 0
        return waiting > min(self.settings.proposal_buffer // 2, left - 1)

    def _refill(
        self, session: Session, study: StudyRow, engine: ParetoSearch, *, waiting: int, left: int
    ) -> int:
        """Ask suggestions ahead of need, up to ``proposal_buffer`` waiting (``waiting``
        now, ``left`` trials in the budget); returns how many."""
        if study.state != StudyState.RUNNING:
            return 0
        room = min(self.settings.proposal_buffer - waiting, left - waiting)
        if room <= 0:
            return 0
        self._ask(session, study, engine, room)
        return room

    def ask_external(self, study_id: int, *, count: int) -> list[TrialRow]:
        """Hand out up to ``count`` trials to an external runner (ask/tell), each on a lease."""
        with self._locked(study_id) as (session, study):
            engine = self._engine(study)
            self._sync(session, study, engine)
            self._reclaim(session, study, consumers=None, retired=[])
            if study.state == StudyState.COMPLETE:
                trials = waiting_verifications(session, study_id=study.id)[: max(0, count)]
            elif study.state == StudyState.RUNNING:
                tally = repo.tally(session, study_id=study.id)
                n = min(count, trials_left(session, study=study, tally=tally) + tally.requeued)
                trials = self._take(session, study, engine, n)
            else:
                return []
            now = self.clock()
            for trial in trials:
                trial.external = True
                repo.start_trial(
                    session, trial=trial, now=now, lease_seconds=self.settings.lease_seconds
                )
            self._save(session, study, engine)
        return trials

    # -- pieces of a step ------------------------------------------------------------

    def _sync(self, session: Session, study: StudyRow, engine: ParetoSearch) -> int:
        """Tell (or make forget) the engine every final trial it has not seen."""
        trials = repo.unsynced_final_trials(session, study_id=study.id)
        for trial in trials:
            self._sync_one(engine, trial)
            trial.synced = True
        return len(trials)

    def _sync_one(self, engine: ParetoSearch, trial: TrialRow) -> None:
        learn = trial.state == TrialState.COMPLETE or (
            trial.state == TrialState.FAILED and trial.failure_kind != "infrastructure"
        )
        if not learn:
            _forget(engine, trial.suggestion_id)
            return
        failed = trial.state == TrialState.FAILED
        cost = trial.cost_seconds or 0.0
        obs = trial_observation(
            params=trial.params,
            loss=trial.loss,
            cost=max(cost, MIN_FAILED_COST) if failed else cost,
            failed=failed,
            suggestion_id=trial.suggestion_id,
            metrics=trial.metrics,
        )
        try:
            engine.tell(obs.suggestion_id, obs.loss, obs.cost, failed=failed, metrics=obs.metrics)
        except UnknownSuggestionError:
            engine.observe(obs.params, obs.loss, obs.cost, failed=failed, metrics=obs.metrics)
        except InvalidObservationError as exc:
            logger.warning("trial %s not learned from: %s", trial.id, exc)
            _forget(engine, trial.suggestion_id)

    def _reclaim(
        self,
        session: Session,
        study: StudyRow,
        *,
        consumers: dict[str, QueueConsumers] | None,
        retired: list[str],
    ) -> list[int]:
        """Requeue or fail RUNNING trials whose lease ran out; returns requeued ids and
        adds the task ids of the attempts given up on to ``retired``."""
        now = self.clock()
        expired = repo.expired_trials(session, study_id=study.id, now=now)
        fresh = self.heartbeats(expired) if self.heartbeats and expired else {}
        taken = self._taken(expired)
        spec = load_spec(study)
        requeued = []
        for trial in expired:
            beat = fresh.get(trial.id)
            task_id = attempt_task_id(study.id, trial.id, trial.attempt)
            if beat is not None and now - beat < self.settings.heartbeat_grace_seconds:
                repo.heartbeat(
                    session,
                    trial=trial,
                    now=beat,
                    lease_seconds=self.settings.heartbeat_grace_seconds,
                )
                continue
            if trial.id not in taken and not _worth_resending(trial, consumers):
                # Still queued behind busy workers, or no live worker consumes its queue:
                # resending would only queue it again. It waits, no attempt spent.
                trial.lease_expires_at = now + self.settings.heartbeat_grace_seconds
                continue
            retired.append(task_id)
            if self._past_time_limit(trial, spec, now):
                self._fail_timed_out(session, trial, spec, now)
            elif trial.id not in taken or repo.attempts_used(trial) < self.settings.max_attempts:
                repo.requeue_trial(session, trial=trial, now=now, started=trial.id in taken)
                requeued.append(trial.id)
            else:
                repo.finish_trial(
                    session,
                    trial=trial,
                    now=now,
                    failed=True,
                    loss=None,
                    cost_seconds=0.0,
                    result_key="reclaimed",
                    failure_kind="infrastructure",
                    failure_reason=f"no heartbeat after {repo.attempts_used(trial)} attempts",
                )
        return requeued

    def _taken(self, trials: list[TrialRow]) -> set[int]:
        """Ids of ``trials`` whose current attempt a worker (or an external runner) took;
        every one of them when the fleet cannot say."""
        by_task = {
            attempt_task_id(t.study_id, t.id, t.attempt): t.id for t in trials if not t.external
        }
        started = self.fleet.started(list(by_task)) if self.fleet and by_task else None
        if started is None:
            return {t.id for t in trials}
        return {t.id for t in trials if t.external} | {by_task[task] for task in started}

    def _consumers(self) -> dict[str, QueueConsumers] | None:
        return self.fleet.consumers() if self.fleet is not None else None

    def _warn_if_unserved(
        self, study: StudyRow, tally: repo.Tally, consumers: dict[str, QueueConsumers] | None
    ) -> None:
        """Log, once per study and queue (again after a worker came and went), that trials
        were sent to a queue no live worker consumes."""
        if consumers is None:
            return
        spec = load_spec(study)
        queue = self.settings.queue_name(spec.queue)
        key = (study.id, queue)
        dispatched = tally.by_state[TrialState.RUNNING] if spec.executor == "workers" else 0
        if not dispatched or queue in consumers:
            self._unserved.discard(key)
        elif key not in self._unserved:
            self._unserved.add(key)
            logger.warning(
                "study %s: %s on queue %r, which no live worker consumes; start a trial "
                "worker with -Q %s (or give the study a queue that has workers)",
                study.id,
                "1 trial waits" if dispatched == 1 else f"{dispatched} trials wait",
                queue,
                queue,
            )

    @staticmethod
    def _past_time_limit(trial: TrialRow, spec: StudySpec, now: float) -> bool:
        """Heartbeats seen and the hard limit passed: the run itself was too slow."""
        if spec.time_limit_s is None or trial.heartbeat_at is None:
            return False
        return now - (trial.dispatched_at or now) > spec.time_limit_s

    @staticmethod
    def _fail_timed_out(session: Session, trial: TrialRow, spec: StudySpec, now: float) -> None:
        repo.finish_trial(
            session,
            trial=trial,
            now=now,
            failed=True,
            loss=None,
            cost_seconds=float(spec.time_limit_s or 0.0),
            result_key="timeout",
            failure_kind="config",
            failure_reason=f"ran past its {spec.time_limit_s}s limit",
        )

    def _dispatch(
        self, session: Session, study: StudyRow, tally: repo.Tally
    ) -> list[tuple[TrialRequest, str]]:
        spec = load_spec(study)
        running = tally.by_state[TrialState.RUNNING]
        # Requeued trials run again on the budget they already spent.
        left = trials_left(session, study=study, tally=tally) + tally.requeued
        n = min(spec.in_flight - running, left)
        if n <= 0:
            return []
        queue = self.settings.queue_name(spec.queue)
        taken = self._take_or_ask(session, study, n, tally.by_state[TrialState.WAITING])
        now = self.clock()  # after the ask, which may take a while and creates trials
        requests = []
        for trial in taken:
            repo.start_trial(
                session, trial=trial, now=now, queue=queue, lease_seconds=self._dispatch_lease(spec)
            )
            requests.append((_request(study, spec, trial), queue))
        return requests

    def _dispatch_verification(
        self, session: Session, study: StudyRow
    ) -> list[tuple[TrialRequest, str]]:
        """A finished study's verification trial: dispatched outside the budget, which
        is spent (see ``service.orchestration.verification``); the study stays COMPLETE."""
        spec = load_spec(study)
        queue = self.settings.queue_name(spec.queue)
        requests = []
        for trial in waiting_verifications(session, study_id=study.id):
            repo.start_trial(
                session,
                trial=trial,
                now=self.clock(),
                queue=queue,
                lease_seconds=self._dispatch_lease(spec),
            )
            requests.append((_request(study, spec, trial), queue))
        return requests

    def _dispatch_lease(self, spec: StudySpec) -> float:
        """Until its first heartbeat, a trial may wait in the queue and run to its limit."""
        return max(self.settings.heartbeat_grace_seconds, spec.time_limit_s or 0.0)

    def _take_or_ask(
        self, session: Session, study: StudyRow, n: int, n_waiting: int
    ) -> list[TrialRow]:
        """``n`` trials from the buffer (``n_waiting`` long; only the ``n`` taken are loaded);
        only a short buffer loads, syncs and saves the engine."""
        waiting = repo.trials_in_state(
            session, study_id=study.id, states=[TrialState.WAITING], limit=n
        )
        if n_waiting >= n:
            return waiting
        engine = self._engine(study)
        self._sync(session, study, engine)
        taken = waiting + self._ask(session, study, engine, n - len(waiting))
        self._save(session, study, engine)
        return taken

    def _take(
        self, session: Session, study: StudyRow, engine: ParetoSearch, n: int
    ) -> list[TrialRow]:
        """``n`` WAITING trials (retries first, then buffered proposals), asking for more."""
        if n <= 0:
            return []
        waiting = repo.trials_in_state(session, study_id=study.id, states=[TrialState.WAITING])
        taken = waiting[:n]
        if len(taken) < n:
            taken += self._ask(session, study, engine, n - len(taken))
        return taken

    def _ask(
        self, session: Session, study: StudyRow, engine: ParetoSearch, n: int
    ) -> list[TrialRow]:
        started = time.perf_counter()
        suggestions = engine.ask(n)
        if self.ask_timer is not None:
            self.ask_timer(time.perf_counter() - started)
        return repo.add_trials(session, study=study, suggestions=suggestions, now=self.clock())

    def _maybe_complete(
        self, session: Session, study: StudyRow, *, left: int, unfinished: int
    ) -> None:
        """A study whose budget is spent (``left`` 0) and whose last dispatched trial
        finished (``unfinished`` 0: none running or requeued) is COMPLETE."""
        if study.state != StudyState.RUNNING or left > 0 or unfinished > 0:
            return
        self._cancel_waiting(session, study)
        self._sync(session, study, self._engine(study))
        trials = repo.trials_in_state(
            session, study_id=study.id, states=[TrialState.COMPLETE, TrialState.FAILED]
        )
        rules, why = fit_rules(load_spec(study), trials)
        repo.save_rules(session, study=study, rules=rules, now=self.clock())
        repo.set_study_state(
            session,
            study=study,
            state=StudyState.COMPLETE,
            now=self.clock(),
            message=f"budget spent; scaling rules: {why}",
        )

    def _cancel_waiting(self, session: Session, study: StudyRow) -> None:
        for trial in repo.trials_in_state(session, study_id=study.id, states=[TrialState.WAITING]):
            repo.cancel_trial(session, trial=trial, now=self.clock())

    # -- engines -----------------------------------------------------------------------

    def engine_for(self, study_id: int) -> ParetoSearch:
        """The study's engine as stored (read-only use: front, observations)."""
        with transaction(self.sessions) as session:
            return self._engine(repo.get_study(session, study_id=study_id))

    def _engine(self, study: StudyRow) -> ParetoSearch:
        cached = self._engines.get(study.id)
        if cached is not None and cached[0] == study.engine_version:
            return cached[1]
        if not repo.has_engine_state(study):
            engine = self._new_engine(study)
        else:
            state = json.loads(study.engine_state)
            engine = ParetoSearch.from_state_dict(state, clock=self.clock)
            engine.set_limits(study_limits(load_spec(study)))
        self._engines[study.id] = (study.engine_version, engine)
        return engine

    def _new_engine(self, study: StudyRow) -> ParetoSearch:
        """A study's first engine; the resolved space is written back into its spec."""
        spec = load_spec(study)
        space = resolve_space(spec)
        study.spec = spec.model_copy(update={"space": space}).model_dump(mode="json")
        return ParetoSearch(
            space, search_settings(spec), limits=study_limits(spec), clock=self.clock
        )

    def _save(self, session: Session, study: StudyRow, engine: ParetoSearch) -> None:
        repo.save_engine_state(
            session, study=study, now=self.clock(), engine_state=json.dumps(engine.state_dict())
        )
        self._engines[study.id] = (study.engine_version, engine)

    @contextmanager
    def _locked(self, study_id: int) -> Iterator[tuple[Session, StudyRow]]:
        """A transaction holding the study's lock; a rollback drops the cached engine,
        whose in-memory state may include the rolled-back asks and tells."""
        try:
            with transaction(self.sessions) as session:
                yield session, repo.get_study(session, study_id=study_id, lock=True)
        except BaseException:
            self._engines.pop(study_id, None)
            raise

    def _send(self, requests: list[tuple[TrialRequest, str]]) -> None:
        """Send a step's trials, together where the dispatcher can batch them."""
        if not requests:
            return
        dispatcher = self.dispatcher
        if dispatcher is None:
            raise RuntimeError("this scheduler has no dispatcher; give it one to run trials")
        together = dispatcher.batch() if isinstance(dispatcher, BatchingDispatcher) else None
        with together or nullcontext():
            for request, queue in requests:
                dispatcher.send(request, queue=queue)


def _after_dispatch(tally: repo.Tally, requests: list[TrialRequest]) -> repo.Tally:
    """``tally`` once ``requests`` left: taken from WAITING (or asked straight to
    RUNNING), and counted against the trial budget on their first attempt."""
    by_state = dict(tally.by_state)
    by_state[TrialState.WAITING] -= min(len(requests), by_state[TrialState.WAITING])
    by_state[TrialState.RUNNING] += len(requests)
    first = sum(1 for request in requests if request.attempt == 0)
    return repo.Tally(
        by_state=by_state,
        spent_cost=tally.spent_cost,
        dispatched=tally.dispatched + first,
        requeued=max(0, tally.requeued - (len(requests) - first)),
    )


def _worth_resending(trial: TrialRow, consumers: dict[str, QueueConsumers] | None) -> bool:
    """Whether a trial no worker took should be sent again: only when an idle worker of
    its queue would have taken it (its message is gone); unknown consumers: yes."""
    if consumers is None:
        return True
    serving = consumers.get(trial.queue or "")
    return serving is not None and serving.idle > 0


def _forget(engine: ParetoSearch, suggestion_id: str) -> None:
    with suppress(UnknownSuggestionError):
        engine.forget(suggestion_id)


def _request(study: StudyRow, spec: StudySpec, trial: TrialRow) -> TrialRequest:
    return TrialRequest(
        study_id=study.id,
        trial_id=trial.id,
        attempt=trial.attempt,
        objective=spec.objective,
        params=trial.params,
        seed=_trial_seed(spec.seed, trial.number),
        objective_options=spec.objective_options,
        soft_time_limit_s=spec.soft_time_limit_s,
        time_limit_s=spec.time_limit_s,
    )


def _trial_seed(study_seed: int, number: int) -> int:
    """A distinct, reproducible seed per trial number."""
    return (study_seed * 1_000_003 + number) % (2**31 - 1)
