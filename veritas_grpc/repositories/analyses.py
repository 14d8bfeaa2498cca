"""Behaviour analyses and reviewers' decisions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from veritas_grpc.db.models import AttemptReview, BehaviorAnalysis, EventReview, User
from veritas_grpc.db.models.events import monitoring_events

# Built once: the monitoring view runs them on every read.
_CURRENT = select(BehaviorAnalysis).where(
    BehaviorAnalysis.attempt_id == bindparam("attempt_id"), BehaviorAnalysis.is_current.is_(True)
)
_EVENT_REVIEWS = (
    select(EventReview, User.full_name)
    .outerjoin(User, User.id == EventReview.reviewer_id)
    .where(EventReview.attempt_id == bindparam("attempt_id"))
)
_ATTEMPT_REVIEWS = (
    select(AttemptReview, User.full_name)
    .outerjoin(User, User.id == AttemptReview.reviewer_id)
    .where(AttemptReview.attempt_id == bindparam("attempt_id"))
)


class AnalysisRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def current(self, attempt_id: uuid.UUID) -> BehaviorAnalysis | None:
        return self._session.scalar(_CURRENT, {"attempt_id": attempt_id})

    def by_request(self, attempt_id: uuid.UUID, request_id: str) -> BehaviorAnalysis | None:
        return self._session.scalar(
            select(BehaviorAnalysis).where(
                BehaviorAnalysis.attempt_id == attempt_id,
                BehaviorAnalysis.request_id == request_id,
            )
        )

    def replace_current(self, analysis: BehaviorAnalysis) -> BehaviorAnalysis:
        """Add `analysis` as the attempt's next version and make it the current one.
        The caller holds the attempt's row lock, so versions never race."""
        latest = self._session.scalar(
            select(func.coalesce(func.max(BehaviorAnalysis.version), 0)).where(
                BehaviorAnalysis.attempt_id == analysis.attempt_id
            )
        )
        self._session.execute(
            update(BehaviorAnalysis)
            .where(
                BehaviorAnalysis.attempt_id == analysis.attempt_id,
                BehaviorAnalysis.is_current.is_(True),
            )
            .values(is_current=False)
        )
        analysis.version = int(latest or 0) + 1
        analysis.is_current = True
        self._session.add(analysis)
        self._session.flush()
        return analysis

    # Reviews -----------------------------------------------------------------------

    def event_exists(self, attempt_id: uuid.UUID, event_id: uuid.UUID) -> bool:
        events = monitoring_events.c
        query = select(events.event_id).where(
            events.attempt_id == attempt_id, events.event_id == event_id
        )
        return self._session.scalar(query.limit(1)) is not None

    def review_event(
        self,
        attempt_id: uuid.UUID,
        event_id: uuid.UUID,
        decision: str,
        note: str,
        reviewer_id: uuid.UUID,
        now: datetime,
    ) -> None:
        values = {
            "attempt_id": attempt_id,
            "event_id": event_id,
            "decision": decision,
            "note": note,
            "reviewer_id": reviewer_id,
            "reviewed_at": now,
        }
        self._session.execute(
            insert(EventReview)
            .values(values)
            .on_conflict_do_update(
                constraint="uq_event_reviews_event",
                set_={k: values[k] for k in ("decision", "note", "reviewer_id", "reviewed_at")},
            )
        )

    def confirmed_count(self, attempt_id: uuid.UUID) -> int:
        return int(
            self._session.scalar(
                select(func.count()).where(
                    EventReview.attempt_id == attempt_id, EventReview.decision == "CONFIRMED"
                )
            )
            or 0
        )

    def dismissed(self, attempt_id: uuid.UUID) -> set[uuid.UUID]:
        return set(
            self._session.scalars(
                select(EventReview.event_id).where(
                    EventReview.attempt_id == attempt_id, EventReview.decision == "DISMISSED"
                )
            )
        )

    def decisions(
        self, attempt_id: uuid.UUID, event_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """The decision (CONFIRMED or DISMISSED) on each of these events reviewed."""
        if not event_ids:
            return {}
        rows = self._session.execute(
            select(EventReview.event_id, EventReview.decision).where(
                EventReview.attempt_id == attempt_id, EventReview.event_id.in_(list(event_ids))
            )
        )
        return {event_id: decision for event_id, decision in rows}

    def review_attempt(self, review: AttemptReview) -> None:
        self._session.add(review)
        self._session.flush()

    def reviews(
        self, attempt_id: uuid.UUID
    ) -> list[tuple[EventReview | AttemptReview, str | None]]:
        """Event and attempt reviews with the reviewer's name, newest first."""
        events = self._session.execute(_EVENT_REVIEWS, {"attempt_id": attempt_id}).all()
        attempts = self._session.execute(_ATTEMPT_REVIEWS, {"attempt_id": attempt_id}).all()
        rows = [(row[0], row[1]) for row in [*events, *attempts]]
        return sorted(rows, key=lambda r: r[0].reviewed_at, reverse=True)
