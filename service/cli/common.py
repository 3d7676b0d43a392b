"""What every ``scaletune`` command shares: the consoles, the options, the error exit and
the API client of the commands that talk to a running service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, overload

import typer
from rich.console import Console

if TYPE_CHECKING:  # loaded by the commands that talk to an API, not at start-up
    from service.interop.client import ScaletuneClient

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", metavar="FILE", help="SQLite file of the embedded store (default .scaletune/)"
    ),
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


def fail(message: str) -> NoReturn:
    """End the command with exit code 2 and ``message`` on stderr, no traceback."""
    # soft_wrap: one line per message, so a long path is never cut in two (the terminal
    # wraps it for display; a pipe or log keeps it whole)
    errors.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def api_client(api: str, token: str | None) -> ScaletuneClient:
    """A client of the API at ``api``; without a token the command ends saying how to give
    one. Every command over the API builds its client here (``common.api_client``)."""
    from service.interop.client import ScaletuneClient

    if not token:
        fail("an API token is needed: set SCALETUNE_TOKEN or pass --token")
    return ScaletuneClient(api, token=token)


@overload
def api_call(fn: Callable[..., T], *args: Any, tolerate: None = None, **kwargs: Any) -> T: ...
@overload
def api_call(fn: Callable[..., T], *args: Any, tolerate: int, **kwargs: Any) -> T | None: ...
def api_call(
    fn: Callable[..., T], *args: Any, tolerate: int | None = None, **kwargs: Any
) -> T | None:
    """``fn``'s answer; an API error ends the command with its message, except a
    ``tolerate`` status, which returns None."""
    import httpx

    from service.interop.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        if exc.status == tolerate:
            return None
        fail(str(exc))
    except httpx.HTTPError as exc:
        fail(f"cannot reach the API: {exc}")
