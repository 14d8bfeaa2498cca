"""Teachers' use cases on exams: create, edit, publish, archive, list, share."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from veritas_grpc.db.models import Exam
from veritas_grpc.db.models.joined import AttemptInContext, VisibleExam
from veritas_grpc.domain.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Validator,
)
from veritas_grpc.domain.exams import (
    AccessLevel,
    BehaviorRule,
    ExamStatus,
    behavior_rules_locked,
    rules_in,
    to_cents,
)
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.services import auditing
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from veritas_grpc.services.views.exams import ExamView, GrantView, exam_view, grant_view

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")  # \Z: $ would take a final newline
SEVERITIES = ("INFO", "WARNING", "CRITICAL")
ATTEMPT_NOT_FOUND = "attempt not found"
MAX_RULES = 100
SETTABLE = (
    "title",
    "subject",
    "description",
    "max_points",
    "pass_points",
    "duration_minutes",
    "open_time",
    "close_time",
    "max_attempts",
    "behavior_rules",
    "practice",
    "required_practice_exam_id",
)
REQUIRED_PRACTICE = "exam.required_practice_exam_id"
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ExamDraft:
    """The settable fields of an exam, as a request carries them."""

    title: str = ""
    subject: str = ""
    description: str = ""
    max_points: float = 0.0
    pass_points: float = 0.0
    duration_minutes: int = 0
    open_time: datetime | None = None
    close_time: datetime | None = None
    max_attempts: int = 0
    behavior_rules: list[BehaviorRule] = field(default_factory=list)
    practice: bool = False
    # A UUID as the request spells it; empty: no practice required.
    required_practice_exam_id: str = ""


def behavior_rules(exam: Exam) -> list[BehaviorRule]:
    return rules_in(exam.settings)


def _validate(draft: ExamDraft) -> None:
    """Field violations name the request's field: the draft is CreateExamRequest.exam or
    UpdateExamRequest.exam."""
    check = Validator()
    check.check(0 < len(draft.title.strip()) <= 200, "exam.title", "must have 1 to 200 characters")
    check.check(len(draft.subject) <= 100, "exam.subject", "must have at most 100 characters")
    check.check(
        len(draft.description) <= 5000, "exam.description", "must have at most 5000 characters"
    )
    check.check(
        0 < draft.max_points <= 100_000,
        "exam.max_points",
        "must be greater than 0, at most 100000",
    )
    check.check(
        0 <= draft.pass_points <= draft.max_points,
        "exam.pass_points",
        "must be between 0 and max_points",
    )
    check.check(1 <= draft.duration_minutes <= 1440, "exam.duration_minutes", "must be 1 to 1440")
    check.check(1 <= draft.max_attempts <= 100, "exam.max_attempts", "must be 1 to 100")
    if draft.open_time and draft.close_time:
        check.check(
            draft.close_time > draft.open_time, "exam.close_time", "must be after open_time"
        )
    check.check(len(draft.behavior_rules) <= MAX_RULES, "exam.behavior_rules", "at most 100 rules")
    seen: set[str] = set()
    for index, rule in enumerate(draft.behavior_rules):
        where = f"exam.behavior_rules[{index}]"
        check.check(
            bool(EVENT_TYPE.match(rule.event_type)),
            f"{where}.event_type",
            "must be lower_snake_case, 1 to 64 characters",
        )
        check.check(rule.event_type not in seen, f"{where}.event_type", "appears twice")
        check.check(0 <= rule.weight <= 10, f"{where}.weight", "must be between 0 and 10")
        seen.add(rule.event_type)
    check.raise_if_any()


def _apply(exam: Exam, draft: ExamDraft, fields: set[str]) -> None:
    if "title" in fields:
        exam.title = draft.title.strip()
    if "subject" in fields:
        exam.subject = draft.subject.strip()
    if "description" in fields:
        exam.description = draft.description
    if "max_points" in fields:
        exam.max_score = to_cents(draft.max_points)
    if "pass_points" in fields:
        exam.pass_score = to_cents(draft.pass_points)
    if "duration_minutes" in fields:
        exam.duration_minutes = draft.duration_minutes
    if "open_time" in fields:
        exam.opens_at = draft.open_time
    if "close_time" in fields:
        exam.closes_at = draft.close_time
    if "max_attempts" in fields:
        exam.max_attempts = draft.max_attempts
    if "behavior_rules" in fields:
        exam.settings = {"behavior_rules": [rule.as_json() for rule in draft.behavior_rules]}
    if "practice" in fields:
        exam.is_practice = draft.practice


def _as_draft(exam: Exam) -> ExamDraft:
    return ExamDraft(
        title=exam.title,
        subject=exam.subject,
        description=exam.description,
        max_points=float(exam.max_score),
        pass_points=float(exam.pass_score),
        duration_minutes=exam.duration_minutes,
        open_time=exam.opens_at,
        close_time=exam.closes_at,
        max_attempts=exam.max_attempts,
        behavior_rules=behavior_rules(exam),
        practice=exam.is_practice,
        required_practice_exam_id=str(exam.required_practice_exam_id or ""),
    )


def _required_practice(uow: UnitOfWork, actor: Principal, draft: ExamDraft) -> uuid.UUID | None:
    """The practice exam the draft requires, or None. It must be a published practice
    exam the actor can see (one they cannot is NOT_FOUND, as everywhere), and a
    practice exam requires none."""
    if not draft.required_practice_exam_id:
        return None
    practice_id = parse_id(draft.required_practice_exam_id, REQUIRED_PRACTICE)
    if draft.practice:
        raise InvalidArgument.of(REQUIRED_PRACTICE, "a practice exam cannot require one")
    visible = uow.exams.get_visible(actor, practice_id)
    if visible is None:
        raise NotFound("required practice exam not found")
    if not visible.exam.is_practice or visible.exam.status != ExamStatus.PUBLISHED:
        # A draft or archived one would block the students for ever.
        raise InvalidArgument.of(REQUIRED_PRACTICE, "must be a published practice exam")
    return practice_id


def _refuse_practice_change(exam: Exam, draft: ExamDraft, fields: set[str]) -> None:
    """Exam.practice is IMMUTABLE (AIP-203): naming it with its current value is no
    change, any other value is refused (its attempts were counted, or not, by it)."""
    if "practice" in fields and draft.practice != exam.is_practice:
        raise InvalidArgument.of("exam.practice", "is immutable: set by CreateExam only")


def require_exam(
    uow: UnitOfWork, actor: Principal, exam_id: uuid.UUID, level: AccessLevel, lock: bool = False
) -> VisibleExam:
    """The exam if the actor has `level` on it. An exam they may not see is NOT_FOUND,
    one they may see but not manage is PERMISSION_DENIED."""
    visible = uow.exams.get_visible(actor, exam_id, for_update=lock)
    if visible is None:
        raise NotFound("exam not found")
    return _with_level(visible, level)


def require_attempt(
    uow: UnitOfWork, actor: Principal, found: AttemptInContext | None, level: AccessLevel
) -> AttemptInContext:
    """The attempt if the actor has `level` on its exam. An attempt that does not exist
    and one on an exam the actor may not see get the same NOT_FOUND, word for word: a
    different answer would tell a stranger which attempt ids are real."""
    visible = uow.exams.get_visible(actor, found.exam.id) if found is not None else None
    if found is None or visible is None:
        raise NotFound(ATTEMPT_NOT_FOUND)
    _with_level(visible, level)
    return found


def lock_attempt(
    uow: UnitOfWork, actor: Principal, attempt_id: uuid.UUID, level: AccessLevel | None
) -> AttemptInContext:
    """The attempt locked for update, once the actor is known to have `level` on its
    exam (None: no exam access needed, e.g. the scoring service). Checked before the
    lock, so that a stranger can neither hold up others' writes to an attempt nor time
    how busy it is."""
    if level is not None:
        require_attempt(uow, actor, uow.attempts.get_in_context(attempt_id), level)
    locked = uow.attempts.get_in_context(attempt_id, for_update=True)
    if locked is None:
        raise NotFound(ATTEMPT_NOT_FOUND)
    return locked


def _with_level(visible: VisibleExam, level: AccessLevel) -> VisibleExam:
    if visible.access < level:
        raise PermissionDenied("this needs MANAGE access to the exam")
    return visible


def attempt_count(uow: UnitOfWork, exam_id: uuid.UUID) -> int:
    """The exam's attempts so far, from its running figures."""
    stats = uow.exams.stats([exam_id]).get(exam_id)
    return stats.attempt_count if stats is not None else 0


class ExamService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def create(self, actor: Principal, draft: ExamDraft, request_id: str = "") -> ExamView:
        if len(request_id) > 64:
            raise InvalidArgument.of("request_id", "must have at most 64 characters")
        _validate(draft)
        try:
            return self._create(actor, draft, request_id)
        except Conflict:
            if not request_id:
                raise
            # The same request raced itself: the unique key let one in; answer with it.
            return self._create(actor, draft, request_id)

    def _create(self, actor: Principal, draft: ExamDraft, request_id: str) -> ExamView:
        with self._uow_factory() as uow:
            if request_id:
                earlier = uow.exams.find_created(actor.user_id, request_id)
                if earlier is not None:
                    replayed = VisibleExam(earlier, AccessLevel.MANAGE)
                    return exam_view(replayed, attempt_count(uow, earlier.id))
            exam = Exam(created_by=actor.user_id, create_request_id=request_id or None, settings={})
            _apply(exam, draft, set(SETTABLE))
            exam.required_practice_exam_id = _required_practice(uow, actor, draft)
            uow.exams.add(exam)
            auditing.record(
                uow,
                "exam.create",
                "success",
                actor=actor,
                resource_type="exam",
                resource_id=exam.id,
            )
            uow.commit()
            return exam_view(VisibleExam(exam, AccessLevel.MANAGE), attempt_count=0)

    def update(
        self, actor: Principal, exam_id: str, draft: ExamDraft, fields: set[str]
    ) -> ExamView:
        """Changes the fields named (an update mask's paths; "*" for all)."""
        fields = set(SETTABLE) if fields == {"*"} else fields
        unknown = fields - set(SETTABLE)
        if unknown:
            raise InvalidArgument.of("update_mask", f"unknown paths: {', '.join(sorted(unknown))}")
        if not fields:
            raise InvalidArgument.of("update_mask", "names no field, and no field is set")
        exam_uuid = parse_id(exam_id, "exam.id")
        with self._uow_factory() as uow:
            visible = require_exam(uow, actor, exam_uuid, AccessLevel.MANAGE, lock=True)
            exam = visible.exam
            if exam.status == ExamStatus.ARCHIVED:
                raise FailedPrecondition("an archived exam cannot change")
            attempts = attempt_count(uow, exam.id)
            # Sending the rules back unchanged (a read-modify-write client) is no change.
            changes_rules = draft.behavior_rules != behavior_rules(exam)
            if "behavior_rules" in fields and changes_rules and behavior_rules_locked(attempts):
                raise FailedPrecondition("behaviour rules are fixed once an attempt has started")
            _refuse_practice_change(exam, draft, fields)
            merged = _as_draft(exam)
            merged = ExamDraft(**{**merged.__dict__, **{f: getattr(draft, f) for f in fields}})
            _validate(merged)
            _apply(exam, merged, fields)
            if "required_practice_exam_id" in fields:
                exam.required_practice_exam_id = _required_practice(uow, actor, merged)
            exam.updated_at = self._clock()
            auditing.record(
                uow,
                "exam.update",
                "success",
                actor=actor,
                resource_type="exam",
                resource_id=exam.id,
                details={"fields": sorted(fields)},
            )
            uow.commit()
            return exam_view(visible, attempts)

    def publish(self, actor: Principal, exam_id: str) -> ExamView:
        return self._move(actor, exam_id, (ExamStatus.DRAFT,), ExamStatus.PUBLISHED)

    def archive(self, actor: Principal, exam_id: str) -> ExamView:
        return self._move(
            actor, exam_id, (ExamStatus.DRAFT, ExamStatus.PUBLISHED), ExamStatus.ARCHIVED
        )

    def _move(
        self,
        actor: Principal,
        exam_id: str,
        sources: tuple[ExamStatus, ...],
        target: ExamStatus,
    ) -> ExamView:
        exam_uuid = parse_id(exam_id, "exam_id")
        with self._uow_factory() as uow:
            visible = require_exam(uow, actor, exam_uuid, AccessLevel.MANAGE, lock=True)
            exam = visible.exam
            if exam.status not in sources:
                raise FailedPrecondition(
                    f"a {exam.status.lower()} exam cannot become {target.lower()}"
                )
            now = self._clock()
            exam.status = target.value
            if target is ExamStatus.PUBLISHED:
                exam.published_at = now
            else:
                exam.archived_at = now
            auditing.record(
                uow,
                f"exam.{target.value.lower()}",
                "success",
                actor=actor,
                resource_type="exam",
                resource_id=exam.id,
            )
            attempts = attempt_count(uow, exam.id)
            uow.commit()
            return exam_view(visible, attempts)

    def list(self, actor: Principal, page_size: int, page_token: str) -> Page[ExamView]:
        request = page_request(page_size, page_token, "exams")
        after = position(request, datetime.fromisoformat, uuid.UUID)
        with self._uow_factory() as uow:
            rows = uow.exams.list_visible(actor, after, request.size + 1)
        views = [exam_view(visible, stats.attempt_count) for visible, stats in rows]
        return paginate(views, request, lambda v: (v.create_time.isoformat(), v.id))

    # Sharing ---------------------------------------------------------------------

    def grant(
        self, actor: Principal, exam_id: str, teacher_id: str, level: AccessLevel | None
    ) -> GrantView:
        exam_uuid = parse_id(exam_id, "exam_id")
        teacher_uuid = parse_id(teacher_id, "teacher_id")
        if level is None:
            raise InvalidArgument.of("access_level", "must be VIEW or MANAGE")
        with self._uow_factory() as uow:
            exam = self._require_owner(uow, actor, exam_uuid)
            teacher = uow.users.get(teacher_uuid)
            if teacher is None or teacher.role != Role.TEACHER.value:
                raise NotFound("teacher not found")
            if teacher.id == exam.created_by:
                raise FailedPrecondition("the exam's creator already has MANAGE access")
            grant = uow.exams.grant(exam.id, teacher.id, level, actor.user_id)
            self._audit_sharing(uow, actor, "exam.grant", exam.id, teacher.id, level.name)
            uow.commit()
            return grant_view(grant)

    def revoke(self, actor: Principal, exam_id: str, teacher_id: str) -> None:
        exam_uuid = parse_id(exam_id, "exam_id")
        teacher_uuid = parse_id(teacher_id, "teacher_id")
        with self._uow_factory() as uow:
            exam = self._require_owner(uow, actor, exam_uuid)
            if not uow.exams.revoke(exam.id, teacher_uuid):
                raise NotFound("this teacher has no grant on the exam")
            self._audit_sharing(uow, actor, "exam.revoke", exam.id, teacher_uuid, None)
            uow.commit()

    @staticmethod
    def _require_owner(uow: UnitOfWork, actor: Principal, exam_id: uuid.UUID) -> Exam:
        visible = require_exam(uow, actor, exam_id, AccessLevel.VIEW)
        if actor.role is not Role.ADMIN and visible.exam.created_by != actor.user_id:
            raise PermissionDenied("only the exam's creator or an admin can share it")
        return visible.exam

    @staticmethod
    def _audit_sharing(
        uow: UnitOfWork,
        actor: Principal,
        action: str,
        exam_id: uuid.UUID,
        teacher_id: uuid.UUID,
        level: str | None,
    ) -> None:
        auditing.record(
            uow,
            action,
            "success",
            actor=actor,
            resource_type="exam",
            resource_id=exam_id,
            details={"teacher_id": str(teacher_id), **({"level": level} if level else {})},
        )
