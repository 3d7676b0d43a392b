"""index trials by state alone

The queue view and the control worker's sweeps look for running and queued trials
across all studies; the (study_id, state) index cannot serve a filter on state alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 00:35:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index("ix_trials_state", ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_state")
