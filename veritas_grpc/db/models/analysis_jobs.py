"""The analysis queue (AnalysisService.ClaimAnalysisJobs and the rest): one row per
request to analyse an attempt, kept after it is done."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base
from veritas_grpc.db.models._columns import created_at, uuid_pk

# NOTIFYed by every commit that makes a job claimable: it wakes the long polls of every
# server process (the rows are the truth; a missed wake-up only delays a claim).
JOBS_CHANNEL = "veritas_analysis_jobs"

# An attempt's open job: at most one, so that its jobs are never leased twice at once.
OPEN_STATES = ("PENDING", "LEASED")


class AnalysisJob(Base):
    """State PENDING (claimable from available_at), LEASED (to holder_id until
    lease_expires_at, proven by the SHA-256 of the lease token), DONE or DEAD.
    rerun_reason: the evidence changed while the job was leased, so a new PENDING job
    follows its completion."""

    __tablename__ = "analysis_jobs"
    __table_args__ = (
        CheckConstraint(
            "reason IN ('ATTEMPT_ENDED', 'LATE_EVENTS', 'EVENT_REVIEWED')", name="reason"
        ),
        CheckConstraint(
            "rerun_reason IN ('ATTEMPT_ENDED', 'LATE_EVENTS', 'EVENT_REVIEWED')",
            name="rerun_reason",
        ),
        CheckConstraint("state IN ('PENDING', 'LEASED', 'DONE', 'DEAD')", name="state"),
        CheckConstraint(
            "(state = 'LEASED') = (lease_token_hash IS NOT NULL AND holder_id IS NOT NULL "
            "AND lease_expires_at IS NOT NULL)",
            name="lease",
        ),
        Index(
            "uq_analysis_jobs_open_attempt",
            "attempt_id",
            unique=True,
            postgresql_where=text("state IN ('PENDING', 'LEASED')"),
        ),
        Index(
            "ix_analysis_jobs_claimable",
            "available_at",
            "created_at",
            postgresql_where=text("state = 'PENDING'"),
        ),
        Index(
            "ix_analysis_jobs_lease_expiry",
            "lease_expires_at",
            postgresql_where=text("state = 'LEASED'"),
        ),
        Index("ix_analysis_jobs_listing", "state", "created_at", "id"),
        Index("ix_analysis_jobs_attempt", "attempt_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    attempt_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("exam_attempts.id", ondelete="CASCADE"), nullable=False
    )
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(8), nullable=False)
    failed_tries: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    created_at: Mapped[datetime] = created_at()
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    lease_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    holder_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    rerun_reason: Mapped[str | None] = mapped_column(String(16))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    analysis_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("behavior_analyses.id", ondelete="SET NULL")
    )
