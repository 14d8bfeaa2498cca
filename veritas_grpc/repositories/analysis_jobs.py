"""The analysis queue's rows. Flush, never commit; the service moves jobs between
states, these queries find and lock them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, delete, exists, func, or_, select, text
from sqlalchemy.orm import Session

from veritas_grpc.db.models import JOBS_CHANNEL, AnalysisJob
from veritas_grpc.domain.analysis_jobs import JobReason, JobState, QueueCounts

# One statement: a PENDING job for each attempt (of those ended, when asked; never of an
# erased student), or, where
# the attempt's open job is LEASED, a note that the evidence changed meanwhile (a
# PENDING one is left as it is: it will read the new evidence anyway). The NOTIFY goes
# out, at commit, only when a PENDING job was made.
_REQUEST = """
WITH queued AS (
    INSERT INTO analysis_jobs (attempt_id, reason, state, created_at, available_at)
    SELECT a.id, :reason, 'PENDING', :now, :now
    FROM exam_attempts AS a
    WHERE a.id = ANY(CAST(:ids AS uuid[])) {ended}
      AND NOT EXISTS (SELECT 1 FROM erased_subjects AS e WHERE e.user_id = a.student_id)
    ON CONFLICT (attempt_id) WHERE state IN ('PENDING', 'LEASED')
    DO UPDATE SET rerun_reason = coalesce(analysis_jobs.rerun_reason, EXCLUDED.reason)
    WHERE analysis_jobs.state = 'LEASED'
    RETURNING state
)
SELECT pg_notify(:channel, '') WHERE EXISTS (SELECT 1 FROM queued WHERE state = 'PENDING')
"""
_REQUEST_ANY = text(_REQUEST.format(ended=""))
_REQUEST_ENDED = text(_REQUEST.format(ended="AND a.status <> 'IN_PROGRESS'"))


class AnalysisJobRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # Making jobs -----------------------------------------------------------------------

    def request(self, attempt_ids: Sequence[uuid.UUID], reason: JobReason, now: datetime) -> None:
        """A job for each attempt (see _REQUEST)."""
        self._request(_REQUEST_ANY, attempt_ids, reason, now)

    def request_if_ended(
        self, attempt_ids: Sequence[uuid.UUID], reason: JobReason, now: datetime
    ) -> None:
        """A job for each of the attempts that has ended, as this transaction sees it:
        its attempts are locked already, so an attempt that ends concurrently is seen
        ended (its own job then comes first, and this folds into it) or ends after this
        commits (and its job reads these events)."""
        self._request(_REQUEST_ENDED, attempt_ids, reason, now)

    def _request(
        self, statement: object, ids: Sequence[uuid.UUID], reason: JobReason, now: datetime
    ) -> None:
        if ids:
            self._session.execute(
                statement,  # type: ignore[arg-type]
                {
                    "ids": [str(i) for i in ids],
                    "reason": reason.value,
                    "now": now,
                    "channel": JOBS_CHANNEL,
                },
            )

    def add(self, job: AnalysisJob) -> None:
        self._session.add(job)
        self._session.flush()

    def notify(self) -> None:
        """Wake the waiting claims of every server process, at commit."""
        self._session.execute(select(func.pg_notify(JOBS_CHANNEL, "")))

    # Claims and leases -----------------------------------------------------------------

    def claimable(self, now: datetime, limit: int) -> list[AnalysisJob]:
        """The oldest claimable jobs, locked; rows another claim holds are skipped."""
        self._session.flush()  # jobs this transaction returned to the queue count
        return list(
            self._session.execute(
                select(AnalysisJob)
                .where(AnalysisJob.state == JobState.PENDING, AnalysisJob.available_at <= now)
                .order_by(AnalysisJob.available_at, AnalysisJob.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )

    def next_available(self) -> datetime | None:
        """When the next PENDING job becomes claimable."""
        return self._session.scalar(
            select(func.min(AnalysisJob.available_at)).where(AnalysisJob.state == JobState.PENDING)
        )

    def held(self, token_hash: str, holder_id: uuid.UUID, now: datetime) -> AnalysisJob | None:
        """The job of a lease the holder still has, locked."""
        return self._session.execute(
            select(AnalysisJob)
            .where(
                AnalysisJob.lease_token_hash == token_hash,
                AnalysisJob.holder_id == holder_id,
                AnalysisJob.state == JobState.LEASED,
                AnalysisJob.lease_expires_at > now,
            )
            .with_for_update()
        ).scalar_one_or_none()

    def expired(self, now: datetime, limit: int) -> list[AnalysisJob]:
        """Leases past their expiry, locked; rows another sweep holds are skipped."""
        return list(
            self._session.execute(
                select(AnalysisJob)
                .where(AnalysisJob.state == JobState.LEASED, AnalysisJob.lease_expires_at <= now)
                .order_by(AnalysisJob.lease_expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )

    def leases_attempt(self, attempt_id: uuid.UUID, holder_id: uuid.UUID, now: datetime) -> bool:
        """Whether the holder leases the attempt's job now."""
        return bool(
            self._session.scalar(
                select(
                    exists().where(
                        AnalysisJob.attempt_id == attempt_id,
                        AnalysisJob.holder_id == holder_id,
                        AnalysisJob.state == JobState.LEASED,
                        AnalysisJob.lease_expires_at > now,
                    )
                )
            )
        )

    # Administration --------------------------------------------------------------------

    def get(self, job_id: uuid.UUID, for_update: bool = False) -> AnalysisJob | None:
        query = select(AnalysisJob).where(AnalysisJob.id == job_id)
        if for_update:
            query = query.with_for_update()
        return self._session.execute(query).scalar_one_or_none()

    def has_open(self, attempt_id: uuid.UUID) -> bool:
        return bool(
            self._session.scalar(
                select(
                    exists().where(
                        AnalysisJob.attempt_id == attempt_id,
                        AnalysisJob.state.in_((JobState.PENDING, JobState.LEASED)),
                    )
                )
            )
        )

    def page(
        self,
        state: JobState | None,
        attempt_id: uuid.UUID | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[AnalysisJob]:
        """Newest first, by (created_at, id)."""
        query: Select[tuple[AnalysisJob]] = select(AnalysisJob)
        if state is not None:
            query = query.where(AnalysisJob.state == state)
        if attempt_id is not None:
            query = query.where(AnalysisJob.attempt_id == attempt_id)
        if after is not None:
            created, job_id = after
            query = query.where(
                or_(
                    AnalysisJob.created_at < created,
                    and_(AnalysisJob.created_at == created, AnalysisJob.id < job_id),
                )
            )
        query = query.order_by(AnalysisJob.created_at.desc(), AnalysisJob.id.desc()).limit(limit)
        return list(self._session.execute(query).scalars())

    def counts(self, now: datetime) -> QueueCounts:
        """Read through the partial indexes: DONE rows, however many, are not counted."""
        open_or_dead = AnalysisJob.state.in_((JobState.PENDING, JobState.LEASED, JobState.DEAD))
        row = self._session.execute(
            select(
                func.count().filter(AnalysisJob.state == JobState.PENDING),
                func.count().filter(
                    AnalysisJob.state == JobState.PENDING, AnalysisJob.available_at <= now
                ),
                func.count().filter(AnalysisJob.state == JobState.LEASED),
                func.count().filter(AnalysisJob.state == JobState.DEAD),
                func.min(AnalysisJob.created_at).filter(AnalysisJob.state == JobState.PENDING),
            ).where(open_or_dead)
        ).one()
        return QueueCounts(int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4])

    def forget(self, attempt_ids: Sequence[uuid.UUID]) -> int:
        """Delete the attempts' jobs (an erased student's)."""
        if not attempt_ids:
            return 0
        result = self._session.execute(
            delete(AnalysisJob).where(AnalysisJob.attempt_id.in_(list(attempt_ids)))
        )
        return int(result.rowcount or 0)
