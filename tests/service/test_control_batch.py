"""The control worker's batches: messages taken off the real broker stay unacknowledged
until handled (a crash loses none), and a batch of results records exactly what the same
results one message at a time would."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis

from service.config import Settings
from service.domain import StudyNotFoundError, TrialState
from service.orchestration.control import record_results
from service.orchestration.control_batch import ControlQueueReader
from service.orchestration.messaging import STEP_TASK, control_queue, create_sender
from service.orchestration.scheduler import Scheduler
from service.storage import repository as repo
from service.storage.db import transaction
from tests.service.factories import FakeClock, RecordingDispatcher, completed, make_spec
from workers.contracts import RECORD_RESULT_TASK

KNOWN = frozenset({RECORD_RESULT_TASK, STEP_TASK})


@pytest.fixture
def broker(redis_url: str) -> Iterator[tuple[Settings, object]]:
    """A sender app on a queue of this test only; the queue's keys are removed after."""
    settings = Settings(broker_url=redis_url, queue_prefix=f"batch{uuid.uuid4().hex[:8]}-")
    app = create_sender(settings, name="batch-test")
    yield settings, app
    app.close()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"*{settings.queue_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _send(app, settings: Settings, task: str, arg: object) -> None:  # type: ignore[no-untyped-def]
    app.send_task(task, args=[arg], queue=control_queue(settings))


def _queued(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.broker_url)
    try:
        return int(client.llen(control_queue(settings)))
    finally:
        client.close()


def _unacked(settings: Settings, tags: list[str]) -> list[bool]:
    client = redis.Redis.from_url(settings.broker_url)
    try:
        return [bool(client.hexists("unacked", tag)) for tag in tags]
    finally:
        client.close()


@pytest.mark.integration
def test_taken_messages_stay_unacknowledged_until_handled(broker) -> None:
    settings, app = broker
    for i in range(3):
        _send(app, settings, RECORD_RESULT_TASK, {"n": i})
    _send(app, settings, STEP_TASK, 7)
    reader = ControlQueueReader(app, queue=control_queue(settings), known_tasks=KNOWN)
    try:
        taken = reader.take(10)
        assert [(m.task, m.args) for m in taken] == [
            (RECORD_RESULT_TASK, [{"n": 0}]),
            (RECORD_RESULT_TASK, [{"n": 1}]),
            (RECORD_RESULT_TASK, [{"n": 2}]),
            (STEP_TASK, [7]),
        ]
        tags = [m.message.delivery_tag for m in taken]
        assert _queued(settings) == 0 and _unacked(settings, tags) == [True] * 4
        for message in taken:
            message.ack()
        assert _unacked(settings, tags) == [False] * 4
    finally:
        reader.close()


_TAKE_AND_DIE = """
import os, signal, sys
from service.config import Settings
from service.orchestration.control_batch import ControlQueueReader
from service.orchestration.messaging import control_queue, create_sender
settings = Settings(broker_url=sys.argv[1], queue_prefix=sys.argv[2])
app = create_sender(settings, name="batch-test")
reader = ControlQueueReader(app, queue=control_queue(settings), known_tasks=frozenset(sys.argv[3:]))
print(" ".join(m.message.delivery_tag for m in reader.take(10)), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.integration
def test_messages_of_a_reader_killed_before_acknowledging_are_redelivered(broker) -> None:
    settings, app = broker
    for i in range(2):
        _send(app, settings, RECORD_RESULT_TASK, {"n": i})
    killed = subprocess.run(
        [sys.executable, "-c", _TAKE_AND_DIE, settings.broker_url, settings.queue_prefix, *KNOWN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    tags = killed.stdout.split()
    assert len(tags) == 2 and _queued(settings) == 0 and _unacked(settings, tags) == [True] * 2
    with app.connection_for_read() as connection:  # what the visibility timeout's sweep does
        for tag in tags:
            connection.default_channel.qos.restore_by_tag(tag)
    assert _queued(settings) == 2
    again = ControlQueueReader(app, queue=control_queue(settings), known_tasks=KNOWN)
    try:
        assert sorted(m.args[0]["n"] for m in again.take(10)) == [0, 1]
    finally:
        again.close()  # a clean close puts what it did not acknowledge back at once
    assert _queued(settings) == 2


@pytest.mark.integration
def test_an_unknown_task_stops_the_batch_and_goes_back_to_the_queue(broker) -> None:
    settings, app = broker
    _send(app, settings, RECORD_RESULT_TASK, {"n": 0})
    _send(app, settings, "someone.elses_task", 1)
    _send(app, settings, RECORD_RESULT_TASK, {"n": 1})
    reader = ControlQueueReader(app, queue=control_queue(settings), known_tasks=KNOWN)
    try:
        taken = reader.take(10)
        assert [m.args for m in taken] == [[{"n": 0}]]
        taken[0].ack()
        assert _queued(settings) == 2  # the unknown one (for Celery) and the result behind it
    finally:
        reader.close()


@pytest.mark.integration
def test_a_broker_that_does_not_answer_gives_an_empty_batch() -> None:
    app = create_sender(Settings(broker_url="redis://127.0.0.1:1/0"), name="batch-test")
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    reader = ControlQueueReader(app, queue="nowhere", known_tasks=KNOWN)
    try:
        assert reader.take(5) == []
    finally:
        reader.close()
        app.close()


def test_a_batch_records_what_one_message_at_a_time_would(sessions) -> None:
    dispatcher = RecordingDispatcher()
    settings = Settings(database_url="sqlite://", proposal_buffer=2, max_attempts=2)
    scheduler = Scheduler(
        sessions=sessions, settings=settings, clock=FakeClock(), dispatcher=dispatcher
    )
    study_id = scheduler.create_study(make_spec(in_flight=3))
    other_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    scheduler.step(other_id)
    first, second, third, foreign = dispatcher.take()
    wrong_study = completed(foreign, loss=4.0).model_dump(mode="json") | {"study_id": study_id}
    outcomes = record_results(
        scheduler,
        [
            completed(second, loss=2.0).model_dump(mode="json"),
            completed(first, loss=1.0).model_dump(mode="json"),
            completed(first, loss=9.0).model_dump(mode="json"),  # a second delivery
            {"study_id": study_id, "trial_id": "not a number"},
            wrong_study,  # names a trial of another study: fails, alone
            completed(foreign, loss=5.0).model_dump(mode="json"),
        ],
    )
    assert outcomes == ["recorded", "recorded", "duplicate", "invalid", "failed", "recorded"]
    with transaction(sessions) as session:
        trials = repo.get_trials(
            session, trial_ids=[r.trial_id for r in (first, second, third, foreign)]
        )
        assert [
            (trials[r.trial_id].state, trials[r.trial_id].loss)
            for r in (first, second, third, foreign)
        ] == [
            (TrialState.COMPLETE, 1.0),
            (TrialState.COMPLETE, 2.0),
            (TrialState.RUNNING, None),
            (TrialState.COMPLETE, 5.0),
        ]
    # the two freed slots of the study were refilled in the same step, the other's too
    assert len(dispatcher.take()) == 3


def test_a_result_of_an_unknown_study_fails_alone(sessions) -> None:
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(
        sessions=sessions,
        settings=Settings(database_url="sqlite://", proposal_buffer=2),
        clock=FakeClock(),
        dispatcher=dispatcher,
    )
    study_id = scheduler.create_study(make_spec(in_flight=1))
    scheduler.step(study_id)
    (request,) = dispatcher.take()
    lost = completed(request).model_dump(mode="json") | {"study_id": study_id + 100}
    outcomes = record_results(scheduler, [lost, completed(request).model_dump(mode="json")])
    assert outcomes == ["failed", "recorded"]
    with pytest.raises(StudyNotFoundError):
        scheduler.step(study_id + 100)
