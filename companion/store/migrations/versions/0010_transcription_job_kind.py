"""Transcription jobs say their kind: `upload` (a worker runs it) or `live` (a connection does).

Live jobs were told apart by the `live/` prefix of their `audio_format` (`live/pcm16`,
`live/webm`), which they keep; existing rows get their kind from it.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain default: SQLite adds the column in place (rebuilding the table would cascade
    # the deletion of the old one to the transcript's segments).
    with op.batch_alter_table("transcription_jobs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=10), nullable=False, server_default="upload")
        )
    jobs = sa.table("transcription_jobs", sa.column("kind"), sa.column("audio_format"))
    op.execute(jobs.update().where(jobs.c.audio_format.like("live/%")).values(kind="live"))


def downgrade() -> None:
    # In place too (SQLite 3.35+): a batch rebuild would cascade as above.
    op.drop_column("transcription_jobs", "kind")
