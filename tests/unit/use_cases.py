"""The real use cases wired to one in-memory database, and the steps tests repeat."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from tests.unit.fakes import EPOCH, FakeDatabase, principal
from veritas_grpc.db.models import Exam, ExamAttempt, User
from veritas_grpc.domain.exams import DropoutLabel
from veritas_grpc.domain.identity import Role
from veritas_grpc.services.analysis import AnalysisService, ExternalAnalysis
from veritas_grpc.services.attempts import AttemptService
from veritas_grpc.services.dashboards import DashboardService
from veritas_grpc.services.exams import ExamService

THRESHOLD = Decimal("0.5")


class Clock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    db: FakeDatabase = field(default_factory=FakeDatabase)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.attempts = AttemptService(self.db.uow, self.clock, THRESHOLD, timedelta(minutes=2))
        self.analysis = AnalysisService(self.db.uow, self.clock, THRESHOLD)
        self.exams = ExamService(self.db.uow, self.clock)
        self.dashboards = DashboardService(self.db.uow)
        self.teacher = self.db.add_user(Role.TEACHER, "Tess Teacher")
        self.scorer = self.db.add_user(Role.SERVICE, "Scoring Service")
        self.exam = self.db.add_exam(self.teacher)

    def submitted(self, student: User, exam: Exam | None = None) -> ExamAttempt:
        """A student's attempt at the exam, started and handed in."""
        as_student = principal(student)
        attempt = self.attempts.start(as_student, str((exam or self.exam).id)).attempt
        return self.attempts.submit(as_student, str(attempt.id)).attempt

    def grade(self, attempt: ExamAttempt, points: float) -> ExamAttempt:
        return self.attempts.grade(principal(self.teacher), str(attempt.id), points).attempt

    def assess(
        self, attempt: ExamAttempt, integrity: float, label: DropoutLabel = DropoutLabel.SAFE
    ) -> ExamAttempt:
        """The scoring service's analysis of the attempt."""
        analysis = ExternalAnalysis(
            integrity_score=integrity,
            lmi_score=0.5,
            dropout_label=label,
            llm_summary="",
            llm_reasoning="",
            recommendations=[],
            model_name="unit",
            model_version="1",
            request_id="",
        )
        self.analysis.save(principal(self.scorer), str(attempt.id), analysis)
        return self.db.stores.attempts[attempt.id]
