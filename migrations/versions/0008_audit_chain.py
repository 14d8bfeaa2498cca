"""The audit trail as a hash chain (see veritas_grpc/domain/audit_chain.py), and the
indexes QueryAuditLog filters by.

Rows written before this migration stay outside the chain: the head remembers the last
of them, so that verification can tell them from rows slipped in later.

Revision ID: 0008_audit_chain
Revises: 0007_alert_log
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_chain"
down_revision = "0007_alert_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_logs", sa.Column("sequence", sa.BigInteger))
    op.add_column("audit_logs", sa.Column("content_digest", sa.LargeBinary))
    op.add_column("audit_logs", sa.Column("link_hash", sa.LargeBinary))
    op.add_column("audit_logs", sa.Column("key_id", sa.String(16)))
    op.create_index("uq_audit_logs_sequence", "audit_logs", ["sequence"], unique=True)
    # One row, locked by every transaction that appends to the chain, from its last
    # statement to its commit: links are made one after another, never forked.
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("last_link_hash", sa.LargeBinary, nullable=False),
        sa.Column("unchained_max_id", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute(
        "INSERT INTO audit_chain_head (id, last_sequence, last_link_hash, unchained_max_id) "
        "SELECT 1, 0, decode(repeat('00', 32), 'hex'), coalesce(max(id), 0) FROM audit_logs"
    )
    op.drop_index("ix_audit_logs_resource", table_name="audit_logs")
    for name, columns in (
        ("ix_audit_logs_resource_occurred_at", ["resource_type", "resource_id", "occurred_at"]),
        ("ix_audit_logs_action_occurred_at", ["action", "occurred_at"]),
    ):
        op.create_index(name, "audit_logs", columns)


def downgrade() -> None:
    op.drop_index("ix_audit_logs_action_occurred_at", table_name="audit_logs")
    op.drop_index("ix_audit_logs_resource_occurred_at", table_name="audit_logs")
    op.create_index("ix_audit_logs_resource", "audit_logs", ["resource_type", "resource_id"])
    op.drop_table("audit_chain_head")
    op.drop_index("uq_audit_logs_sequence", table_name="audit_logs")
    for column in ("key_id", "link_hash", "content_digest", "sequence"):
        op.drop_column("audit_logs", column)
