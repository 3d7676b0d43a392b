"""The embedded store (a SQLite file) as the CLI uses it without a server.

``scaletune run``/``demo``/``import`` keep their studies in ``.scaletune/scaletune.db``
(or ``--db``); ``scaletune export --db`` reads the rules and the report from it, as
``GET /studies/{id}/rules`` and ``/report`` do from a service's store.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from search.scaling import ScalingRules
from service.cli.common import fail
from service.config import DEFAULT_HOME
from service.domain import TrialState
from service.reads.reports.files import NoReportError
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction

DEFAULT_STORE = DEFAULT_HOME / "scaletune.db"
RULES_SUFFIXES = (".json", ".yaml", ".yml")


class NoStoreError(LookupError):
    """The SQLite file named as the embedded store does not exist."""


def open_store(path: Path | None, *, create: bool = True) -> tuple[Path, sessionmaker[Session]]:
    """The store's path and sessions, migrated; ``create=False`` refuses a missing file
    (a reader must not leave an empty store behind a typo)."""
    path = path or DEFAULT_STORE
    if not create and not path.is_file():
        raise NoStoreError(
            f"no embedded store at {path}: `scaletune run`, `demo` and `import` write it "
            "(pass its path with --db)"
        )
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    return path, make_sessionmaker(engine)


def open_store_for_rules(
    path: Path | None, rules_out: Path | None
) -> tuple[Path, sessionmaker[Session]]:
    """``open_store`` for a command that will write rules to ``rules_out`` (``run``,
    ``import``): a path that cannot take rules fails the command before any work."""
    if rules_out is not None:
        try:
            check_rules_path(rules_out)
        except ValueError as exc:
            fail(f"--rules-out: {exc}")
    return open_store(path)


def study_rules(sessions: sessionmaker[Session], study_id: int) -> ScalingRules:
    """The study's fitted rules; NoReportError (saying why) when it has none."""
    with transaction(sessions) as session:
        study = repo.get_study(session, study_id=study_id)
        if study.rules is None:
            raise NoReportError(
                f"study {study_id} has no scaling rules ({study.state}): "
                f"{study.message or 'it has not finished'}"
            )
        return ScalingRules.model_validate(study.rules)


def write_rules(rules: ScalingRules, path: Path) -> Path:
    """The rules as JSON or YAML, by the file's suffix (checked with ``check_rules_path``)."""
    check_rules_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return rules.save(path)


def check_rules_path(path: Path) -> None:
    if path.suffix not in RULES_SUFFIXES:
        raise ValueError(f"a rules file ends in .json, .yaml or .yml, not {path.name!r}")


def export_report(sessions: sessionmaker[Session], study_id: int, out: Path) -> Path:
    """The study's scaling report written straight into ``out`` (as ``export`` does
    from the API); the Markdown file's path. NoReportError without rules."""
    from service.reads.reports import write_scaling_report
    from service.reads.study_rules import observations

    rules = study_rules(sessions, study_id)
    with transaction(sessions) as session:
        trials = repo.trials_in_state(
            session, study_id=study_id, states=[TrialState.COMPLETE, TrialState.FAILED]
        )
        return write_scaling_report(rules, observations(trials), out)
