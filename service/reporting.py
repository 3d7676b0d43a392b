"""Terminal output of a study's outcome: the front and the scaling rules (rich)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from service.storage import repository as repo
from service.storage.db import transaction
from service.views import front_trials, summarise


def print_study_result(console: Console, *, sessions: sessionmaker[Session], study_id: int) -> None:
    with transaction(sessions) as session:
        study = repo.get_study(session, study_id=study_id)
        outcomes = repo.completed_outcomes(session, study_id=study_id)
        trials = front_trials(session, summarise(outcomes))
        rules, message = study.rules, study.message
    console.print(front_table(trials))
    if rules is None:
        console.print(f"scaling rules: none ({message or 'not fitted'})")
    else:
        console.print(rules_table(rules))
        console.print("full rules: GET /studies/{id}/rules (JSON) or rules.yaml")


def front_table(trials: list[Any]) -> Table:
    table = Table(title="Pareto front (loss vs cost)")
    table.add_column("trial", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("loss", justify="right")
    names = sorted({name for t in trials for name in t.params})
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    for t in trials:
        table.add_row(
            str(t.number),
            _fmt(t.cost_seconds),
            _fmt(t.loss),
            *(_fmt(t.params.get(name)) for name in names),
        )
    return table


def rules_table(rules: dict[str, Any]) -> Table:
    """One row per hyperparameter: whether a scaling rule was learned, and its fallback."""
    table = Table(title="Scaling rules (optimum vs compute / size and tokens)")
    for column in ("hyperparameter", "rule", "fallback", "note"):
        table.add_column(column, overflow="fold")
    for rule in rules.get("hyperparameters", []):
        kind = "fitted" if rule.get("supported") else "none"
        note = rule.get("reason") or rule.get("note") or rule.get("size_tokens_reason") or ""
        table.add_row(rule["name"], kind, _fmt(rule.get("fallback")), note)
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.3g}"
