"""Account administration: deactivation, user search.

Deactivation keeps when and why (GetUser shows them). ListUsers finds accounts by a
text the e-mail, the full name or the enrollment id contains: trigram GIN indexes
(pg_trgm, a trusted extension since PostgreSQL 13, so the database owner may create
it; the embedded wheel ships it) serve `LIKE '%text%'` for texts of 3 characters or
more. E-mail addresses are stored lower-case (a constraint), so theirs is on the column
itself; names and enrollment ids are indexed lower-cased. (role, email) serves a role's
listing in e-mail order.

Revision ID: 0010_user_administration
Revises: 0009_set_password_tokens
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_user_administration"
down_revision = "0009_set_password_tokens"
branch_labels = None
depends_on = None

TRIGRAM_INDEXES = (
    ("ix_users_email_trgm", "users", "email"),
    ("ix_users_full_name_trgm", "users", "lower(full_name)"),
    ("ix_student_profiles_enrollment_id_trgm", "student_profiles", "lower(enrollment_id)"),
)


def upgrade() -> None:
    op.add_column("users", sa.Column("deactivated_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("deactivate_reason", sa.String(500)))
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, expression in TRIGRAM_INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} USING gin ({expression} gin_trgm_ops)")
    op.create_index("ix_users_role_email", "users", ["role", "email"])


def downgrade() -> None:
    op.drop_index("ix_users_role_email", table_name="users")
    for name, _, _ in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
    op.drop_column("users", "deactivate_reason")
    op.drop_column("users", "deactivated_at")
