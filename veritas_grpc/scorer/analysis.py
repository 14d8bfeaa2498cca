"""What a scorer concludes about an attempt, and the request that saves it."""

from __future__ import annotations

from dataclasses import dataclass, field

from veritas.v1 import analysis_pb2, common_pb2, resources_pb2


@dataclass(frozen=True)
class Analysis:
    """The fields of CreateBehaviorAnalysisRequest that a model sets."""

    integrity_score: float
    dropout_label: common_pb2.DropoutLabel.ValueType
    learning_momentum_index: float | None = None
    llm_summary: str = ""
    llm_reasoning: str = ""
    recommendations: tuple[str, ...] = ()
    model_name: str = ""
    model_version: str = ""
    # Counted for the job's log line, not sent.
    event_count: int = field(default=0, compare=False)


def request_id_for(job: analysis_pb2.AnalysisJob) -> str:
    """The save's idempotency key: one per try of a job. A save whose answer was lost is
    sent again with the same key and replayed, not doubled; a later try (after a failure
    or an expired lease) has a key of its own, so it is never mistaken for the slow
    replica's save that it replaces."""
    return f"job-{job.job_id}-try-{job.failed_try_count}"


def save_request(
    lease: analysis_pb2.AnalysisJobLease, analysis: Analysis
) -> analysis_pb2.CreateBehaviorAnalysisRequest:
    request = analysis_pb2.CreateBehaviorAnalysisRequest(
        attempt_id=lease.job.attempt_id,
        integrity_score=analysis.integrity_score,
        dropout_label=analysis.dropout_label,
        llm_summary=analysis.llm_summary,
        llm_reasoning=analysis.llm_reasoning,
        recommendations=list(analysis.recommendations),
        model=resources_pb2.AnalysisModel(name=analysis.model_name, version=analysis.model_version),
        request_id=request_id_for(lease.job),
        lease_token=lease.lease_token,
    )
    if analysis.learning_momentum_index is not None:
        request.learning_momentum_index = analysis.learning_momentum_index
    return request
