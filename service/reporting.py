"""Terminal output of a study's outcome: the front and the scaling rules."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session, sessionmaker

from service.storage import repository as repo
from service.storage.db import transaction
from service.terminal import plural, show_table
from service.views import front_trials, summarise


def print_study_result(console: Console, *, sessions: sessionmaker[Session], study_id: int) -> None:
    with transaction(sessions) as session:
        study = repo.get_study(session, study_id=study_id)
        outcomes = repo.completed_outcomes(session, study_id=study_id)
        trials = front_trials(session, summarise(outcomes))
        rules, message = study.rules, study.message
    print_front(console, trials)
    if rules is None:
        console.print(f"scaling rules: none ({message or 'not fitted'})", highlight=False)
    else:
        print_rules(console, rules)
        console.print("full rules: GET /studies/{id}/rules (JSON) or rules.yaml", highlight=False)


def print_front(console: Console, trials: list[Any]) -> None:
    """The front's trials, cheapest first: cost, loss and every hyperparameter."""
    names = sorted({name for t in trials for name in t.params})
    rows = [
        [str(t.number), _fmt(t.cost_seconds), _fmt(t.loss), *(_fmt(t.params.get(n)) for n in names)]
        for t in trials
    ]
    show_table(
        console,
        title=f"Pareto front (loss vs cost): {plural(len(trials), 'point')}",
        headers=["trial", "cost", "loss", *names],
        rows=rows,
    )


def print_rules(console: Console, rules: dict[str, Any]) -> None:
    """One row per hyperparameter: whether a scaling rule was learned, and its fallback."""
    rows = []
    for rule in rules.get("hyperparameters", []):
        kind = "fitted" if rule.get("supported") else "none"
        note = rule.get("reason") or rule.get("note") or rule.get("size_tokens_reason") or ""
        rows.append([escape(rule["name"]), kind, _fmt(rule.get("fallback")), escape(note)])
    show_table(
        console,
        title="Scaling rules (optimum vs compute / size and tokens)",
        headers=["hyperparameter", "rule", "fallback", "note"],
        rows=rows,
        wrap=["note"],
    )


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.3g}"
