"""Analysis jobs, leases and the evidence a scorer reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from veritas_grpc.db.models import AnalysisJob
from veritas_grpc.domain.analysis_jobs import JobReason, JobState
from veritas_grpc.domain.event_store import StoredEvent
from veritas_grpc.domain.exams import BehaviorRule
from veritas_grpc.services.views.analyses import AnalysisView
from veritas_grpc.services.views.attempts import AttemptView
from veritas_grpc.services.views.students import PerformanceView


@dataclass(frozen=True)
class JobView:
    id: uuid.UUID
    attempt_id: uuid.UUID
    reason: JobReason
    state: JobState
    failed_tries: int
    created_at: datetime
    available_at: datetime | None  # PENDING only
    holder_id: uuid.UUID | None  # LEASED only
    lease_expires_at: datetime | None  # LEASED only
    last_error: str
    completed_at: datetime | None
    analysis_id: uuid.UUID | None


def job_view(job: AnalysisJob) -> JobView:
    state = JobState(job.state)
    return JobView(
        id=job.id,
        attempt_id=job.attempt_id,
        reason=JobReason(job.reason),
        state=state,
        failed_tries=job.failed_tries,
        created_at=job.created_at,
        available_at=job.available_at if state is JobState.PENDING else None,
        holder_id=job.holder_id,
        lease_expires_at=job.lease_expires_at,
        last_error=job.last_error or "",
        completed_at=job.completed_at,
        analysis_id=job.analysis_id,
    )


@dataclass(frozen=True)
class LeaseView:
    token: str  # the only copy: the server keeps its SHA-256
    job: JobView


@dataclass(frozen=True)
class QueueSummary:
    pending: int
    claimable: int
    leased: int
    dead: int
    oldest_pending_age_seconds: int


@dataclass(frozen=True)
class EvidenceHeader:
    attempt: AttemptView
    rules: tuple[BehaviorRule, ...]
    performance: PerformanceView
    current_analysis: AnalysisView | None
    event_count: int
    exempt_types: tuple[str, ...]  # sorted: the types the student's allowances exempt


@dataclass(frozen=True)
class EvidenceEvent:
    event: StoredEvent
    decision: str | None  # CONFIRMED | DISMISSED | None (not reviewed)
    exempt: bool  # of a type in the header's exempt_types


@dataclass(frozen=True)
class EvidencePage:
    header: EvidenceHeader | None  # the first page only
    events: tuple[EvidenceEvent, ...]
