"""Exams and attempts to protobuf messages, and exam requests to drafts."""

from __future__ import annotations

from veritas.v1 import common_pb2, resources_pb2, student_pb2, teacher_pb2

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
from veritas_grpc.services.exams import SETTABLE, BehaviorRule, ExamDraft, behavior_rules

INTEGRITY = {
    IntegrityStatus.GOOD: common_pb2.INTEGRITY_STATUS_GOOD,
    IntegrityStatus.WATCH: common_pb2.INTEGRITY_STATUS_WATCH,
    IntegrityStatus.AT_RISK: common_pb2.INTEGRITY_STATUS_AT_RISK,
}
TRENDS = {
    Trend.RISING: common_pb2.MOMENTUM_STATUS_RISING,
    Trend.STEADY: common_pb2.MOMENTUM_STATUS_STEADY,
    Trend.FALLING: common_pb2.MOMENTUM_STATUS_FALLING,
}
ACCESS = {
    AccessLevel.VIEW: common_pb2.ACCESS_LEVEL_VIEW,
    AccessLevel.MANAGE: common_pb2.ACCESS_LEVEL_MANAGE,
}
ACCESS_FROM_PROTO = {value: level for level, value in ACCESS.items()}


def status(value: str) -> int:
    return common_pb2.AttemptStatus.Value(f"ATTEMPT_STATUS_{value}")


# Requests ------------------------------------------------------------------------


def draft(exam: resources_pb2.Exam) -> ExamDraft:
    return ExamDraft(
        title=exam.title,
        subject=exam.subject,
        description=exam.description,
        max_points=exam.max_points,
        pass_points=exam.pass_points,
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


def update_paths(request: teacher_pb2.UpdateExamRequest) -> set[str]:
    """The fields UpdateExam changes (AIP-134): the mask's paths, or when the mask is
    empty the fields populated in the request. "*" is passed on: it means all."""
    if request.update_mask.paths:
        return set(request.update_mask.paths)
    populated = {field.name for field, _ in request.exam.ListFields()}
    return populated & set(SETTABLE)


# Teachers' views -------------------------------------------------------------------


def exam(visible: VisibleExam, rules_locked: bool) -> resources_pb2.Exam:
    record = visible.exam
    message = resources_pb2.Exam(
        id=str(record.id),
        title=record.title,
        subject=record.subject,
        description=record.description,
        max_points=float(record.max_score),
        pass_points=float(record.pass_score),
        duration_minutes=record.duration_minutes,
        max_attempts=record.max_attempts,
        status=common_pb2.ExamStatus.Value(f"EXAM_STATUS_{record.status}"),
        behavior_rules=[
            resources_pb2.BehaviorRule(
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


def analytics(stats: ExamStats) -> resources_pb2.ExamAnalytics:
    message = resources_pb2.ExamAnalytics(
        attempt_count=stats.attempt_count,
        student_count=stats.student_count,
        high_risk_count=stats.high_risk_count,
        flagged_count=stats.flagged_count,
    )
    average = mean(stats.score_sum, stats.graded_count, CENT)
    if average is not None:
        message.mean_points = float(average)
        message.pass_rate = stats.passed_count / stats.graded_count
    integrity = mean(stats.integrity_sum, stats.integrity_count, TEN_THOUSANDTH)
    if integrity is not None:
        message.mean_integrity_score = float(integrity)
    return message


def risk_distribution(stats: ExamStats) -> resources_pb2.RiskDistribution:
    return risk_counts(
        {
            "safe": stats.safe_count,
            "incapable": stats.incapable_count,
            "copy": stats.copy_count,
            "no_interest": stats.no_interest_count,
        }
    )


def risk_counts(by_label: dict[str, int]) -> resources_pb2.RiskDistribution:
    """Attempts per dropout label, keyed by the label's lower-case name."""
    return resources_pb2.RiskDistribution(**{f"{name}_count": n for name, n in by_label.items()})


def attempt_record(found: AttemptInContext) -> resources_pb2.Attempt:
    attempt = found.attempt
    message = resources_pb2.Attempt(
        id=str(attempt.id),
        exam_id=str(attempt.exam_id),
        exam_title=found.exam.title,
        student_id=str(attempt.student_id),
        student_name=found.student_name,
        attempt_number=attempt.attempt_number,
        status=status(attempt.status),
        points=optional_float(attempt.score),
        score_percent=optional_float(attempt.percentage),
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
        points=optional_float(attempt.score),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        dropout_label=label(attempt.dropout_label),
        flagged=attempt.flagged,
    )


def flagged_attempt(found: AttemptInContext) -> teacher_pb2.FlaggedAttempt:
    message = teacher_pb2.FlaggedAttempt(
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


def performance(metrics: PerformanceMetrics | None) -> resources_pb2.PerformanceSummary:
    if metrics is None:
        return resources_pb2.PerformanceSummary()
    band = integrity_status(metrics.average_integrity)
    return resources_pb2.PerformanceSummary(
        finished_attempt_count=metrics.exams_taken,
        passed_attempt_count=metrics.exams_passed,
        mean_score_percent=optional_float(metrics.average_score),
        mean_integrity_score=optional_float(metrics.average_integrity),
        integrity_status=INTEGRITY[band] if band else 0,
        learning_momentum_index=metrics.latest_lmi,
        momentum_status=TRENDS[Trend(metrics.lmi_trend)] if metrics.lmi_trend else 0,
        dropout_label=label(metrics.risk_label),
        flagged=bool(metrics.flagged),
    )


def student_profile(user: User, profile: StudentProfile) -> resources_pb2.StudentProfile:
    message = resources_pb2.StudentProfile(
        id=str(user.id), full_name=user.full_name, enrollment_id=profile.enrollment_id
    )
    set_time(message, "join_time", profile.joined_at)
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
        points=optional_float(attempt.score),
        max_points=float(found.exam.max_score),
        score_percent=optional_float(attempt.percentage),
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
        max_points=float(exam.max_score),
        pass_points=float(exam.pass_score),
        duration_minutes=exam.duration_minutes,
        max_attempts=exam.max_attempts,
        used_attempt_count=item.attempts_used,
        remaining_attempt_count=item.attempts_left,
    )
    set_time(message, "open_time", exam.opens_at)
    set_time(message, "close_time", exam.closes_at)
    return message


def student_dashboard(board: StudentDashboard) -> student_pb2.GetStudentDashboardResponse:
    response = student_pb2.GetStudentDashboardResponse(
        profile=student_profile(board.user, board.profile),
        performance=performance(board.metrics),
    )
    for found in board.history:
        attempt = found.attempt
        entry = response.exam_history.add(
            attempt_id=str(attempt.id),
            exam_title=found.exam.title,
            status=status(attempt.status),
            points=optional_float(attempt.score),
            score_percent=optional_float(attempt.percentage),
            passed=attempt.passed,
            integrity_score=optional_float(attempt.integrity_score),
            dropout_label=label(attempt.dropout_label),
        )
        set_time(entry, "start_time", attempt.started_at)
    return response
