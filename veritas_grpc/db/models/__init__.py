"""Typed SQLAlchemy models, one module per area. The schema itself is owned by the
Alembic migrations; tests/integration/test_migrations.py fails when they differ."""

from veritas_grpc.db.models.accounts import StudentProfile, TeacherProfile, User
from veritas_grpc.db.models.alerts import exam_alert_counters, exam_alerts
from veritas_grpc.db.models.allowances import ExamAllowance
from veritas_grpc.db.models.analyses import AttemptReview, BehaviorAnalysis, EventReview
from veritas_grpc.db.models.analysis_jobs import JOBS_CHANNEL, AnalysisJob
from veritas_grpc.db.models.audit import AuditChainHead, AuditLog
from veritas_grpc.db.models.auth import (
    AuthSession,
    RefreshToken,
    RevokedAccessToken,
    SignInThrottle,
)
from veritas_grpc.db.models.data_subjects import erased_subjects, event_partition_holds
from veritas_grpc.db.models.events import (
    ALERT_CHANNEL,
    PARTITION_PREFIX,
    attempt_event_tallies,
    monitoring_events,
)
from veritas_grpc.db.models.exams import (
    Exam,
    ExamAttempt,
    ExamStats,
    PerformanceMetrics,
    TeacherExamPermission,
    exam_students,
)
from veritas_grpc.db.models.oversight import EventDayCount, SystemStatsSnapshot
from veritas_grpc.db.models.set_password import SetPasswordToken

__all__ = [
    "JOBS_CHANNEL",
    "AnalysisJob",
    "ALERT_CHANNEL",
    "AttemptReview",
    "BehaviorAnalysis",
    "EventDayCount",
    "EventReview",
    "ExamAllowance",
    "erased_subjects",
    "event_partition_holds",
    "exam_alert_counters",
    "exam_alerts",
    "AuditChainHead",
    "AuditLog",
    "AuthSession",
    "Exam",
    "ExamAttempt",
    "ExamStats",
    "exam_students",
    "PARTITION_PREFIX",
    "monitoring_events",
    "attempt_event_tallies",
    "PerformanceMetrics",
    "RefreshToken",
    "RevokedAccessToken",
    "SetPasswordToken",
    "SignInThrottle",
    "SystemStatsSnapshot",
    "StudentProfile",
    "TeacherExamPermission",
    "TeacherProfile",
    "User",
]
