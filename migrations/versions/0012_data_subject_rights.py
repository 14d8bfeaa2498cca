"""Data-subject rights and retention: audit redaction by erasure, audit pruning.

Revision ID: 0012_data_subject_rights
Revises: 0011_oversight
Create Date: 2026-12-01
"""

revision = "0012_data_subject_rights"
down_revision = "0011_oversight"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
