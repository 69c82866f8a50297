"""A person can be deactivated: `users.deactivated_at` (none of their tokens or sign-ins works
from then on).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (no batch rebuild): rebuilding `users` would cascade to every row that
    # points at it.
    op.add_column("users", sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "deactivated_at")
