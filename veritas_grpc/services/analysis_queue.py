"""The analysis queue, the use cases: scoring services claim jobs, read an attempt's
evidence, extend, fail or release their leases (completing one is saving an analysis
with it: services.analysis). Admins list jobs and retry dead ones. The long poll of a
claim is services.job_claims.

Jobs are made where attempts end and where evidence changes, in the transaction of the
change (uow.analysis_jobs.request)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from veritas_grpc.db.models import AnalysisJob
from veritas_grpc.domain.analysis_jobs import (
    LEASE_EXPIRED,
    LEASE_NOT_HELD,
    ClaimRequest,
    JobState,
    RetryPolicy,
    check_failure,
    lease_duration,
    lease_token_hash,
    new_lease_token,
)
from veritas_grpc.domain.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.services import auditing
from veritas_grpc.services.exams import ATTEMPT_NOT_FOUND, behavior_rules
from veritas_grpc.services.exemptions import exempt_types
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from veritas_grpc.services.views.analyses import analysis_view
from veritas_grpc.services.views.analysis_jobs import (
    EvidenceEvent,
    EvidenceHeader,
    EvidencePage,
    JobView,
    LeaseView,
    QueueSummary,
    job_view,
)
from veritas_grpc.services.views.attempts import attempt_view
from veritas_grpc.services.views.students import performance_view

Clock = Callable[[], datetime]

EXPIRE_BATCH = 500
DEFAULT_EVIDENCE_PAGE = 500
MAX_EVIDENCE_PAGE = 1000
DEFAULT_JOB_PAGE = 50
MAX_JOB_PAGE = 500
JOB_NOT_FOUND = "analysis job not found"
OPEN_JOB_EXISTS = "the attempt has a pending or leased job already"


def held_lease(uow: UnitOfWork, actor: Principal, token: str, now: datetime) -> AnalysisJob:
    """The job of a lease the actor holds now, locked (FailedPrecondition otherwise)."""
    job = uow.analysis_jobs.held(lease_token_hash(token), actor.user_id, now)
    if job is None:
        raise FailedPrecondition(LEASE_NOT_HELD)
    return job


def complete_lease(
    uow: UnitOfWork, job: AnalysisJob, analysis_id: uuid.UUID, now: datetime
) -> None:
    """The lease's analysis is saved: the job is DONE, and if the evidence changed while
    it was leased, a new job reads the new evidence."""
    _end_lease(job)
    job.state = JobState.DONE
    job.completed_at = now
    job.analysis_id = analysis_id
    if job.rerun_reason:
        uow.analysis_jobs.add(
            AnalysisJob(
                attempt_id=job.attempt_id,
                reason=job.rerun_reason,
                state=JobState.PENDING,
                created_at=now,
                available_at=now,
            )
        )
        uow.analysis_jobs.notify()


def _release(uow: UnitOfWork, job: AnalysisJob, now: datetime) -> None:
    """Claimable again at once, no try counted."""
    _end_lease(job)
    job.state = JobState.PENDING
    job.available_at = now
    job.rerun_reason = None  # the next try reads the newest evidence anyway
    uow.analysis_jobs.notify()


def _end_lease(job: AnalysisJob) -> None:
    job.lease_token_hash = None
    job.holder_id = None
    job.lease_expires_at = None


def queue_summary(uow: UnitOfWork, now: datetime) -> QueueSummary:
    counts = uow.analysis_jobs.counts(now)
    oldest = counts.oldest_pending_at
    age = max(int((now - oldest).total_seconds()), 0) if oldest is not None else 0
    return QueueSummary(counts.pending, counts.claimable, counts.leased, counts.dead, age)


@dataclass(frozen=True)
class Claimed:
    leases: list[LeaseView]
    next_available: datetime | None  # when nothing was claimable


class AnalysisQueue:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        policy: RetryPolicy,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._policy = policy

    # Scoring services --------------------------------------------------------------

    def claim_now(self, actor: Principal, request: ClaimRequest) -> Claimed:
        """Lease what is claimable now; when nothing is, say when something will be."""
        now = self._clock()
        lease = timedelta(seconds=request.lease_seconds)
        with self._uow_factory() as uow:
            self._return_expired(uow, now)
            jobs = uow.analysis_jobs.claimable(now, request.max_jobs)
            leases = []
            for job in jobs:
                token = new_lease_token()
                job.state = JobState.LEASED
                job.lease_token_hash = lease_token_hash(token)
                job.holder_id = actor.user_id
                job.lease_expires_at = now + lease
                leases.append(LeaseView(token, job_view(job)))
            next_available = None if jobs else uow.analysis_jobs.next_available()
            uow.commit()
        return Claimed(leases, next_available)

    def extend(self, actor: Principal, token: str, lease_seconds: int) -> JobView:
        duration = lease_duration(lease_seconds)
        now = self._clock()
        with self._uow_factory() as uow:
            job = held_lease(uow, actor, token, now)
            job.lease_expires_at = now + duration
            uow.commit()
            return job_view(job)

    def fail(
        self, actor: Principal, token: str, reason: str, retry_after_seconds: int | None
    ) -> JobView:
        check_failure(reason, retry_after_seconds)
        now = self._clock()
        retry_after = (
            None if retry_after_seconds is None else timedelta(seconds=retry_after_seconds)
        )
        with self._uow_factory() as uow:
            job = held_lease(uow, actor, token, now)
            self._end_try(uow, job, reason, now, retry_after)
            uow.commit()
            return job_view(job)

    def release(self, actor: Principal, token: str) -> JobView:
        now = self._clock()
        with self._uow_factory() as uow:
            job = held_lease(uow, actor, token, now)
            _release(uow, job, now)
            uow.commit()
            return job_view(job)

    def give_back(self, actor: Principal, tokens: list[str]) -> int:
        """Release the leases of a claim whose answer never left (the call was
        cancelled); those already gone are skipped."""
        now = self._clock()
        with self._uow_factory() as uow:
            given = 0
            for token in tokens:
                job = uow.analysis_jobs.held(lease_token_hash(token), actor.user_id, now)
                if job is not None:
                    _release(uow, job, now)
                    given += 1
            uow.commit()
        return given

    def expire_leases(self) -> int:
        """Return the jobs of expired leases to the queue (a maintenance task; claims do
        it too, so that redelivery never waits for the task)."""
        now = self._clock()
        with self._uow_factory() as uow:
            expired = self._return_expired(uow, now)
            uow.commit()
        return expired

    def _return_expired(self, uow: UnitOfWork, now: datetime) -> int:
        expired = uow.analysis_jobs.expired(now, EXPIRE_BATCH)
        for job in expired:
            self._end_try(uow, job, LEASE_EXPIRED, now, None)
        return len(expired)

    def _end_try(
        self,
        uow: UnitOfWork,
        job: AnalysisJob,
        error: str,
        now: datetime,
        retry_after: timedelta | None,
    ) -> None:
        """A lease ended without an analysis: a failed try, then the backoff or DEAD."""
        _end_lease(job)
        job.failed_tries += 1
        job.last_error = error
        job.rerun_reason = None
        if job.failed_tries >= self._policy.max_tries:
            job.state = JobState.DEAD
            return
        job.state = JobState.PENDING
        job.available_at = now + (
            retry_after if retry_after is not None else self._policy.backoff(job.failed_tries)
        )
        # Waiting claims learn when it becomes claimable (now, or after the backoff).
        uow.analysis_jobs.notify()

    # Evidence ------------------------------------------------------------------------

    def evidence(self, actor: Principal, attempt_id: str, page_size: int) -> Iterator[EvidencePage]:
        """Check and audit the read now (InvalidArgument, NotFound), then return its
        pages, each read as it is consumed."""
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        if not 0 <= page_size <= MAX_EVIDENCE_PAGE:
            raise InvalidArgument.of("page_size", f"must be between 0 and {MAX_EVIDENCE_PAGE}")
        with self._uow_factory() as uow:
            allowed = self._may_read(uow, actor, attempt_uuid)
            auditing.record(
                uow,
                "attempt.read_evidence",
                "success" if allowed else "failure",
                actor=actor,
                resource_type="attempt",
                resource_id=attempt_uuid,
            )
            uow.commit()
        if not allowed:
            # One answer for a missing attempt and one not leased: ids stay secret.
            raise NotFound(ATTEMPT_NOT_FOUND)
        return self._evidence_pages(actor, attempt_uuid, page_size or DEFAULT_EVIDENCE_PAGE)

    def _may_read(self, uow: UnitOfWork, actor: Principal, attempt_id: uuid.UUID) -> bool:
        """An admin, or the holder of the attempt's lease now."""
        if uow.attempts.get_in_context(attempt_id) is None:
            return False
        return actor.role is Role.ADMIN or uow.analysis_jobs.leases_attempt(
            attempt_id, actor.user_id, self._clock()
        )

    def _evidence_pages(
        self, actor: Principal, attempt_id: uuid.UUID, size: int
    ) -> Iterator[EvidencePage]:
        """Each page in a short transaction of its own, so that a reader as slow as its
        model holds no database connection between pages; keyset pages are stable,
        since events are only ever added (one stored meanwhile before the position is
        left out, and makes a re-analysis job of its own). The lease is checked again
        for every page: a reader that lost it stops getting evidence."""
        header: EvidenceHeader | None = self._evidence_header(attempt_id)
        if header is None:
            return
        # Every page marks by the header's exemptions, so that the marks and the header
        # agree even if an allowance changes during a long read.
        exempt = frozenset(header.exempt_types)
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            with self._uow_factory() as uow:
                if not self._may_read(uow, actor, attempt_id):
                    raise NotFound(ATTEMPT_NOT_FOUND)
                page = uow.events.page(attempt_id, after, size)
                decisions = uow.analyses.decisions(attempt_id, [e.event_id for e in page])
            yield EvidencePage(
                header,
                tuple(
                    EvidenceEvent(e, decisions.get(e.event_id), e.event_type in exempt)
                    for e in page
                ),
            )
            header = None
            if len(page) < size:
                return
            after = (page[-1].occurred_at, page[-1].event_id)

    def _evidence_header(self, attempt_id: uuid.UUID) -> EvidenceHeader | None:
        with self._uow_factory() as uow:
            uow.snapshot()  # the attempt, the figures and the analysis of one moment
            found = uow.attempts.get_in_context(attempt_id)
            if found is None:
                return None
            student = uow.student_stats.dashboard(found.attempt.student_id)
            current = uow.analyses.current(attempt_id)
            exempt = exempt_types(uow, attempt_id)
            # The student's name stays out: evidence goes to models, possibly a third
            # party's; the (pseudonymous) student id is enough to tell students apart.
            attempt = replace(attempt_view(found), student_name="")
            return EvidenceHeader(
                attempt=attempt,
                rules=tuple(behavior_rules(found.exam)),
                performance=performance_view(student[2] if student else None),
                current_analysis=analysis_view(current) if current is not None else None,
                event_count=found.attempt.event_count,
                exempt_types=tuple(sorted(exempt)),
            )

    # Administration ------------------------------------------------------------------

    def summary(self) -> QueueSummary:
        """The queue's figures now (the metrics endpoint reads them at each scrape)."""
        with self._uow_factory() as uow:
            return queue_summary(uow, self._clock())

    def list_jobs(
        self,
        actor: Principal,
        state: JobState | None,
        attempt_id: str,
        page_size: int,
        page_token: str,
    ) -> tuple[Page[JobView], QueueSummary]:
        attempt_uuid = parse_id(attempt_id, "attempt_id") if attempt_id else None
        scope = f"analysis-jobs:{state or ''}:{attempt_uuid or ''}"
        request = page_request(page_size, page_token, scope, DEFAULT_JOB_PAGE, MAX_JOB_PAGE)
        after = position(request, datetime.fromisoformat, uuid.UUID)
        with self._uow_factory() as uow:
            jobs = uow.analysis_jobs.page(state, attempt_uuid, after, request.size + 1)  # type: ignore[arg-type]
            summary = queue_summary(uow, self._clock())
            auditing.record(
                uow,
                "analysis_jobs.list",
                "success",
                actor=actor,
                details={"state": state or "", "attempt_id": str(attempt_uuid or "")},
            )
            uow.commit()
        views = [job_view(job) for job in jobs]
        return paginate(views, request, lambda j: (j.created_at.isoformat(), str(j.id))), summary

    def retry(self, actor: Principal, job_id: str) -> JobView:
        job_uuid = parse_id(job_id, "job_id")
        now = self._clock()
        with self._uow_factory() as uow:
            job = uow.analysis_jobs.get(job_uuid, for_update=True)
            if job is None:
                raise NotFound(JOB_NOT_FOUND)
            if job.state != JobState.DEAD:
                raise FailedPrecondition("only a DEAD job can be retried")
            if uow.analysis_jobs.has_open(job.attempt_id):
                raise FailedPrecondition(OPEN_JOB_EXISTS)
            job.state = JobState.PENDING
            job.failed_tries = 0
            job.available_at = now
            uow.analysis_jobs.notify()
            auditing.record(
                uow,
                "analysis_job.retry",
                "success",
                actor=actor,
                resource_type="analysis_job",
                resource_id=job_uuid,
                details={"attempt_id": str(job.attempt_id), "last_error": job.last_error or ""},
            )
            try:
                uow.commit()
            except Conflict:
                # A change to the attempt made it an open job between the check and here.
                raise FailedPrecondition(OPEN_JOB_EXISTS) from None
            return job_view(job)
