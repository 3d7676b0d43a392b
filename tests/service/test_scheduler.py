"""The scheduler on a real store with a fake clock and a recording dispatcher."""

from __future__ import annotations

import math
import threading

import pytest

from search.pacing import StudyLimits
from service.config import Settings
from service.domain import Budget, InvalidTransitionError, StudyState, TrialState
from service.orchestration.engines import study_limits
from service.orchestration.results import IngestOutcome, ResultMismatchError, ingest_result
from service.orchestration.scheduler import Scheduler
from service.storage import repository as repo
from service.storage.db import transaction
from tests.service.factories import (
    FakeClock,
    RecordingDispatcher,
    completed,
    infra_failure,
    make_spec,
)
from workers.contracts import TrialResult
from workers.heartbeat import QueueConsumers

SETTINGS = Settings(
    database_url="sqlite://",
    proposal_buffer=2,
    heartbeat_grace_seconds=60.0,
    lease_seconds=30.0,
    max_attempts=2,
)


def _scheduler(sessions, clock=None, dispatcher=None) -> Scheduler:
    return Scheduler(
        sessions=sessions,
        settings=SETTINGS,
        clock=clock or FakeClock(),
        dispatcher=dispatcher or RecordingDispatcher(),
    )


def _record(sessions, result, now: float = 1_000.0) -> IngestOutcome:
    with transaction(sessions) as session:
        return ingest_result(session, result=result, now=now, max_attempts=2)


def _states(sessions, study_id: int) -> dict[TrialState, int]:
    with transaction(sessions) as session:
        return repo.count_by_state(session, study_id=study_id)


@pytest.mark.parametrize(
    "budget",
    [Budget(max_cost=1e4), Budget(max_trials=50), Budget(max_trials=50, max_cost=1e4)],
)
def test_the_engine_is_told_the_studys_limits(budget, sqlite_sessions) -> None:
    """The engine paces itself against the study's budget and trials in flight
    (``search.pacing.StudyLimits``), on a new engine and on one restored from its state;
    no search setting says what limits the study."""
    spec = make_spec(budget=budget, in_flight=3)
    expected = StudyLimits(max_trials=budget.max_trials, max_cost=budget.max_cost, in_flight=3)
    assert study_limits(spec) == expected
    scheduler = _scheduler(sqlite_sessions)
    study_id = scheduler.create_study(spec)
    scheduler.step(study_id)
    assert scheduler.engine_for(study_id).limits == expected
    fresh = _scheduler(sqlite_sessions)  # no cached engine: restored from the stored state
    assert fresh.engine_for(study_id).limits == expected


def test_a_retired_search_setting_is_refused() -> None:
    with pytest.raises(ValueError, match=r"search\.budget"):
        make_spec(search={"budget": "cost"})


def test_keeps_in_flight_buffers_ahead_and_stops_at_budget(sqlite_sessions) -> None:
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec())
    report = scheduler.step(study_id)
    assert len(report.dispatched) == 2
    assert _states(sqlite_sessions, study_id)[TrialState.WAITING] == 2  # the buffer
    total = 0
    while report.state == StudyState.RUNNING:
        requests = dispatcher.take()
        total += len(requests)
        assert _states(sqlite_sessions, study_id)[TrialState.RUNNING] <= 2
        for request in requests:
            _record(sqlite_sessions, completed(request, loss=5.0 - 0.1 * request.trial_id))
        report = scheduler.step(study_id)
    states = _states(sqlite_sessions, study_id)
    assert total == 6 and states[TrialState.COMPLETE] == 6
    # the buffer never asks past the budget, so nothing is left to cancel
    assert states[TrialState.WAITING] == 0 and states[TrialState.CANCELLED] == 0
    assert len(scheduler.engine_for(study_id).observations) == 6
    assert scheduler.engine_for(study_id).pending() == []


def test_duplicate_and_late_results_change_nothing(sqlite_sessions) -> None:
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec())
    scheduler.step(study_id)
    first = dispatcher.take()[0]
    assert _record(sqlite_sessions, completed(first, loss=3.0)) == IngestOutcome.RECORDED
    assert _record(sqlite_sessions, completed(first, loss=9.0)) == IngestOutcome.DUPLICATE
    scheduler.step(study_id)
    engine = scheduler.engine_for(study_id)
    assert [o.loss for o in engine.observations] == [3.0]
    with transaction(sqlite_sessions) as session:
        assert repo.get_trial(session, trial_id=first.trial_id).loss == 3.0


def test_silent_trial_is_requeued_and_a_late_first_result_still_wins(sqlite_sessions) -> None:
    clock, dispatcher = FakeClock(), RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, clock=clock, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    (attempt0,) = dispatcher.take()
    clock.advance(61.0)  # past the heartbeat grace, no heartbeat seen
    report = scheduler.step(study_id)
    assert report.requeued == [attempt0.trial_id]
    (attempt1,) = dispatcher.take()
    assert (attempt1.trial_id, attempt1.attempt) == (attempt0.trial_id, 1)
    assert _record(sqlite_sessions, completed(attempt0, loss=2.5)) == IngestOutcome.RECORDED
    assert _record(sqlite_sessions, completed(attempt1, loss=7.0)) == IngestOutcome.DUPLICATE
    with transaction(sqlite_sessions) as session:
        trial = repo.get_trial(session, trial_id=attempt0.trial_id)
        assert (trial.loss, trial.result_key, trial.attempt) == (2.5, "0", 1)


class FakeFleet:
    """Workers as Redis would describe them: the attempts taken, the queues' consumers."""

    def __init__(self, consumers: dict[str, QueueConsumers]) -> None:
        self.taken: set[str] = set()
        self.retired: list[str] = []
        self._consumers = consumers

    def consumers(self) -> dict[str, QueueConsumers]:
        return self._consumers

    def started(self, task_ids: list[str]) -> set[str]:
        return self.taken & set(task_ids)

    def retire(self, task_ids: list[str]) -> None:
        self.retired += task_ids


@pytest.mark.parametrize(
    ("consumers", "resent"),
    [
        ({}, False),  # nobody consumes the queue: the message waits there
        ({"trials": QueueConsumers(live=1, idle=0)}, False),  # queued behind a busy worker
        ({"trials": QueueConsumers(live=1, idle=1)}, True),  # an idle worker missed it: lost
    ],
)
def test_a_trial_no_worker_took_spends_no_attempt(sqlite_sessions, consumers, resent) -> None:
    clock, dispatcher, fleet = FakeClock(), RecordingDispatcher(), FakeFleet(consumers)
    scheduler = Scheduler(
        sessions=sqlite_sessions,
        settings=SETTINGS,  # two attempts at most
        clock=clock,
        dispatcher=dispatcher,
        fleet=fleet,
    )
    study_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    (first,) = dispatcher.take()
    for _ in range(3):  # more reclaim periods than attempts allowed
        clock.advance(61.0)
        scheduler.step(study_id)
    with transaction(sqlite_sessions) as session:
        trial = repo.get_trial(session, trial_id=first.trial_id)
        assert trial.state != TrialState.FAILED
        assert repo.attempts_used(trial) == 1
        assert trial.attempt == (3 if resent else 0)
    assert fleet.retired == [f"trial-{study_id}-{first.trial_id}-{a}" for a in range(trial.attempt)]
    # A worker takes the current attempt and goes silent: now attempts count.
    fleet.taken.add(f"trial-{study_id}-{first.trial_id}-{trial.attempt}")
    clock.advance(61.0)
    scheduler.step(study_id)
    with transaction(sqlite_sessions) as session:
        trial = repo.get_trial(session, trial_id=first.trial_id)
        # reclaimed as the first spent attempt, and sent again at once as the second
        assert (trial.state, repo.attempts_used(trial)) == (TrialState.RUNNING, 2)


def test_infrastructure_failures_retry_then_fail_without_blaming_the_config(
    sqlite_sessions,
) -> None:
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    (request,) = dispatcher.take()
    assert _record(sqlite_sessions, infra_failure(request)) == IngestOutcome.REQUEUED
    scheduler.step(study_id)
    (retry,) = dispatcher.take()
    assert (retry.trial_id, retry.attempt) == (request.trial_id, 1)
    assert _record(sqlite_sessions, infra_failure(request)) == IngestOutcome.STALE
    assert _record(sqlite_sessions, infra_failure(retry)) == IngestOutcome.RECORDED
    scheduler.step(study_id)
    with transaction(sqlite_sessions) as session:
        trial = repo.get_trial(session, trial_id=request.trial_id)
        assert (trial.state, trial.failure_kind) == (TrialState.FAILED, "infrastructure")
    engine = scheduler.engine_for(study_id)
    assert engine.observations == ()  # forgotten, not told as the config's failure
    assert request.params not in [s.params for s in engine.pending()]


def test_a_restarted_scheduler_rebuilds_the_same_engine(sqlite_sessions) -> None:
    dispatcher = RecordingDispatcher()
    first = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_id = first.create_study(make_spec(budget=Budget(max_trials=20), in_flight=3))
    first.step(study_id)
    for _ in range(3):
        for request in dispatcher.take():
            _record(
                sqlite_sessions,
                completed(request, loss=4.0 + 0.01 * request.trial_id, cost=1.0 + request.trial_id),
            )
        first.step(study_id)
    restarted = _scheduler(sqlite_sessions)
    original = first.engine_for(study_id)
    rebuilt = restarted.engine_for(study_id)
    assert rebuilt is not original
    assert rebuilt.state_dict() == original.state_dict()
    assert [s.params for s in rebuilt.ask(2)] == [s.params for s in original.ask(2)]


def test_cost_budget_overshoots_by_at_most_the_trials_in_flight(sqlite_sessions) -> None:
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    spec = make_spec(budget=Budget(max_cost=10.0), in_flight=3)
    study_id = scheduler.create_study(spec)
    report = scheduler.step(study_id)
    while report.state == StudyState.RUNNING:
        for request in dispatcher.take():
            _record(sqlite_sessions, completed(request, cost=4.0))
        report = scheduler.step(study_id)
    with transaction(sqlite_sessions) as session:
        spent = repo.tally(session, study_id=study_id).spent_cost
    assert 10.0 <= spent <= 10.0 + 3 * 4.0


@pytest.mark.integration
def test_replicas_never_dispatch_past_the_budget_or_in_flight(sessions) -> None:
    """Two schedulers (replicas) step one study at once, on SQLite and PostgreSQL."""
    dispatcher = RecordingDispatcher()
    replicas = [_scheduler(sessions, dispatcher=dispatcher) for _ in range(2)]
    study_id = replicas[0].create_study(make_spec(budget=Budget(max_trials=5), in_flight=3))
    errors: list[BaseException] = []

    def run(scheduler: Scheduler) -> None:
        try:
            for _ in range(3):
                scheduler.step(study_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sent = [r.trial_id for r, _ in dispatcher.sent]
    assert len(sent) == len(set(sent)) == 3  # in_flight, each trial once
    assert _states(sessions, study_id)[TrialState.RUNNING] == 3


def test_a_burst_of_results_is_recorded_in_one_step_idempotently(sqlite_sessions) -> None:
    """Results passed to ``step`` are recorded under the study's lock, in order: a second
    delivery within the burst or in a later one is a DUPLICATE, and the freed slots are
    filled in the same step."""
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=2))
    scheduler.step(study_id)
    first, second = dispatcher.take()
    burst = [completed(first, loss=3.0), completed(second, loss=4.0), completed(first, loss=9.0)]
    report = scheduler.step(study_id, reclaim=False, results=burst)
    assert report.outcomes == [
        IngestOutcome.RECORDED,
        IngestOutcome.RECORDED,
        IngestOutcome.DUPLICATE,
    ]
    assert len(report.dispatched) == 2 and first.trial_id not in report.dispatched
    again = scheduler.step(study_id, reclaim=False, results=burst[:2])
    assert again.outcomes == [IngestOutcome.DUPLICATE] * 2 and again.dispatched == []
    with transaction(sqlite_sessions) as session:
        assert repo.get_trial(session, trial_id=first.trial_id).loss == 3.0
    assert sorted(o.loss for o in scheduler.engine_for(study_id).observations) == [3.0, 4.0]


@pytest.mark.parametrize("signed", [False, True])
def test_a_workers_negative_loss_fails_the_trial_unless_the_study_is_signed(
    sqlite_sessions, signed: bool
) -> None:
    """A worker's objective cannot be answered with a 4xx, so in a study whose loss is not
    declared signed its negative loss fails the trial, with the value in the reason, and
    the engine learns a failure, not a loss; a signed study records it as a loss."""
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=1, allow_negative_loss=signed))
    scheduler.step(study_id)
    (request,) = dispatcher.take()
    assert _record(sqlite_sessions, completed(request, loss=-2.5)) == IngestOutcome.RECORDED
    scheduler.step(study_id, reclaim=False)
    with transaction(sqlite_sessions) as session:
        trial = repo.get_trial(session, trial_id=request.trial_id)
        state, loss, kind = trial.state, trial.loss, trial.failure_kind
        reason = trial.failure_reason
    (observation,) = scheduler.engine_for(study_id).observations
    if signed:
        assert (state, loss, kind, observation.loss) == (TrialState.COMPLETE, -2.5, None, -2.5)
    else:
        assert (state, loss, kind, observation.failed) == (TrialState.FAILED, None, "config", True)
        assert "negative loss reported: -2.5" in reason and "allow_negative_loss" in reason


@pytest.mark.parametrize("cost", [0.0, 1e-40])
def test_a_workers_result_with_a_cost_tell_refuses_fails_the_trial(sessions, cost) -> None:
    """The worker path keeps tell's rule (``domain.result_problem``): a completed result
    whose cost the engine cannot model is a FAILED trial saying why, learned as a
    failure; it never sits COMPLETE on the front unlearned (SQLite and PostgreSQL)."""
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    (request,) = dispatcher.take()
    assert _record(sessions, completed(request, cost=cost)) == IngestOutcome.RECORDED
    scheduler.step(study_id, reclaim=False)
    with transaction(sessions) as session:
        trial = repo.get_trial(session, trial_id=request.trial_id)
        state, kind, reason = trial.state, trial.failure_kind, trial.failure_reason
        complete = repo.trials_in_state(session, study_id=study_id, states=[TrialState.COMPLETE])
    assert (state, kind, complete) == (TrialState.FAILED, "config", [])
    assert f"cost {cost:g} of a completed trial is below 1e-30" in reason
    (observation,) = scheduler.engine_for(study_id).observations
    assert observation.failed


def test_a_workers_result_with_nul_text_and_non_finite_numbers_is_stored(sessions) -> None:
    """PostgreSQL refuses NUL in text and NaN/inf in JSON; a worker's result holding them
    (an objective's exception text, a diverged metric) is cleaned and recorded, never
    lost, on both backends."""
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    (request,) = dispatcher.take()
    result = TrialResult(
        study_id=request.study_id,
        trial_id=request.trial_id,
        attempt=request.attempt,
        status="failed",
        cost_seconds=1.0,
        failure_kind="config",
        failure_reason="bad\x00byte",
        metrics={"grad_norm": math.inf, "tokens": 1e6},
        curve=[{"step": 1.0, "loss": math.nan}, {"step": 2.0, "loss": 3.0}],
    )
    assert _record(sessions, result) == IngestOutcome.RECORDED
    with transaction(sessions) as session:
        trial = repo.get_trial(session, trial_id=request.trial_id)
        stored = (trial.state, trial.failure_reason, trial.metrics["grad_norm"], trial.curve)
    assert stored == (TrialState.FAILED, "bad\ufffdbyte", None, [{"step": 2.0, "loss": 3.0}])


def test_a_burst_naming_another_studys_trial_records_nothing(sqlite_sessions) -> None:
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_a = scheduler.create_study(make_spec())
    study_b = scheduler.create_study(make_spec())
    scheduler.step(study_a)
    (a0, _) = dispatcher.take()
    scheduler.step(study_b)
    (b0, _) = dispatcher.take()
    stray = completed(b0).model_copy(update={"study_id": study_a})
    with pytest.raises(ResultMismatchError, match="belongs to study"):
        scheduler.step(study_a, results=[completed(a0), stray])
    assert _states(sqlite_sessions, study_a)[TrialState.COMPLETE] == 0
    assert _states(sqlite_sessions, study_b)[TrialState.COMPLETE] == 0


def test_a_study_whose_stored_spec_no_longer_validates_is_stopped_and_the_others_run(
    sqlite_sessions,
) -> None:
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    broken = scheduler.create_study(make_spec(name="broken"))
    healthy = scheduler.create_study(make_spec(name="healthy"))
    with transaction(sqlite_sessions) as session:  # as stored before a check was added
        study = repo.get_study(session, study_id=broken)
        study.spec = {**study.spec, "search": {"initial_radius": -1.0}}

    scheduler.step_each([broken, healthy])

    with transaction(sqlite_sessions) as session:
        stopped = repo.get_study(session, study_id=broken)
        assert stopped.state == StudyState.STOPPED
        assert "no longer valid" in stopped.message and "initial_radius" in stopped.message
        assert repo.get_study(session, study_id=healthy).state == StudyState.RUNNING
    assert {request.study_id for request, _ in dispatcher.sent} == {healthy}
    assert _states(sqlite_sessions, broken).get(TrialState.WAITING, 0) == 0


def test_a_study_whose_engine_no_longer_rebuilds_from_its_trials_is_stopped(
    sqlite_sessions,
) -> None:
    """A finished trial's result edited by hand: the stored trials no longer start with
    what the engine took in, which would fail every step."""
    dispatcher = RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    (request,) = dispatcher.take()
    _record(sqlite_sessions, completed(request, loss=3.0))
    assert scheduler.step(study_id).told == 1
    with transaction(sqlite_sessions) as session:
        repo.get_trial(session, trial_id=request.trial_id).loss = 2.5
    (running,) = dispatcher.take()
    _record(sqlite_sessions, completed(running, loss=3.0))  # the next step rebuilds

    scheduler.step_each([study_id])

    with transaction(sqlite_sessions) as session:
        stopped = repo.get_study(session, study_id=study_id)
        assert stopped.state == StudyState.STOPPED
        assert "engine no longer rebuilds" in (stopped.message or "")
    assert _states(sqlite_sessions, study_id)[TrialState.WAITING] == 0


def test_the_budgets_last_trial_requeued_runs_again_instead_of_being_cancelled(
    sqlite_sessions,
) -> None:
    clock, dispatcher = FakeClock(), RecordingDispatcher()
    scheduler = _scheduler(sqlite_sessions, clock=clock, dispatcher=dispatcher)
    study_id = scheduler.create_study(make_spec(in_flight=1, budget=Budget(max_trials=1)))
    scheduler.step(study_id)
    (attempt0,) = dispatcher.take()
    clock.advance(61.0)  # its worker went silent: requeued, and the budget is all dispatched
    report = scheduler.step(study_id)
    assert report.requeued == [attempt0.trial_id]
    (attempt1,) = dispatcher.take()  # sent again, although no trial is left in the budget
    assert (attempt1.trial_id, attempt1.attempt) == (attempt0.trial_id, 1)
    assert report.state == StudyState.RUNNING
    _record(sqlite_sessions, completed(attempt1, loss=3.0))
    assert scheduler.step(study_id).state == StudyState.COMPLETE
    assert _states(sqlite_sessions, study_id)[TrialState.COMPLETE] == 1


def test_pausing_keeps_the_proposal_buffer_and_stopping_cancels_it(sqlite_sessions) -> None:
    """``Scheduler.set_state`` is the state change the API's routes make too
    (``orchestration.studies.change_state``)."""
    scheduler = _scheduler(sqlite_sessions)
    study_id = scheduler.create_study(make_spec(budget=Budget(max_trials=20), in_flight=1))
    scheduler.step(study_id)
    buffered = _states(sqlite_sessions, study_id)[TrialState.WAITING]
    assert buffered > 0
    scheduler.set_state(study_id, StudyState.PAUSED)
    assert _states(sqlite_sessions, study_id)[TrialState.WAITING] == buffered
    scheduler.set_state(study_id, StudyState.STOPPED)
    states = _states(sqlite_sessions, study_id)
    assert (states[TrialState.WAITING], states[TrialState.CANCELLED]) == (0, buffered)
    with pytest.raises(InvalidTransitionError):
        scheduler.set_state(study_id, StudyState.RUNNING)
