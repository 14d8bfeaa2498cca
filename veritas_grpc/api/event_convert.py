"""Monitoring events between protobuf messages and plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from veritas.v1 import common_pb2, monitoring_pb2, resources_pb2, teacher_pb2

from veritas_grpc.api import allowance_convert, analysis_convert
from veritas_grpc.api.convert import (
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    SEVERITIES,
    SEVERITY_NAMES,
    UNKNOWN,
    enum_name,
    optional_time,
    set_time,
)
from veritas_grpc.api.exam_convert import attempt_record
from veritas_grpc.domain.event_store import StoredEvent
from veritas_grpc.domain.events import IncomingEvent
from veritas_grpc.services.ingestion import StreamOutcome
from veritas_grpc.services.monitoring import AttemptMonitoring, EventFilter
from veritas_grpc.services.watching import WatchItem

CATEGORY_NAMES = {
    common_pb2.EVENT_CATEGORY_INTEGRITY: "INTEGRITY",
    common_pb2.EVENT_CATEGORY_TECHNICAL: "TECHNICAL",
}
CATEGORIES = {name: value for value, name in CATEGORY_NAMES.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def incoming(event: resources_pb2.MonitoringEvent) -> IncomingEvent:
    """Runs once per ingested event: kept to plain attribute reads."""
    occurred_at, unrepresentable = None, False
    if event.HasField("occur_time"):
        stamp = event.occur_time
        seconds, nanos = stamp.seconds, stamp.nanos
        # representable(stamp), inline: this runs for every ingested event.
        if MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS and 0 <= nanos < 10**9:
            occurred_at = _EPOCH + timedelta(0, seconds, nanos // 1000)
        else:
            unrepresentable = True
    detector = event.detector if event.HasField("detector") else None
    return IncomingEvent(
        event.event_id,
        event.attempt_id,
        event.event_type,
        CATEGORY_NAMES.get(event.category, UNKNOWN) if event.category else None,
        SEVERITY_NAMES.get(event.severity, UNKNOWN) if event.severity else None,
        event.is_anomaly,
        occurred_at,
        event.data_json,
        event.description,
        detector.name if detector else "",
        detector.version if detector else "",
        detector.confidence_score if detector else None,
        unrepresentable,
    )


def stream_response(outcome: StreamOutcome) -> monitoring_pb2.StreamEventsResponse:
    return monitoring_pb2.StreamEventsResponse(
        accepted_count=outcome.accepted,
        duplicate_count=outcome.duplicates,
        rejected_count=outcome.rejected,
        rejections=[
            monitoring_pb2.Rejection(
                index=r.index,
                event_id=r.event_id,
                field=r.refusal.field,
                reason=r.refusal.problem,
                retryable=r.retryable,
            )
            for r in outcome.rejections
        ],
    )


def event_filter(request: monitoring_pb2.ListEventsRequest) -> EventFilter:
    return EventFilter(
        min_severity=enum_name(SEVERITY_NAMES, request.min_severity, "min_severity"),
        anomalies_only=request.anomalies_only,
        event_types=tuple(request.event_types),
        start=optional_time(request, "start_time", "start_time"),
        end=optional_time(request, "end_time", "end_time"),
    )


def event_record(row: StoredEvent, exempt: bool) -> resources_pb2.EventRecord:
    """A stored event, as the monitoring service reads it back; exempt: its type is
    exempt for the attempt's student."""
    message = resources_pb2.EventRecord(
        event_id=str(row.event_id),
        attempt_id=str(row.attempt_id),
        event_type=row.event_type,
        category=CATEGORIES[row.category],
        severity=SEVERITIES[row.severity],
        is_anomaly=row.is_anomaly,
        data_json=row.data or "",
        description=row.description,
        detector=resources_pb2.Detector(
            name=row.detector_name,
            version=row.detector_version,
            confidence_score=row.detector_confidence or 0.0,
        ),
        exempt_by_allowance=exempt,
    )
    set_time(message, "occur_time", row.occurred_at)
    set_time(message, "receive_time", row.received_at)
    return message


def watch_response(item: WatchItem) -> monitoring_pb2.WatchExamAlertsResponse:
    response = monitoring_pb2.WatchExamAlertsResponse(dropped_alert_count=item.dropped_count)
    if item.alert is None:
        response.heartbeat.server_time.FromDatetime(item.server_time)
        response.heartbeat.last_sequence = item.last_sequence
    else:
        response.alert.CopyFrom(event_alert(item.alert))
    return response


def event_alert(alert: dict[str, Any]) -> monitoring_pb2.EventAlert:
    message = monitoring_pb2.EventAlert(
        attempt_id=alert["attempt_id"],
        student_id=alert["student_id"],
        event_id=alert["event_id"],
        event_type=alert["event_type"],
        severity=SEVERITIES.get(alert["severity"], 0),
        is_anomaly=alert["is_anomaly"],
        description=alert["description"],
        sequence=alert.get("sequence", 0),
    )
    set_time(message, "occur_time", datetime.fromisoformat(alert["occurred_at"]))
    return message


def attempt_monitoring(view: AttemptMonitoring) -> teacher_pb2.GetAttemptMonitoringResponse:
    response = teacher_pb2.GetAttemptMonitoringResponse(
        attempt=attempt_record(view.attempt),
        event_summary=[
            teacher_pb2.EventSummary(
                event_type=row.event_type,
                severity=SEVERITIES[row.severity],
                event_count=row.count,
                anomaly_count=row.anomaly_count,
            )
            for row in view.summary
        ],
        timeline_next_page_token=view.timeline.next_token,
    )
    for row in view.timeline.items:
        entry = response.timeline.add(
            event_id=str(row.event_id),
            event_type=row.event_type,
            severity=SEVERITIES[row.severity],
            is_anomaly=row.is_anomaly,
            description=row.description,
            category=CATEGORIES[row.category],
            exempt_by_allowance=row.event_type in view.exempt_types,
        )
        set_time(entry, "occur_time", row.occurred_at)
    if view.analysis is not None:
        response.behavior_analysis.CopyFrom(analysis_convert.analysis(view.analysis))
    response.reviews.extend(analysis_convert.review(review) for review in view.reviews)
    response.allowances.extend(allowance_convert.allowance(a) for a in view.allowances)
    return response
