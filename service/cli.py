"""The ``scaletune`` command line.

Embedded commands (no services): ``demo`` and ``run STUDY_FILE``. Commands that talk to
a running service over HTTP (``submit``, ``list``, ``status``, ``watch``, ``stop``,
``export``) go through ``service.client``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.config import DEFAULT_HOME, Settings
from service.domain import Budget, ScalingAxesSpec, StudySpec
from service.studyfile import StudyFileError, load_study_file

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Cost-aware Bayesian hyperparameter scaling."
)
console = Console()
errors = Console(stderr=True)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="SQLite file of the embedded store (default .scaletune/)"),
]
WorkersOption = Annotated[int, typer.Option("--workers", min=1, help="in-process trial threads")]


def demo_spec(*, trials: int, in_flight: int, seed: int) -> StudySpec:
    """The demo study: the synthetic scaling testbed with its default space."""
    return StudySpec(
        name="demo",
        objective="testbed",
        budget=Budget(max_trials=trials),
        in_flight=in_flight,
        seed=seed,
        scaling=ScalingAxesSpec(n_params="n_params", tokens="tokens"),
    )


@app.command()
def demo(
    trials: Annotated[int, typer.Option(min=2, help="trials to run")] = 48,
    in_flight: Annotated[int, typer.Option(min=1, help="trials in flight")] = 4,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    db: DbOption = None,
    workers: WorkersOption = 4,
) -> None:
    """Run a demo study on the synthetic scaling testbed, embedded; print front and rules."""
    _run_embedded(demo_spec(trials=trials, in_flight=in_flight, seed=seed), db=db, workers=workers)


@app.command()
def run(
    study_file: Annotated[Path, typer.Argument(help="YAML study file")],
    db: DbOption = None,
    workers: WorkersOption = 4,
) -> None:
    """Run the study described in STUDY_FILE, embedded (no services)."""
    try:
        spec = load_study_file(study_file)
    except StudyFileError as exc:
        _fail(str(exc))
    _run_embedded(spec, db=db, workers=workers)


def _run_embedded(spec: StudySpec, *, db: Path | None, workers: int) -> None:
    from service.embedded import run_embedded
    from service.scheduler import Scheduler, resolve_space
    from service.storage.db import make_engine, make_sessionmaker, migrate
    from service.studies import UnknownObjectiveNameError
    from workers.objectives.registry import UnknownObjectiveError

    path = db or DEFAULT_HOME / "scaletune.db"
    settings = Settings(database_url=f"sqlite:///{path}")
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    try:
        resolve_space(spec)  # an unknown objective or bad options fail here, not mid-run
        study_id = Scheduler(sessions=sessions, settings=settings).create_study(spec)
    except (UnknownObjectiveNameError, UnknownObjectiveError, ValueError) as exc:
        _fail(f"cannot create study {spec.name!r}: {exc}")
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
    from service.reporting import print_study_result

    print_study_result(console, sessions=sessions, study_id=study_id)


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


def _done(sessions, study_id: int) -> int:  # type: ignore[no-untyped-def]
    from service.domain import FINAL_TRIAL_STATES
    from service.storage import repository as repo
    from service.storage.db import transaction

    with transaction(sessions) as session:
        counts = repo.count_by_state(session, study_id=study_id)
    return sum(
        n for state, n in counts.items() if state in FINAL_TRIAL_STATES and state != "CANCELLED"
    )


def _fail(message: str) -> None:
    errors.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def main() -> None:
    """Console-script entry point."""
    app()
