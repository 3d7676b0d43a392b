"""Concurrent studies through the real stack (uvicorn API, control worker, Celery trial
workers, Redis, PostgreSQL): every study completes, no trial is lost or recorded twice.

The scaled-down ``bench/load_studies.py`` (50 studies x 8 in flight there, measured in
docs/benchmarks.md): 6 studies of up to 20 trials, 4 in flight each, every other one with
a cost budget too. Only correctness is asserted here, never timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bench.load_studies import audit, load_cluster, run_load, study_body
from search.engine import ParetoSearch
from service.domain import StudySpec
from service.orchestration.engines import load_spec, resolve_space
from service.orchestration.studies import create_study_row
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.storage.tables import StudyRow

STUDIES, TRIALS, IN_FLIGHT = 6, 20, 4  # every other study stops on cost before 20


@pytest.mark.integration
@pytest.mark.slow
def test_concurrent_studies_all_complete_and_no_trial_is_lost_or_doubled(
    pg_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    with load_cluster(
        database_url=pg_database_url,
        broker_url=redis_url,
        logs=tmp_path,
        api_workers=1,
        trial_workers=2,
    ) as base:
        result = run_load(
            base,
            database_url=pg_database_url,
            studies=STUDIES,
            trials=TRIALS,
            in_flight=IN_FLIGHT,
            read_rate=10.0,
            timeout_s=240.0,
        )
    audit = result.audit
    assert audit.problems == [], "\n".join(audit.problems)
    assert audit.studies_complete == STUDIES
    assert audit.dispatched == audit.finished <= STUDIES * TRIALS
    assert audit.stopped_on_cost > 0  # the cost budget's overshoot check had work to do
    assert result.read_ms.size > 0 and not result.read_errors, result.read_errors


def _hand_made_study(
    session: Session, budget: dict, runs: list[tuple[float, float | None, float]]
) -> StudyRow:
    """A study whose trials ran as ``runs``: (dispatched at, finished at or None, cost)."""
    body = {**study_body(0, trials=1, in_flight=2), "budget": budget}
    spec = StudySpec.model_validate(body)
    study = create_study_row(session, spec=spec, now=0.0)
    suggestions = ParetoSearch(resolve_space(spec)).ask(len(runs))
    for suggestion, (dispatched_at, finished_at, cost) in zip(suggestions, runs, strict=True):
        trial = repo.add_trial(session, study=study, now=0.0, suggestion=suggestion)
        repo.start_trial(session, trial=trial, now=dispatched_at, lease_seconds=60.0)
        if finished_at is not None:
            repo.finish_trial(
                session,
                trial=trial,
                now=finished_at,
                failed=False,
                loss=1.0,
                cost_seconds=cost,
                result_key="0",
            )
    return study


def test_the_audit_names_lost_trials_doubled_observations_and_budget_faults(
    sqlite_url: str,
) -> None:
    """The checker itself can fail: hand-made rows with each fault it looks for."""
    engine = make_engine(sqlite_url)
    migrate(engine)
    with transaction(make_sessionmaker(engine)) as session:
        # the third trial stays RUNNING (lost); the saved engine took in other results
        lost = _hand_made_study(
            session, {"max_trials": 3}, [(1, 2, 1.0), (1, 2, 1.0), (1, None, 0)]
        )
        other = ParetoSearch(resolve_space(load_spec(lost))).state_dict(with_history=False)
        other["taken_in"] = {"count": 2, "digest": "0" * 16}
        repo.save_engine_state(session, study=lost, engine_state=json.dumps(other), now=3.0)
        # s0 spent the whole cost budget at t=2; s1 was dispatched after that
        late = _hand_made_study(session, {"max_trials": 5, "max_cost": 10}, [(1, 2, 12), (3, 4, 1)])
        # two trials of five, 2 of 10 spent: it stopped short of its budget
        short = _hand_made_study(session, {"max_trials": 5, "max_cost": 10}, [(1, 2, 1), (1, 2, 1)])
        ids = [lost.id, late.id, short.id]
    engine.dispose()
    problems = audit(sqlite_url, ids).problems
    assert f"study {ids[0]} is RUNNING, not COMPLETE" in problems
    assert f"study {ids[0]}: trials [2] never finished (lost)" in problems
    assert f"study {ids[0]}: 3 dispatched, 2 finished" in problems
    assert any(p.startswith(f"study {ids[0]}: its engine does not rebuild") for p in problems)
    assert f"study {ids[1]}: the engine took in 0 of the 2 finished trials" in problems
    assert f"study {ids[1]}: trials [1] dispatched after max_cost was spent" in problems
    assert f"study {ids[2]}: stopped at 2 trials and 2 spent, short of its budget" in problems
    assert not [p for p in problems if "budget" in p and p.startswith(f"study {ids[0]}")]
