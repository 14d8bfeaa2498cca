"""Data-subject rights and retention: whom an erasure removed, and restored event days
kept past retention. Core tables (written with plain SQL by repositories.data_subjects
and repositories.partitions); see migration 0012."""

from __future__ import annotations

from sqlalchemy import Column, Date, DateTime, ForeignKey, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

from veritas_grpc.db.base import Base

# One row per erased student: the account is an anonymous shell from then on.
erased_subjects = Table(
    "erased_subjects",
    Base.metadata,
    Column(
        "user_id",
        UUID(as_uuid=True),
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("pseudonym", String(64), nullable=False, unique=True),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A day brought back by `veritas restore-events`: retention leaves it until hold_until.
event_partition_holds = Table(
    "event_partition_holds",
    Base.metadata,
    Column("day", Date, primary_key=True),
    Column("hold_until", DateTime(timezone=True), nullable=False),
    Column("restored_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
