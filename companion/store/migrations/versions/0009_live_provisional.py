"""Live transcription: each running live job's provisional text, sealed, and when it was made.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transcription_jobs") as batch:
        batch.add_column(sa.Column("provisional_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("provisional_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transcription_jobs") as batch:
        batch.drop_column("provisional_at")
        batch.drop_column("provisional_sealed")
