"""The memory outbox: content waiting to be indexed into its group's memory (ids only).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memory_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source_id", sa.String(length=36), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=60), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tried_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("memory_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memory_outbox_group_id"), ["group_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("memory_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memory_outbox_group_id"))
    op.drop_table("memory_outbox")
