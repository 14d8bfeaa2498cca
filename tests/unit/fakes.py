"""An in-memory unit of work for unit tests of the real use cases, without PostgreSQL.

It implements services.unit_of_work as far as the tested use cases go: a repository
method the fakes do not define raises NotImplementedError, so a use case that starts
calling one fails loudly instead of reading None.

Transactions: each unit of work works on a copy of the committed stores, and commit()
keeps the copy. Rows added and values changed through repository calls (throttles,
audit rows, grants, running figures) are rolled back unless committed; model objects a
use case changes in place (an attempt's score) stay changed, as the fake has no
identity map to undo them.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from veritas_grpc.db.models import (
    AttemptReview,
    AuthSession,
    BehaviorAnalysis,
    Exam,
    ExamAttempt,
    ExamStats,
    RefreshToken,
    StudentProfile,
    TeacherExamPermission,
    User,
)
from veritas_grpc.db.models.joined import AttemptInContext, VisibleExam
from veritas_grpc.domain.allowances import Terms
from veritas_grpc.domain.analysis_jobs import JobReason
from veritas_grpc.domain.audit import AuditEntry
from veritas_grpc.domain.errors import Conflict
from veritas_grpc.domain.exams import AccessLevel, AttemptStatus, ExamStatus, Figures
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.domain.throttles import Bucket, ThrottleCount
from veritas_grpc.repositories.student_stats import PROFILE_SUMS
from veritas_grpc.services import unit_of_work as port

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FIGURE_COLUMNS = [c.name for c in ExamStats.__table__.columns if c.name != "exam_id"]


def only_what_tests_need(cls: type) -> type:
    """Make the protocol methods the fake leaves out raise NotImplementedError."""
    for base in cls.__mro__[1:]:
        if not getattr(base, "_is_protocol", False):
            continue
        for name, member in vars(base).items():
            if callable(member) and not name.startswith("_") and name not in vars(cls):
                setattr(cls, name, _unimplemented(f"{cls.__name__}.{name}"))
    return cls


def _unimplemented(name: str) -> Any:
    def method(self: object, *args: object, **kwargs: object) -> None:
        raise NotImplementedError(f"{name} is not faked")

    return method


@dataclass
class Throttle:
    failures: int
    window_started_at: datetime
    locked_until: datetime | None = None


@dataclass
class Stores:
    """What the fake database holds. Copied per unit of work: the dicts of model objects
    shallowly (new rows vanish on rollback), the dicts of plain values deeply."""

    users: dict[uuid.UUID, User] = field(default_factory=dict)
    profiles: dict[uuid.UUID, StudentProfile] = field(default_factory=dict)
    exams: dict[uuid.UUID, Exam] = field(default_factory=dict)
    attempts: dict[uuid.UUID, ExamAttempt] = field(default_factory=dict)
    sessions: dict[uuid.UUID, AuthSession] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    analyses: list[BehaviorAnalysis] = field(default_factory=list)
    attempt_reviews: list[AttemptReview] = field(default_factory=list)
    throttles: dict[Bucket, Throttle] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    grants: dict[tuple[uuid.UUID, uuid.UUID], str] = field(default_factory=dict)
    exam_figures: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    student_sums: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    risk_labels: dict[uuid.UUID, str | None] = field(default_factory=dict)
    lmis: dict[uuid.UUID, float] = field(default_factory=dict)
    # (attempt id, reason) of each analysis requested (the queue's rules are tested on
    # PostgreSQL: tests/integration/test_analysis_queue.py).
    analysis_requests: list[tuple[uuid.UUID, str]] = field(default_factory=list)

    def copy(self) -> Stores:
        copied = Stores()
        for name, value in vars(self).items():
            plain = name in ("throttles", "grants", "exam_figures", "student_sums")
            setattr(copied, name, copy.deepcopy(value) if plain else copy.copy(value))
        return copied


class FakeDatabase:
    """The committed state, and helpers to arrange it."""

    def __init__(self) -> None:
        self.stores = Stores()
        self.commits = 0

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    def add_user(self, role: Role, name: str, password_hash: str = "") -> User:
        user = User(
            id=uuid.uuid4(),
            email=f"{name.lower().replace(' ', '.')}@example.edu",
            password_hash=password_hash,
            full_name=name,
            role=role.value,
            is_active=True,
            created_at=EPOCH,
        )
        self.stores.users[user.id] = user
        if role is Role.STUDENT:
            self.stores.profiles[user.id] = StudentProfile(user_id=user.id, enrollment_id=name)
        return user

    def add_exam(self, creator: User, **fields: Any) -> Exam:
        values: dict[str, Any] = {
            "title": "Algorithms quiz",
            "subject": "CS101",
            "description": "",
            "max_score": Decimal("100.00"),
            "pass_score": Decimal("50.00"),
            "duration_minutes": 30,
            "max_attempts": 1,
            "status": ExamStatus.PUBLISHED.value,
            "settings": {},
            "created_at": EPOCH,
        }
        values.update(fields)
        exam = Exam(id=uuid.uuid4(), created_by=creator.id, **values)
        self.stores.exams[exam.id] = exam
        self.stores.exam_figures[exam.id] = {}
        return exam

    def grant(self, exam: Exam, teacher: User, level: AccessLevel) -> None:
        self.stores.grants[(exam.id, teacher.id)] = level.name

    def exam_figures(self, exam: Exam) -> dict[str, Any]:
        return {k: v for k, v in self.stores.exam_figures[exam.id].items() if v}

    def student_sums(self, student: User) -> dict[str, Any]:
        return {k: v for k, v in self.stores.student_sums.get(student.id, {}).items() if v}

    def audit_actions(self) -> list[str]:
        return [entry.action for entry in self.stores.audit]


def principal(user: User) -> Principal:
    far = EPOCH + timedelta(days=3650)
    return Principal(user.id, Role(user.role), f"jti-{user.id}", uuid.uuid4(), far)


def _add_to(sums: dict[str, Any], delta: Figures) -> None:
    for key, value in delta.items():
        sums[key] = sums.get(key, 0) + value


# Repositories --------------------------------------------------------------------------


class _Repository:
    def __init__(self, stores: Stores) -> None:
        self.s = stores


@only_what_tests_need
class FakeUsers(_Repository, port.UserRepository):
    def get(self, user_id: uuid.UUID) -> User | None:
        return self.s.users.get(user_id)

    def get_by_email(self, email: str) -> User | None:
        return next((u for u in self.s.users.values() if u.email == email.lower()), None)

    def email_taken(self, email: str) -> bool:
        return self._has_email(email)

    def enrollment_taken(self, enrollment_id: str) -> bool:
        return self._has_enrollment(enrollment_id)

    # The unique indexes: they decide even when a racing request checked too early.
    def _has_email(self, email: str) -> bool:
        return self.get_by_email(email) is not None

    def _has_enrollment(self, enrollment_id: str) -> bool:
        return any(p.enrollment_id == enrollment_id for p in self.s.profiles.values())

    def add(self, user: User) -> User:
        if self._has_email(user.email):
            raise Conflict("an account with this e-mail already exists")
        user.id, user.is_active, user.created_at = uuid.uuid4(), True, EPOCH
        self.s.users[user.id] = user
        return user

    def add_student_profile(self, user: User, enrollment_id: str) -> StudentProfile:
        if self._has_enrollment(enrollment_id):
            raise Conflict("this enrollment id is already registered")
        profile = self.s.profiles[user.id] = StudentProfile(
            user_id=user.id, enrollment_id=enrollment_id
        )
        return profile


@only_what_tests_need
class FakeTokens(_Repository, port.AuthTokenRepository):
    """Sign-in throttles as the SQL counts them (see AuthTokenRepository.reserve_attempt)."""

    def reserve_attempt(self, bucket: Bucket, now: datetime, window: timedelta) -> ThrottleCount:
        throttle = self.s.throttles.get(bucket)
        if throttle is None:
            throttle = self.s.throttles[bucket] = Throttle(0, now)
        lock_expired = throttle.locked_until is not None and throttle.locked_until <= now
        window_over = throttle.locked_until is None and throttle.window_started_at <= now - window
        if lock_expired or window_over:
            throttle.failures, throttle.window_started_at, throttle.locked_until = 0, now, None
        throttle.failures += 1
        return ThrottleCount(throttle.failures, throttle.window_started_at, throttle.locked_until)

    def release_attempt(self, bucket: Bucket, window_started_at: datetime) -> None:
        throttle = self.s.throttles.get(bucket)
        if throttle and throttle.window_started_at == window_started_at and throttle.failures:
            throttle.failures -= 1

    def lock(self, bucket: Bucket, until: datetime) -> bool:
        throttle = self.s.throttles.get(bucket)
        if throttle is None or throttle.locked_until is not None:
            return False
        throttle.locked_until = until
        return True

    def clear(self, bucket: Bucket) -> None:
        self.s.throttles.pop(bucket, None)

    def open_session(self, user_id: uuid.UUID, expires_at: datetime) -> AuthSession:
        session = AuthSession(id=uuid.uuid4(), user_id=user_id, expires_at=expires_at)
        self.s.sessions[session.id] = session
        return session

    def add_refresh_token(
        self, session_id: uuid.UUID, token_hash: str, expires_at: datetime
    ) -> RefreshToken:
        token = RefreshToken(session_id=session_id, token_hash=token_hash, expires_at=expires_at)
        self.s.refresh_tokens[token_hash] = token
        return token


@only_what_tests_need
class FakeAudit(_Repository, port.AuditRepository):
    def append(self, entry: AuditEntry) -> None:
        self.s.audit.append(entry)


@only_what_tests_need
class FakeExams(_Repository, port.ExamRepository):
    """Access as the SQL decides it: admins and the creator MANAGE, grantees their level."""

    def _access(self, viewer: Principal, exam: Exam) -> AccessLevel | None:
        if viewer.role is Role.ADMIN or exam.created_by == viewer.user_id:
            return AccessLevel.MANAGE
        level = self.s.grants.get((exam.id, viewer.user_id))
        return AccessLevel[level] if level else None

    def get(
        self, exam_id: uuid.UUID, for_update: bool = False, for_share: bool = False
    ) -> Exam | None:
        return self.s.exams.get(exam_id)

    def get_visible(
        self, viewer: Principal, exam_id: uuid.UUID, for_update: bool = False
    ) -> VisibleExam | None:
        exam = self.s.exams.get(exam_id)
        access = self._access(viewer, exam) if exam else None
        return VisibleExam(exam, access) if exam and access else None

    def stats(self, exam_ids: list[uuid.UUID]) -> dict[uuid.UUID, ExamStats]:
        return {
            exam_id: ExamStats(
                exam_id=exam_id,
                **{c: self.s.exam_figures[exam_id].get(c, 0) for c in FIGURE_COLUMNS},
            )
            for exam_id in exam_ids
            if exam_id in self.s.exam_figures
        }

    def add_to_stats(self, exam_id: uuid.UUID, delta: Figures) -> None:
        _add_to(self.s.exam_figures[exam_id], delta)

    def grant(
        self, exam_id: uuid.UUID, teacher_id: uuid.UUID, level: AccessLevel, granted_by: uuid.UUID
    ) -> TeacherExamPermission:
        self.s.grants[(exam_id, teacher_id)] = level.name
        return TeacherExamPermission(
            exam_id=exam_id, teacher_id=teacher_id, level=level.name, granted_by=granted_by
        )

    def revoke(self, exam_id: uuid.UUID, teacher_id: uuid.UUID) -> bool:
        return self.s.grants.pop((exam_id, teacher_id), None) is not None


@only_what_tests_need
class FakeAttempts(_Repository, port.AttemptRepository):
    def _in_context(self, attempt: ExamAttempt) -> AttemptInContext:
        student = self.s.users[attempt.student_id]
        return AttemptInContext(attempt, self.s.exams[attempt.exam_id], student.full_name)

    def add(self, attempt: ExamAttempt) -> ExamAttempt:
        for other in self.s.attempts.values():
            same = (other.exam_id, other.student_id) == (attempt.exam_id, attempt.student_id)
            if same and other.attempt_number == attempt.attempt_number:
                raise Conflict("an attempt at this exam is already in progress")
        attempt.id = uuid.uuid4()
        for counter in ("event_count", "anomaly_count", "critical_count", "confirmed_events"):
            setattr(attempt, counter, 0)
        attempt.is_practice = bool(attempt.is_practice)
        attempt.extra_minutes = attempt.extra_minutes or 0
        self.s.attempts[attempt.id] = attempt
        return attempt

    def count_for(self, student_id: uuid.UUID, exam_id: uuid.UUID) -> int:
        return sum(
            (a.student_id, a.exam_id) == (student_id, exam_id) for a in self.s.attempts.values()
        )

    def completed(self, student_id: uuid.UUID, exam_id: uuid.UUID) -> bool:
        return any(
            (a.student_id, a.exam_id, a.status) == (student_id, exam_id, "SUBMITTED")
            for a in self.s.attempts.values()
        )

    def get_in_context(
        self, attempt_id: uuid.UUID, for_update: bool = False
    ) -> AttemptInContext | None:
        attempt = self.s.attempts.get(attempt_id)
        return self._in_context(attempt) if attempt else None

    def get_own(
        self, student_id: uuid.UUID, attempt_id: uuid.UUID, for_update: bool = False
    ) -> AttemptInContext | None:
        found = self.get_in_context(attempt_id)
        return found if found and found.attempt.student_id == student_id else None

    def finish(self, attempt: ExamAttempt, status: AttemptStatus, now: datetime) -> bool:
        if attempt.status != AttemptStatus.IN_PROGRESS.value:
            return False
        attempt.status, attempt.ended_at = status.value, now
        return True

    def students_page(
        self, exam_id: uuid.UUID, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> list[tuple[uuid.UUID, str]]:
        ids = {a.student_id for a in self.s.attempts.values() if a.exam_id == exam_id}
        named = sorted((self.s.users[i].full_name, i) for i in ids)
        return [(i, name) for name, i in named if after is None or (name, i) > after][:limit]

    def of_students(self, exam_id: uuid.UUID, student_ids: list[uuid.UUID]) -> list[ExamAttempt]:
        found = [
            a
            for a in self.s.attempts.values()
            if a.exam_id == exam_id and a.student_id in student_ids
        ]
        return sorted(found, key=lambda a: (a.student_id, a.attempt_number))


@only_what_tests_need
class FakeStudentStats(_Repository, port.StudentStatsRepository):
    def add(self, student_id: uuid.UUID, delta: Figures) -> None:
        """The sums a student's profile keeps (the real repository ignores the rest)."""
        kept = {k: v for k, v in delta.items() if k in PROFILE_SUMS}
        _add_to(self.s.student_sums.setdefault(student_id, {}), kept)

    def set_lmi(self, student_id: uuid.UUID, lmi: float) -> None:
        self.s.lmis[student_id] = lmi

    def set_risk_label(self, student_id: uuid.UUID, label: str | None) -> None:
        self.s.risk_labels[student_id] = label


@only_what_tests_need
class FakeAnalyses(_Repository, port.AnalysisRepository):
    def current(self, attempt_id: uuid.UUID) -> BehaviorAnalysis | None:
        mine = [a for a in self.s.analyses if a.attempt_id == attempt_id and a.is_current]
        return mine[-1] if mine else None

    def by_request(self, attempt_id: uuid.UUID, request_id: str) -> BehaviorAnalysis | None:
        wanted = (attempt_id, request_id)
        mine = [a for a in self.s.analyses if (a.attempt_id, a.request_id) == wanted]
        return mine[-1] if mine else None

    def replace_current(self, analysis: BehaviorAnalysis) -> BehaviorAnalysis:
        versions = [a for a in self.s.analyses if a.attempt_id == analysis.attempt_id]
        for earlier in versions:
            earlier.is_current = False
        analysis.version, analysis.is_current = len(versions) + 1, True
        self.s.analyses.append(analysis)
        return analysis

    def review_attempt(self, review: AttemptReview) -> None:
        self.s.attempt_reviews.append(review)


@only_what_tests_need
class FakeEvents(_Repository, port.EventRepository):
    pass


@only_what_tests_need
class FakePartitions(_Repository, port.PartitionRepository):
    pass


@only_what_tests_need
class FakeAnalysisJobs(_Repository, port.AnalysisJobRepository):
    def request(self, attempt_ids: Sequence[uuid.UUID], reason: JobReason, now: datetime) -> None:
        self.s.analysis_requests.extend((attempt_id, reason.value) for attempt_id in attempt_ids)


class FakeAllowances(_Repository):
    """No allowances: their rules are tested on PostgreSQL (tests/e2e/test_allowances.py)."""

    def standing(self, exam_id: uuid.UUID, student_id: uuid.UUID) -> list[Terms]:
        return []


class FakeUnitOfWork:
    """services.unit_of_work.UnitOfWork in memory (it conforms by shape, like the real one)."""

    def __init__(self, database: FakeDatabase) -> None:
        self._database = database
        self._stores: Stores | None = None

    def __enter__(self) -> FakeUnitOfWork:
        self._stores = self._database.stores.copy()
        stores = self._stores
        self.users = FakeUsers(stores)
        self.tokens = FakeTokens(stores)
        self.audit = FakeAudit(stores)
        self.exams = FakeExams(stores)
        self.attempts = FakeAttempts(stores)
        self.student_stats = FakeStudentStats(stores)
        self.events = FakeEvents(stores)
        self.partitions = FakePartitions(stores)
        self.analyses = FakeAnalyses(stores)
        self.analysis_jobs = FakeAnalysisJobs(stores)
        self.allowances = FakeAllowances(stores)
        return self

    def snapshot(self) -> None:
        """Nothing to do: a fake transaction sees only itself."""

    def audits_here(self) -> bool:
        return True

    def __exit__(self, *exc_info: object) -> None:
        self.rollback()

    def commit(self) -> None:
        assert self._stores is not None
        self._database.stores = self._stores
        self._database.commits += 1
        self._stores = self._database.stores.copy()
        self._rebind()

    def rollback(self) -> None:
        self._stores = self._database.stores.copy()
        self._rebind()

    def _rebind(self) -> None:
        for repository in vars(self).values():
            if isinstance(repository, _Repository):
                repository.s = self._stores  # type: ignore[assignment]
