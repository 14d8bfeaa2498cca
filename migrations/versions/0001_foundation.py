"""Foundation: accounts, profiles, sign-in sessions and tokens, login throttles, audit log.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TIMESTAMPTZ = sa.DateTime(timezone=True)


def _uuid_pk() -> sa.Column:
    return sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()"))


def _now(name: str) -> sa.Column:
    return sa.Column(name, TIMESTAMPTZ, nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "users",
        _uuid_pk(),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(100), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("role IN ('student', 'teacher', 'admin', 'service')", name="role"),
        sa.CheckConstraint("email = lower(email)", name="email_lower"),
    )
    op.create_index("uq_users_email", "users", ["email"], unique=True)

    op.create_table(
        "student_profiles",
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("enrollment_id", sa.String(64), nullable=False, unique=True),
        _now("joined_at"),
    )
    op.create_table(
        "teacher_profiles",
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("department", sa.String(200)),
        sa.Column("title", sa.String(100)),
        _now("created_at"),
    )

    op.create_table(
        "auth_sessions",
        _uuid_pk(),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        _now("created_at"),
        sa.Column("expires_at", TIMESTAMPTZ, nullable=False),
        sa.Column("revoked_at", TIMESTAMPTZ),
        sa.Column("revoke_reason", sa.String(32)),
    )
    op.create_index("ix_auth_sessions_user_id", "auth_sessions", ["user_id"])

    op.create_table(
        "refresh_tokens",
        _uuid_pk(),
        sa.Column(
            "session_id",
            UUID,
            sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _now("issued_at"),
        sa.Column("expires_at", TIMESTAMPTZ, nullable=False),
        sa.Column("used_at", TIMESTAMPTZ),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])

    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires_at", TIMESTAMPTZ, nullable=False),
        _now("revoked_at"),
    )
    op.create_index("ix_revoked_access_tokens_expires_at", "revoked_access_tokens", ["expires_at"])

    op.create_table(
        "login_throttles",
        sa.Column("email", sa.String(254), primary_key=True),
        sa.Column("failure_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("window_started_at", TIMESTAMPTZ, nullable=False),
        sa.Column("locked_until", TIMESTAMPTZ),
    )

    op.create_table(
        "audit_logs",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        _now("occurred_at"),
        sa.Column("actor_id", UUID),
        sa.Column("actor_role", sa.String(16)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64)),
        sa.Column("resource_id", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("peer", sa.Text),
        sa.Column("request_id", sa.String(64)),
        sa.Column(
            "details",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.CheckConstraint("outcome IN ('success', 'failure', 'denied')", name="outcome"),
    )
    op.create_index("ix_audit_logs_occurred_at", "audit_logs", ["occurred_at"])
    op.create_index("ix_audit_logs_actor_id_occurred_at", "audit_logs", ["actor_id", "occurred_at"])
    op.create_index("ix_audit_logs_resource", "audit_logs", ["resource_type", "resource_id"])
    # The audit trail is evidence: the application can add to it, never rewrite it.
    op.execute(
        """
        CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_logs is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_logs_append_only
        BEFORE UPDATE OR DELETE ON audit_logs
        FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs")
    op.execute("DROP FUNCTION IF EXISTS audit_logs_append_only()")
    for table in (
        "audit_logs",
        "login_throttles",
        "revoked_access_tokens",
        "refresh_tokens",
        "auth_sessions",
        "teacher_profiles",
        "student_profiles",
        "users",
    ):
        op.drop_table(table)
