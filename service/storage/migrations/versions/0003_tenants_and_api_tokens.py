"""tenants and API tokens; every study owned by a tenant

Studies created before this revision move to the tenant ``default``, which this
migration creates (embedded mode keeps using it).

SQLite cannot add a NOT NULL foreign key to a table in place, so ``studies`` is rebuilt
(batch mode copies it and drops the old one). With foreign keys enforced, dropping
``studies`` would cascade-delete every trial: ``env.py`` turns enforcement off on SQLite
for the migration.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 00:50:00
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DEFAULT_TENANT = "default"


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_api_tokens_tenant_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prefix"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_api_tokens_tenant_id", ["tenant_id"], unique=False)

    op.bulk_insert(tenants, [{"name": DEFAULT_TENANT, "created_at": time.time()}])
    default_id = sa.select(tenants.c.id).where(tenants.c.name == DEFAULT_TENANT).scalar_subquery()
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.Integer(), nullable=True))
    studies = sa.table("studies", sa.column("tenant_id", sa.Integer()))
    op.execute(studies.update().values(tenant_id=default_id))
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.alter_column("tenant_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key("fk_studies_tenant_id", "tenants", ["tenant_id"], ["id"])
        batch_op.create_index("ix_studies_tenant_id", ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index("ix_studies_tenant_id")
        batch_op.drop_constraint("fk_studies_tenant_id", type_="foreignkey")
        batch_op.drop_column("tenant_id")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_api_tokens_tenant_id")
    op.drop_table("api_tokens")
    op.drop_table("tenants")
