"""The analysis queue: analysis_jobs, one row per request to analyse an attempt.

An attempt gets a job in the transaction that ends it, and a re-analysis job when its
evidence changes after it ended; at most one job per attempt is open (PENDING or
LEASED: the partial unique index), so an attempt is never leased twice at once.
Claims take PENDING rows whose available_at has come, oldest first, with FOR UPDATE
SKIP LOCKED (ix_analysis_jobs_claimable); expired leases are found through
ix_analysis_jobs_lease_expiry. Only the SHA-256 of a lease token is stored.

Attempts that ended before this migration get a job too, so that no ended attempt is
without one: DONE (pointing at the analysis) when they have a current analysis, else
PENDING (scorers then work through the attempts never analysed). An erased student's
attempts get none: nothing is to be analysed of them again.

Revision ID: 0013_analysis_queue
Revises: 0012_data_subject_rights
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0013_analysis_queue"
down_revision = "0012_data_subject_rights"
branch_labels = None
depends_on = None

REASONS = "('ATTEMPT_ENDED', 'LATE_EVENTS', 'EVENT_REVIEWED')"

BACKFILL = """
INSERT INTO analysis_jobs (attempt_id, reason, state, created_at, available_at,
                           completed_at, analysis_id)
SELECT a.id, 'ATTEMPT_ENDED',
       CASE WHEN b.id IS NULL THEN 'PENDING' ELSE 'DONE' END,
       coalesce(a.ended_at, now()), coalesce(a.ended_at, now()), b.created_at, b.id
FROM exam_attempts AS a
LEFT JOIN behavior_analyses AS b ON b.attempt_id = a.id AND b.is_current
WHERE a.status <> 'IN_PROGRESS'
  AND NOT EXISTS (SELECT 1 FROM erased_subjects AS e WHERE e.user_id = a.student_id)
"""


def upgrade() -> None:
    op.create_table(
        "analysis_jobs",
        sa.Column(
            "id", UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column(
            "attempt_id",
            UUID(as_uuid=True),
            sa.ForeignKey("exam_attempts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("failed_tries", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_token_hash", sa.String(64), unique=True),
        sa.Column("holder_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String(1000)),
        sa.Column("rerun_reason", sa.String(16)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column(
            "analysis_id",
            UUID(as_uuid=True),
            sa.ForeignKey("behavior_analyses.id", ondelete="SET NULL"),
        ),
        sa.CheckConstraint(f"reason IN {REASONS}", name="reason"),
        sa.CheckConstraint(f"rerun_reason IN {REASONS}", name="rerun_reason"),
        sa.CheckConstraint("state IN ('PENDING', 'LEASED', 'DONE', 'DEAD')", name="state"),
        sa.CheckConstraint(
            "(state = 'LEASED') = (lease_token_hash IS NOT NULL AND holder_id IS NOT NULL "
            "AND lease_expires_at IS NOT NULL)",
            name="lease",
        ),
    )
    op.create_index(
        "uq_analysis_jobs_open_attempt",
        "analysis_jobs",
        ["attempt_id"],
        unique=True,
        postgresql_where=sa.text("state IN ('PENDING', 'LEASED')"),
    )
    op.create_index(
        "ix_analysis_jobs_claimable",
        "analysis_jobs",
        ["available_at", "created_at"],
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_index(
        "ix_analysis_jobs_lease_expiry",
        "analysis_jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("state = 'LEASED'"),
    )
    op.create_index("ix_analysis_jobs_listing", "analysis_jobs", ["state", "created_at", "id"])
    op.create_index("ix_analysis_jobs_attempt", "analysis_jobs", ["attempt_id", "created_at"])
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table("analysis_jobs")
