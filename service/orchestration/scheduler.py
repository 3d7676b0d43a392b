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
3. refill (a second transaction, once the buffer is down to half of
   ``proposal_buffer``): rebuild the engine from the stored trials (results are
   recorded by ``service.orchestration.results`` without the engine, possibly in another
   process), ask up to ``proposal_buffer`` suggestions ahead of need, complete a study
   whose budget is spent, and save the engine once.

The study's spec is parsed once per step and passed down. Engines are rebuilt and saved
by ``service.orchestration.engines``; none is kept between transactions.
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
from search.errors import HistoryMismatchError
from service.config import Settings
from service.domain import StudySpec, StudyState, TrialState
from service.orchestration.budget import trials_left
from service.orchestration.engines import StudyEngine, load_spec, open_engine, save_engine
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
    told: int = 0  # results the engine took in (recorded since its last save)
    outcomes: list[IngestOutcome] = field(default_factory=list)


class Scheduler:
    """Asks, dispatches and reclaims for every study in one database."""

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

    # -- studies ---------------------------------------------------------------------

    def create_study(self, spec: StudySpec) -> int:
        """Store a study; its engine is built on the first step (``engines.open_engine``)."""
        with transaction(self.sessions) as session:
            return create_study_row(session, spec=spec, now=self.clock()).id

    def set_state(self, study_id: int, state: StudyState) -> None:
        """Pause, resume or stop; stopping cancels the proposal buffer."""
        with self._locked(study_id) as (session, study):
            change_state(session, study=study, state=state, now=self.clock())

    def step_each(self, study_ids: Sequence[int]) -> None:
        """Step each study on its own: one whose step fails is logged and the rest still
        run (a tick must not leave every later study's silent trials unreclaimed).

        A study that would fail on every tick is stopped, with the reason as its message:
        its stored spec no longer validates (a check added after the study was created),
        or its engine no longer rebuilds from its trials (``HistoryMismatchError``: the
        stored trials do not start with those the engine took in).
        """
        for study_id in study_ids:
            try:
                self.step(study_id)
            except ValidationError as exc:
                reason = "; ".join(
                    f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                self._stop_unrunnable(study_id, f"its stored spec is no longer valid ({reason})")
            except HistoryMismatchError as exc:
                self._stop_unrunnable(study_id, f"its engine no longer rebuilds ({exc})")
            except Exception:
                logger.exception("step of study %s failed; the others still run", study_id)

    def _stop_unrunnable(self, study_id: int, why: str) -> None:
        logger.error("study %s stopped: %s", study_id, why)
        with self._locked(study_id) as (session, study):
            change_state(
                session,
                study=study,
                state=StudyState.STOPPED,
                now=self.clock(),
                message=f"stopped: {why}",
            )

    # -- the step ----------------------------------------------------------------------

    def step(
        self, study_id: int, *, reclaim: bool = True, results: Sequence[TrialResult] = ()
    ) -> StepReport:
        """Record ``results``, reclaim and dispatch from the buffer, send, then refill.

        The first transaction records the results (idempotently,
        ``service.orchestration.results``) and fills the slots they freed; it touches the
        engine only when the buffer cannot cover the free slots, so a freed worker's next
        trial leaves at database speed. The second (skipped while the buffer is above its
        low watermark) rebuilds the engine with every new result and asks ahead, with one
        engine save. ``reclaim=False`` leaves lease checks to the periodic tick (the
        path a recorded result takes).
        """
        requests: list[tuple[TrialRequest, str]] = []
        retired: list[str] = []
        consumers = self.reclaimer.consumers() if reclaim else None
        with self._locked(study_id) as (session, study):
            spec = load_spec(study)
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
                    session, study, spec, consumers=consumers, retired=retired
                )
            tally = repo.tally(session, study_id=study.id)
            if reclaim:
                self.reclaimer.warn_if_unserved(study, spec, tally, consumers)
            if study.state == StudyState.RUNNING and spec.executor == "workers":
                spec, requests = self._dispatch(session, study, spec, tally)
            elif study.state == StudyState.COMPLETE and spec.executor == "workers":
                requests = self._dispatch_verification(session, study, spec)
            skip_refill = self._buffer_is_full_enough(
                session, study, _after_dispatch(tally, [r for r, _ in requests])
            )
        self.reclaimer.retire(retired)
        self._send(requests)
        report.dispatched = [request.trial_id for request, _ in requests]
        if not skip_refill:
            report.told, report.state = self._refill_and_complete(study_id, spec)
        return report

    def _refill_and_complete(self, study_id: int, spec: StudySpec) -> tuple[int, StudyState]:
        """Take in new results, complete a spent study, keep the buffer full; returns
        how many results the engine took in, and the study's state.

        While a running study's buffer is above its low watermark (half of
        ``proposal_buffer``), results stay recorded but untaken: the engine takes them
        in by batches, right before it next asks, and a burst of results costs one
        engine save.
        """
        with self._locked(study_id) as (session, study):
            # One tally serves the whole transaction: the rebuild changes no trial's state,
            # and asking adds WAITING trials, which count neither as spent nor running.
            tally = repo.tally(session, study_id=study_id)
            if self._buffer_is_full_enough(session, study, tally):
                return 0, StudyState(study.state)
            left = trials_left(session, study=study, tally=tally)
            fresh = not repo.has_engine_state(study)
            opened = self._open(session, study, spec)
            asked = self._refill(
                session,
                study,
                opened.engine,
                waiting=tally.by_state[TrialState.WAITING],
                left=left,
            )
            self._maybe_complete(
                session,
                study,
                opened.spec,
                left=left,
                unfinished=tally.by_state[TrialState.RUNNING] + tally.requeued,
            )
            if fresh or opened.told or asked or study.state == StudyState.COMPLETE:
                self._save(session, study, opened.engine)
            return opened.told, StudyState(study.state)

    def _buffer_is_full_enough(self, session: Session, study: StudyRow, tally: repo.Tally) -> bool:
        """Whether the engine can wait: the buffer is above its low watermark or covers
        the rest of the budget, or the budget is used up and trials still run (the study
        completes, with one rebuild, after the last of them)."""
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
            spec = load_spec(study)
            self.reclaimer.reclaim(session, study, spec, consumers=None, retired=[])
            engine = self._open(session, study, spec).engine
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

    def _dispatch(
        self, session: Session, study: StudyRow, spec: StudySpec, tally: repo.Tally
    ) -> tuple[StudySpec, list[tuple[TrialRequest, str]]]:
        """The trials to send and the spec (its space resolved if the engine was built)."""
        running = tally.by_state[TrialState.RUNNING]
        # Requeued trials run again on the budget they already spent.
        left = trials_left(session, study=study, tally=tally) + tally.requeued
        n = min(spec.in_flight - running, left)
        if n <= 0:
            return spec, []
        queue = self.settings.queue_name(spec.queue)
        spec, taken = self._take_or_ask(session, study, spec, n, tally.by_state[TrialState.WAITING])
        now = self.clock()  # after the ask, which may take a while and creates trials
        requests = []
        for trial in taken:
            repo.start_trial(
                session, trial=trial, now=now, queue=queue, lease_seconds=self._dispatch_lease(spec)
            )
            requests.append((_request(study, spec, trial), queue))
        return spec, requests

    def _dispatch_verification(
        self, session: Session, study: StudyRow, spec: StudySpec
    ) -> list[tuple[TrialRequest, str]]:
        """A finished study's verification trial: dispatched outside the budget, which
        is spent (see ``service.orchestration.verification``); the study stays COMPLETE."""
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
        self, session: Session, study: StudyRow, spec: StudySpec, n: int, n_waiting: int
    ) -> tuple[StudySpec, list[TrialRow]]:
        """``n`` trials from the buffer (``n_waiting`` long; only the ``n`` taken are loaded);
        only a short buffer rebuilds, asks and saves the engine."""
        waiting = repo.trials_in_state(
            session, study_id=study.id, states=[TrialState.WAITING], limit=n
        )
        if n_waiting >= n:
            return spec, waiting
        opened = self._open(session, study, spec)
        taken = waiting + self._ask(session, study, opened.engine, n - len(waiting))
        self._save(session, study, opened.engine)
        return opened.spec, taken

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
        self, session: Session, study: StudyRow, spec: StudySpec, *, left: int, unfinished: int
    ) -> None:
        """A study whose budget is spent (``left`` 0) and whose last dispatched trial
        finished (``unfinished`` 0: none running or requeued) is COMPLETE."""
        if study.state != StudyState.RUNNING or left > 0 or unfinished > 0:
            return
        cancel_waiting(session, study=study, now=self.clock())
        rules, why = fit_rules(spec, repo.finished_results(session, study_id=study.id))
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
        """The study's engine rebuilt from the store (read-only use: front, observations;
        nothing is saved)."""
        with transaction(self.sessions) as session:
            study = repo.get_study(session, study_id=study_id)
            return self._open(session, study, load_spec(study)).engine

    def _open(self, session: Session, study: StudyRow, spec: StudySpec) -> StudyEngine:
        return open_engine(session, study, spec, clock=self.clock)

    def _save(self, session: Session, study: StudyRow, engine: ParetoSearch) -> None:
        save_engine(session, study, engine, now=self.clock())

    @contextmanager
    def _locked(self, study_id: int) -> Iterator[tuple[Session, StudyRow]]:
        """A transaction holding the study's lock."""
        with transaction(self.sessions) as session:
            yield session, repo.get_study(session, study_id=study_id, lock=True)

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
