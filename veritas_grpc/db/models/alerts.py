"""The alert log: every alert (an anomaly or CRITICAL event) numbered per exam.

Ingestion gives each newly stored alert the next number of its exam's counter, in the
same transaction as the event: the counter row stays locked until commit, so per exam
the numbers follow commit order without gaps, and a watcher that sees number s + 2
after s knows exactly what it is missing. Core tables (written with plain SQL by
repositories.events, read by adapters.alert_store); see migration 0007.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from veritas_grpc.db.base import Base

# The last number given to each exam's alerts (no row: none yet).
exam_alert_counters = Table(
    "exam_alert_counters",
    Base.metadata,
    Column(
        "exam_id",
        UUID(as_uuid=True),
        ForeignKey("exams.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("last_sequence", BigInteger, nullable=False, server_default=text("0")),
)

# One row per alert: its number and the key of its event in monitoring_events (which
# holds the content). No foreign keys: one less lookup per alert on the ingest path,
# and rows go with their events at retention (older than the same cutoff).
exam_alerts = Table(
    "exam_alerts",
    Base.metadata,
    Column("exam_id", UUID(as_uuid=True), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("attempt_id", UUID(as_uuid=True), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("exam_id", "sequence", name="pk_exam_alerts"),
    # Retention deletes by event time, in small batches.
    Index("ix_exam_alerts_occurred_at", "occurred_at"),
)
