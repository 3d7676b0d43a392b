"""Trial write throughput: Optuna's RDB storage vs scaletune's repository (same SQLite).

Each trial is created with 7 parameters, started and finished with a loss, one
transaction per step, as the scheduler does. Run: python bench/storage_writes.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import optuna

from search.types import Suggestion
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction

PARAMS = {f"p{i}": 0.1 * (i + 1) for i in range(7)}


def optuna_rate(url: str, n: int) -> float:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, directions=["minimize", "minimize"])
    dists = {k: optuna.distributions.FloatDistribution(1e-3, 10.0, log=True) for k in PARAMS}
    start = time.perf_counter()
    for i in range(n):
        trial = study.ask(dists)
        study.tell(trial, [1.0 + i, 2.0])
    return n / (time.perf_counter() - start)


def scaletune_rate(url: str, n: int) -> float:
    sessions = make_sessionmaker(_migrated(url))
    with transaction(sessions) as session:
        study_id = repo.create_study(
            session, name="b", objective="testbed", spec={}, engine_state="", now=0.0
        ).id
    start = time.perf_counter()
    for i in range(n):
        with transaction(sessions) as session:
            study = repo.get_study(session, study_id=study_id, lock=True)
            trial = repo.add_trial(
                session,
                study=study,
                now=0.0,
                suggestion=Suggestion(suggestion_id=f"s{i}", params=PARAMS, reason="startup"),
            )
            repo.start_trial(session, trial=trial, now=0.0, lease_seconds=60.0)
        with transaction(sessions) as session:
            trial = repo.get_trial(session, trial_id=trial.id)
            repo.finish_trial(
                session,
                trial=trial,
                now=1.0,
                failed=False,
                loss=1.0 + i,
                cost_seconds=2.0,
                result_key="0",
            )
    return n / (time.perf_counter() - start)


def _migrated(url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    migrate(engine)
    return engine


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp:
        ours = scaletune_rate(f"sqlite:///{Path(tmp) / 'ours.db'}", n)
        theirs = optuna_rate(f"sqlite:///{Path(tmp) / 'optuna.db'}", n)
    print(f"trials={n} scaletune={ours:.0f}/s optuna_rdb={theirs:.0f}/s")


if __name__ == "__main__":
    main()
