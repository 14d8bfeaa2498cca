"""Accounts in name order, for an exam's students page.

GetExamAnalytics lists an exam's students by name. Looking up every student's name to
sort them costs what the exam's size does (36–44 ms for 5,000 students at the seed's
scale, docs/BENCH_SCALE.md); for a large exam, walking the accounts in name order and
asking each whether it has an attempt reads fewer rows (AttemptRepository.
students_page). This index is that order.

Revision ID: 0019_users_by_name
Revises: 0018_attempt_event_tallies
Create Date: 2026-12-01
"""

from alembic import op

revision = "0019_users_by_name"
down_revision = "0018_attempt_event_tallies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_name", "users", ["full_name", "id"])


def downgrade() -> None:
    op.drop_index("ix_users_name", table_name="users")
