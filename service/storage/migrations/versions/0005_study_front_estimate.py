"""store the engine's estimate of each study's front

The process that owns a study's engine writes the front it believes (repeats merged,
losses as the loss model estimates them) onto the study row, so the API, which never
loads the engine, serves that front instead of the raw front of observed losses.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("front_estimate", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("front_estimate")
