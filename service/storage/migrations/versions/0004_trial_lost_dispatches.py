"""count the dispatches no worker ever took

A trial reclaimed before any worker took its message (a queue without a live consumer
when it was sent, a message lost with its broker) is sent again as a new attempt, but
that attempt was never run: ``lost_dispatches`` counts those, and only
``attempt - lost_dispatches`` attempts count against ``max_attempts``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lost_dispatches", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_column("lost_dispatches")
