"""Behaviour analyses and reviewers' decisions."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base
from veritas_grpc.db.models._columns import created_at, uuid_pk
from veritas_grpc.db.models.exams import LABELS


def _attempt_fk() -> Mapped[uuid.UUID]:
    return mapped_column(
        UUID(as_uuid=True), ForeignKey("exam_attempts.id", ondelete="CASCADE"), nullable=False
    )


def _reviewer_fk() -> Mapped[uuid.UUID | None]:
    return mapped_column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL"))


class BehaviorAnalysis(Base):
    """Every saved analysis is kept; one per attempt is current."""

    __tablename__ = "behavior_analyses"
    __table_args__ = (
        CheckConstraint("source IN ('EXTERNAL', 'RULES')", name="source"),
        CheckConstraint("integrity_score BETWEEN 0 AND 1", name="integrity_range"),
        CheckConstraint(f"dropout_label IS NULL OR dropout_label IN {LABELS}", name="label"),
        UniqueConstraint("attempt_id", "version", name="uq_behavior_analyses_version"),
        UniqueConstraint("attempt_id", "request_id", name="uq_behavior_analyses_request"),
        Index(
            "uq_behavior_analyses_current",
            "attempt_id",
            unique=True,
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    attempt_id: Mapped[uuid.UUID] = _attempt_fk()
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    is_current: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    source: Mapped[str] = mapped_column(String(8), nullable=False)
    integrity_score: Mapped[Decimal] = mapped_column(Numeric(5, 4), nullable=False)
    lmi_score: Mapped[float | None] = mapped_column(Float)
    dropout_label: Mapped[str | None] = mapped_column(String(16))
    llm_summary: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    llm_reasoning: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    recommendations: Mapped[list[str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'")
    )
    contributions: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'")
    )
    model_name: Mapped[str] = mapped_column(String(100), nullable=False, server_default="")
    model_version: Mapped[str] = mapped_column(String(50), nullable=False, server_default="")
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created_at()


class EventReview(Base):
    """A reviewer's decision on one event; a later decision replaces it."""

    __tablename__ = "event_reviews"
    __table_args__ = (
        CheckConstraint("decision IN ('CONFIRMED', 'DISMISSED')", name="decision"),
        UniqueConstraint("attempt_id", "event_id", name="uq_event_reviews_event"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    attempt_id: Mapped[uuid.UUID] = _attempt_fk()
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    reviewer_id: Mapped[uuid.UUID | None] = _reviewer_fk()
    reviewed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


class AttemptReview(Base):
    """Reviewers' outcomes on an attempt, kept in full; the latest one counts."""

    __tablename__ = "attempt_reviews"
    __table_args__ = (
        CheckConstraint("outcome IN ('CLEARED', 'VIOLATION')", name="outcome"),
        Index("ix_attempt_reviews_attempt_id", "attempt_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    attempt_id: Mapped[uuid.UUID] = _attempt_fk()
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    reviewer_id: Mapped[uuid.UUID | None] = _reviewer_fk()
    reviewed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )
