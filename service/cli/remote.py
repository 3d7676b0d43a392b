"""Commands that talk to a running service over HTTP (``submit``, ``list``, ``status``,
``watch``, ``stop``, ``export``), through ``service.interop.client`` with an API token
(``--token`` or ``SCALETUNE_TOKEN``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.markup import escape

from service.cli import common
from service.cli.common import (
    ApiOption,
    StudyFileArgument,
    StudyIdArgument,
    TokenOption,
    api_call,
    console,
    fail,
)
from service.cli.local import export_local
from service.cli.studyfile import StudyFileError, load_study_file
from service.reads.reports.terminal import plural, show_table, terminal_table

if TYPE_CHECKING:  # loaded by the commands that talk to an API, not at start-up
    from service.interop.client import ScaletuneClient

app = typer.Typer()


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
        fail(str(exc))
    study = api_call(common.api_client(api, token).create_study, spec.model_dump(mode="json"))
    console.print(f"submitted study {study['id']} ({study['name']})")


@app.command("list")
def list_(api: ApiOption = "http://127.0.0.1:8000", token: TokenOption = None) -> None:
    """List the service's studies."""
    studies = api_call(common.api_client(api, token).list_studies)
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
    show_table(
        console, **_status_table(api_call(common.api_client(api, token).get_study, study_id))
    )


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

    client = common.api_client(api, token)
    # Piped, a live display cannot redraw: each change is printed once, as plain rows.
    live = Live(console=console, refresh_per_second=4) if console.is_terminal else None
    shown = None
    with live or nullcontext():
        while True:
            study = api_call(client.get_study, study_id)
            queues = api_call(client.queues, tolerate=403)  # the queue view is admin-only
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
    study = api_call(common.api_client(api, token).set_state, study_id, "stop")
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
        fail("--format must be json, yaml or report")
    if db is not None:
        if optuna_storage is not None:
            fail("--optuna-storage reads a study through the API; leave out --db")
        export_local(db, study_id, fmt, out)
        return
    client = common.api_client(api, token)
    if optuna_storage is not None:
        _export_to_optuna(client, study_id, optuna_storage, optuna_study_name, overwrite)
        return
    if fmt == "report":
        _download_report(client, study_id, out or Path(f"scaletune-report-{study_id}"))
        return
    rules = api_call(client.rules, study_id, fmt=fmt)
    text = rules if isinstance(rules, str) else json.dumps(rules, indent=2)
    if out is None:
        typer.echo(text)  # unwrapped and without markup, so it parses (as export --db)
    else:
        out.write_text(text)
        console.print(f"wrote {out}")


def _export_to_optuna(
    client: ScaletuneClient, study_id: int, storage: str, name: str | None, overwrite: bool
) -> None:
    from service.interop.optuna_export import (
        OptunaExportError,
        OptunaStudyExistsError,
        export_from_api,
    )

    try:
        exported = api_call(
            export_from_api,
            client,
            study_id=study_id,
            storage=storage,
            study_name=name,
            overwrite=overwrite,
        )
    except OptunaStudyExistsError as exc:
        fail(
            f"the Optuna storage already has a study named {exc.name!r}; pass --overwrite to "
            "replace it, or choose another name with --optuna-study-name"
        )
    except OptunaExportError as exc:
        fail(str(exc))
    console.print(
        f"exported study {study_id} to Optuna as {exported!r}; view it with: "
        f"optuna-dashboard {storage}",
        highlight=False,
    )


def _download_report(client: ScaletuneClient, study_id: int, out: Path) -> None:
    """The Markdown report and every plot it links, into ``out``."""
    import re

    markdown = api_call(client.report_file, study_id).decode()
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling-report.md").write_text(markdown)
    for name in sorted(set(re.findall(r"\(([A-Za-z0-9_.\-]+\.png)\)", markdown))):
        (out / name).write_bytes(api_call(client.report_file, study_id, name))
    console.print(f"wrote {out / 'scaling-report.md'}")


def _status_table(study: dict[str, Any]) -> dict[str, Any]:
    """``show_table``'s arguments for a study's state, budget, trials and queue."""
    p = study["progress"]
    rows = [
        ["spent / budget cost", f"{p['spent_cost']:.4g} / {_or_none(p['max_cost'])}"],
        ["trials / budget", f"{p['dispatched']} / {_or_none(p['max_trials'])}"],
        *([f"trials {state}", str(n)] for state, n in study["trials_by_state"].items()),
        ["front", _front_line(study)],
    ]
    if study.get("error"):  # its stored spec no longer loads: it cannot run
        rows.insert(0, ["error", escape(study["error"])])
    queue = _queue_line(study)
    if queue is not None:
        rows.append(["queue", queue])
    title = f"study {study['id']} {escape(study['name'])}: {study['state']}"
    return {"title": title, "headers": ["field", "value"], "rows": rows, "wrap": ["value"]}


def _front_line(study: dict[str, Any]) -> str:
    """The front's size, its best point and where its losses come from."""
    front = study["front"]
    if not front:
        return "no completed trial yet"
    best = front[-1]  # by increasing cost, so by decreasing estimated loss
    source = study.get("front_source", "observed")
    estimated = best.get("estimated_loss", best["loss"])
    observed, runs = best.get("observed_loss", best["loss"]), best.get("n_measurements", 1)
    return (
        f"{plural(len(front), 'point')} ({source} losses); best: loss {estimated:.4g} "
        f"(measured {observed:.4g} over {plural(runs, 'run')}) at cost "
        f"{best.get('mean_cost', best['cost_seconds']):.4g}"
    )


def _or_none(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _queue_line(study: dict[str, Any]) -> str | None:
    """The study's queue and its live workers; a warning when none consumes it."""
    workers = study.get("queue_workers")
    if workers is None:  # an external study, or heartbeats unreadable
        return None
    name = escape(study["spec"]["queue"])
    if workers == 0:
        return f"[bold red]{name}: no live worker consumes it; its trials wait until one does[/]"
    return f"{name}: {plural(workers, 'live worker')}"


def _queues_table(queues: dict[str, Any] | None) -> dict[str, Any]:
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
