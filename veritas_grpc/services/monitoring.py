"""Monitoring use cases: who may write events to which attempt, storing a batch with its
counters and alerts in one transaction, reading events, and partition upkeep."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from veritas_grpc.db.models import Exam, ExamAttempt
from veritas_grpc.domain.analysis_jobs import JobReason
from veritas_grpc.domain.errors import InvalidArgument
from veritas_grpc.domain.event_store import EventsAlreadyStored, EventTally, StoredEvent
from veritas_grpc.domain.events import (
    EVENT_TYPE,
    SEVERITY_ORDER,
    AlertTarget,
    AttemptTarget,
    EventKey,
    EventRow,
    refusal,
)
from veritas_grpc.domain.exams import AccessLevel, AttemptStatus
from veritas_grpc.domain.identity import Principal
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.domain.partitions import PartitionUpkeep
from veritas_grpc.services import auditing, partition_upkeep
from veritas_grpc.services.auditing import audited_read
from veritas_grpc.services.exams import behavior_rules, require_attempt, require_exam
from veritas_grpc.services.exemptions import exempt_types
from veritas_grpc.services.paging import Page, PageRequest, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from veritas_grpc.services.views.allowances import AllowanceView, allowance_view
from veritas_grpc.services.views.analyses import (
    AnalysisView,
    ReviewView,
    analysis_view,
    review_views,
)
from veritas_grpc.services.views.attempts import AttemptView, attempt_view

Clock = Callable[[], datetime]
MAX_EVENT_PAGE = 500
DEFAULT_EVENT_PAGE = 100


@dataclass(frozen=True)
class EventFilter:
    min_severity: str | None = None
    anomalies_only: bool = False
    event_types: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None

    def scope(self, attempt_id: uuid.UUID) -> str:
        """Page tokens are only valid for the same attempt and the same filters."""
        parts = [
            str(attempt_id),
            self.min_severity or "",
            str(self.anomalies_only),
            ",".join(self.event_types),
            self.start.isoformat() if self.start else "",
            self.end.isoformat() if self.end else "",
        ]
        return "events:" + "|".join(parts)


@dataclass(frozen=True)
class EventList:
    """A page of an attempt's events, and the event types exempt for the attempt (the
    events of those types are marked so)."""

    page: Page[StoredEvent]
    exempt_types: frozenset[str]


@dataclass(frozen=True)
class AttemptMonitoring:
    attempt: AttemptView
    summary: list[EventTally]
    timeline: Page[StoredEvent]
    analysis: AnalysisView | None
    reviews: tuple[ReviewView, ...]  # newest first
    allowances: tuple[AllowanceView, ...]  # the student's standing ones at the exam
    exempt_types: frozenset[str]  # what the attempt's exemptions exempt (exemptions.py)


def _target(attempt: ExamAttempt, exam: Exam, exempt: frozenset[str]) -> AttemptTarget:
    severities = {
        rule.event_type: rule.default_severity
        for rule in behavior_rules(exam)
        if rule.default_severity
    }
    return AttemptTarget(
        attempt.id,
        exam.id,
        attempt.student_id,
        AttemptStatus(attempt.status),
        attempt.ended_at,
        severities,
        exempt,
    )


class MonitoringService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        late_grace: timedelta,
        reads: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._late_grace = late_grace
        # Where the monitoring view and ListEvents read (the replica, when their
        # contract says READ_SOURCE_REPLICA); their audit rows go to the primary.
        self._reads = reads or uow_factory

    # Ingestion ---------------------------------------------------------------------

    def targets(self, attempt_ids: Sequence[str]) -> dict[str, AttemptTarget]:
        """The attempts events are sent to, by their canonical id strings, with the
        event types their students' allowances exempt (one query for them all)."""
        ids = [uuid.UUID(a) for a in attempt_ids]
        with self._uow_factory() as uow:
            found = uow.attempts.with_exams(ids)
            exempt = uow.allowances.exempt_types_of_attempts(ids) if found else {}
        return {
            str(attempt.id): _target(attempt, exam, exempt.get(attempt.id, frozenset()))
            for attempt, exam in found
        }

    def refusal(
        self, sender: Principal, target: AttemptTarget | None, now: datetime
    ) -> tuple[str, str] | None:
        """Why the sender may not write to the attempt now, as (kind, reason), or None
        (the rule is domain.events.refusal, with this server's grace for late events)."""
        return refusal(sender, target, now, self._late_grace)

    def store(self, rows: Sequence[EventRow], targets: dict[str, AlertTarget]) -> set[EventKey]:
        """Store a batch in one transaction: the new rows, the attempts' counters, and the
        alerts' notifications (sent on commit). Returns the keys stored now. New events
        go in with one COPY; when that meets stored ones (a resend), it is rolled back
        and a second transaction skips them. ValuesRefused: the database refused a value
        of the batch, and nothing of it was stored."""
        try:
            return self._store(rows, targets, resend=False)
        except EventsAlreadyStored:
            return self._store(rows, targets, resend=True)

    def _store(
        self, rows: Sequence[EventRow], targets: dict[str, AlertTarget], resend: bool
    ) -> set[EventKey]:
        with self._uow_factory() as uow:
            if resend:
                stored = uow.events.insert_skipping_stored(rows)
            else:
                stored = uow.events.copy_new(rows)
            uow.events.add_to_counters(stored)
            # Events stored after their attempt ended are new evidence for its analysis.
            # Each distinct id parsed once: a UUID costs ~2 µs, a batch has a few attempts.
            attempts = sorted(uuid.UUID(a) for a in {row.attempt_id for row in stored})
            uow.analysis_jobs.request_if_ended(attempts, JobReason.LATE_EVENTS, self._clock())
            # An exempt event is noise for the proctor: no alert (it is still stored).
            alerts = [
                row
                for row in stored
                if row.is_alert and row.event_type not in targets[row.attempt_id].exempt_types
            ]
            uow.events.notify_alerts(alerts, targets)
            uow.commit()
        return {row.key for row in stored}

    # Reading -----------------------------------------------------------------------

    def list_events(
        self,
        viewer: Principal,
        attempt_id: str,
        filters: EventFilter,
        page_size: int,
        page_token: str,
    ) -> EventList:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        _check_filters(filters)
        request = page_request(
            page_size, page_token, filters.scope(attempt_uuid), DEFAULT_EVENT_PAGE, MAX_EVENT_PAGE
        )
        with audited_read(self._reads, self._uow_factory, viewer) as read:
            uow = read.uow
            uow.snapshot()  # the events' span and the events themselves of one moment
            found = uow.attempts.get_in_context(attempt_uuid)
            require_attempt(uow, viewer, found, AccessLevel.VIEW)
            page = _page(uow, attempt_uuid, filters, request)
            exempt = exempt_types(uow, attempt_uuid)
            read.audit("attempt.read_events", "attempt", attempt_uuid)
        return EventList(page, exempt)

    def attempt_monitoring(
        self, viewer: Principal, attempt_id: str, timeline_page_size: int
    ) -> AttemptMonitoring:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        filters = EventFilter()
        request = page_request(
            timeline_page_size,
            "",
            filters.scope(attempt_uuid),
            DEFAULT_EVENT_PAGE,
            MAX_EVENT_PAGE,
            field="timeline_page_size",
        )
        with audited_read(self._reads, self._uow_factory, viewer) as read:
            uow = read.uow
            uow.snapshot()  # the summary, the span and the timeline of one moment
            found = require_attempt(
                uow, viewer, uow.attempts.get_in_context(attempt_uuid), AccessLevel.VIEW
            )
            summary = uow.events.summary(attempt_uuid)
            timeline = _page(uow, attempt_uuid, filters, request)
            analysis = uow.analyses.current(attempt_uuid)
            reviews = uow.analyses.reviews(attempt_uuid)
            attempt = found.attempt
            standing = uow.allowances.standing_rows(attempt.exam_id, attempt.student_id)
            exempt = exempt_types(uow, attempt.id)  # the attempt's, not only the standing
            read.audit("attempt.read_monitoring", "attempt", attempt_uuid)
        return AttemptMonitoring(
            attempt_view(found),
            summary,
            timeline,
            analysis_view(analysis) if analysis is not None else None,
            review_views(reviews),
            tuple(allowance_view(row, found.student_name) for row in standing),
            exempt,
        )

    def watch_target(self, viewer: Principal, exam_id: str, first: bool = True) -> uuid.UUID:
        """The exam a watcher may watch; checked again periodically while it watches
        (first=False), the watch itself audited once."""
        exam_uuid = parse_id(exam_id, "exam_id")
        with self._uow_factory() as uow:
            require_exam(uow, viewer, exam_uuid, AccessLevel.VIEW)
            if first:
                auditing.record(
                    uow,
                    "exam.watch",
                    "success",
                    actor=viewer,
                    resource_type="exam",
                    resource_id=exam_uuid,
                )
                uow.commit()
        return exam_uuid

    # Partitions --------------------------------------------------------------------

    def ensure_partitions(self, days_ahead: int = 7, days_behind: int = 1) -> PartitionUpkeep:
        """Create the daily partitions from `days_behind` days ago to `days_ahead` ahead;
        those busy (see partition_upkeep) are left for the next run."""
        today = self._clock().date()
        wanted = [today + timedelta(days=d) for d in range(-days_behind, days_ahead + 1)]
        return partition_upkeep.create_missing(self._uow_factory, wanted)

    def purge_partitions(self, older_than_days: int) -> PartitionUpkeep:
        """Drop the partitions whose every event is older than `older_than_days` days;
        those busy (see partition_upkeep) are left for the next run."""
        if older_than_days < 1:
            raise InvalidArgument.of("older_than_days", "must be at least 1")
        cutoff = self._clock().date() - timedelta(days=older_than_days)
        return partition_upkeep.drop_older(self._uow_factory, cutoff)


def _page(
    uow: UnitOfWork, attempt_id: uuid.UUID, filters: EventFilter, request: PageRequest
) -> Page[StoredEvent]:
    after = position(request, datetime.fromisoformat, uuid.UUID)
    rows = uow.events.page(
        attempt_id,
        after,
        request.size + 1,
        filters.min_severity,
        filters.anomalies_only,
        filters.event_types,
        filters.start,
        filters.end,
    )
    return paginate(rows, request, lambda r: (r.occurred_at.isoformat(), r.event_id))


def _check_filters(filters: EventFilter) -> None:
    if filters.min_severity and filters.min_severity not in SEVERITY_ORDER:
        raise InvalidArgument.of("min_severity", "is not a severity")
    for index, event_type in enumerate(filters.event_types):
        if not EVENT_TYPE.match(event_type):
            raise InvalidArgument.of(f"event_types[{index}]", "must be lower_snake_case")
    if filters.start and filters.end and filters.end <= filters.start:
        raise InvalidArgument.of("end_time", "must be after start_time")
