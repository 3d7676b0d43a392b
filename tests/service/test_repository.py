"""The repository contract, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from search.types import Suggestion
from service.domain import (
    InvalidTransitionError,
    StudyNotFoundError,
    StudyState,
    TrialNotFoundError,
    TrialState,
)
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.storage.tables import Base, TrialRow

pytestmark = pytest.mark.integration


def _study(session, name: str = "s"):
    return repo.create_study(
        session, name=name, objective="testbed", spec={"name": name}, engine_state="{}", now=1.0
    )


def _suggestion(i: int) -> Suggestion:
    return Suggestion(suggestion_id=f"sg-{i}", params={"x": float(i)}, reason="startup")


def _trial(session, study, i: int = 0) -> TrialRow:
    return repo.add_trial(session, study=study, suggestion=_suggestion(i), now=2.0)


def test_migration_creates_the_tables(sessions) -> None:
    with transaction(sessions) as session:
        names = set(inspect(session.get_bind()).get_table_names())
    assert {"studies", "trials", "alembic_version"} <= names


def test_the_migrations_build_exactly_the_declared_schema(sessions) -> None:
    """A column or index added to tables.py without a migration shows up here."""
    with transaction(sessions) as session:
        context = MigrationContext.configure(session.connection())
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_trials_are_numbered_densely_per_study(sessions) -> None:
    with transaction(sessions) as session:
        a, b = _study(session, "a"), _study(session, "b")
        numbers_a = [_trial(session, a, i).number for i in range(3)]
        numbers_b = [_trial(session, b, i).number for i in range(2)]
    assert numbers_a == [0, 1, 2] and numbers_b == [0, 1]


def test_a_suggestion_id_is_stored_once_per_study(sessions) -> None:
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        study = _study(session)
        _trial(session, study, 7)
        _trial(session, study, 7)
    with transaction(sessions) as session:
        assert repo.list_studies(session)[1] == 0  # the failed unit of work left nothing


def test_lifecycle_moves_and_refuses_forbidden_ones(sessions) -> None:
    with transaction(sessions) as session:
        study = _study(session)
        trial = _trial(session, study)
        repo.start_trial(session, trial=trial, now=3.0, lease_seconds=10.0, queue="q")
        assert (trial.state, trial.lease_expires_at, trial.dispatched_at) == ("RUNNING", 13.0, 3.0)
        repo.finish_trial(
            session, trial=trial, now=4.0, failed=False, loss=1.5, cost_seconds=2.0, result_key="0"
        )
        trial_id = trial.id
    with transaction(sessions) as session:
        trial = repo.get_trial(session, trial_id=trial_id)
        assert (trial.state, trial.loss, trial.finish_seq) == (TrialState.COMPLETE, 1.5, 0)
        with pytest.raises(InvalidTransitionError, match="COMPLETE trial cannot become"):
            repo.requeue_trial(session, trial=trial, now=5.0)
        with pytest.raises(InvalidTransitionError):
            repo.finish_trial(
                session,
                trial=trial,
                now=5.0,
                failed=True,
                loss=None,
                cost_seconds=1.0,
                result_key="1",
            )
        assert trial.state == TrialState.COMPLETE and trial.cost_seconds == 2.0


def test_requeue_counts_attempts_and_keeps_the_first_dispatch(sessions) -> None:
    with transaction(sessions) as session:
        study = _study(session)
        trial = _trial(session, study)
        repo.start_trial(session, trial=trial, now=3.0, lease_seconds=10.0)
        repo.requeue_trial(session, trial=trial, now=20.0)
        repo.start_trial(session, trial=trial, now=21.0, lease_seconds=10.0)
        assert (trial.attempt, trial.dispatched_at, trial.lease_expires_at) == (1, 3.0, 31.0)
        assert repo.tally(session, study_id=study.id).dispatched == 1


def test_heartbeat_extends_only_running_leases(sessions) -> None:
    with transaction(sessions) as session:
        study = _study(session)
        running, waiting = _trial(session, study, 0), _trial(session, study, 1)
        repo.start_trial(session, trial=running, now=0.0, lease_seconds=10.0)
        repo.heartbeat(session, trial=running, now=8.0, lease_seconds=10.0, worker="w1")
        repo.heartbeat(session, trial=waiting, now=8.0, lease_seconds=10.0)
        assert (running.lease_expires_at, running.worker) == (18.0, "w1")
        assert waiting.lease_expires_at is None
        assert repo.expired_trials(session, study_id=study.id, now=17.0) == []
        assert [t.id for t in repo.expired_trials(session, study_id=study.id, now=19.0)] == [
            running.id
        ]


def test_counts_cost_and_the_order_results_were_recorded_in(sessions) -> None:
    """Finished trials come back in the order their results were recorded (later
    ones last, whatever their numbers or clocks), unfinished ones by number."""
    with transaction(sessions) as session:
        study = _study(session)
        trials = [_trial(session, study, i) for i in range(4)]
        for t in trials[:3]:
            repo.start_trial(session, trial=t, now=1.0, lease_seconds=5.0)
        repo.finish_trial(
            session,
            trial=trials[1],
            now=3.0,
            failed=True,
            loss=None,
            cost_seconds=0.5,
            result_key="0",
            failure_kind="config",
        )
        repo.finish_trial(
            session,
            trial=trials[0],
            now=2.0,  # another process's clock, behind
            failed=False,
            loss=1.0,
            cost_seconds=3.0,
            result_key="0",
        )
        repo.cancel_trial(session, trial=trials[3], now=4.0)
        counts = repo.count_by_state(session, study_id=study.id)
        assert counts == {
            TrialState.WAITING: 0,
            TrialState.RUNNING: 1,
            TrialState.COMPLETE: 1,
            TrialState.FAILED: 1,
            TrialState.CANCELLED: 1,
        }
        assert repo.tally(session, study_id=study.id).spent_cost == pytest.approx(3.5)
        finished = repo.finished_results(session, study_id=study.id)
        assert [(t.number, t.finish_seq) for t in finished] == [(1, 0), (0, 1)]
        assert trials[3].finish_seq is None and study.next_finish_seq == 2
        assert [t.number for t in repo.unfinished_trials(session, study_id=study.id)] == [2]


def test_listing_pages_and_filters(sessions) -> None:
    with transaction(sessions) as session:
        study = _study(session)
        for i in range(5):
            _trial(session, study, i)
        page, total = repo.list_trials(session, study_id=study.id, offset=1, limit=2)
        assert total == 5 and [t.number for t in page] == [1, 2]
        running, n_running = repo.list_trials(
            session, study_id=study.id, states=[TrialState.RUNNING]
        )
        assert (running, n_running) == ([], 0)


def test_study_state_machine(sessions) -> None:
    with transaction(sessions) as session:
        study = _study(session)
        repo.set_study_state(session, study=study, state=StudyState.PAUSED, now=2.0)
        repo.set_study_state(session, study=study, state=StudyState.RUNNING, now=3.0)
        repo.set_study_state(session, study=study, state=StudyState.STOPPED, now=4.0)
        with pytest.raises(InvalidTransitionError, match="STOPPED study cannot become RUNNING"):
            repo.set_study_state(session, study=study, state=StudyState.RUNNING, now=5.0)


def test_missing_ids_raise_typed_errors(sessions) -> None:
    with transaction(sessions) as session:
        with pytest.raises(StudyNotFoundError, match="no study with id 999"):
            repo.get_study(session, study_id=999)
        with pytest.raises(TrialNotFoundError, match="no trial with id 999"):
            repo.get_trial(session, trial_id=999)


def test_study_lock_serializes_concurrent_numbering(sessions) -> None:
    """Two writers adding trials under the study lock never reuse a number."""
    with transaction(sessions) as session:
        study_id = _study(session).id
    errors: list[BaseException] = []

    def add_many(offset: int) -> None:
        try:
            for i in range(10):
                with transaction(sessions) as session:
                    study = repo.get_study(session, study_id=study_id, lock=True)
                    _trial(session, study, offset + i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=add_many, args=(k * 100,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with transaction(sessions) as session:
        trials, total = repo.list_trials(session, study_id=study_id, limit=100)
    assert total == 20 and sorted(t.number for t in trials) == list(range(20))


def test_reads_leave_the_engine_state_unloaded_until_touched(sessions) -> None:
    with transaction(sessions) as session:
        study_id = _study(session).id
    with transaction(sessions) as session:
        (listed,), _ = repo.list_studies(session)
        assert "engine_state" in inspect(listed).unloaded
    with transaction(sessions) as session:
        study = repo.get_study(session, study_id=study_id)
        assert "engine_state" in inspect(study).unloaded
        assert not repo.has_engine_state(study)
        repo.save_engine_state(session, study=study, engine_state='{"n": 1}', now=3.0)
    with transaction(sessions) as session:
        study = repo.get_study(session, study_id=study_id, lock=True)
        assert repo.has_engine_state(study)
        assert study.engine_state == '{"n": 1}'  # loaded on first touch


def test_a_batch_of_trials_is_numbered_in_order_and_fetched_by_id(sessions) -> None:
    with transaction(sessions) as session:
        study = _study(session)
        _trial(session, study, 0)
        batch = repo.add_trials(
            session, study=study, suggestions=[_suggestion(i) for i in (1, 2, 3)], now=2.0
        )
        assert [t.number for t in batch] == [1, 2, 3]
        found = repo.get_trials(session, trial_ids=[batch[2].id, batch[0].id, 10_000])
    assert {i: t.suggestion_id for i, t in found.items()} == {
        batch[0].id: "sg-1",
        batch[2].id: "sg-3",
    }
    with transaction(sessions) as session:
        waiting = repo.trials_in_state(
            session, study_id=study.id, states=[TrialState.WAITING], limit=2
        )
    assert [t.number for t in waiting] == [0, 1]


def test_sqlite_read_sessions_leave_the_write_lock_free(sqlite_url: str) -> None:
    """Mid-transaction, a read-only session lets a writer start at once (it reads a WAL
    snapshot); a write session holds the lock (BEGIN IMMEDIATE) and the writer is refused."""
    engine = make_engine(sqlite_url)
    migrate(engine)
    with transaction(make_sessionmaker(engine)) as session:
        study_id = _study(session).id
    writer = sqlite3.connect(make_url(sqlite_url).database, timeout=0, isolation_level=None)

    def writer_can_start() -> bool:
        try:
            writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # database is locked
            return False
        writer.execute("ROLLBACK")
        return True

    try:
        for read_only, expected in ((True, True), (False, False)):
            with make_sessionmaker(engine, read_only=read_only)() as session:
                assert repo.get_study(session, study_id=study_id).name == "s"
                assert writer_can_start() is expected
    finally:
        writer.close()
        engine.dispose()
