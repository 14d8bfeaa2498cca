"""One-time set-password tokens (CreateUser, ResetPassword, ImportStudents; SetPassword).

A token is kept only as the SHA-256 of its text, like a refresh token. It is redeemed
once (used_at), expires (expires_at), and a newer token of the same account supersedes
every earlier unredeemed one (revoked_at). created_by is the admin who issued it (NULL
for the operator's CLI, or once that admin's account is gone).

SetPassword is throttled per client address: the sign-in throttle table gains the
'set_password' scope.

Revision ID: 0009_set_password_tokens
Revises: 0008_audit_chain
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

revision = "0009_set_password_tokens"
down_revision = "0008_audit_chain"
branch_labels = None
depends_on = None

TIMESTAMPTZ = sa.DateTime(timezone=True)
UUID = PG_UUID(as_uuid=True)

SCOPES_BEFORE = "'account', 'account_address', 'address', 'register'"
SCOPES_AFTER = SCOPES_BEFORE + ", 'set_password'"


def _scope_check(scopes: str) -> None:
    op.execute(
        "ALTER TABLE sign_in_throttles DROP CONSTRAINT ck_sign_in_throttles_scope, "
        f"ADD CONSTRAINT ck_sign_in_throttles_scope CHECK (scope IN ({scopes}))"
    )


def upgrade() -> None:
    op.create_table(
        "set_password_tokens",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TIMESTAMPTZ, nullable=False),
        sa.Column("used_at", TIMESTAMPTZ),
        sa.Column("revoked_at", TIMESTAMPTZ),
        sa.Column("created_by", UUID, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.CheckConstraint("purpose IN ('create', 'reset', 'import')", name="purpose"),
        sa.UniqueConstraint("token_hash", name="uq_set_password_tokens_token_hash"),
    )
    # A new token supersedes the account's open ones: found by user.
    op.create_index("ix_set_password_tokens_user_id", "set_password_tokens", ["user_id"])
    _scope_check(SCOPES_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM sign_in_throttles WHERE scope = 'set_password'")
    _scope_check(SCOPES_BEFORE)
    op.drop_index("ix_set_password_tokens_user_id", table_name="set_password_tokens")
    op.drop_table("set_password_tokens")
