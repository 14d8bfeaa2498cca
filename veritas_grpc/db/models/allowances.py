"""Accommodations granted to one student at one exam (migration 0016)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base
from veritas_grpc.db.models._columns import created_at, uuid_pk
from veritas_grpc.domain.allowances import (
    AllowanceKind,
    EventExemption,
    ExtraAttempts,
    ExtraTime,
    PersonalWindow,
    Terms,
)

KINDS = "('EXTRA_TIME', 'EXTRA_ATTEMPTS', 'PERSONAL_WINDOW', 'EVENT_EXEMPTION')"


class ExamAllowance(Base):
    """One allowance. A check of migration 0016 (ck_exam_allowances_kind_columns) keeps
    each kind's columns, and no other's, set; a partial unique index keeps one standing
    allowance per kind."""

    __tablename__ = "exam_allowances"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS}", name="kind"),
        CheckConstraint(
            "extra_minutes > 0 AND extra_percent > 0 AND extra_attempts > 0", name="positive"
        ),
        UniqueConstraint("granted_by", "grant_request_id", name="uq_exam_allowances_grant_request"),
        Index(
            "uq_exam_allowances_standing",
            "exam_id",
            "student_id",
            "kind",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
        Index("ix_exam_allowances_student_id", "student_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    exam_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("exams.id", ondelete="CASCADE"), nullable=False
    )
    student_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    extra_minutes: Mapped[int | None] = mapped_column(Integer)
    extra_percent: Mapped[int | None] = mapped_column(Integer)
    extra_attempts: Mapped[int | None] = mapped_column(Integer)
    window_opens_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_closes_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exempt_event_types: Mapped[list[str] | None] = mapped_column(ARRAY(String(64)))
    note: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    granted_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    granted_at: Mapped[datetime] = created_at()
    grant_request_id: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )

    def terms(self) -> Terms:
        """What the allowance grants, as the domain's terms."""
        kind = AllowanceKind(self.kind)
        if kind is AllowanceKind.EXTRA_TIME:
            return ExtraTime(self.extra_minutes, self.extra_percent)
        if kind is AllowanceKind.EXTRA_ATTEMPTS:
            return ExtraAttempts(self.extra_attempts or 0)
        if kind is AllowanceKind.PERSONAL_WINDOW:
            assert self.window_opens_at is not None and self.window_closes_at is not None
            return PersonalWindow(self.window_opens_at, self.window_closes_at)
        return EventExemption(tuple(self.exempt_event_types or ()))

    @classmethod
    def granting(cls, terms: Terms, **columns: object) -> ExamAllowance:
        """A new row granting `terms` (with the other columns given)."""
        row = cls(kind=terms.kind.value, **columns)
        if isinstance(terms, ExtraTime):
            row.extra_minutes, row.extra_percent = terms.minutes, terms.percent
        elif isinstance(terms, ExtraAttempts):
            row.extra_attempts = terms.count
        elif isinstance(terms, PersonalWindow):
            row.window_opens_at, row.window_closes_at = terms.opens_at, terms.closes_at
        else:
            row.exempt_event_types = list(terms.event_types)
        return row
