"""The model's reviews of clarifying questions that no cue decided (phase 2), sealed.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clarity_reviews",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("review_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("prompt_version", sa.String(length=20), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "fingerprint"),
    )
    with op.batch_alter_table("clarity_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clarity_reviews_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("clarity_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clarity_reviews_session_id"))
    op.drop_table("clarity_reviews")
