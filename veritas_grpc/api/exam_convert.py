"""Exams and attempts to protobuf messages, and exam requests to drafts."""

from __future__ import annotations

from veritas.v1 import common_pb2, resources_pb2, student_pb2, teacher_pb2

from veritas_grpc.api.convert import (
    SEVERITIES,
    SEVERITY_NAMES,
    enum_name,
    label,
    optional_float,
    optional_time,
    set_time,
)
from veritas_grpc.domain.exams import (
    AccessLevel,
    AttemptStatus,
    BehaviorRule,
    ExamStatus,
    IntegrityStatus,
    Trend,
)
from veritas_grpc.domain.readiness import Readiness
from veritas_grpc.services.dashboards import StudentDashboard
from veritas_grpc.services.exams import SETTABLE, ExamDraft
from veritas_grpc.services.views.attempts import AttemptRecord, AttemptView, StudentAttemptsView
from veritas_grpc.services.views.exams import (
    AvailableExamView,
    ExamAnalyticsView,
    ExamView,
    GrantView,
    LabelCounts,
)
from veritas_grpc.services.views.students import PerformanceView, StudentProfileView

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
ATTEMPT_STATUSES = {
    AttemptStatus.IN_PROGRESS: common_pb2.ATTEMPT_STATUS_IN_PROGRESS,
    AttemptStatus.SUBMITTED: common_pb2.ATTEMPT_STATUS_SUBMITTED,
    AttemptStatus.ABANDONED: common_pb2.ATTEMPT_STATUS_ABANDONED,
    AttemptStatus.TIMED_OUT: common_pb2.ATTEMPT_STATUS_TIMED_OUT,
}
EXAM_STATUSES = {
    ExamStatus.DRAFT: common_pb2.EXAM_STATUS_DRAFT,
    ExamStatus.PUBLISHED: common_pb2.EXAM_STATUS_PUBLISHED,
    ExamStatus.ARCHIVED: common_pb2.EXAM_STATUS_ARCHIVED,
}


def integrity(band: IntegrityStatus | None) -> int:
    return INTEGRITY[band] if band else common_pb2.INTEGRITY_STATUS_UNSPECIFIED


def momentum(trend: Trend | None) -> int:
    return TRENDS[trend] if trend else common_pb2.MOMENTUM_STATUS_UNSPECIFIED


# Requests ------------------------------------------------------------------------


def draft(exam: resources_pb2.Exam) -> ExamDraft:
    return ExamDraft(
        title=exam.title,
        subject=exam.subject,
        description=exam.description,
        max_points=exam.max_points,
        pass_points=exam.pass_points,
        duration_minutes=exam.duration_minutes,
        open_time=optional_time(exam, "open_time", "exam.open_time"),
        close_time=optional_time(exam, "close_time", "exam.close_time"),
        max_attempts=exam.max_attempts,
        practice=exam.practice,
        required_practice_exam_id=exam.required_practice_exam_id,
        behavior_rules=[
            BehaviorRule(
                event_type=rule.event_type,
                flagged=rule.flagged,
                weight=rule.weight,
                default_severity=enum_name(
                    SEVERITY_NAMES,
                    rule.default_severity,
                    f"exam.behavior_rules[{index}].default_severity",
                ),
            )
            for index, rule in enumerate(exam.behavior_rules)
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


def behavior_rule(rule: BehaviorRule) -> resources_pb2.BehaviorRule:
    return resources_pb2.BehaviorRule(
        event_type=rule.event_type,
        flagged=rule.flagged,
        weight=rule.weight,
        default_severity=SEVERITIES.get(rule.default_severity or "", 0),
    )


def exam(view: ExamView) -> resources_pb2.Exam:
    message = resources_pb2.Exam(
        id=str(view.id),
        title=view.title,
        subject=view.subject,
        description=view.description,
        max_points=float(view.max_points),
        pass_points=float(view.pass_points),
        duration_minutes=view.duration_minutes,
        max_attempts=view.max_attempts,
        status=EXAM_STATUSES[view.status],
        behavior_rules=[behavior_rule(rule) for rule in view.behavior_rules],
        behavior_rules_locked=view.behavior_rules_locked,
        creator_id=str(view.creator_id),
        access_level=ACCESS[view.access],
        practice=view.practice,
        required_practice_exam_id=str(view.required_practice_exam_id or ""),
    )
    set_time(message, "open_time", view.open_time)
    set_time(message, "close_time", view.close_time)
    set_time(message, "create_time", view.create_time)
    set_time(message, "update_time", view.update_time)
    set_time(message, "publish_time", view.publish_time)
    return message


def exam_header(view: ExamView) -> teacher_pb2.ExamHeader:
    return teacher_pb2.ExamHeader(
        id=str(view.id), title=view.title, subject=view.subject, max_points=float(view.max_points)
    )


def analytics(view: ExamAnalyticsView) -> resources_pb2.ExamAnalytics:
    return resources_pb2.ExamAnalytics(
        attempt_count=view.attempt_count,
        student_count=view.student_count,
        mean_points=optional_float(view.mean_points),
        pass_rate=view.pass_rate,
        mean_integrity_score=optional_float(view.mean_integrity_score),
        high_risk_count=view.high_risk_count,
        flagged_count=view.flagged_count,
    )


def risk_counts(counts: LabelCounts) -> resources_pb2.RiskDistribution:
    return resources_pb2.RiskDistribution(
        safe_count=counts.safe,
        incapable_count=counts.incapable,
        copy_count=counts.copy,
        no_interest_count=counts.no_interest,
    )


def grant(view: GrantView) -> teacher_pb2.ExamGrant:
    message = teacher_pb2.ExamGrant(
        exam_id=str(view.exam_id),
        teacher_id=str(view.teacher_id),
        access_level=ACCESS[view.level],
        granter_id=str(view.granter_id),
    )
    set_time(message, "grant_time", view.grant_time)
    return message


def attempt_record(view: AttemptView) -> resources_pb2.Attempt:
    attempt = view.attempt
    message = resources_pb2.Attempt(
        id=str(attempt.id),
        exam_id=str(attempt.exam_id),
        exam_title=view.exam_title,
        student_id=str(attempt.student_id),
        student_name=view.student_name,
        attempt_number=attempt.attempt_number,
        status=ATTEMPT_STATUSES[attempt.status],
        points=optional_float(attempt.points),
        score_percent=optional_float(attempt.score_percent),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        dropout_label=label(attempt.dropout_label),
        flagged=attempt.flagged,
        event_count=attempt.event_count,
        anomaly_count=attempt.anomaly_count,
        critical_count=attempt.critical_count,
        practice=attempt.practice,
    )
    set_time(message, "start_time", attempt.start_time)
    set_time(message, "deadline_time", attempt.deadline_time)
    message.extra_time_minutes = attempt.extra_time_minutes
    set_time(message, "end_time", attempt.end_time)
    set_time(message, "flag_time", attempt.flag_time)
    set_time(message, "grade_time", attempt.grade_time)
    return message


def attempt_score(attempt: AttemptRecord) -> teacher_pb2.AttemptScore:
    return teacher_pb2.AttemptScore(
        attempt_id=str(attempt.id),
        attempt_number=attempt.attempt_number,
        status=ATTEMPT_STATUSES[attempt.status],
        points=optional_float(attempt.points),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        dropout_label=label(attempt.dropout_label),
        flagged=attempt.flagged,
    )


def student_attempts(view: StudentAttemptsView) -> teacher_pb2.StudentAttempts:
    return teacher_pb2.StudentAttempts(
        student_id=str(view.student_id),
        student_name=view.name,
        attempts=[attempt_score(attempt) for attempt in view.attempts],
    )


def flagged_attempt(view: AttemptView) -> teacher_pb2.FlaggedAttempt:
    attempt = view.attempt
    message = teacher_pb2.FlaggedAttempt(
        attempt_id=str(attempt.id),
        exam_id=str(attempt.exam_id),
        exam_title=view.exam_title,
        student_id=str(attempt.student_id),
        student_name=view.student_name,
        integrity_score=optional_float(attempt.integrity_score),
        dropout_label=label(attempt.dropout_label),
    )
    set_time(message, "flag_time", attempt.flag_time)
    return message


def performance(view: PerformanceView) -> resources_pb2.PerformanceSummary:
    return resources_pb2.PerformanceSummary(
        finished_attempt_count=view.finished_attempt_count,
        passed_attempt_count=view.passed_attempt_count,
        mean_score_percent=optional_float(view.mean_score_percent),
        mean_integrity_score=optional_float(view.mean_integrity_score),
        integrity_status=integrity(view.integrity_status),
        learning_momentum_index=view.learning_momentum_index,
        momentum_status=momentum(view.momentum_status),
        dropout_label=label(view.dropout_label),
        flagged=view.flagged,
    )


def student_profile(view: StudentProfileView) -> resources_pb2.StudentProfile:
    message = resources_pb2.StudentProfile(
        id=str(view.id), full_name=view.full_name, enrollment_id=view.enrollment_id
    )
    set_time(message, "join_time", view.join_time)
    return message


# Students' views -------------------------------------------------------------------


def student_attempt(
    view: AttemptView, recommendations: tuple[str, ...] = ()
) -> student_pb2.StudentAttempt:
    """Never the grader, reasoning or raw events: only what the student may see."""
    attempt = view.attempt
    message = student_pb2.StudentAttempt(
        id=str(attempt.id),
        exam_id=str(attempt.exam_id),
        exam_title=view.exam_title,
        attempt_number=attempt.attempt_number,
        status=ATTEMPT_STATUSES[attempt.status],
        points=optional_float(attempt.points),
        max_points=float(view.max_points),
        score_percent=optional_float(attempt.score_percent),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        integrity_status=integrity(attempt.integrity_status),
        recommendations=recommendations,
        practice=attempt.practice,
    )
    set_time(message, "start_time", attempt.start_time)
    set_time(message, "deadline_time", attempt.deadline_time)
    message.extra_time_minutes = attempt.extra_time_minutes
    set_time(message, "end_time", attempt.end_time)
    return message


def available_exam(view: AvailableExamView) -> student_pb2.AvailableExam:
    message = student_pb2.AvailableExam(
        exam_id=str(view.exam_id),
        title=view.title,
        subject=view.subject,
        description=view.description,
        max_points=float(view.max_points),
        pass_points=float(view.pass_points),
        duration_minutes=view.duration_minutes,
        max_attempts=view.max_attempts,
        used_attempt_count=view.used_attempt_count,
        remaining_attempt_count=view.remaining_attempt_count,
        practice=view.practice,
        extra_time_minutes=view.extra_time_minutes,
        extra_attempt_count=view.extra_attempt_count,
        required_practice_exam_id=str(view.required_practice_exam_id or ""),
        required_practice_completed=view.required_practice_completed,
    )
    set_time(message, "open_time", view.open_time)
    set_time(message, "close_time", view.close_time)
    return message


def readiness(check: Readiness) -> student_pb2.PracticeReadiness:
    message = student_pb2.PracticeReadiness(event_count=check.event_count)
    set_time(message, "first_event_time", check.first_event_time)
    set_time(message, "last_event_time", check.last_event_time)
    for detector in check.detectors:
        report = message.detectors.add(
            detector_name=detector.name,
            detector_version=detector.version,
            event_count=detector.event_count,
            event_types=detector.event_types,
        )
        set_time(report, "last_event_time", detector.last_event_time)
    return message


def history_entry(view: AttemptView) -> student_pb2.ExamHistoryEntry:
    attempt = view.attempt
    entry = student_pb2.ExamHistoryEntry(
        attempt_id=str(attempt.id),
        exam_title=view.exam_title,
        status=ATTEMPT_STATUSES[attempt.status],
        points=optional_float(attempt.points),
        score_percent=optional_float(attempt.score_percent),
        passed=attempt.passed,
        integrity_score=optional_float(attempt.integrity_score),
        dropout_label=label(attempt.dropout_label),
    )
    set_time(entry, "start_time", attempt.start_time)
    return entry


def student_dashboard(board: StudentDashboard) -> student_pb2.GetStudentDashboardResponse:
    return student_pb2.GetStudentDashboardResponse(
        profile=student_profile(board.profile),
        performance=performance(board.performance),
        exam_history=[history_entry(view) for view in board.history],
    )
