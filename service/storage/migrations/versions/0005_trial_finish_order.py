"""a per-study finish order of trials replaces the synced flag

The engine no longer holds the trials: it is rebuilt at every step from a small state
and the study's finished trials in the order their results were recorded
(``trials.finish_seq``, from the counter ``studies.next_finish_seq``, both taken under
the study's row lock). ``synced``, which marked the trials told to an engine that held
them, goes.

Existing finished trials are numbered in the order the scheduler told them to the
engine: by ``finished_at``, then ``number``. Their studies' stored engine states
(version 1, the trials inside) still load: the rebuilt engine checks that the history
starts with the trials it took in.

Downgrading marks every final trial synced; engine states saved since the upgrade
(version 2) do not load in the code of the earlier revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 17:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
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
    """Number each study's finished trials by (finished_at, number), sorted here so that
    both backends order a missing ``finished_at`` the same way (first)."""
    rows = conn.execute(
        sa.text(
            "SELECT id, study_id, finished_at, number FROM trials WHERE state IN :states"
        ).bindparams(sa.bindparam("states", expanding=True)),
        {"states": list(FINISHED)},
    ).all()
    rows = sorted(
        rows, key=lambda r: (r.study_id, r.finished_at is not None, r.finished_at or 0.0, r.number)
    )
    next_seq: dict[int, int] = {}
    updates = []
    for row in rows:
        seq = next_seq.get(row.study_id, 0)
        updates.append({"id": row.id, "seq": seq})
        next_seq[row.study_id] = seq + 1
    if updates:
        conn.execute(sa.text("UPDATE trials SET finish_seq = :seq WHERE id = :id"), updates)
    counters = [{"id": study_id, "n": n} for study_id, n in next_seq.items()]
    if counters:
        conn.execute(sa.text("UPDATE studies SET next_finish_seq = :n WHERE id = :id"), counters)


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
