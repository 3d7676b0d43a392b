"""a per-study finish order of trials replaces the synced flag

The engine no longer holds the trials: it is rebuilt at every step from a small state
and the study's finished trials in the order their results were recorded
(``trials.finish_seq``, from the counter ``studies.next_finish_seq``, both taken under
the study's row lock). ``synced``, which marked the trials told to an engine that held
them, goes.

Existing finished trials are numbered in the order the scheduler told them to the
engine: the order of the observations in the study's stored engine state (version 1,
the trials inside), then the trials it was not told by ``finished_at`` and ``number``
(the order the scheduler told them in). Those states then still load: the rebuilt
engine checks that the history starts with the trials it took in.

Downgrading marks every final trial synced; engine states saved since the upgrade
(version 2) do not load in the code of the earlier revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 17:50:00
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FINISHED = ("COMPLETE", "FAILED")  # states a result is recorded in
FINAL = ("COMPLETE", "FAILED", "CANCELLED")


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_finish_seq", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finish_seq", sa.Integer(), nullable=True))
    _backfill_finish_order(op.get_bind())
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_trials_study_finish_seq", ["study_id", "finish_seq"])
        batch_op.drop_column("synced")


def _backfill_finish_order(conn: sa.Connection) -> None:
    """Number each study's finished trials in the order its engine was told them."""
    rows = conn.execute(
        sa.text(
            "SELECT id, study_id, number, suggestion_id, state, failure_kind, reason, "
            "finished_at FROM trials WHERE state IN :states"
        ).bindparams(sa.bindparam("states", expanding=True)),
        {"states": list(FINISHED)},
    ).all()
    by_study: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_study[row.study_id].append(row)
    told = _told_order(conn)
    updates, counters = [], []
    for study_id, trials in by_study.items():
        ordered = _finish_order(trials, told.get(study_id, []))
        updates += [{"id": trial.id, "seq": seq} for seq, trial in enumerate(ordered)]
        counters.append({"id": study_id, "n": len(ordered)})
    if updates:
        conn.execute(sa.text("UPDATE trials SET finish_seq = :seq WHERE id = :id"), updates)
    if counters:
        conn.execute(sa.text("UPDATE studies SET next_finish_seq = :n WHERE id = :id"), counters)


def _told_order(conn: sa.Connection) -> dict[int, list[str | None]]:
    """The suggestion ids of each study's stored (version-1) engine observations, in the
    order it was told them (None: a trial it observed, not one it suggested)."""
    out = {}
    for study_id, text in conn.execute(sa.text("SELECT id, engine_state FROM studies")):
        try:
            state = json.loads(text or "{}")
        except ValueError:
            continue
        if isinstance(state, dict) and state.get("version") == 1:
            out[study_id] = [o.get("suggestion_id") for o in state.get("observations", [])]
    return out


def _finish_order(trials: list[Any], told: list[str | None]) -> list[Any]:
    """``trials`` in the order of ``told`` (an observed trial, told without its id, is the
    earliest learnable trial of none of the ids), then the rest (not told: not learnable,
    or recorded after the last save) by (finished_at, number); sorted here so that both
    backends order a missing ``finished_at`` the same way (first)."""
    by_time = sorted(
        trials, key=lambda t: (t.finished_at is not None, t.finished_at or 0.0, t.number)
    )
    by_id = {t.suggestion_id: t for t in trials}
    named = {s for s in told if s is not None}
    observed = [t for t in by_time if t.suggestion_id not in named and _learnable(t)]
    ordered, placed = [], set()
    for suggestion_id in told:
        trial = by_id.get(suggestion_id) if suggestion_id is not None else None
        if suggestion_id is None and observed:
            trial = observed.pop(0)
        if trial is not None and trial.id not in placed:
            ordered.append(trial)
            placed.add(trial.id)
    return ordered + [t for t in by_time if t.id not in placed]


def _learnable(trial: Any) -> bool:
    """What the engine was told (as ``service.domain.learns_from``, frozen here)."""
    if trial.reason == "verification":
        return False
    return trial.state == "COMPLETE" or trial.failure_kind != "infrastructure"


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("synced", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.get_bind().execute(
        sa.text("UPDATE trials SET synced = :yes WHERE state IN :states").bindparams(
            sa.bindparam("states", expanding=True)
        ),
        {"yes": True, "states": list(FINAL)},
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_constraint("uq_trials_study_finish_seq", type_="unique")
        batch_op.drop_column("finish_seq")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("next_finish_seq")
