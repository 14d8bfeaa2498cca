"""Who may call what: one table from full gRPC method name to the roles admitted.

Deny by default: a method absent from the table is refused with PERMISSION_DENIED, and
tests/unit/test_policy.py fails when a method of any veritas.v1 service has no entry.
Row-level rules (own data, exam grants) live in the services' queries, not here.
"""

from __future__ import annotations

from typing import Final

from veritas_grpc.domain.identity import Role

PUBLIC: Final = "public"
"""No token needed (the method authenticates its caller itself, or is infrastructure)."""

ANY_ROLE: Final = frozenset(Role)
STUDENT: Final = frozenset({Role.STUDENT})
STAFF: Final = frozenset({Role.TEACHER, Role.ADMIN})
GRADERS: Final = frozenset({Role.TEACHER, Role.ADMIN, Role.SERVICE})
# Agents sign in as the student whose attempt they watch, or as a service account.
AGENTS: Final = frozenset({Role.STUDENT, Role.SERVICE})
SCORERS: Final = frozenset({Role.SERVICE, Role.ADMIN})

POLICY: Final[dict[str, frozenset[Role] | str]] = {
    # Infrastructure: load balancers probe health; grpcurl lists services.
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/List": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": PUBLIC,
    # AuthService
    "/veritas.v1.AuthService/Register": PUBLIC,
    "/veritas.v1.AuthService/Login": PUBLIC,
    "/veritas.v1.AuthService/Refresh": PUBLIC,
    "/veritas.v1.AuthService/Logout": ANY_ROLE,
    "/veritas.v1.AuthService/GetCurrentUser": ANY_ROLE,
    # StudentService: the caller's own data (enforced in the queries)
    "/veritas.v1.StudentService/GetDashboard": STUDENT,
    "/veritas.v1.StudentService/ListAvailableExams": STUDENT,
    "/veritas.v1.StudentService/StartExam": STUDENT,
    "/veritas.v1.StudentService/SubmitExam": STUDENT,
    "/veritas.v1.StudentService/AbandonExam": STUDENT,
    "/veritas.v1.StudentService/GetAttempt": STUDENT,
    # TeacherService: exams the caller created or was granted; admins all of them
    "/veritas.v1.TeacherService/CreateExam": STAFF,
    "/veritas.v1.TeacherService/UpdateExam": STAFF,
    "/veritas.v1.TeacherService/PublishExam": STAFF,
    "/veritas.v1.TeacherService/ArchiveExam": STAFF,
    "/veritas.v1.TeacherService/ListExams": STAFF,
    "/veritas.v1.TeacherService/GrantExamAccess": STAFF,
    "/veritas.v1.TeacherService/RevokeExamAccess": STAFF,
    "/veritas.v1.TeacherService/GetDashboard": STAFF,
    "/veritas.v1.TeacherService/GetExamAnalytics": STAFF,
    "/veritas.v1.TeacherService/GetStudentDetail": STAFF,
    "/veritas.v1.TeacherService/GradeAttempt": GRADERS,
    "/veritas.v1.TeacherService/ListFlaggedStudents": STAFF,
    "/veritas.v1.TeacherService/GetAttemptMonitoring": STAFF,
    "/veritas.v1.TeacherService/ReviewEvent": STAFF,
    "/veritas.v1.TeacherService/ReviewAttempt": STAFF,
    # MonitoringService
    "/veritas.v1.MonitoringService/StreamEvents": AGENTS,
    "/veritas.v1.MonitoringService/RecordEvent": AGENTS,
    "/veritas.v1.MonitoringService/ListEvents": STAFF,
    "/veritas.v1.MonitoringService/WatchExam": STAFF,
    # AnalysisService
    "/veritas.v1.AnalysisService/SaveBehaviorAnalysis": SCORERS,
    "/veritas.v1.AnalysisService/AnalyzeAttempt": frozenset(
        {Role.SERVICE, Role.ADMIN, Role.TEACHER}
    ),
    "/veritas.v1.AnalysisService/UpdatePerformanceMetrics": SCORERS,
    "/veritas.v1.AnalysisService/GetHighRiskSummary": SCORERS,
}


def is_public(method: str) -> bool:
    return POLICY.get(method) == PUBLIC


def allowed_roles(method: str) -> frozenset[Role]:
    """The roles admitted to an authenticated method; empty when the method is unknown."""
    entry = POLICY.get(method)
    return entry if isinstance(entry, frozenset) else frozenset()
