"""Exams, their sharing, attempts, and the denormalised figures dashboards read."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base
from veritas_grpc.db.models._columns import counter, created_at, uuid_pk

LABELS = "('SAFE', 'INCAPABLE', 'COPY', 'NO_INTEREST')"
Score = Numeric(8, 2)
ScoreSum = Numeric(16, 2)
Integrity = Numeric(5, 4)
IntegritySum = Numeric(16, 4)


def _user_fk(nullable: bool = False) -> Mapped[Any]:
    return mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=nullable
    )


class Exam(Base):
    __tablename__ = "exams"
    __table_args__ = (
        CheckConstraint("status IN ('DRAFT', 'PUBLISHED', 'ARCHIVED')", name="status"),
        CheckConstraint("max_score > 0", name="max_score_positive"),
        CheckConstraint("pass_score >= 0 AND pass_score <= max_score", name="pass_score_range"),
        CheckConstraint("duration_minutes BETWEEN 1 AND 1440", name="duration_range"),
        CheckConstraint("max_attempts BETWEEN 1 AND 100", name="max_attempts_range"),
        CheckConstraint(
            "closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at", name="window"
        ),
        UniqueConstraint("created_by", "create_request_id", name="uq_exams_create_request"),
        Index("ix_exams_created_by_created_at", "created_by", "created_at"),
        Index(
            "ix_exams_published_title",
            "title",
            "id",
            postgresql_where=text("status = 'PUBLISHED'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    subject: Mapped[str] = mapped_column(String(100), nullable=False, server_default="")
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    max_score: Mapped[Decimal] = mapped_column(Score, nullable=False)
    pass_score: Mapped[Decimal] = mapped_column(Score, nullable=False)
    duration_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    opens_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="DRAFT")
    created_by: Mapped[uuid.UUID] = _user_fk()
    settings: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'")
    )
    create_request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A practice exam (migration 0016): fixed at creation, copied onto its attempts.
    is_practice: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # A practice exam a student must have completed before starting this one.
    required_practice_exam_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("exams.id", ondelete="SET NULL")
    )


class ExamStats(Base):
    """Running figures of one exam: analytics read this row, never the attempts."""

    __tablename__ = "exam_stats"

    exam_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("exams.id", ondelete="CASCADE"), primary_key=True
    )
    attempt_count: Mapped[int] = counter()
    student_count: Mapped[int] = counter()
    finished_count: Mapped[int] = counter()
    graded_count: Mapped[int] = counter()
    score_sum: Mapped[Decimal] = mapped_column(ScoreSum, nullable=False, server_default=text("0"))
    passed_count: Mapped[int] = counter()
    integrity_count: Mapped[int] = counter()
    integrity_sum: Mapped[Decimal] = mapped_column(
        IntegritySum, nullable=False, server_default=text("0")
    )
    flagged_count: Mapped[int] = counter()
    high_risk_count: Mapped[int] = counter()
    integrity_good_count: Mapped[int] = counter()
    integrity_watch_count: Mapped[int] = counter()
    integrity_at_risk_count: Mapped[int] = counter()
    safe_count: Mapped[int] = counter()
    incapable_count: Mapped[int] = counter()
    copy_count: Mapped[int] = counter()
    no_interest_count: Mapped[int] = counter()


class TeacherExamPermission(Base):
    __tablename__ = "teacher_exam_permissions"
    __table_args__ = (
        CheckConstraint("level IN ('VIEW', 'MANAGE')", name="level"),
        UniqueConstraint("exam_id", "teacher_id", name="uq_teacher_exam_permissions_exam_teacher"),
        Index("ix_teacher_exam_permissions_teacher_id", "teacher_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    exam_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("exams.id", ondelete="CASCADE"), nullable=False
    )
    teacher_id: Mapped[uuid.UUID] = _user_fk()
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    granted_by: Mapped[uuid.UUID] = _user_fk()
    granted_at: Mapped[datetime] = created_at()


class ExamAttempt(Base):
    """A migration trigger refuses any status change but IN_PROGRESS -> a final status."""

    __tablename__ = "exam_attempts"
    __table_args__ = (
        CheckConstraint(
            "status IN ('IN_PROGRESS', 'SUBMITTED', 'ABANDONED', 'TIMED_OUT')", name="status"
        ),
        CheckConstraint(f"dropout_label IS NULL OR dropout_label IN {LABELS}", name="label"),
        CheckConstraint("integrity_score BETWEEN 0 AND 1", name="integrity_range"),
        CheckConstraint("attempt_number >= 1", name="attempt_number_positive"),
        CheckConstraint(
            "review_outcome IS NULL OR review_outcome IN ('CLEARED', 'VIOLATION')",
            name="review_outcome",
        ),
        UniqueConstraint("exam_id", "student_id", "attempt_number", name="uq_exam_attempts_number"),
        Index(
            "uq_exam_attempts_one_in_progress",
            "student_id",
            "exam_id",
            unique=True,
            postgresql_where=text("status = 'IN_PROGRESS'"),
        ),
        Index("ix_exam_attempts_student_started", "student_id", "started_at"),
        Index("ix_exam_attempts_exam_student", "exam_id", "student_id"),
        # Recent flags and flagged pages, index-only in (flagged_at, id) order (0022).
        Index(
            "ix_exam_attempts_exam_flagged",
            "exam_id",
            "flagged_at",
            "id",
            postgresql_where=text("flagged"),
        ),
        Index(
            "ix_exam_attempts_in_progress_deadline",
            "deadline_at",
            postgresql_where=text("status = 'IN_PROGRESS'"),
        ),
        # AdminService.SearchAttempts, newest first (migration 0011).
        Index("ix_exam_attempts_started", "started_at", "id"),
        Index("ix_exam_attempts_exam_started", "exam_id", "started_at", "id"),
        Index("ix_exam_attempts_status_started", "status", "started_at", "id"),
        Index(
            "ix_exam_attempts_flagged_started",
            "started_at",
            "id",
            postgresql_where=text("flagged"),
        ),
        # The practice attempts whose events figures subtract (migration 0017).
        Index("ix_exam_attempts_practice_ended", "ended_at", postgresql_where=text("is_practice")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    exam_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("exams.id", ondelete="CASCADE"), nullable=False
    )
    student_id: Mapped[uuid.UUID] = _user_fk()
    attempt_number: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="IN_PROGRESS")
    started_at: Mapped[datetime] = created_at()
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    score: Mapped[Decimal | None] = mapped_column(Score)
    percentage: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    passed: Mapped[bool | None] = mapped_column(Boolean)
    graded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    graded_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    integrity_score: Mapped[Decimal | None] = mapped_column(Integrity)
    dropout_label: Mapped[str | None] = mapped_column(String(16))
    flagged: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    event_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    anomaly_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    critical_count: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )
    # The latest reviewer outcome (CLEARED or VIOLATION) and the confirmed violations.
    review_outcome: Mapped[str | None] = mapped_column(String(16))
    confirmed_events: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # Copied from the exam at the start (migration 0016): practice attempts count in no
    # figure, so every query over attempts can leave them out without a join.
    is_practice: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # The extra time (an allowance) included in deadline_at.
    extra_minutes: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))


class PerformanceMetrics(Base):
    """A student's figures as dashboards show them, derived from the profile's sums."""

    __tablename__ = "performance_metrics"
    __table_args__ = (
        CheckConstraint(f"risk_label IS NULL OR risk_label IN {LABELS}", name="label"),
        CheckConstraint(
            "lmi_trend IS NULL OR lmi_trend IN ('RISING', 'STEADY', 'FALLING')", name="trend"
        ),
    )

    student_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    exams_taken: Mapped[int] = counter()
    exams_passed: Mapped[int] = counter()
    average_score: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    average_integrity: Mapped[Decimal | None] = mapped_column(Integrity)
    latest_lmi: Mapped[float | None] = mapped_column(Float)
    lmi_trend: Mapped[str | None] = mapped_column(String(8))
    risk_label: Mapped[str | None] = mapped_column(String(16))
    flagged: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


# Each exam's students with their names, in name order by index (migration 0020): the
# analytics students page reads a page of them whatever the exam's size. Kept by
# triggers, not by the server, so that no path can miss them: a student's first attempt
# at a non-practice exam adds the row, a change of the account's name (a rename, an
# erasure's blanking) is copied to every row of that account.
exam_students = Table(
    "exam_students",
    Base.metadata,
    Column(
        "exam_id", UUID(as_uuid=True), ForeignKey("exams.id", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "student_id",
        UUID(as_uuid=True),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("full_name", String(200), nullable=False),
    PrimaryKeyConstraint("exam_id", "student_id", name="pk_exam_students"),
    Index("ix_exam_students_name", "exam_id", "full_name", "student_id"),
    # A rename (and a deleted account's cascade) finds the account's rows by this one.
    Index("ix_exam_students_student_id", "student_id"),
)
