"""The ``scaletune`` command line: one typer app made of the commands of its modules.

- ``service.cli.local``: embedded commands (``demo``, ``run``; no services);
- ``service.cli.remote``: commands over the HTTP API (``submit``, ``list``, ``status``,
  ``watch``, ``stop``, ``export``);
- ``service.cli.imports``: ``import``, past runs as a study (embedded or ``--api``);
- ``service.cli.admin``: ``scaletune admin ...``, tenants and tokens on the server side.
"""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli import admin, imports, local, remote

# Plain help (rich_markup_mode=None): typer's rich help tags every option with its Python
# type (`--help <bool>`); every option that takes a value names it with a metavar instead.
app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    help="Cost-aware Bayesian hyperparameter scaling.",
)
# Unnamed sub-apps add their commands to the top level, in this order in the help.
app.add_typer(local.app)
app.add_typer(remote.app)
app.add_typer(imports.app)
app.add_typer(admin.app, name="admin")


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


def main() -> None:
    """Console-script entry point."""
    app()
