"""Account administration: deactivation, user search.

Revision ID: 0010_user_administration
Revises: 0009_set_password_tokens
Create Date: 2026-12-01
"""

revision = "0010_user_administration"
down_revision = "0009_set_password_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
