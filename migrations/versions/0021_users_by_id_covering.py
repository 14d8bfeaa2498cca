"""ListUsers' enrollment-id lookups index-only; the name walk's index goes.

An enrollment-id search takes the matching profiles from the trigram index and looks up
each one's account by key (repositories/users.py): for a fragment such as `2024-04`,
~1,360 lookups, each an index probe and a heap fetch, 5.4 of the statement's 12.4 ms
(docs/BENCH_ADMIN.md). This index holds what the lookup reads (e-mail, role, state) with
the id, so the lookups are index-only: 2.7 ms.

ix_users_name (migration 0019) served GetExamAnalytics' walk of the accounts in name
order, which the exams' rosters (0020) replaced: nothing reads it any more.

Revision ID: 0021_users_by_id_covering
Revises: 0020_exam_students
Create Date: 2026-12-02
"""

from alembic import op

revision = "0021_users_by_id_covering"
down_revision = "0020_exam_students"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_users_id_search",
        "users",
        ["id"],
        postgresql_include=["email", "role", "is_active"],
    )
    op.drop_index("ix_users_name", table_name="users")


def downgrade() -> None:
    op.create_index("ix_users_name", "users", ["full_name", "id"])
    op.drop_index("ix_users_id_search", table_name="users")
