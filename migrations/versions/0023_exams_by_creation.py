"""Every exam in creation order, newest first, straight from an index.

An admin's ListExams (and an admin's teacher dashboard) pages through every exam by
(created_at, id), newest first; with no index in that order, each page sorted all the
exams: 1.2 ms with 1,000 exams, 57-63 ms with 100,000. Read backwards from this index
a page is 0.5 ms at either size (docs/BENCH_SCALE.md). A teacher's listings start from
their own exams (ix_exams_created_by_created_at) and the grants; they do not need it.

Building it reads the exams once and blocks writes to them (not reads) until the
migration commits: 52 ms for 100,000 exams here.

Revision ID: 0023_exams_by_creation
Revises: 0022_flagged_attempts_by_id
Create Date: 2026-12-02
"""

from alembic import op

revision = "0023_exams_by_creation"
down_revision = "0022_flagged_attempts_by_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_exams_created_at_id", "exams", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_exams_created_at_id", table_name="exams")
