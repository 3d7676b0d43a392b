"""The ``scaletune`` command line.

Embedded commands (no services): ``demo`` and ``run STUDY_FILE``; their studies belong
to the local tenant ``default``. Commands that talk to a running service over HTTP
(``submit``, ``list``, ``status``, ``watch``, ``stop``, ``export``) go through
``service.interop.client`` with an API token (``--token`` or ``SCALETUNE_TOKEN``). ``scaletune
admin ...`` runs on the server side: it writes tenants and tokens straight into the
store named by the settings (``SCALETUNE_DATABASE_URL``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.cli.demo import DEMO_IN_FLIGHT, DEMO_TRIALS, demo_spec
from service.cli.studyfile import StudyFileError, load_study_file
from service.config import Settings
from service.domain import StudySpec
from service.reads.reports.terminal import plural, show_table, terminal_table

# Plain help (rich_markup_mode=None): typer's rich help tags every option with its Python
# type (`--help <bool>`); every option that takes a value names it with a metavar instead.
app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    help="Cost-aware Bayesian hyperparameter scaling.",
)
console = Console()
errors = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"scaletune {version('scaletune')}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Cost-aware Bayesian hyperparameter scaling."""
    if ctx.invoked_subcommand is None:  # no command: the help, and success
        print(ctx.get_help())
        raise typer.Exit()


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", metavar="FILE", help="SQLite file of the embedded store (default .scaletune/)"
    ),
]
WorkersOption = Annotated[
    int, typer.Option("--workers", min=1, metavar="N", help="in-process trial threads")
]
ReportOption = Annotated[
    Path | None,
    typer.Option(
        "--report", metavar="DIR", help="directory for the scaling report (Markdown + plots)"
    ),
]
# Hidden from the option list (where they would carry a type tag): each command's own
# help names its argument.
StudyFileArgument = Annotated[Path, typer.Argument(metavar="STUDY_FILE", hidden=True)]
StudyIdArgument = Annotated[int, typer.Argument(metavar="STUDY_ID", hidden=True)]
RulesOutOption = Annotated[
    Path | None,
    typer.Option(
        "--rules-out",
        metavar="FILE",
        help="write the fitted scaling rules here (.yaml, .yml or .json)",
    ),
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
        _fail(str(exc))
    _run_embedded(spec, db=db, workers=workers, report=report, rules_out=rules_out)


def _run_embedded(
    spec: StudySpec,
    *,
    db: Path | None,
    workers: int,
    report: Path | None = None,
    rules_out: Path | None = None,
) -> None:
    from service.cli.local_store import check_rules_path, open_store
    from service.orchestration.embedded import run_embedded
    from service.orchestration.scheduler import Scheduler
    from service.orchestration.verification import NoRulesError

    if rules_out is not None:
        try:
            check_rules_path(rules_out)
        except ValueError as exc:
            _fail(f"--rules-out: {exc}")
    path, sessions = open_store(db)
    settings = Settings(database_url=f"sqlite:///{path}")
    try:
        study_id = Scheduler(sessions=sessions, settings=settings).create_study(spec)
    except (ValueError, NoRulesError) as exc:  # a bad objective name or options, a warm start
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
    from service.reads.reports.outcome import print_study_result

    print_study_result(console, sessions=sessions, study_id=study_id, store=path)
    _write_local_outputs(sessions, study_id, report=report, rules_out=rules_out)


def _write_local_outputs(  # type: ignore[no-untyped-def]
    sessions, study_id: int, *, report: Path | None, rules_out: Path | None
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
    # soft_wrap: one line per message, so a long path is never cut in two (the terminal
    # wraps it for display; a pipe or log keeps it whole)
    errors.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


# -- commands over the HTTP API -------------------------------------------------------

ApiOption = Annotated[
    str,
    typer.Option(
        "--api", envvar="SCALETUNE_API_URL", metavar="URL", help="base URL of the scaletune API"
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="SCALETUNE_TOKEN",
        metavar="TOKEN",
        help="API token (prefer the environment variable: a command line is visible to "
        "other users of the machine)",
        show_default=False,
    ),
]


def _client(api: str, token: str | None):  # type: ignore[no-untyped-def]
    from service.interop.client import ScaletuneClient

    if not token:
        _fail("an API token is needed: set SCALETUNE_TOKEN or pass --token")
    return ScaletuneClient(api, token=token)


def _api_call(fn, *args, tolerate: int | None = None, **kwargs):  # type: ignore[no-untyped-def]
    """``fn``'s answer; an API error ends the command with its message, except a
    ``tolerate`` status, which returns None."""
    import httpx

    from service.interop.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        if exc.status == tolerate:
            return None
        _fail(str(exc))
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the API: {exc}")


@app.command()
def submit(
    study_file: StudyFileArgument,
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
) -> None:
    """Submit STUDY_FILE to a running service."""
    try:
        spec = load_study_file(study_file)
    except StudyFileError as exc:
        _fail(str(exc))
    study = _api_call(_client(api, token).create_study, spec.model_dump(mode="json"))
    console.print(f"submitted study {study['id']} ({study['name']})")


@app.command("list")
def list_(api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None) -> None:
    """List the service's studies."""
    studies = _api_call(_client(api, token).list_studies)
    rows = [
        [
            str(s["id"]),
            escape(s["name"]),
            s["objective"],
            s["state"] + (" (spec no longer loads)" if s.get("error") else ""),
        ]
        for s in studies["data"]
    ]
    show_table(console, title="studies", headers=["id", "name", "objective", "state"], rows=rows)


@app.command()
def status(
    study_id: StudyIdArgument, api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None
) -> None:
    """Study STUDY_ID: its state, budget use, trials by state and queue."""
    show_table(console, **_status_table(_api_call(_client(api, token).get_study, study_id)))


@app.command()
def watch(
    study_id: StudyIdArgument,
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    interval: Annotated[
        float,
        typer.Option(min=0.2, metavar="SECONDS", help="seconds between refreshes (at least 0.2)"),
    ] = 2.0,
) -> None:
    """Live view of study STUDY_ID, its queues and workers, until it finishes."""
    import time
    from contextlib import nullcontext

    from rich.live import Live

    client = _client(api, token)
    # Piped, a live display cannot redraw: each change is printed once, as plain rows.
    live = Live(console=console, refresh_per_second=4) if console.is_terminal else None
    shown = None
    with live or nullcontext():
        while True:
            study = _api_call(client.get_study, study_id)
            queues = _api_call(client.queues, tolerate=403)  # the queue view is admin-only
            tables = [_status_table(study), _queues_table(queues)]
            if live is not None:
                live.update(Group(*(terminal_table(console, **t) for t in tables)))
            elif tables != shown:
                for table in tables:
                    show_table(console, **table)
                shown = tables
            if study["state"] in ("COMPLETE", "STOPPED"):
                return
            time.sleep(interval)


@app.command()
def stop(
    study_id: StudyIdArgument, api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None
) -> None:
    """Stop study STUDY_ID for good (running trials finish and are recorded)."""
    study = _api_call(_client(api, token).set_state, study_id, "stop")
    console.print(f"study {study_id}: {study['state']}")


@app.command()
def export(
    study_id: StudyIdArgument,
    api: ApiOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="json, yaml or report (default: by --out's suffix, else yaml)",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="file (json/yaml) or directory (report)"),
    ] = None,
    optuna_storage: Annotated[
        str | None,
        typer.Option(metavar="URL", help="instead: copy the study into this Optuna storage URL"),
    ] = None,
    optuna_study_name: Annotated[
        str | None, typer.Option(metavar="NAME", help="name in Optuna (default: the study's)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace an Optuna study of that name")
    ] = False,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            metavar="FILE",
            help="read this embedded store (the SQLite file of `scaletune run`, "
            ".scaletune/scaletune.db by default there) instead of the API",
        ),
    ] = None,
) -> None:
    """Export study STUDY_ID's scaling rules (JSON or YAML), its report (Markdown + plots),
    or the study itself into an Optuna storage (--optuna-storage) for optuna.load_study
    and optuna-dashboard."""
    import json

    if fmt is None:
        fmt = "json" if out is not None and out.suffix == ".json" else "yaml"
    if fmt not in ("json", "yaml", "report"):
        _fail("--format must be json, yaml or report")
    if db is not None:
        if optuna_storage is not None:
            _fail("--optuna-storage reads a study through the API; leave out --db")
        _export_local(db, study_id, fmt, out)
        return
    client = _client(api, token)
    if optuna_storage is not None:
        _export_to_optuna(client, study_id, optuna_storage, optuna_study_name, overwrite)
        return
    if fmt == "report":
        _download_report(client, study_id, out or Path(f"scaletune-report-{study_id}"))
        return
    rules = _api_call(client.rules, study_id, fmt=fmt)
    text = rules if isinstance(rules, str) else json.dumps(rules, indent=2)
    if out is None:
        console.print(text, highlight=False)
    else:
        out.write_text(text)
        console.print(f"wrote {out}")


def _export_local(db: Path, study_id: int, fmt: str, out: Path | None) -> None:
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
        _fail(str(exc))
    text = rules.to_json() if fmt == "json" else rules.to_yaml()
    if out is None:
        typer.echo(text)  # unwrapped, so it parses
    else:
        out.write_text(text)
        console.print(f"wrote {out}", highlight=False)


def _export_to_optuna(client, study_id: int, storage: str, name: str | None, overwrite: bool):  # type: ignore[no-untyped-def]
    from service.interop.optuna_export import (
        OptunaExportError,
        OptunaStudyExistsError,
        export_from_api,
    )

    try:
        exported = _api_call(
            export_from_api,
            client,
            study_id=study_id,
            storage=storage,
            study_name=name,
            overwrite=overwrite,
        )
    except OptunaStudyExistsError as exc:
        _fail(
            f"the Optuna storage already has a study named {exc.name!r}; pass --overwrite to "
            "replace it, or choose another name with --optuna-study-name"
        )
    except OptunaExportError as exc:
        _fail(str(exc))
    console.print(
        f"exported study {study_id} to Optuna as {exported!r}; view it with: "
        f"optuna-dashboard {storage}",
        highlight=False,
    )


def _download_report(client, study_id: int, out: Path) -> None:  # type: ignore[no-untyped-def]
    """The Markdown report and every plot it links, into ``out``."""
    import re

    markdown = _api_call(client.report_file, study_id).decode()
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling-report.md").write_text(markdown)
    for name in sorted(set(re.findall(r"\(([A-Za-z0-9_.\-]+\.png)\)", markdown))):
        (out / name).write_bytes(_api_call(client.report_file, study_id, name))
    console.print(f"wrote {out / 'scaling-report.md'}")


def _status_table(study: dict) -> dict:  # type: ignore[type-arg]
    """``show_table``'s arguments for a study's state, budget, trials and queue."""
    p = study["progress"]
    rows = [
        ["spent / budget cost", f"{p['spent_cost']:.4g} / {_or_none(p['max_cost'])}"],
        ["trials / budget", f"{p['dispatched']} / {_or_none(p['max_trials'])}"],
        *([f"trials {state}", str(n)] for state, n in study["trials_by_state"].items()),
        ["front size", str(len(study["front"]))],
    ]
    if study.get("error"):  # its stored spec no longer loads: it cannot run
        rows.insert(0, ["error", escape(study["error"])])
    queue = _queue_line(study)
    if queue is not None:
        rows.append(["queue", queue])
    title = f"study {study['id']} {escape(study['name'])}: {study['state']}"
    return {"title": title, "headers": ["field", "value"], "rows": rows, "wrap": ["value"]}


def _or_none(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _queue_line(study: dict) -> str | None:  # type: ignore[type-arg]
    """The study's queue and its live workers; a warning when none consumes it."""
    workers = study.get("queue_workers")
    if workers is None:  # an external study, or heartbeats unreadable
        return None
    name = escape(study["spec"]["queue"])
    if workers == 0:
        return f"[bold red]{name}: no live worker consumes it; its trials wait until one does[/]"
    return f"{name}: {plural(workers, 'live worker')}"


def _queues_table(queues: dict | None) -> dict:  # type: ignore[type-arg]
    """``show_table``'s arguments for the queue view (admins only)."""
    if queues is None:
        return {
            "title": "queues and workers: shown to an admin token only",
            "headers": [],
            "rows": [],
        }
    rows = [
        [
            "queue",
            escape(q["name"]),
            f"{q['waiting']} waiting, {q['running']} running",
            _consumers(q.get("consumers")),
        ]
        for q in queues["queues"]
    ]
    rows += [
        [
            "worker",
            escape(w["worker"]),
            f"{escape(w['device'])}, trial {w['trial_id'] or '-'}",
            f"beat {w['age_s']:.1f} s ago",
        ]
        for w in queues["workers"]
    ]
    return {
        "title": "queues and workers",
        "headers": ["kind", "name", "trials", "workers / heartbeat"],
        "rows": rows,
    }


def _consumers(n: int | None) -> str:
    if n is None:
        return "unknown"
    return "[bold red]no live worker[/]" if n == 0 else plural(n, "live worker")


# -- past runs as a study --------------------------------------------------------------

ColumnOption = Annotated[
    str | None, typer.Option(metavar="COLUMN", help="column name", show_default=False)
]


@app.command("import")
def import_runs(
    runs_file: Annotated[Path, typer.Argument(metavar="RUNS_FILE", hidden=True)],
    params: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMNS",
            help="hyperparameter columns, comma-separated (NAME=COLUMN renames); default: "
            "the params.* or config.* columns",
            show_default=False,
        ),
    ] = None,
    loss: ColumnOption = None,
    cost: Annotated[
        str | None,
        typer.Option(metavar="COLUMN", help="cost column (GPU-seconds)", show_default=False),
    ] = None,
    flops: Annotated[
        str | None, typer.Option(metavar="COLUMN", help="FLOPs column", show_default=False)
    ] = None,
    failed: Annotated[
        str | None,
        typer.Option(metavar="COLUMN", help="failed flag column (default: failed, or W&B's State)"),
    ] = None,
    n_params: Annotated[
        str | None,
        typer.Option("--n-params", metavar="COLUMN", help="model size column (scaling axis N)"),
    ] = None,
    tokens: Annotated[
        str | None, typer.Option(metavar="COLUMN", help="training tokens column (scaling axis D)")
    ] = None,
    compute: Annotated[
        str | None, typer.Option(metavar="COLUMN", help="compute column (a single scaling axis)")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="YAML mapping file (the same keys; flags win)"),
    ] = None,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="study name (default: the file's)")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, metavar="N", help="seed of the rules' bootstrap")] = 0,
    db: DbOption = None,
    report: ReportOption = None,
    rules_out: RulesOutOption = None,
    api: Annotated[
        str | None,
        typer.Option(metavar="URL", help="import into this service instead of the embedded store"),
    ] = None,
    token: TokenOption = None,
) -> None:
    """Turn the past runs in RUNS_FILE (.csv, plain or a W&B export, or .jsonl) into a
    finished study (rules, report, dashboard, verification and warm start then work on
    it). Diverged runs (loss empty, NaN or inf) and failed ones become failed trials; a
    bad file is refused whole, naming the row and column."""
    from service.interop.runs_file import RunsFileError, load_mapping, read_runs, study_import

    flags = {
        "loss": loss,
        "cost": cost,
        "flops": flops,
        "failed": failed,
        "n_params": n_params,
        "tokens": tokens,
        "compute": compute,
    }
    try:
        base = load_mapping(mapping) if mapping is not None else None
        chosen = _column_mapping(base, params, flags)
        runs = read_runs(runs_file, chosen)
        body, constant = study_import(runs, chosen, name=name or runs_file.stem, seed=seed)
    except (RunsFileError, ValueError) as exc:
        _fail(str(exc))
    n_failed = sum(run.failed for run in body.runs)
    console.print(
        f"read {len(body.runs)} runs ({n_failed} failed) from {runs_file}, cost in "
        f"{runs.cost_unit}"
        + (f"; {runs.skipped} still running, skipped" if runs.skipped else "")
        + (f"; constant, left out: {', '.join(constant)}" if constant else ""),
        highlight=False,
    )
    if api is not None:
        if report is not None or rules_out is not None:
            _fail("with --api, get the rules and report with: scaletune export ID --api ...")
        study = _api_call(_client(api, token).import_study, body.model_dump(mode="json"))
        console.print(
            f"imported as study {study['id']} ({study['state']}); the control worker fits its "
            f"rules: scaletune status {study['id']}, then scaletune export {study['id']}",
            highlight=False,
        )
        return
    _import_embedded(body, db=db, report=report, rules_out=rules_out)


def _column_mapping(base, params: str | None, flags: dict):  # type: ignore[no-untyped-def]
    """The mapping file's columns with the flags given on top."""
    from service.interop.runs_file import ColumnMapping

    data = base.model_dump(exclude_unset=True) if base is not None else {}
    data.update({key: value for key, value in flags.items() if value is not None})
    if params is not None:
        items = [item.strip() for item in params.split(",") if item.strip()]
        if all("=" in item for item in items):
            data["params"] = dict(item.split("=", 1) for item in items)
        elif any("=" in item for item in items):
            raise ValueError("--params: rename every column (NAME=COLUMN) or none")
        else:
            data["params"] = items
    return ColumnMapping.model_validate(data)


def _import_embedded(body, *, db: Path | None, report: Path | None, rules_out: Path | None):  # type: ignore[no-untyped-def]
    import time

    from service.cli.local_store import check_rules_path, open_store
    from service.interop.imports import ImportRefusedError, create_imported_study
    from service.orchestration.scheduler import Scheduler
    from service.reads.reports.outcome import print_study_result
    from service.storage.db import transaction

    if rules_out is not None:
        try:
            check_rules_path(rules_out)
        except ValueError as exc:
            _fail(f"--rules-out: {exc}")
    path, sessions = open_store(db)
    try:
        with transaction(sessions) as session:
            study, _ = create_imported_study(session, body=body, now=time.time())
            study_id = study.id
    except ImportRefusedError as exc:
        _fail(str(exc))
    settings = Settings(database_url=f"sqlite:///{path}")
    console.print(
        f"imported as study {study_id} in {path}; fitting the scaling rules", highlight=False
    )
    state = Scheduler(sessions=sessions, settings=settings).step(study_id).state
    console.print(f"study {study_id}: {state}")
    print_study_result(console, sessions=sessions, study_id=study_id, store=path)
    _write_local_outputs(sessions, study_id, report=report, rules_out=rules_out)


# -- server-side administration: tenants and API tokens ---------------------------------

admin = typer.Typer(
    no_args_is_help=True,
    help="Tenants and API tokens, written straight into the store of the settings "
    "(SCALETUNE_DATABASE_URL); run where the API runs.",
)
app.add_typer(admin, name="admin")


def _admin_store():  # type: ignore[no-untyped-def]
    """A sessionmaker on the settings' store (migrated), or a CLI error without the URL's
    password."""
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from service.storage.db import make_engine, make_sessionmaker, migrate

    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(f"invalid settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
    try:
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        engine = make_engine(settings.database_url)
        migrate(engine)
    except (SQLAlchemyError, ValueError, OSError) as exc:
        _fail(f"cannot open the store: {type(exc).__name__} (SCALETUNE_DATABASE_URL)")
    console.print(f"store: {where}", highlight=False)
    return make_sessionmaker(engine)


def _admin_write(action):  # type: ignore[no-untyped-def]
    """Run ``action(session)`` in one transaction; a lookup or name error is a CLI error."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.storage.db import transaction
    from service.storage.tenants import TenantExistsError, TenantNotFoundError, TokenNotFoundError

    try:
        with transaction(_admin_store()) as session:
            return action(session)
    except (TenantExistsError, TenantNotFoundError, TokenNotFoundError) as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(f"the store refused the change: {type(exc).__name__}")


@admin.command("create-tenant")
def create_tenant(name: Annotated[str, typer.Argument(metavar="NAME", hidden=True)]) -> None:
    """Create the tenant NAME (its studies are reachable with its tokens only)."""
    import re
    import time

    from service.api.schemas import TENANT_NAME_PATTERN
    from service.storage import tenants

    if not re.match(TENANT_NAME_PATTERN, name):
        _fail("a tenant name is 1-100 letters, digits, '_', '.' or '-', starting alphanumeric")
    tenant = _admin_write(lambda s: tenants.create_tenant(s, name=name, now=time.time()))
    console.print(f"tenant {tenant.name} (id {tenant.id}) created", highlight=False)


@admin.command("issue-token")
def issue_token(
    tenant: Annotated[str | None, typer.Argument(metavar="TENANT", hidden=True)] = None,
    name: Annotated[str, typer.Option(metavar="NAME", help="what the token is for")] = "cli",
    admin_token: Annotated[
        bool, typer.Option("--admin", help="an admin token (no tenant) instead")
    ] = False,
) -> None:
    """Issue an API token of the tenant TENANT (or, with --admin, an admin token); it is
    printed once and only its hash is stored."""
    import time

    from service.storage import tenants, tokens

    if (tenant is None) == (not admin_token):
        _fail("name a TENANT, or pass --admin for an admin token (not both)")

    def issue(session):  # type: ignore[no-untyped-def]
        tenant_id = None
        if tenant is not None:
            row = tenants.find_tenant(session, name=tenant)
            if row is None:
                raise tenants.TenantNotFoundError(
                    f"no tenant named {tenant!r}; create it with: scaletune admin create-tenant"
                )
            tenant_id = row.id
        return tokens.issue_token(session, tenant_id=tenant_id, name=name, now=time.time())

    issued = _admin_write(issue)
    owner = "admin" if tenant is None else f"tenant {tenant}"
    console.print(f"token {issued.row.prefix} (id {issued.row.id}) for {owner}; shown once:")
    print(issued.token)  # plain stdout, so it can be captured: TOKEN=$(scaletune admin ...)


@admin.command("revoke")
def revoke(ref: Annotated[str, typer.Argument(metavar="TOKEN", hidden=True)]) -> None:
    """Revoke the API token TOKEN, named by its id or prefix (st_...): refused from the
    next request on."""
    import time

    from service.storage.tokens import revoke_token

    row = _admin_write(lambda s: revoke_token(s, ref=ref, now=time.time()))
    console.print(f"token {row.prefix} (id {row.id}) revoked", highlight=False)


@admin.command("tokens")
def list_tokens() -> None:
    """Tenants and their tokens (prefix, name, revoked or not); never the secrets."""
    from service.storage import tenants

    def read(session):  # type: ignore[no-untyped-def]
        names = {t.id: t.name for t in tenants.list_tenants(session)}
        return names, tenants.list_tokens(session)

    names, tokens = _admin_write(read)
    rows = [
        [
            str(row.id),
            row.prefix,
            escape(row.name),
            escape("(admin)" if row.tenant_id is None else names.get(row.tenant_id, "?")),
            "yes" if row.revoked_at else "",
        ]
        for row in tokens
    ]
    console.print(f"tenants: {', '.join(names.values())}", highlight=False)
    show_table(
        console,
        title="API tokens",
        headers=["id", "prefix", "name", "tenant", "revoked"],
        rows=rows,
    )


def main() -> None:
    """Console-script entry point."""
    app()
