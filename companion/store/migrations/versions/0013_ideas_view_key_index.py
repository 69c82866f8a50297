"""The ideas view's key is read from an index alone: every panel reload and `GET …/ideas`
reads each idea's id, theme, duplicate mark and author (companion/assist/ideas/service.py,
`_view_key`), and each idea's row, with its sealed vector, fills a table page of its own.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = ["session_id", "id", "theme_id", "duplicate_of", "author_id"]


def upgrade() -> None:
    op.create_index("ix_ideas_view_key", "ideas", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_ideas_view_key", table_name="ideas")
