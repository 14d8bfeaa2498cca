"""Oversight: attempt search and system-wide figures.

Revision ID: 0011_oversight
Revises: 0010_user_administration
Create Date: 2026-12-01
"""

revision = "0011_oversight"
down_revision = "0010_user_administration"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
