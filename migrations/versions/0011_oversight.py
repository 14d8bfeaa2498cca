"""Oversight: attempt search and system-wide figures.

SearchAttempts lists newest first by (started_at, id) under any mix of filters: each
leading filter has an index ending in (started_at, id), so a page walks one index
backwards and stops after page_size + 1 rows (the student's index of 0002 serves a
student's attempts: a student has few). GetSystemStats reads a snapshot of the figures,
refreshed on a schedule (system_stats_snapshots), and per-day event counts kept for days
no event can arrive in any more (event_day_counts): docs/BENCH_ADMIN.md measures why.

Revision ID: 0011_oversight
Revises: 0010_user_administration
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_oversight"
down_revision = "0010_user_administration"
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.DateTime(timezone=True)
ATTEMPT_INDEXES = {
    "ix_exam_attempts_started": (["started_at", "id"], None),
    "ix_exam_attempts_exam_started": (["exam_id", "started_at", "id"], None),
    "ix_exam_attempts_status_started": (["status", "started_at", "id"], None),
    "ix_exam_attempts_flagged_started": (["started_at", "id"], "flagged"),
}


def upgrade() -> None:
    for name, (columns, where) in ATTEMPT_INDEXES.items():
        op.create_index(
            name,
            "exam_attempts",
            columns,
            postgresql_where=sa.text(where) if where else None,
        )
    op.create_table(
        "system_stats_snapshots",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("computed_at", TIMESTAMPTZ, nullable=False),
        sa.Column("figures", postgresql.JSONB, nullable=False),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.create_table(
        "event_day_counts",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("counted_at", TIMESTAMPTZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_day_counts")
    op.drop_table("system_stats_snapshots")
    for name in ATTEMPT_INDEXES:
        op.drop_index(name, table_name="exam_attempts")
