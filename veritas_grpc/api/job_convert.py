"""The analysis queue's jobs, leases, summary and evidence to protobuf messages."""

from __future__ import annotations

from veritas.v1 import analysis_pb2, resources_pb2

from veritas_grpc.api import exam_convert
from veritas_grpc.api.analysis_convert import DECISION_VALUES, analysis
from veritas_grpc.api.convert import enum_name, set_time
from veritas_grpc.api.event_convert import event_record
from veritas_grpc.domain.analysis_jobs import JobReason, JobState
from veritas_grpc.services.views.analysis_jobs import (
    EvidencePage,
    JobView,
    LeaseView,
    QueueSummary,
)

REASONS = {
    JobReason.ATTEMPT_ENDED: analysis_pb2.ANALYSIS_JOB_REASON_ATTEMPT_ENDED,
    JobReason.LATE_EVENTS: analysis_pb2.ANALYSIS_JOB_REASON_LATE_EVENTS,
    JobReason.EVENT_REVIEWED: analysis_pb2.ANALYSIS_JOB_REASON_EVENT_REVIEWED,
}
STATES = {
    JobState.PENDING: analysis_pb2.ANALYSIS_JOB_STATE_PENDING,
    JobState.LEASED: analysis_pb2.ANALYSIS_JOB_STATE_LEASED,
    JobState.DONE: analysis_pb2.ANALYSIS_JOB_STATE_DONE,
    JobState.DEAD: analysis_pb2.ANALYSIS_JOB_STATE_DEAD,
}
STATE_NAMES = {value: state for state, value in STATES.items()}


def state_filter(value: int) -> JobState | None:
    """ListAnalysisJobsRequest.state: None for all (UNSPECIFIED); an unknown value is
    refused on its field."""
    name = enum_name({v: s.value for v, s in STATE_NAMES.items()}, value, "state")
    return JobState(name) if name is not None else None


def job(view: JobView) -> analysis_pb2.AnalysisJob:
    message = analysis_pb2.AnalysisJob(
        job_id=str(view.id),
        attempt_id=str(view.attempt_id),
        reason=REASONS[view.reason],
        state=STATES[view.state],
        failed_try_count=view.failed_tries,
        holder_id=str(view.holder_id) if view.holder_id else "",
        last_error=view.last_error,
        analysis_id=str(view.analysis_id) if view.analysis_id else "",
    )
    set_time(message, "create_time", view.created_at)
    set_time(message, "available_time", view.available_at)
    set_time(message, "lease_expire_time", view.lease_expires_at)
    set_time(message, "complete_time", view.completed_at)
    return message


def lease(view: LeaseView) -> analysis_pb2.AnalysisJobLease:
    return analysis_pb2.AnalysisJobLease(lease_token=view.token, job=job(view.job))


def queue_summary(summary: QueueSummary) -> resources_pb2.AnalysisQueueSummary:
    return resources_pb2.AnalysisQueueSummary(
        pending_count=summary.pending,
        claimable_count=summary.claimable,
        leased_count=summary.leased,
        dead_count=summary.dead,
        oldest_pending_age_seconds=summary.oldest_pending_age_seconds,
    )


def evidence_page(page: EvidencePage) -> analysis_pb2.GetAttemptEvidenceResponse:
    message = analysis_pb2.GetAttemptEvidenceResponse(
        events=[
            analysis_pb2.EvidenceEvent(
                event=event_record(item.event, item.exempt),
                review_decision=DECISION_VALUES.get(item.decision or "", 0),
            )
            for item in page.events
        ]
    )
    header = page.header
    if header is not None:
        evidence = message.evidence
        evidence.attempt.CopyFrom(exam_convert.attempt_record(header.attempt))
        evidence.behavior_rules.extend(exam_convert.behavior_rule(r) for r in header.rules)
        evidence.student_performance.CopyFrom(exam_convert.performance(header.performance))
        if header.current_analysis is not None:
            evidence.current_analysis.CopyFrom(analysis(header.current_analysis))
        evidence.event_count = header.event_count
        evidence.exempt_event_types.extend(header.exempt_types)
    return message
