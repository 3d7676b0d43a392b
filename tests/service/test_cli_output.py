"""The command line's own surface, through the ``scaletune`` entry point: help and
version, help without type tags, and tables that keep every number and name whole at 80
columns, piped or on a terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from service.cli import app
from service.reads.reports.terminal import show_table
from workers.objectives.testbed_truth import PARAM_NAMES

# The console script installed with the package (it imports this checkout's modules when
# they come first on PYTHONPATH, as in development).
SCALETUNE = [str(Path(sys.executable).with_name("scaletune"))]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COMMANDS = [
    [],
    ["demo"],
    ["run"],
    ["submit"],
    ["list"],
    ["status"],
    ["watch"],
    ["stop"],
    ["export"],
    ["import"],
    ["admin"],
    ["admin", "create-tenant"],
    ["admin", "issue-token"],
    ["admin", "revoke"],
    ["admin", "tokens"],
]


def _scaletune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``scaletune ARGS`` as the console script runs it, its output piped."""
    return subprocess.run(
        [*SCALETUNE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        timeout=300,
    )


def test_no_arguments_prints_the_help_and_succeeds() -> None:
    result = _scaletune()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: scaletune") and "demo" in result.stdout


def test_version_prints_the_installed_version() -> None:
    result = _scaletune("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"scaletune {version('scaletune')}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "scaletune")
def test_help_names_values_without_type_tags(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert not re.search(r"<\w[\w ]*>", result.output), result.output


def test_every_command_is_among_those_whose_help_is_checked() -> None:
    import typer
    from typer.core import TyperGroup

    def paths(group: TyperGroup, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for name, command in group.commands.items():
            if isinstance(command, TyperGroup):
                found += paths(command, [*prefix, name])
            else:
                found.append([*prefix, name])
        return found

    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    assert sorted(paths(root, [])) == sorted(COMMANDS)


def test_demo_seed_and_watch_interval_are_described() -> None:
    demo = " ".join(CliRunner().invoke(app, ["demo", "--help"]).output.split())
    watch = " ".join(CliRunner().invoke(app, ["watch", "--help"]).output.split())
    assert "--seed N the study's seed" in demo
    assert "--interval SECONDS seconds between refreshes" in watch


def test_an_empty_study_file_is_named_as_empty(tmp_path: Path) -> None:
    empty = tmp_path / "study.yaml"
    empty.write_text("# nothing yet\n")
    result = CliRunner().invoke(app, ["run", str(empty), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2
    assert "the file is empty" in result.output and "NoneType" not in result.output


def _front(output: str) -> tuple[int, list[str]]:
    """The front's size (from its title) and the lines after the title."""
    lines = ANSI.sub("", output).splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("Pareto front"))
    match = re.search(r": (\d+) points?$", lines[title])
    assert match, lines[title]
    n = int(match.group(1))
    assert lines[title].endswith("point" if n == 1 else "points")
    return n, lines[title + 1 :]


@pytest.mark.slow
def test_the_front_stays_whole_at_80_columns_piped_and_on_a_terminal(tmp_path: Path) -> None:
    args = ["demo", "--trials", "6", "--in-flight", "2", "--seed", "1"]
    piped = _scaletune(*args, "--db", str(tmp_path / "piped.db"))
    assert piped.returncode == 0, piped.stderr
    n, lines = _front(piped.stdout)
    header, rows = lines[0].split(), [line.split() for line in lines[1 : 1 + n]]
    assert header == ["trial", "cost", "loss", "measured", "runs", *sorted(PARAM_NAMES)]
    assert all(len(row) == len(header) for row in rows), rows  # one whole value per column
    assert max(len(line) for line in lines[: 1 + n]) > 80  # wider than the terminal: not cut

    terminal = _scaletune(*args, "--db", str(tmp_path / "tty.db"), env={"FORCE_COLOR": "1"})
    assert terminal.returncode == 0, terminal.stderr
    n_tty, lines = _front(terminal.stdout)
    assert n_tty == n
    for name in PARAM_NAMES:  # one "name: value" line per point, value a whole token
        values = [line.split(": ", 1)[1] for line in lines if line.startswith(f"  {name}: ")]
        assert len(values) == n and all(" " not in v for v in values), (name, values)
    assert all(len(line) <= 80 for line in lines)


def test_number_columns_are_right_aligned_and_text_columns_left() -> None:
    rows = [["7", "0.5", "warm", "-"], ["12", "1.25e+06", "lr sweep", "3%"]]
    plain = _table_lines(rows, terminal=False)
    assert plain[1:] == [
        "id      cost  note      share",
        " 7       0.5  warm          -",
        "12  1.25e+06  lr sweep     3%",
    ]
    framed = _table_lines(rows, terminal=True)
    cells = [line.split("│")[1:-1] for line in framed if line.count("│") == 5]
    assert [c[0] for c in cells] == ["  7 ", " 12 "]  # the id column, right-aligned
    assert [c[2] for c in cells] == [" warm     ", " lr sweep "]  # prose, left


def _table_lines(rows: list[list[str]], *, terminal: bool) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=terminal, color_system=None)
    show_table(console, title="t", headers=["id", "cost", "note", "share"], rows=rows)
    return out.getvalue().splitlines()
