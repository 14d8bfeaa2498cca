"""Evidence messages for the scorer's unit tests, built as GetAttemptEvidence sends them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from veritas.v1 import analysis_pb2, common_pb2, resources_pb2

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
SEVERITY = {
    "INFO": common_pb2.SEVERITY_INFO,
    "WARNING": common_pb2.SEVERITY_WARNING,
    "CRITICAL": common_pb2.SEVERITY_CRITICAL,
}


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def evidence_event(
    event_type: str,
    seconds: float,
    severity: str = "WARNING",
    *,
    technical: bool = False,
    anomaly: bool = False,
    dismissed: bool = False,
) -> analysis_pb2.EvidenceEvent:
    category = (
        common_pb2.EVENT_CATEGORY_TECHNICAL if technical else common_pb2.EVENT_CATEGORY_INTEGRITY
    )
    return analysis_pb2.EvidenceEvent(
        event=resources_pb2.EventRecord(
            event_id=str(uuid.uuid4()),
            attempt_id="5b1d8a4e-0000-4000-8000-000000000001",
            event_type=event_type,
            category=category,
            severity=SEVERITY[severity],
            is_anomaly=anomaly,
            occur_time=stamp(T0 + timedelta(seconds=seconds)),
            data_json='{"source": "unit"}',
        ),
        review_decision=common_pb2.REVIEW_DECISION_DISMISSED
        if dismissed
        else common_pb2.REVIEW_DECISION_UNSPECIFIED,
    )


def evidence(
    rules: dict[str, float] | None = None,
    status: common_pb2.AttemptStatus.ValueType = common_pb2.ATTEMPT_STATUS_SUBMITTED,
    event_count: int = 0,
) -> analysis_pb2.AttemptEvidence:
    return analysis_pb2.AttemptEvidence(
        attempt=resources_pb2.Attempt(id="5b1d8a4e-0000-4000-8000-000000000001", status=status),
        behavior_rules=[
            resources_pb2.BehaviorRule(event_type=kind, weight=weight)
            for kind, weight in (rules or {}).items()
        ],
        event_count=event_count,
    )


async def stream_of(
    items: Iterable[analysis_pb2.EvidenceEvent],
) -> AsyncIterator[analysis_pb2.EvidenceEvent]:
    for item in items:
        yield item
