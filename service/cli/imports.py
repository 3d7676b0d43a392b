"""``scaletune import``: past runs from a file as a finished study, in the embedded store
or (``--api``) in a running service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli import common
from service.cli.common import (
    DbOption,
    ReportOption,
    RulesOutOption,
    TokenOption,
    api_call,
    console,
    fail,
)
from service.cli.local import write_local_outputs
from service.config import Settings

if TYPE_CHECKING:  # the import machinery loads when the command runs, not at start-up
    from service.interop.imports import StudyImport
    from service.interop.runs_file import ColumnMapping

app = typer.Typer()

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
    it). Diverged runs (loss empty, NaN, inf or beyond 1e30) and failed ones become failed trials; a
    bad file is refused whole, naming the row and column."""
    from service.interop.imports import describe_space
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
        fail(str(exc))
    n_failed = sum(run.failed for run in body.runs)
    console.print(
        f"read {len(body.runs)} runs ({n_failed} failed) from {runs_file}, cost in "
        f"{runs.cost_unit}"
        + (f"; {runs.skipped} still running, skipped" if runs.skipped else "")
        + (f"; constant, left out: {', '.join(constant)}" if constant else ""),
        highlight=False,
    )
    assert body.space is not None  # study_import always gives the space
    console.print(
        f"space: {describe_space(body.space)} (a mapping's `space:` replaces any of these)",
        highlight=False,
    )
    if api is not None:
        if report is not None or rules_out is not None:
            fail("with --api, get the rules and report with: scaletune export ID --api ...")
        study = api_call(common.api_client(api, token).import_study, body.model_dump(mode="json"))
        console.print(
            f"imported as study {study['id']} ({study['state']}); the control worker fits its "
            f"rules: scaletune status {study['id']}, then scaletune export {study['id']}",
            highlight=False,
        )
        return
    _import_embedded(body, db=db, report=report, rules_out=rules_out)


def _column_mapping(
    base: ColumnMapping | None, params: str | None, flags: dict[str, Any]
) -> ColumnMapping:
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


def _import_embedded(
    body: StudyImport, *, db: Path | None, report: Path | None, rules_out: Path | None
) -> None:
    import time

    from service.cli.local_store import open_store_for_rules
    from service.interop.imports import ImportRefusedError, create_imported_study
    from service.orchestration.scheduler import Scheduler
    from service.reads.reports.outcome import print_study_result
    from service.storage.db import transaction

    path, sessions = open_store_for_rules(db, rules_out)
    try:
        with transaction(sessions) as session:
            study, _ = create_imported_study(session, body=body, now=time.time())
            study_id = study.id
    except ImportRefusedError as exc:
        fail(str(exc))
    settings = Settings(database_url=f"sqlite:///{path}")
    console.print(
        f"imported as study {study_id} in {path}; fitting the scaling rules", highlight=False
    )
    state = Scheduler(sessions=sessions, settings=settings).step(study_id).state
    console.print(f"study {study_id}: {state}")
    print_study_result(console, sessions=sessions, study_id=study_id, store=path)
    write_local_outputs(sessions, study_id, report=report, rules_out=rules_out)
