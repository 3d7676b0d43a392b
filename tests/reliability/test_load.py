"""Concurrent studies through the real stack (uvicorn API, control worker, Celery trial
workers, Redis, PostgreSQL): every study completes, no trial is lost or recorded twice.

The scaled-down ``bench/load_studies.py`` (50 studies x 8 in flight there, measured in
docs/benchmarks.md); here only correctness is asserted, never timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load_studies import audit, load_cluster, run_load, study_body
from search.types import Suggestion
from service.domain import StudySpec
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.studies import create_study_row

STUDIES, TRIALS, IN_FLIGHT = 6, 12, 4


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
    assert audit.dispatched == audit.finished == STUDIES * TRIALS
    assert result.read_ms.size > 0 and not result.read_errors, result.read_errors


def test_the_audit_names_a_lost_trial_and_a_doubled_observation(sqlite_url: str) -> None:
    """The checker itself can fail: hand-made rows with each fault it looks for."""
    engine = make_engine(sqlite_url)
    migrate(engine)
    with transaction(make_sessionmaker(engine)) as session:
        spec = StudySpec.model_validate(study_body(0, trials=3, in_flight=2))
        study = create_study_row(session, spec=spec, now=0.0)
        trials = [
            repo.add_trial(
                session,
                study=study,
                now=0.0,
                suggestion=Suggestion(suggestion_id=f"s{i}", params={}, reason="startup"),
            )
            for i in range(3)
        ]
        for trial in trials:
            repo.start_trial(session, trial=trial, now=1.0, lease_seconds=60.0)
        for trial in trials[:2]:  # the third stays RUNNING: lost
            repo.finish_trial(
                session,
                trial=trial,
                now=2.0,
                failed=False,
                loss=1.0,
                cost_seconds=1.0,
                result_key="0",
            )
            trial.synced = True
        study.engine_state = json.dumps(
            {"observations": [{"suggestion_id": "s0"}, {"suggestion_id": "s0"}]}
        )
        study_id = study.id
    engine.dispose()
    problems = "\n".join(audit(sqlite_url, [study_id]).problems)
    assert "is RUNNING, not COMPLETE" in problems
    assert "trials [2] never finished (lost)" in problems
    assert "3 dispatched, 2 finished" in problems
    assert "told ['s0'] more than once" in problems
    assert "engine observations 1 differ from the 2 finished" in problems
