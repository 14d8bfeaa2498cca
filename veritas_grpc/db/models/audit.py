"""The audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base


class AuditLog(Base):
    """Append-only: a trigger in the migration refuses UPDATE and DELETE. Each row is a
    link of the hash chain described in domain/audit_chain.py."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'failure', 'denied')", name="outcome"),
        Index("ix_audit_logs_actor_id_occurred_at", "actor_id", "occurred_at"),
        Index("ix_audit_logs_resource_occurred_at", "resource_type", "resource_id", "occurred_at"),
        Index("ix_audit_logs_action_occurred_at", "action", "occurred_at"),
        Index("uq_audit_logs_sequence", "sequence", unique=True),
        Index(
            "ix_audit_logs_redacted_by",
            "redacted_by",
            postgresql_where=text("redacted_by IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), index=True
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    peer: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    # The chain; NULL only on rows older than the chain (see AuditChainHead).
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    content_digest: Mapped[bytes | None] = mapped_column(LargeBinary)
    link_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[str | None] = mapped_column(String(16))
    # The sequence of the erasure row that rewrote this row's identifying fields (its
    # digest and link stay as sealed); see migration 0012.
    redacted_by: Mapped[int | None] = mapped_column(BigInteger)


class AuditChainHead(Base):
    """The chain's newest link, and the last row written before the chain began."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_link_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    unchained_max_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The last row audit retention deleted (0: none); verification starts after it.
    pruned_sequence: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )
    pruned_link_hash: Mapped[bytes] = mapped_column(
        LargeBinary, nullable=False, server_default=text("decode(repeat('00', 32), 'hex')")
    )
