"""ListUsers' walk in e-mail order reads an index only.

A text search first reads up to a couple of thousand accounts in e-mail order, matching
the e-mail and the name as it goes (repositories/users.py explains why). From the
e-mail index that walk fetched each account from the heap, in random order, ~3 µs a
row; this index carries the columns the walk filters on, so it is an index-only scan
once the visibility map is set (autovacuum sets it on a table that changes rarely).

Revision ID: 0015_user_search_walk
Revises: 0014_exam_day_storage
Create Date: 2026-12-01
"""

from alembic import op

revision = "0015_user_search_walk"
down_revision = "0014_exam_day_storage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_users_email_search ON users (email) "
        "INCLUDE (id, full_name, role, is_active)"
    )


def downgrade() -> None:
    op.drop_index("ix_users_email_search", table_name="users")
