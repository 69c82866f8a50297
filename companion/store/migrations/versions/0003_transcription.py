"""Transcription: jobs for phase recordings and their sealed transcript segments.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcription_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("uploaded_by", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("audio_seconds", sa.Float(), nullable=False),
        sa.Column("audio_format", sa.String(length=60), nullable=False),
        sa.Column("audio_kept", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("transcription_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transcription_jobs_group_id"), ["group_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_transcription_jobs_session_id"), ["session_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_transcription_jobs_status"), ["status"], unique=False)

    op.create_table(
        "transcript_segments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("speaker_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("text_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("edited_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["transcription_jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "position"),
    )
    with op.batch_alter_table("transcript_segments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transcript_segments_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_transcript_segments_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("transcript_segments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transcript_segments_session_id"))
        batch_op.drop_index(batch_op.f("ix_transcript_segments_job_id"))
    op.drop_table("transcript_segments")
    with op.batch_alter_table("transcription_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transcription_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_transcription_jobs_session_id"))
        batch_op.drop_index(batch_op.f("ix_transcription_jobs_group_id"))
    op.drop_table("transcription_jobs")
