"""Teachers' use cases on allowances: grant, list, revoke (TeacherService).

A grant locks the exam exclusively (StartAttempt holds it shared), so a grant either
is seen by a concurrent start or sees the attempt that start made and extends it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from veritas_grpc.db.models import Exam, ExamAllowance, ExamAttempt, User
from veritas_grpc.domain.allowances import (
    Accommodations,
    AllowanceKind,
    EventExemption,
    ExamLimits,
    Terms,
    check_grant,
    exemption,
    extra_minutes_in,
)
from veritas_grpc.domain.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from veritas_grpc.domain.exams import AccessLevel, ExamStatus
from veritas_grpc.domain.identity import Principal
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.services import auditing
from veritas_grpc.services.exams import require_exam
from veritas_grpc.services.exemption_rescore import rescore_ended
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from veritas_grpc.services.views.allowances import AllowanceView, GrantResult, allowance_view
from veritas_grpc.services.views.attempts import AttemptView, attempt_record

ALLOWANCE_NOT_FOUND = "allowance not found"
STUDENT_NOT_FOUND = "student not found"
STANDING_EXISTS = (
    "the student already has a standing allowance of this kind at this exam; revoke it first"
)
MAX_REQUEST_ID = 64
DEFAULT_PAGE = 50
MAX_PAGE = 200
# Kinds that bear on a running attempt's deadline.
DEADLINE_KINDS = frozenset({AllowanceKind.EXTRA_TIME, AllowanceKind.PERSONAL_WINDOW})
Clock = Callable[[], datetime]


class AllowanceService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        threshold: Decimal,
        grace: timedelta,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        # SubmitAttempt's grace past the deadline (AttemptService's): an attempt past it
        # has timed out, swept or not.
        self._grace = grace
        self._threshold = threshold  # the flag threshold, for the attempts a grant re-scores

    # Grant -------------------------------------------------------------------------

    def grant(
        self,
        actor: Principal,
        exam_id: str,
        student_id: str,
        terms: Terms | None,
        note: str,
        request_id: str = "",
    ) -> GrantResult:
        """`terms` None: the request set no kind (INVALID_ARGUMENT on `allowance`)."""
        exam_uuid = parse_id(exam_id, "exam_id")
        student_uuid = parse_id(student_id, "student_id")
        if len(request_id) > MAX_REQUEST_ID:
            raise InvalidArgument.of("request_id", f"must have at most {MAX_REQUEST_ID} characters")
        try:
            return self._grant(actor, exam_uuid, student_uuid, terms, note, request_id)
        except Conflict:
            if not request_id:
                raise AlreadyExists(STANDING_EXISTS) from None
            # The same request raced itself past the replay check: answer with the one
            # that won (or ALREADY_EXISTS, if another request took the kind).
            return self._grant(actor, exam_uuid, student_uuid, terms, note, request_id)

    def _grant(
        self,
        actor: Principal,
        exam_id: uuid.UUID,
        student_id: uuid.UUID,
        terms: Terms | None,
        note: str,
        request_id: str,
    ) -> GrantResult:
        now = self._clock()
        with self._uow_factory() as uow:
            # A replay answers only to a caller who may still manage the exam, and under
            # its lock: a twin of this request may have won while this one waited.
            exam = require_exam(uow, actor, exam_id, AccessLevel.MANAGE, lock=True).exam
            replayed = _replay(uow, actor, request_id, exam.id)
            if replayed is not None:
                return replayed
            if exam.status == ExamStatus.ARCHIVED:
                raise FailedPrecondition("an archived exam takes no allowances")
            student = _student(uow, student_id)
            limits = ExamLimits(exam.duration_minutes, exam.max_attempts)
            valid = check_grant(terms, note, limits, now)
            if isinstance(valid, EventExemption):
                valid = exemption(valid.event_types)
            standing = uow.allowances.standing(exam.id, student.id)
            if any(held.kind is valid.kind for held in standing):
                raise AlreadyExists(STANDING_EXISTS)
            row = uow.allowances.add(
                ExamAllowance.granting(
                    valid,
                    exam_id=exam.id,
                    student_id=student.id,
                    note=note,
                    granted_by=actor.user_id,
                    granted_at=now,
                    grant_request_id=request_id or None,
                )
            )
            # The student was checked without a lock: an erasure may have committed since.
            # The insert's foreign-key check waited on the erasure's lock of the account,
            # so a new statement now sees it (and the rollback writes nothing).
            _student(uow, student.id)
            extended: list[ExamAttempt] = []
            if valid.kind in DEADLINE_KINDS:
                allowed = Accommodations.of([*standing, valid])
                extended = _extend_running(uow, exam, student.id, allowed, now - self._grace)
            if valid.kind is AllowanceKind.EVENT_EXEMPTION:
                rescore_ended(uow, actor, exam, student, self._threshold, now)
            auditing.record(
                uow,
                "allowance.grant",
                "success",
                actor=actor,
                resource_type="allowance",
                resource_id=row.id,
                # No note: it may describe a disability.
                details={
                    "exam_id": str(exam.id),
                    "student_id": str(student.id),
                    "kind": valid.kind.value,
                    "extended_attempt_ids": [str(a.id) for a in extended],
                },
            )
            result = GrantResult(
                allowance_view(row, student.full_name),
                tuple(_attempt_view(a, exam, student.full_name) for a in extended),
            )
            uow.commit()
            return result

    # List --------------------------------------------------------------------------

    def list(
        self, actor: Principal, exam_id: str, page_size: int, page_token: str
    ) -> Page[AllowanceView]:
        exam_uuid = parse_id(exam_id, "exam_id")
        request = page_request(
            page_size, page_token, f"allowances:{exam_uuid}", DEFAULT_PAGE, MAX_PAGE
        )
        after = position(request, str, uuid.UUID)
        with self._uow_factory() as uow:
            require_exam(uow, actor, exam_uuid, AccessLevel.VIEW)
            rows = uow.allowances.page(exam_uuid, after, request.size + 1)
            views = [allowance_view(row, name) for row, name in rows]
            auditing.record(
                uow,
                "allowance.list",
                "success",
                actor=actor,
                resource_type="exam",
                resource_id=exam_uuid,
                details={"allowance_count": min(len(views), request.size)},
            )
            uow.commit()
        return paginate(views, request, lambda view: (view.student_name, view.id))

    # Revoke ------------------------------------------------------------------------

    def revoke(self, actor: Principal, allowance_id: str) -> AllowanceView:
        """Running attempts keep the deadline they have: a student is never cut short
        mid-attempt."""
        allowance_uuid = parse_id(allowance_id, "allowance_id")
        now = self._clock()
        with self._uow_factory() as uow:
            # Access is checked before the row lock, so that a stranger can hold up
            # nobody's writes; an allowance they cannot see is as absent as none.
            found = uow.allowances.get(allowance_uuid)
            visible = uow.exams.get_visible(actor, found.exam_id) if found else None
            if visible is None:
                raise NotFound(ALLOWANCE_NOT_FOUND)
            if visible.access < AccessLevel.MANAGE:
                raise PermissionDenied("this needs MANAGE access to the exam")
            row = uow.allowances.get(allowance_uuid, for_update=True)
            if row is None:
                raise NotFound(ALLOWANCE_NOT_FOUND)
            if row.revoked_at is not None:
                raise FailedPrecondition("the allowance is already revoked")
            uow.allowances.revoke(row, actor.user_id, now)
            auditing.record(
                uow,
                "allowance.revoke",
                "success",
                actor=actor,
                resource_type="allowance",
                resource_id=row.id,
                details={
                    "exam_id": str(row.exam_id),
                    "student_id": str(row.student_id),
                    "kind": row.kind,
                },
            )
            view = _view(uow, row)
            uow.commit()
            return view


def _replay(
    uow: UnitOfWork, actor: Principal, request_id: str, exam_id: uuid.UUID
) -> GrantResult | None:
    """What the actor's earlier grant under this request id answered (AIP-155): the
    allowance as it is now, and no attempt extended by this call. Only at the exam the
    caller was just checked to manage: another exam's allowance (and note) is not theirs
    to see."""
    earlier = uow.allowances.by_request(actor.user_id, request_id) if request_id else None
    if earlier is None:
        return None
    if earlier.exam_id != exam_id:
        raise InvalidArgument.of("request_id", "was used by an earlier grant at another exam")
    return GrantResult(_view(uow, earlier), ())


def _student(uow: UnitOfWork, student_id: uuid.UUID) -> User:
    """An existing student account, not erased (a teacher's id is no student)."""
    found = uow.data_subjects.student(student_id)
    if found is None:
        raise NotFound(STUDENT_NOT_FOUND)
    return found[0]


def _view(uow: UnitOfWork, row: ExamAllowance) -> AllowanceView:
    student = uow.users.get(row.student_id)
    return allowance_view(row, student.full_name if student is not None else "")


def _extend_running(
    uow: UnitOfWork,
    exam: Exam,
    student_id: uuid.UUID,
    allowed: Accommodations,
    expired_before: datetime,
) -> list[ExamAttempt]:
    """Move the deadline of the student's running attempts to what the allowances give
    now, never earlier than it was; the attempts whose deadline moved. An attempt whose
    deadline is before `expired_before` has timed out (the sweep just has not come by):
    a grant does not revive it."""
    moved = []
    for attempt in uow.allowances.running_attempts(exam.id, student_id):
        if attempt.deadline_at < expired_before:
            continue
        deadline = allowed.deadline(attempt.started_at, exam.duration_minutes, exam.closes_at)
        if deadline <= attempt.deadline_at:
            continue
        attempt.deadline_at = deadline
        attempt.extra_minutes = extra_minutes_in(
            attempt.started_at, exam.duration_minutes, deadline
        )
        moved.append(attempt)
    return moved  # written at the commit


def _attempt_view(attempt: ExamAttempt, exam: Exam, student_name: str) -> AttemptView:
    return AttemptView(attempt_record(attempt), exam.title, exam.max_score, student_name)
