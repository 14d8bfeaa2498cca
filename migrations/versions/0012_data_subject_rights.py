"""Data-subject rights and retention: audit redaction by erasure, audit pruning, the
record of erased students and holds on restored event partitions.

- audit_logs.redacted_by: the sequence of the erasure row (action student.erase) that
  rewrote this row's identifying fields. The row keeps its content_digest and link, so
  the chain after it still holds; the verifier checks the link, not the content, of a
  redacted row, and checks that each erasure row counts exactly the rows that name it.
- audit_chain_head.pruned_sequence / pruned_link_hash: the last row audit retention
  deleted; verification starts after it.
- The append-only trigger now admits exactly these two changes, and only inside a
  transaction that switched them on (SET LOCAL veritas.audit_redaction / audit_prune):
  a redaction rewrites actor_id, resource_id, peer and details and sets redacted_by,
  nothing else; a prune deletes rows up to the head's pruned_sequence, nothing newer.
  A superuser can still do anything; the chain, not the trigger, is what finds it.
- erased_subjects: whom EraseStudent erased, under which pseudonym (restores of archived
  events skip their attempts).
- event_partition_holds: a restored day's partition is kept until hold_until, whatever
  VERITAS_EVENT_RETENTION_DAYS says.

Revision ID: 0012_data_subject_rights
Revises: 0011_oversight
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0012_data_subject_rights"
down_revision = "0011_oversight"
branch_labels = None
depends_on = None

GUARDED = (
    "id",
    "occurred_at",
    "actor_role",
    "action",
    "resource_type",
    "outcome",
    "request_id",
    "sequence",
    "content_digest",
    "link_hash",
    "key_id",
)

APPEND_ONLY_WITH_REDACTION = f"""
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('veritas.audit_redaction', true) = 'on'
       AND NEW.redacted_by IS NOT NULL
       AND (OLD.redacted_by IS NULL OR NEW.redacted_by = OLD.redacted_by)
       AND ({", ".join(f"NEW.{c}" for c in GUARDED)})
           IS NOT DISTINCT FROM ({", ".join(f"OLD.{c}" for c in GUARDED)})
    THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE'
       AND current_setting('veritas.audit_prune', true) = 'on'
       AND (OLD.sequence <= (SELECT pruned_sequence FROM audit_chain_head WHERE id = 1)
            OR (OLD.sequence IS NULL
                AND OLD.id <= (SELECT unchained_max_id FROM audit_chain_head WHERE id = 1)))
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def upgrade() -> None:
    op.add_column("audit_logs", sa.Column("redacted_by", sa.BigInteger))
    op.create_index(
        "ix_audit_logs_redacted_by",
        "audit_logs",
        ["redacted_by"],
        postgresql_where=sa.text("redacted_by IS NOT NULL"),
    )
    op.add_column(
        "audit_chain_head",
        sa.Column("pruned_sequence", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    )
    op.add_column(
        "audit_chain_head",
        sa.Column(
            "pruned_link_hash",
            sa.LargeBinary,
            nullable=False,
            server_default=sa.text("decode(repeat('00', 32), 'hex')"),
        ),
    )
    op.execute(APPEND_ONLY_WITH_REDACTION)
    op.create_table(
        "erased_subjects",
        sa.Column(
            "user_id",
            UUID(as_uuid=True),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("pseudonym", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "erased_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "event_partition_holds",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("hold_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "restored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("event_partition_holds")
    op.drop_table("erased_subjects")
    op.execute(APPEND_ONLY)
    op.drop_column("audit_chain_head", "pruned_link_hash")
    op.drop_column("audit_chain_head", "pruned_sequence")
    op.drop_index("ix_audit_logs_redacted_by", table_name="audit_logs")
    op.drop_column("audit_logs", "redacted_by")
