"""Terminal output of a study's outcome: the front and the scaling rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session, sessionmaker

from search.scaling.rules import HyperparameterRule, ScalingRules
from service.domain import TrialState
from service.reads.reports.rules_text import allocation_texts, rule_laws
from service.reads.reports.terminal import plural, show_table
from service.reads.views import FrontEntry, front_trials, summarise
from service.storage import repository as repo
from service.storage.db import transaction


def print_study_result(
    console: Console, *, sessions: sessionmaker[Session], study_id: int, store: Path
) -> None:
    """The front and the rules of an embedded study (kept in the SQLite file ``store``)."""
    with transaction(sessions) as session:
        study = repo.get_study(session, study_id=study_id)
        complete = repo.count_by_state(session, study_id=study_id)[TrialState.COMPLETE]
        summary = summarise(session, study=study, n_complete=complete)
        trials = front_trials(session, summary)
        rules, message = study.rules, study.message
    print_front(console, trials, summary.points)
    if rules is None:
        why = message or "not fitted"
        console.print(f"scaling rules: none ({why})", highlight=False, markup=False)
    else:
        print_rules(console, rules)
        console.print(
            f"full rules: scaletune export {study_id} --db {store} --out rules.yaml (or .json)",
            highlight=False,
        )


def print_front(console: Console, trials: list[Any], points: list[FrontEntry]) -> None:
    """The front, cheapest first: per configuration the trial standing for it, its mean
    cost, the loss the front was taken on (``loss``: the engine's estimate where current),
    the mean of its measurements (``measured``) and how many (``runs``), and every
    hyperparameter (``trials`` and ``points`` as ``views.front_trials`` pairs them)."""
    names = sorted({name for t in trials for name in t.params})
    rows = [
        [
            str(t.number),
            _fmt(p.cost),
            _fmt(p.estimated_loss),
            _fmt(p.observed_loss),
            str(p.n_measurements),
            *(_fmt(t.params.get(n)) for n in names),
        ]
        for t, p in zip(trials, points, strict=True)
    ]
    show_table(
        console,
        title=f"Pareto front (loss vs cost): {plural(len(trials), 'point')}",
        headers=["trial", "cost", "loss", "measured", "runs", *names],
        rows=rows,
    )


def print_rules(console: Console, rules: dict[str, Any]) -> None:
    """One row per hyperparameter: its laws with exponents and intervals (or why none,
    and the value used instead), then the allocation N*(C), D*(C)."""
    model = ScalingRules.model_validate(rules)
    rows = [[rule.name, *_rule_cells(rule)] for rule in model.hyperparameters]
    rows += [[name, text, ""] for name, text in allocation_texts(model)]
    show_table(
        console,
        title=f"Scaling rules ({model.level:.0%} intervals; C compute, N params, D tokens)",
        headers=["hyperparameter", "law", "note"],
        rows=[[escape(cell) for cell in row] for row in rows],
        wrap=["law", "note"],
    )


def _rule_cells(rule: HyperparameterRule) -> tuple[str, str]:
    if not rule.supported:
        seen = rule.observed_low is not None and rule.observed_high is not None
        span = f" (near-best runs {_fmt(rule.observed_low)}-{_fmt(rule.observed_high)})"
        return f"none; uses {_fmt(rule.fallback)}" + (span if seen else ""), rule.reason or ""
    if rule.choice is not None:
        return f"{rule.choice.value} (most frequent)", ""
    laws = rule_laws(rule)
    note = rule.note or ("" if len(laws) > 1 else rule.size_tokens_reason or "")
    return "; ".join(laws), note


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.3g}"
