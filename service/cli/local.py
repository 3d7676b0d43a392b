"""Embedded commands: ``demo`` and ``run`` in one process on the local store (no services),
and reading that store for ``export --db``. Their studies belong to the local tenant
``default``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.cli.common import (
    DbOption,
    ReportOption,
    RulesOutOption,
    StudyFileArgument,
    console,
    errors,
    fail,
)
from service.cli.demo import DEMO_IN_FLIGHT, DEMO_TRIALS, demo_spec
from service.cli.studyfile import StudyFileError, load_study_file
from service.config import Settings
from service.domain import StudySpec

if TYPE_CHECKING:  # the store's modules load when a command runs, not at start-up
    from sqlalchemy.orm import Session, sessionmaker

app = typer.Typer()

WorkersOption = Annotated[
    int, typer.Option("--workers", min=1, metavar="N", help="in-process trial threads")
]


@app.command()
def demo(
    trials: Annotated[int, typer.Option(min=2, metavar="N", help="trials to run")] = DEMO_TRIALS,
    in_flight: Annotated[
        int, typer.Option(min=1, metavar="N", help="trials in flight")
    ] = DEMO_IN_FLIGHT,
    seed: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="the study's seed: the same seed gives the same start-up trials (see "
            "'seed' in the README for what it does not fix)",
        ),
    ] = 0,
    db: DbOption = None,
    workers: WorkersOption = 4,
    report: ReportOption = None,
    rules_out: RulesOutOption = None,
) -> None:
    """Run a demo study on the synthetic scaling testbed, embedded; print front and rules."""
    spec = demo_spec(trials=trials, in_flight=in_flight, seed=seed)
    _run_embedded(spec, db=db, workers=workers, report=report, rules_out=rules_out)


@app.command()
def run(
    study_file: StudyFileArgument,
    db: DbOption = None,
    workers: WorkersOption = 4,
    report: ReportOption = None,
    rules_out: RulesOutOption = None,
) -> None:
    """Run the study described in STUDY_FILE, embedded (no services)."""
    try:
        spec = load_study_file(study_file)
    except StudyFileError as exc:
        fail(str(exc))
    _run_embedded(spec, db=db, workers=workers, report=report, rules_out=rules_out)


def _run_embedded(
    spec: StudySpec,
    *,
    db: Path | None,
    workers: int,
    report: Path | None = None,
    rules_out: Path | None = None,
) -> None:
    from service.cli.local_store import open_store_for_rules
    from service.orchestration.embedded import run_embedded
    from service.orchestration.scheduler import Scheduler
    from service.orchestration.verification import NoRulesError

    path, sessions = open_store_for_rules(db, rules_out)
    settings = Settings(database_url=f"sqlite:///{path}")
    try:
        study_id = Scheduler(sessions=sessions, settings=settings).create_study(spec)
    except (ValueError, NoRulesError) as exc:  # a bad objective name or options, a warm start
        fail(f"cannot create study {spec.name!r}: {exc}")
    console.print(
        f"study [bold]{spec.name}[/] (id {study_id}) on objective "
        f"[bold]{spec.objective}[/], store {path}"
    )
    with _progress_bar() as bar:
        task = bar.add_task("trials", total=_total(spec))
        state = run_embedded(
            study_id=study_id,
            sessions=sessions,
            settings=settings,
            workers=workers,
            on_step=lambda _report: bar.update(task, completed=_done(sessions, study_id)),
        )
        bar.update(task, completed=_done(sessions, study_id))
    console.print(f"study {study_id} finished: {state}")
    from service.reads.reports.outcome import print_study_result

    print_study_result(console, sessions=sessions, study_id=study_id, store=path)
    write_local_outputs(sessions, study_id, report=report, rules_out=rules_out)


def write_local_outputs(
    sessions: sessionmaker[Session], study_id: int, *, report: Path | None, rules_out: Path | None
) -> None:
    """The report and the rules file an embedded command was asked for; without rules,
    each says why and the command exits with code 1 once both were tried."""
    from service.cli.local_store import export_report, study_rules, write_rules
    from service.reads.reports.files import NoReportError

    missing = False
    if report is not None:
        try:
            console.print(f"report: {export_report(sessions, study_id, report)}", highlight=False)
        except NoReportError as exc:
            errors.print(f"no report: {exc}", highlight=False)
            missing = True
    if rules_out is not None:
        try:
            write_rules(study_rules(sessions, study_id), rules_out)
            console.print(f"rules: {rules_out}", highlight=False)
        except NoReportError as exc:
            errors.print(f"no rules file: {exc}", highlight=False)
            missing = True
    if missing:
        raise typer.Exit(code=1)


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _total(spec: StudySpec) -> float | None:
    return spec.budget.max_trials


def _done(sessions: sessionmaker[Session], study_id: int) -> int:
    from service.domain import FINAL_TRIAL_STATES
    from service.storage import repository as repo
    from service.storage.db import transaction

    with transaction(sessions) as session:
        counts = repo.count_by_state(session, study_id=study_id)
    return sum(
        n for state, n in counts.items() if state in FINAL_TRIAL_STATES and state != "CANCELLED"
    )


def export_local(db: Path, study_id: int, fmt: str, out: Path | None) -> None:
    """``export`` from the embedded store: the rules (JSON/YAML) or the report."""
    from service.cli.local_store import NoStoreError, export_report, open_store, study_rules
    from service.domain import StudyNotFoundError
    from service.reads.reports.files import NoReportError

    try:
        _, sessions = open_store(db, create=False)
        if fmt == "report":
            path = export_report(sessions, study_id, out or Path(f"scaletune-report-{study_id}"))
            console.print(f"wrote {path}", highlight=False)
            return
        rules = study_rules(sessions, study_id)
    except (NoStoreError, NoReportError, StudyNotFoundError) as exc:
        fail(str(exc))
    text = rules.to_json() if fmt == "json" else rules.to_yaml()
    if out is None:
        typer.echo(text)  # unwrapped, so it parses
    else:
        out.write_text(text)
        console.print(f"wrote {out}", highlight=False)
