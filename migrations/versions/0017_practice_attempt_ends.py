"""Practice attempts by their end, for the figures that count events.

GetSystemStats and GetHighRiskSummary count events by time and leave out those of
practice attempts by subtracting them (repositories/oversight.py): the practice
attempts that can have events in a span are the running ones and those ended shortly
before it. This partial index holds only practice attempts (few next to the real ones),
so finding them reads neither the attempts table nor every practice attempt ever made.

Revision ID: 0017_practice_attempt_ends
Revises: 0016_allowances_and_practice
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_practice_attempt_ends"
down_revision = "0016_allowances_and_practice"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_exam_attempts_practice_ended",
        "exam_attempts",
        ["ended_at"],
        postgresql_where=sa.text("is_practice"),
    )


def downgrade() -> None:
    op.drop_index("ix_exam_attempts_practice_ended", table_name="exam_attempts")
