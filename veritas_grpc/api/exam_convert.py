"""Exams and attempts to protobuf messages, and exam requests to drafts."""

from __future__ import annotations

from veritas.v1 import exams_pb2, student_pb2, teacher_pb2

from veritas_grpc.api.convert import (
    SEVERITIES,
    SEVERITY_NAMES,
    label,
    optional_float,
    optional_time,
    set_time,
)
from veritas_grpc.db.models import ExamAttempt, ExamStats, PerformanceMetrics, StudentProfile, User
from veritas_grpc.domain.exams import (
    CENT,
    TEN_THOUSANDTH,
    AccessLevel,
    IntegrityStatus,
    Trend,
    integrity_status,
    mean,
)
from veritas_grpc.repositories.attempts import AttemptInContext
from veritas_grpc.repositories.exams import VisibleExam
from veritas_grpc.services.attempts import AvailableExam
from veritas_grpc.services.dashboards import StudentDashboard
from veritas_grpc.services.exams import BehaviorRule, ExamDraft, behavior_rules

INTEGRITY = {
    IntegrityStatus.GOOD: exams_pb2.INTEGRITY_STATUS_GOOD,
    IntegrityStatus.WATCH: exams_pb2.INTEGRITY_STATUS_WATCH,
    IntegrityStatus.AT_RISK: exams_pb2.INTEGRITY_STATUS_AT_RISK,
}
TRENDS = {
    Trend.RISING: exams_pb2.MOMENTUM_STATUS_RISING,
    Trend.STEADY: exams_pb2.MOMENTUM_STATUS_STEADY,
    Trend.FALLING: exams_pb2.MOMENTUM_STATUS_FALLING,
}
ACCESS = {
    AccessLevel.VIEW: exams_pb2.ACCESS_LEVEL_VIEW,
    AccessLevel.MANAGE: exams_pb2.ACCESS_LEVEL_MANAGE,
}
ACCESS_FROM_PROTO = {value: level for level, value in ACCESS.items()}


def status(value: str) -> int:
    return exams_pb2.AttemptStatus.Value(f"ATTEMPT_STATUS_{value}")


# Requests ------------------------------------------------------------------------


def draft(exam: exams_pb2.Exam) -> ExamDraft:
    return ExamDraft(
        title=exam.title,
        subject=exam.subject,
        description=exam.description,
        max_score=exam.max_score,
        pass_score=exam.pass_score,
        duration_minutes=exam.duration_minutes,
        open_time=optional_time(exam, "open_time"),
        close_time=optional_time(exam, "close_time"),
        max_attempts=exam.max_attempts,
        behavior_rules=[
            BehaviorRule(
                event_type=rule.event_type,
                flagged=rule.flagged,
                weight=rule.weight,
                default_severity=SEVERITY_NAMES.get(rule.default_severity),
            )
            for rule in exam.behavior_rules
        ],
    )


# Teachers' views -------------------------------------------------------------------


def exam(visible: VisibleExam, rules_locked: bool) -> exams_pb2.Exam:
    record = visible.exam
    message = exams_pb2.Exam(
        id=str(record.id),
        title=record.title,
        subject=record.subject,
        description=record.description,
        max_score=float(record.max_score),
        pass_score=float(record.pass_score),
        duration_minutes=record.duration_minutes,
        max_attempts=record.max_attempts,
        status=exams_pb2.ExamStatus.Value(f"EXAM_STATUS_{record.status}"),
        behavior_rules=[
            exams_pb2.BehaviorRule(
                event_type=rule.event_type,
                flagged=rule.flagged,
                weight=rule.weight,
                default_severity=SEVERITIES.get(rule.default_severity or "", 0),
            )
            for rule in behavior_rules(record)
        ],
        behavior_rules_locked=rules_locked,
        creator_id=str(record.created_by),
        access_level=ACCESS[visible.access],
    )
    set_time(message, "open_time", record.opens_at)
    set_time(message, "close_time", record.closes_at)
    set_time(message, "create_time", record.created_at)
    set_time(message, "update_time", record.updated_at)
    set_time(message, "publish_time", record.published_at)
    return message


def analytics(stats: ExamStats) -> exams_pb2.ExamAnalytics:
    message = exams_pb2.ExamAnalytics(
        total_attempts=stats.attempt_count,
        unique_students=stats.student_count,
        high_risk_count=stats.high_risk_count,
        flagged_count=stats.flagged_count,
    )
    average = mean(stats.score_sum, stats.graded_count, CENT)
    if average is not None:
        message.average_score = float(average)
        message.pass_rate = stats.passed_count / stats.graded_count
    integrity = mean(stats.integrity_sum, stats.integrity_count, TEN_THOUSANDTH)
    if integrity is not None:
        message.average_integrity = float(integrity)
    return message


def risk_distribution(stats: ExamStats) -> exams_pb2.RiskDistribution:
    return exams_pb2.RiskDistribution(
        safe=stats.safe_count,
        incapable=stats.incapable_count,
        copy=stats.copy_count,
        no_interest=stats.no_interest_count,
    )


def attempt_record(found: AttemptInContext) -> exams_pb2.AttemptRecord:
    attempt = found.attempt
    message = exams_pb2.AttemptRecord(
        id=str(attempt.id),
        exam_id=str(attempt.exam_id),
        exam_title=found.exam.title,
        student_id=str(attempt.student_id),
        student_name=found.student_name,
        attempt_number=attempt.attempt_number,
        status=status(attempt.status),
        score=optional_float(attempt.score),
        percentage=optional_float(attempt.percentage),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        dropout_label=label(attempt.dropout_label),
        flagged=attempt.flagged,
        event_count=attempt.event_count,
        anomaly_count=attempt.anomaly_count,
        critical_count=attempt.critical_count,
    )
    set_time(message, "start_time", attempt.started_at)
    set_time(message, "end_time", attempt.ended_at)
    set_time(message, "flag_time", attempt.flagged_at)
    set_time(message, "grade_time", attempt.graded_at)
    return message


def attempt_score(attempt: ExamAttempt) -> teacher_pb2.AttemptScore:
    return teacher_pb2.AttemptScore(
        attempt_id=str(attempt.id),
        attempt_number=attempt.attempt_number,
        status=status(attempt.status),
        score=optional_float(attempt.score),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        dropout_label=label(attempt.dropout_label),
        flagged=attempt.flagged,
    )


def alert(found: AttemptInContext) -> teacher_pb2.Alert:
    message = teacher_pb2.Alert(
        attempt_id=str(found.attempt.id),
        exam_id=str(found.exam.id),
        exam_title=found.exam.title,
        student_id=str(found.attempt.student_id),
        student_name=found.student_name,
        integrity_score=optional_float(found.attempt.integrity_score),
        dropout_label=label(found.attempt.dropout_label),
    )
    set_time(message, "flag_time", found.attempt.flagged_at)
    return message


def performance(metrics: PerformanceMetrics | None) -> teacher_pb2.PerformanceSummary:
    if metrics is None:
        return teacher_pb2.PerformanceSummary()
    return teacher_pb2.PerformanceSummary(
        exams_taken=metrics.exams_taken,
        exams_passed=metrics.exams_passed,
        average_score=optional_float(metrics.average_score),
        average_integrity=optional_float(metrics.average_integrity),
        latest_lmi=metrics.latest_lmi,
        lmi_trend=TRENDS[Trend(metrics.lmi_trend)] if metrics.lmi_trend else 0,
        risk_label=label(metrics.risk_label),
    )


def student_profile(user: User, profile: StudentProfile) -> exams_pb2.StudentProfile:
    message = exams_pb2.StudentProfile(
        id=str(user.id), name=user.full_name, enrollment_id=profile.enrollment_id
    )
    set_time(message, "joined_time", profile.joined_at)
    return message


# Students' views -------------------------------------------------------------------


def student_attempt(
    found: AttemptInContext, recommendations: list[str] | None = None
) -> student_pb2.StudentAttempt:
    """Never the grader, reasoning or raw events: only what the student may see."""
    attempt = found.attempt
    band = integrity_status(attempt.integrity_score)
    message = student_pb2.StudentAttempt(
        id=str(attempt.id),
        exam_id=str(attempt.exam_id),
        exam_title=found.exam.title,
        attempt_number=attempt.attempt_number,
        status=status(attempt.status),
        score=optional_float(attempt.score),
        max_score=float(found.exam.max_score),
        percentage=optional_float(attempt.percentage),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        integrity_status=INTEGRITY[band] if band else 0,
        recommendations=recommendations or [],
    )
    set_time(message, "start_time", attempt.started_at)
    set_time(message, "deadline_time", attempt.deadline_at)
    set_time(message, "end_time", attempt.ended_at)
    return message


def available_exam(item: AvailableExam) -> student_pb2.AvailableExam:
    exam = item.exam
    message = student_pb2.AvailableExam(
        exam_id=str(exam.id),
        title=exam.title,
        subject=exam.subject,
        description=exam.description,
        max_score=float(exam.max_score),
        pass_score=float(exam.pass_score),
        duration_minutes=exam.duration_minutes,
        max_attempts=exam.max_attempts,
        attempts_used=item.attempts_used,
        attempts_left=max(0, exam.max_attempts - item.attempts_used),
    )
    set_time(message, "open_time", exam.opens_at)
    set_time(message, "close_time", exam.closes_at)
    return message


def student_dashboard(board: StudentDashboard) -> student_pb2.StudentServiceGetDashboardResponse:
    metrics = board.metrics
    average_integrity = metrics.average_integrity if metrics else None
    band = integrity_status(average_integrity)
    response = student_pb2.StudentServiceGetDashboardResponse(
        profile=student_profile(board.user, board.profile),
        integrity=student_pb2.IntegritySummary(
            score=optional_float(average_integrity), status=INTEGRITY[band] if band else 0
        ),
        learning_momentum=student_pb2.LearningMomentum(
            lmi=metrics.latest_lmi if metrics else None,
            status=TRENDS[Trend(metrics.lmi_trend)] if metrics and metrics.lmi_trend else 0,
        ),
        dropout_risk=student_pb2.DropoutRisk(
            label=label(metrics.risk_label if metrics else None),
            flagged=bool(metrics and metrics.flagged),
        ),
        summary=student_pb2.DashboardSummary(
            total_exams=metrics.exams_taken if metrics else 0,
            passed=metrics.exams_passed if metrics else 0,
            average_score=optional_float(metrics.average_score if metrics else None),
        ),
    )
    for found in board.history:
        attempt = found.attempt
        entry = response.exam_history.add(
            attempt_id=str(attempt.id),
            exam_title=found.exam.title,
            status=status(attempt.status),
            score=optional_float(attempt.score),
            percentage=optional_float(attempt.percentage),
            passed=attempt.passed,
            integrity_score=optional_float(attempt.integrity_score),
            dropout_label=label(attempt.dropout_label),
        )
        set_time(entry, "start_time", attempt.started_at)
    return response
