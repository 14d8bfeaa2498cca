"""The administrators' oversight reads: attempts across every exam, and the figures
GetSystemStats serves (counted here, kept in system_stats_snapshots and
event_day_counts; migration 0011)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from veritas_grpc.db.models import (
    EventDayCount,
    Exam,
    ExamAttempt,
    SystemStatsSnapshot,
    User,
    monitoring_events,
)
from veritas_grpc.db.models.joined import ListedAttempt
from veritas_grpc.domain.oversight import AttemptSearch
from veritas_grpc.repositories.attempts import listed_attempts, practice_attempt_ids
from veritas_grpc.repositories.events import count_without_practice

# Serialises snapshot refreshes across server processes (partitions use 7254002).
_REFRESH_LOCK_KEY = 7254011


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _conditions(search: AttemptSearch) -> list[ColumnElement[bool]]:
    a = ExamAttempt
    conditions: list[ColumnElement[bool]] = []
    if search.student_id is not None:
        conditions.append(a.student_id == search.student_id)
    if search.exam_id is not None:
        conditions.append(a.exam_id == search.exam_id)
    if search.status is not None:
        conditions.append(a.status == search.status.value)
    if search.flagged is not None:
        # The bare column (not `IS true`): the partial index's predicate is `flagged`.
        conditions.append(a.flagged if search.flagged else ~a.flagged)
    if search.start_time is not None:
        conditions.append(a.started_at >= search.start_time)
    if search.end_time is not None:
        conditions.append(a.started_at < search.end_time)
    return conditions


class OversightRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # Attempts ------------------------------------------------------------------------

    def search_attempts(
        self, search: AttemptSearch, after: tuple[datetime, Any] | None, limit: int
    ) -> list[ListedAttempt]:
        """Newest first by (started_at, id), after the keyset position: each filter's
        index ends in (started_at, id), so a page reads about limit rows."""
        a = ExamAttempt
        query = listed_attempts().where(*_conditions(search))
        if after is not None:
            query = query.where(tuple_(a.started_at, a.id) < tuple_(*after))
        query = query.order_by(a.started_at.desc(), a.id.desc()).limit(limit)
        return list(self._session.execute(query))

    # Figures -------------------------------------------------------------------------

    def users_by_role(self) -> list[tuple[str, bool, int]]:
        query = select(User.role, User.is_active, func.count()).group_by(User.role, User.is_active)
        return [(r, bool(a), int(n)) for r, a, n in self._session.execute(query)]

    def exams_by_status(self) -> list[tuple[str, int]]:
        query = select(Exam.status, func.count()).group_by(Exam.status)
        return [(s, int(n)) for s, n in self._session.execute(query)]

    def attempts_by_status(self) -> list[tuple[str, int]]:
        query = (
            select(ExamAttempt.status, func.count())
            .where(~ExamAttempt.is_practice)
            .group_by(ExamAttempt.status)
        )
        return [(s, int(n)) for s, n in self._session.execute(query)]

    def events_received_since(self, since: datetime, max_age: timedelta) -> int:
        """Events stored at or after `since`. None older than max_age is ever accepted,
        so only the partitions from since - max_age on are read."""
        c = monitoring_events.c
        conditions = [c.received_at >= since, c.occurred_at >= since - max_age]
        return int(self._session.scalar(select(count_without_practice(conditions, since))) or 0)

    def events_on(self, day: date) -> int:
        """Events that occurred on one UTC day: one partition, counted."""
        c = monitoring_events.c
        start = _start(day)
        conditions = [c.occurred_at >= start, c.occurred_at < _start(day + timedelta(days=1))]
        return int(self._session.scalar(select(count_without_practice(conditions, start))) or 0)

    def events_per_day(self, first: date, last: date) -> dict[date, int]:
        """Events per UTC day from first to last (days without events left out), less
        those of practice attempts."""
        c = monitoring_events.c
        day = func.date(func.timezone("UTC", c.occurred_at))
        start = _start(first)
        in_days = [c.occurred_at >= start, c.occurred_at < _start(last + timedelta(days=1))]
        counted = select(day, func.count()).where(*in_days).group_by(day)
        per_day = {d: int(n) for d, n in self._session.execute(counted)}
        practice = counted.where(c.attempt_id.in_(practice_attempt_ids(start)))
        for d, n in self._session.execute(practice):
            per_day[d] -= int(n)
        return {d: n for d, n in per_day.items() if n}

    def day_counts(self) -> dict[date, tuple[int, datetime]]:
        rows = self._session.execute(select(EventDayCount))
        return {r.day: (r.event_count, r.counted_at) for r in rows.scalars()}

    def keep_day_count(self, day: date, count: int, now: datetime) -> None:
        statement = insert(EventDayCount).values(day=day, event_count=count, counted_at=now)
        self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["day"],
                set_={"event_count": count, "counted_at": now},
            )
        )

    def forget_day_counts_before(self, day: date) -> None:
        self._session.execute(delete(EventDayCount).where(EventDayCount.day < day))

    def snapshot(self) -> tuple[datetime, dict[str, Any]] | None:
        row = self._session.get(SystemStatsSnapshot, 1)
        return None if row is None else (row.computed_at, row.figures)

    def keep_snapshot(self, computed_at: datetime, figures: dict[str, Any]) -> None:
        statement = insert(SystemStatsSnapshot).values(
            id=1, computed_at=computed_at, figures=figures
        )
        self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["id"],
                set_={"computed_at": computed_at, "figures": figures},
            )
        )

    def try_refresh_lock(self) -> bool:
        """Whether this transaction is the one refreshing the figures (until it ends)."""
        return bool(
            self._session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _REFRESH_LOCK_KEY}
            )
        )
