"""One-time set-password tokens (AdminService CreateUser, ResetPassword, ImportStudents; AuthService.SetPassword).

Revision ID: 0009_set_password_tokens
Revises: 0008_audit_chain
Create Date: 2026-12-01
"""

revision = "0009_set_password_tokens"
down_revision = "0008_audit_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
