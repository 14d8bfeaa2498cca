"""Monitoring events: a Core table (ingestion writes with COPY, not the ORM). The real
table is partitioned by day on occurred_at; see migration 0003 and the partitions
repository. The primary key (attempt_id, occurred_at, event_id) both orders an
attempt's timeline and makes a resent event a no-op."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, REAL, UUID

from veritas_grpc.db.base import Base

PARTITION_PREFIX = "monitoring_events_p"
# The channel stored alerts are NOTIFYed on at commit, and every server LISTENs on.
ALERT_CHANNEL = "veritas_alerts"

monitoring_events = Table(
    "monitoring_events",
    Base.metadata,
    Column("attempt_id", UUID(as_uuid=True), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("event_type", String(64), nullable=False),
    Column("category", String(16), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("is_anomaly", Boolean, nullable=False, server_default=text("false")),
    Column("description", Text, nullable=False, server_default=""),
    Column("detector_name", String(64), nullable=False, server_default=""),
    Column("detector_version", String(32), nullable=False, server_default=""),
    Column("detector_confidence", REAL),
    Column("data", JSON),  # as sent: see migration 0005
    Column("sent_by", UUID(as_uuid=True)),
    PrimaryKeyConstraint("attempt_id", "occurred_at", "event_id", name="pk_monitoring_events"),
    CheckConstraint("category IN ('INTEGRITY', 'TECHNICAL')", name="category"),
    CheckConstraint("severity IN ('INFO', 'WARNING', 'CRITICAL')", name="severity"),
    Index(
        "ix_monitoring_events_critical",
        "occurred_at",
        postgresql_where=text("severity = 'CRITICAL'"),
    ),
    Index(
        "ix_monitoring_events_anomalies",
        "attempt_id",
        "occurred_at",
        postgresql_where=text("is_anomaly"),
    ),
    postgresql_partition_by="RANGE (occurred_at)",
)

# Each attempt's events by type and severity, moved by ingestion in the transaction that
# stores them (migration 0018): the monitoring view's summary without counting, and the
# span of the attempt's occur times, which bounds its timeline to the partitions it has.
attempt_event_tallies = Table(
    "attempt_event_tallies",
    Base.metadata,
    # No foreign key: creating one would have locked exam_attempts for 0018's backfill.
    Column("attempt_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("anomaly_count", BigInteger, nullable=False),
    Column("first_occurred_at", DateTime(timezone=True), nullable=False),
    Column("last_occurred_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("attempt_id", "event_type", "severity", name="pk_attempt_event_tallies"),
)
