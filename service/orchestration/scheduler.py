"""The scheduler: keeps each study's trials in flight, within its budget.

One ``Scheduler`` per process that owns engines (the control worker, the embedded
runner). Each public method is one transaction under the study's row lock, so several
replicas can call them concurrently without dispatching a slot twice or overshooting
the budget by more than the trials already in flight.

A step, in order:
1. reclaim (``service.orchestration.reclaim``): RUNNING trials whose lease ran out are
   requeued (infrastructure: the worker went silent) or failed (past their hard time
   limit: the configuration's fault); a trial no worker ever took waits for one;
2. dispatch: WAITING trials (retries first, then the proposal buffer), up to
   ``in_flight`` running and the budget; the engine is touched only if the buffer is
   short; tasks are sent after the commit, so a freed worker never waits for a GP fit;
3. sync and refill (a second transaction, once the buffer is down to half of
   ``proposal_buffer``): tell the engine every final trial it has not seen (results are
   recorded by ``service.orchestration.results`` without the engine, possibly in another
   process), ask up to ``proposal_buffer`` suggestions ahead of need, complete a study
   whose budget is spent, and save the engine once.

Engines are built, cached, told and saved by ``service.orchestration.engines``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from search.engine import ParetoSearch
from service.config import Settings
from service.domain import StudySpec, StudyState, TrialState
from service.orchestration.budget import trials_left
from service.orchestration.engines import EngineCache, load_spec, sync
from service.orchestration.reclaim import Fleet, HeartbeatSource, Reclaimer
from service.orchestration.results import IngestOutcome, ingest_results
from service.orchestration.studies import cancel_waiting, change_state, create_study_row
from service.orchestration.verification import waiting_verifications
from service.reads.study_rules import fit_rules
from service.storage import repository as repo
from service.storage.db import transaction
from service.storage.tables import StudyRow, TrialRow
from workers.contracts import TrialRequest, TrialResult

logger = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Sends one trial attempt to a worker pool (Celery queue or in-process pool)."""

    def send(self, request: TrialRequest, *, queue: str) -> None: ...


@runtime_checkable
class BatchingDispatcher(Dispatcher, Protocol):
    """A dispatcher whose sends inside ``batch()`` leave together when it closes."""

    def batch(self) -> AbstractContextManager[None]: ...


@dataclass
class StepReport:
    """What one step did, for logs and progress bars."""

    study_id: int
    state: StudyState
    dispatched: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    told: int = 0
    outcomes: list[IngestOutcome] = field(default_factory=list)


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
        self.ask_timer = ask_timer  # told the wall seconds of every engine.ask
        # fleet None (embedded): every dispatched trial counts as taken
        self.reclaimer = Reclaimer(
            settings=settings, clock=clock, heartbeats=heartbeats, fleet=fleet
        )
        self.engines = EngineCache(clock=clock)

    # -- studies ---------------------------------------------------------------------

    def create_study(self, spec: StudySpec) -> int:
        """Store a study; its engine is built on the first step (``EngineCache.get``)."""
        with transaction(self.sessions) as session:
            return create_study_row(session, spec=spec, now=self.clock()).id

    def set_state(self, study_id: int, state: StudyState) -> None:
        """Pause, resume or stop; stopping cancels the proposal buffer."""
        with self._locked(study_id) as (session, study):
            change_state(session, study=study, state=state, now=self.clock())

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
            change_state(
                session,
                study=study,
                state=StudyState.STOPPED,
                now=self.clock(),
                message=f"stopped: its stored spec is no longer valid ({reason})",
            )

    # -- the step ----------------------------------------------------------------------

    def step(
        self, study_id: int, *, reclaim: bool = True, results: Sequence[TrialResult] = ()
    ) -> StepReport:
        """Record ``results``, reclaim and dispatch from the buffer, send, then tell the
        engine and refill.

        The first transaction records the results (idempotently,
        ``service.orchestration.results``) and fills the slots they freed; it touches the
        engine only when the buffer cannot cover the free slots, so a freed worker's next
        trial leaves at database speed. The second (skipped while the buffer is above its
        low watermark) tells the engine every new result and asks ahead, with one engine
        save. ``reclaim=False`` leaves lease checks to the periodic tick (the
        path a recorded result takes).
        """
        requests: list[tuple[TrialRequest, str]] = []
        retired: list[str] = []
        consumers = self.reclaimer.consumers() if reclaim else None
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
                report.requeued = self.reclaimer.reclaim(
                    session, study, consumers=consumers, retired=retired
                )
            tally = repo.tally(session, study_id=study.id)
            if reclaim:
                self.reclaimer.warn_if_unserved(study, tally, consumers)
            if study.state == StudyState.RUNNING and load_spec(study).executor == "workers":
                requests = self._dispatch(session, study, tally)
            elif study.state == StudyState.COMPLETE and load_spec(study).executor == "workers":
                requests = self._dispatch_verification(session, study)
            skip_sync = self._buffer_is_full_enough(
                session, study, _after_dispatch(tally, [r for r, _ in requests])
            )
        self.reclaimer.retire(retired)
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
            engine = self.engines.get(study)
            told = sync(session, study, engine)
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
                self.engines.save(session, study, engine)
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
            engine = self.engines.get(study)
            sync(session, study, engine)
            self.reclaimer.reclaim(session, study, consumers=None, retired=[])
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
            self.engines.save(session, study, engine)
        return trials

    # -- pieces of a step ------------------------------------------------------------

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
        engine = self.engines.get(study)
        sync(session, study, engine)
        taken = waiting + self._ask(session, study, engine, n - len(waiting))
        self.engines.save(session, study, engine)
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
        cancel_waiting(session, study=study, now=self.clock())
        sync(session, study, self.engines.get(study))
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

    # -- engines -----------------------------------------------------------------------

    def engine_for(self, study_id: int) -> ParetoSearch:
        """The study's engine as stored (read-only use: front, observations)."""
        with transaction(self.sessions) as session:
            return self.engines.get(repo.get_study(session, study_id=study_id))

    @contextmanager
    def _locked(self, study_id: int) -> Iterator[tuple[Session, StudyRow]]:
        """A transaction holding the study's lock; a rollback drops the cached engine,
        whose in-memory state may include the rolled-back asks and tells."""
        try:
            with transaction(self.sessions) as session:
                yield session, repo.get_study(session, study_id=study_id, lock=True)
        except BaseException:
            self.engines.drop(study_id)
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
