"""The administrators' oversight: attempts across every exam, and the system's figures.

GetSystemStats serves a snapshot of the figures that the server's maintenance loop
refreshes every `refresh` (VERITAS_SYSTEM_STATS_REFRESH_SECONDS): counting 1,000,000
attempts and a day of events on every call costs far more than the 100 ms a read may
take (docs/BENCH_ADMIN.md). The per-day event counts of days no event can arrive in any
more (the day ended more than the event window's max age ago) are counted once and kept,
then recounted in turn, one day per refresh once its count is an hour old, so that
events removed later (an erasure) leave the figures within about an hour. A refresh of
0 computes everything on each call, from the events themselves (tests, tiny systems).

Both reads are audited: who looked at what is part of the trail.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from veritas_grpc.domain.errors import Validator
from veritas_grpc.domain.identity import Principal
from veritas_grpc.domain.oversight import AttemptSearch, SystemFigures
from veritas_grpc.services import auditing
from veritas_grpc.services.analysis_queue import queue_summary
from veritas_grpc.services.auditing import audited_read
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from veritas_grpc.services.views.analysis_jobs import QueueSummary
from veritas_grpc.services.views.attempts import AttemptView, listed_view

DAYS = 30
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
DEFAULT_SEARCH_PAGE = 50
MAX_SEARCH_PAGE = 500
# A kept day count older than this is recounted (one day per refresh).
RECOUNT_AFTER = timedelta(hours=1)
# Past the event window's max age, a margin for the writers' batches in flight.
CLOSE_MARGIN = timedelta(minutes=5)
# A snapshot older than this many refresh intervals is not served: the refresher has
# stalled (no server process running its maintenance), so the read computes anew.
STALE_REFRESHES = 3


@dataclass(frozen=True)
class SystemStats:
    figures: SystemFigures
    analysis_queue: QueueSummary


class Oversight:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Callable[[], datetime],
        refresh: timedelta,
        event_max_age: timedelta,
        reads: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._refresh = refresh
        self._max_age = event_max_age
        # Where SearchAttempts reads (the replica: READ_SOURCE_REPLICA); GetSystemStats
        # reads the primary, where its snapshot is kept.
        self._reads = reads or uow_factory

    # SearchAttempts ------------------------------------------------------------------

    def search_attempts(
        self, actor: Principal, search: AttemptSearch, page_size: int, page_token: str
    ) -> Page[AttemptView]:
        check = Validator()
        if search.start_time and search.end_time:
            check.check(search.start_time < search.end_time, "end_time", "must be after start_time")
        check.raise_if_any()
        request = page_request(
            page_size, page_token, _scope(search), DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE
        )
        after = position(request, datetime.fromisoformat, uuid.UUID)
        with audited_read(self._reads, self._uow_factory, actor) as read:
            rows = read.uow.oversight.search_attempts(search, after, request.size + 1)
            read.audit("attempt.search", details={"filters": _filters(search)})
        page = paginate(rows, request, lambda r: (r.started_at.isoformat(), r.id))
        return Page([listed_view(found) for found in page.items], page.next_token)

    # GetSystemStats ------------------------------------------------------------------

    def system_stats(self, actor: Principal) -> SystemStats:
        """The figures (from the kept snapshot) and the analysis queue (live)."""
        now = self._clock()
        with self._uow_factory() as uow:
            if not self._refresh:
                figures = self._compute(uow, now, keep_days=False)
            else:
                kept = uow.oversight.snapshot()
                if kept is not None and now - kept[0] <= STALE_REFRESHES * self._refresh:
                    figures = SystemFigures.from_json(kept[0], kept[1])
                else:
                    figures = self._compute(uow, now, keep_days=True)
                    uow.oversight.keep_snapshot(now, figures.as_json())
            auditing.record(
                uow,
                "system.stats",
                "success",
                actor=actor,
                details={"compute_time": figures.compute_time.isoformat()},
            )
            queue = queue_summary(uow, now)
            uow.commit()
        return SystemStats(figures, queue)

    def refresh(self) -> int:
        """The maintenance job: a new snapshot, unless another process made one within
        half an interval (or is making one now). Returns 1 when it refreshed."""
        if not self._refresh:
            return 0
        now = self._clock()
        with self._uow_factory() as uow:
            if not uow.oversight.try_refresh_lock():
                return 0
            kept = uow.oversight.snapshot()
            if kept is not None and now - kept[0] < self._refresh / 2:
                return 0
            figures = self._compute(uow, now, keep_days=True)
            uow.oversight.keep_snapshot(now, figures.as_json())
            uow.commit()
        return 1

    def compute(self, keep_days: bool) -> SystemFigures:
        """The figures computed now, without a snapshot (benchmarks compare the two)."""
        with self._uow_factory() as uow:
            figures = self._compute(uow, self._clock(), keep_days)
            uow.commit()
        return figures

    def _compute(self, uow: UnitOfWork, now: datetime, keep_days: bool) -> SystemFigures:
        repo = uow.oversight
        totals = uow.exams.totals()
        today = now.astimezone(UTC).date()
        days = [today - timedelta(days=back) for back in range(DAYS - 1, -1, -1)]
        if keep_days:
            per_day = self._kept_day_counts(uow, now, days)
        else:
            counted = repo.events_per_day(days[0], today)
            per_day = [(day, counted.get(day, 0)) for day in days]
        return SystemFigures(
            compute_time=now,
            users=tuple(sorted(repo.users_by_role())),
            exams=tuple(sorted(repo.exams_by_status())),
            attempts=tuple(sorted(repo.attempts_by_status())),
            graded_count=totals["graded_count"],
            passed_count=totals["passed_count"],
            integrity_good_count=totals["integrity_good_count"],
            integrity_watch_count=totals["integrity_watch_count"],
            integrity_at_risk_count=totals["integrity_at_risk_count"],
            integrity_unassessed_count=totals["attempt_count"] - totals["integrity_count"],
            flagged_attempt_count=totals["flagged_count"],
            last_hour_event_count=repo.events_received_since(
                now - timedelta(hours=1), self._max_age
            ),
            last_day_event_count=repo.events_received_since(now - timedelta(days=1), self._max_age),
            daily_event_counts=tuple(per_day),
        )

    def _kept_day_counts(
        self, uow: UnitOfWork, now: datetime, days: list[date]
    ) -> list[tuple[date, int]]:
        """Each day's count: kept ones for closed days, the others counted now (and kept
        once closed); the stalest kept count, if over an hour old, recounted."""
        repo = uow.oversight
        existing = set(uow.partitions.existing_days())
        kept = repo.day_counts()

        def closed(day: date) -> bool:
            ends = datetime.combine(day + timedelta(days=1), time(), UTC)
            return now >= ends + self._max_age + CLOSE_MARGIN

        stale = [d for d in days if d in kept and closed(d) and now - kept[d][1] > RECOUNT_AFTER]
        recount = min(stale, key=lambda d: kept[d][1]) if stale else None
        counts = []
        for day in days:
            if day not in existing:
                count = 0
            elif closed(day) and day in kept and day != recount:
                count = kept[day][0]
            else:
                count = repo.events_on(day)
                if closed(day):
                    repo.keep_day_count(day, count, now)
            counts.append((day, count))
        repo.forget_day_counts_before(days[0])
        return counts


def _filters(search: AttemptSearch) -> dict[str, str]:
    values = {
        "student_id": search.student_id,
        "exam_id": search.exam_id,
        "status": search.status.value if search.status else None,
        "flagged": None if search.flagged is None else str(search.flagged).lower(),
        "start_time": search.start_time.isoformat() if search.start_time else None,
        "end_time": search.end_time.isoformat() if search.end_time else None,
    }
    return {name: str(value) for name, value in values.items() if value is not None}


def _scope(search: AttemptSearch) -> str:
    """A page token belongs to one search: the same filters, or it is refused."""
    encoded = json.dumps(_filters(search), sort_keys=True).encode()
    return "attempts:" + hashlib.sha256(encoded).hexdigest()[:32]
