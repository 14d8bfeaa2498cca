"""Attempts: students start, submit and abandon them; graders grade them; assessments
(integrity, dropout label) land on them; overdue ones time out. Each change moves the
exam's and the student's running figures by exactly the attempt's change."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from veritas_grpc.db.models import Exam, ExamAttempt
from veritas_grpc.domain.allowances import Accommodations, extra_minutes_in
from veritas_grpc.domain.analysis_jobs import JobReason
from veritas_grpc.domain.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from veritas_grpc.domain.exams import (
    AccessLevel,
    AttemptFacts,
    AttemptStatus,
    DropoutLabel,
    ExamStatus,
    Figures,
    attempts_left,
    change,
    percentage,
    should_flag,
    to_cents,
)
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.domain.readiness import EventSpan, Readiness
from veritas_grpc.services import auditing
from veritas_grpc.services.exams import ATTEMPT_NOT_FOUND, lock_attempt
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from veritas_grpc.services.views.attempts import AttemptView, attempt_view
from veritas_grpc.services.views.exams import AvailableExamView, available_exam_view

Clock = Callable[[], datetime]
DEFAULT_EVENT_SPAN = EventSpan()


@dataclass(frozen=True)
class OwnAttempt:
    """A student's attempt, with the recommendations of its current analysis."""

    found: AttemptView
    recommendations: tuple[str, ...]
    # A practice attempt's readiness check; None for a real attempt.
    readiness: Readiness | None = None


def facts(attempt: ExamAttempt) -> AttemptFacts:
    return AttemptFacts(
        status=AttemptStatus(attempt.status),
        score=attempt.score,
        percentage=attempt.percentage,
        passed=attempt.passed,
        integrity=attempt.integrity_score,
        label=DropoutLabel(attempt.dropout_label) if attempt.dropout_label else None,
        flagged=attempt.flagged,
    )


def figures_change(attempt: ExamAttempt, before: AttemptFacts | None) -> Figures:
    """What the attempt's change moves the exam's and the student's figures by: nothing
    for a practice attempt, which counts in no figure."""
    if attempt.is_practice:
        return {}
    delta = change(before, facts(attempt))
    if before is None and attempt.attempt_number == 1:
        delta["student_count"] = 1
    return delta


def apply_change(uow: UnitOfWork, attempt: ExamAttempt, before: AttemptFacts | None) -> None:
    """Move the exam's and the student's figures by what changed on the attempt."""
    delta = figures_change(attempt, before)
    if delta:
        uow.exams.add_to_stats(attempt.exam_id, delta)
        uow.student_stats.add(attempt.student_id, delta)


def reassess(
    uow: UnitOfWork,
    attempt: ExamAttempt,
    before: AttemptFacts,
    threshold: Decimal,
    now: datetime,
) -> None:
    """After the attempt's assessment or reviews changed: its flag, then the figures.
    A practice attempt is never flagged."""
    label = DropoutLabel(attempt.dropout_label) if attempt.dropout_label else None
    flagged = not attempt.is_practice and should_flag(
        attempt.integrity_score, label, attempt.review_outcome, attempt.confirmed_events, threshold
    )
    if flagged and not attempt.flagged:
        attempt.flagged_at = now
    attempt.flagged = flagged
    apply_change(uow, attempt, before)


def _require_practice(uow: UnitOfWork, exam: Exam, student: Principal) -> None:
    """FailedPrecondition unless the student completed the exam's required practice. A
    practice exam that is not PUBLISHED (archived since) requires nothing: no student
    could take it, and its title is not theirs to read."""
    practice_id = exam.required_practice_exam_id
    if practice_id is None or uow.attempts.completed(student.user_id, practice_id):
        return
    practice = uow.exams.get(practice_id)
    if practice is None or practice.status != ExamStatus.PUBLISHED:
        return
    raise FailedPrecondition(
        f'complete the practice exam "{practice.title}" (exam_id {practice_id}) before'
        " starting this one"
    )


class AttemptService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        flag_threshold: Decimal,
        grace: timedelta,
        event_span: EventSpan = DEFAULT_EVENT_SPAN,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._flag_threshold = flag_threshold
        self._grace = grace
        self._event_span = event_span

    # Students --------------------------------------------------------------------

    def available(
        self, student: Principal, page_size: int, page_token: str
    ) -> Page[AvailableExamView]:
        request = page_request(page_size, page_token, "available-exams")
        after = position(request, str, uuid.UUID)
        with self._uow_factory() as uow:
            rows = uow.exams.list_available(student.user_id, self._clock(), after, request.size + 1)
        items = [available_exam_view(row) for row in rows]
        return paginate(items, request, lambda item: (item.title, item.exam_id))

    def start(self, student: Principal, exam_id: str) -> AttemptView:
        exam_uuid = parse_id(exam_id, "exam_id")
        now = self._clock()
        with self._uow_factory() as uow:
            # Shared lock: starts run side by side, but not beside a rules change or an
            # archive, which lock the exam exclusively.
            exam = uow.exams.get(exam_uuid, for_share=True)
            if exam is None or exam.status != ExamStatus.PUBLISHED:
                raise NotFound("exam not found")
            # Read under the exam's lock: a grant locks the exam exclusively, so it is
            # either seen here or sees this attempt (and extends it).
            allowed = Accommodations.of(uow.allowances.standing(exam.id, student.user_id))
            if not allowed.is_open(exam.opens_at, exam.closes_at, now):
                raise FailedPrecondition("the exam is not open now")
            used = uow.attempts.count_for(student.user_id, exam.id)
            if attempts_left(allowed.attempts_allowed(exam.max_attempts), used) == 0:
                raise FailedPrecondition("no attempts left at this exam")
            _require_practice(uow, exam, student)
            deadline = allowed.deadline(now, exam.duration_minutes, exam.closes_at)
            attempt = ExamAttempt(
                exam_id=exam.id,
                student_id=student.user_id,
                attempt_number=used + 1,
                status=AttemptStatus.IN_PROGRESS.value,
                started_at=now,
                deadline_at=deadline,
                extra_minutes=extra_minutes_in(now, exam.duration_minutes, deadline),
                is_practice=exam.is_practice,
                flagged=False,
            )
            try:
                uow.attempts.add(attempt)
            except Conflict:
                # Two starts raced: the unique indexes let exactly one of them in.
                raise FailedPrecondition("an attempt at this exam is already in progress") from None
            apply_change(uow, attempt, None)
            found = uow.attempts.get_in_context(attempt.id)
            uow.commit()
            assert found is not None
            return attempt_view(found)

    def submit(self, student: Principal, attempt_id: str) -> AttemptView:
        return self._finish(student, attempt_id, AttemptStatus.SUBMITTED)

    def abandon(self, student: Principal, attempt_id: str) -> AttemptView:
        return self._finish(student, attempt_id, AttemptStatus.ABANDONED)

    def _finish(self, student: Principal, attempt_id: str, status: AttemptStatus) -> AttemptView:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        with self._uow_factory() as uow:
            found = uow.attempts.get_own(student.user_id, attempt_uuid, for_update=True)
            if found is None:
                raise NotFound(ATTEMPT_NOT_FOUND)
            before = facts(found.attempt)
            now = self._clock()
            if status is AttemptStatus.SUBMITTED and now > found.attempt.deadline_at + self._grace:
                # Too late to hand in: the attempt timed out, whether or not the sweep
                # has come by yet.
                status = AttemptStatus.TIMED_OUT
            if not uow.attempts.finish(found.attempt, status, now):
                raise FailedPrecondition("the attempt is no longer in progress")
            uow.analysis_jobs.request([attempt_uuid], JobReason.ATTEMPT_ENDED, now)
            apply_change(uow, found.attempt, before)
            uow.commit()
            return attempt_view(found)

    def get_own(self, student: Principal, attempt_id: str) -> OwnAttempt:
        """The student's attempt with the recommendations of its current analysis."""
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        with self._uow_factory() as uow:
            found = uow.attempts.get_own(student.user_id, attempt_uuid)
            if found is None:
                raise NotFound(ATTEMPT_NOT_FOUND)
            analysis = uow.analyses.current(attempt_uuid)
            readiness = self._readiness(uow, found.attempt) if found.attempt.is_practice else None
        recommendations = tuple(analysis.recommendations) if analysis else ()
        return OwnAttempt(attempt_view(found), recommendations, readiness)

    def _readiness(self, uow: UnitOfWork, attempt: ExamAttempt) -> Readiness:
        """What the practice attempt's agents reported, read from the partitions its
        events can be in."""
        start, end = self._event_span.of_attempt(
            attempt.started_at, attempt.ended_at, self._clock()
        )
        return uow.events.readiness(attempt.id, start, end)

    # Graders ---------------------------------------------------------------------

    def grade(self, actor: Principal, attempt_id: str, score: float) -> AttemptView:
        attempt_uuid = parse_id(attempt_id, "attempt_id")
        with self._uow_factory() as uow:
            level = None if actor.role is Role.SERVICE else AccessLevel.MANAGE
            found = lock_attempt(uow, actor, attempt_uuid, level)
            attempt, exam = found.attempt, found.exam
            if not 0 <= score <= float(exam.max_score):
                raise InvalidArgument.of("points", f"must be between 0 and {exam.max_score}")
            if attempt.is_practice:
                raise FailedPrecondition("practice attempts are not graded")
            if not AttemptStatus(attempt.status).gradable:
                raise FailedPrecondition("only submitted or timed-out attempts can be graded")
            before = facts(attempt)
            attempt.score = to_cents(score)
            attempt.percentage = percentage(attempt.score, exam.max_score)
            attempt.passed = attempt.score >= exam.pass_score
            attempt.graded_at = self._clock()
            attempt.graded_by = actor.user_id
            apply_change(uow, attempt, before)
            auditing.record(
                uow,
                "attempt.grade",
                "success",
                actor=actor,
                resource_type="attempt",
                resource_id=attempt.id,
                details={"score": str(attempt.score), "previous": str(before.score)},
            )
            uow.commit()
            return attempt_view(found)

    # Time-outs -------------------------------------------------------------------

    def sweep_overdue(self, batch: int = 500) -> int:
        """Time out in-progress attempts past their deadline plus the grace period.
        Safe with several server processes: one sweep runs at a time."""
        now = self._clock()
        by_exam: dict[uuid.UUID, Figures] = defaultdict(dict)
        by_student: dict[uuid.UUID, Figures] = defaultdict(dict)
        with self._uow_factory() as uow:
            if not uow.attempts.try_sweep_lock():
                return 0
            overdue = uow.attempts.overdue_for_update(now, self._grace, batch)
            for attempt in overdue:
                before = facts(attempt)
                uow.attempts.finish(attempt, AttemptStatus.TIMED_OUT, now)
                for key, value in figures_change(attempt, before).items():
                    by_exam[attempt.exam_id][key] = by_exam[attempt.exam_id].get(key, 0) + value
                    by_student[attempt.student_id][key] = (
                        by_student[attempt.student_id].get(key, 0) + value
                    )
            uow.analysis_jobs.request([a.id for a in overdue], JobReason.ATTEMPT_ENDED, now)
            # Exams before students, each in id order: the order every other transaction
            # takes these locks in, so a sweep never deadlocks with a grade or an analysis.
            for exam_id in sorted(by_exam):
                uow.exams.add_to_stats(exam_id, by_exam[exam_id])
            for student_id in sorted(by_student):
                uow.student_stats.add(student_id, by_student[student_id])
            uow.commit()
        return len(overdue)
