"""One MonitoringEvent from record()'s arguments."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from veritas.v1 import common_pb2, resources_pb2


def _enum(enum_type: Any, prefix: str, value: int | str) -> int:
    """An enum given as its number, its full name or its short name ("WARNING")."""
    if isinstance(value, int):
        return value
    name = value.upper()
    try:
        return int(enum_type.Value(name if name.startswith(prefix) else prefix + name))
    except ValueError:
        raise ValueError(f"unknown {prefix.rstrip('_').lower()}: {value!r}") from None


def build_event(
    attempt_id: str,
    event_id: str,
    occur_time_ns: int,
    event_type: str,
    *,
    severity: int | str,
    category: int | str,
    is_anomaly: bool,
    data: Mapping[str, Any] | None,
    data_json: str | None,
    description: str,
    detector: resources_pb2.Detector | Mapping[str, Any] | None,
) -> resources_pb2.MonitoringEvent:
    if data is not None and data_json is not None:
        raise ValueError("give data or data_json, not both")
    if data is not None:
        # Strict JSON, as the server requires (no NaN or Infinity).
        data_json = json.dumps(data, separators=(",", ":"), allow_nan=False)
    event = resources_pb2.MonitoringEvent(
        event_id=event_id,
        attempt_id=attempt_id,
        event_type=event_type,
        severity=_enum(common_pb2.Severity, "SEVERITY_", severity),
        category=_enum(common_pb2.EventCategory, "EVENT_CATEGORY_", category),
        is_anomaly=is_anomaly,
        data_json=data_json or "",
        description=description,
    )
    event.occur_time.seconds, event.occur_time.nanos = divmod(occur_time_ns, 1_000_000_000)
    if isinstance(detector, resources_pb2.Detector):
        event.detector.CopyFrom(detector)
    elif detector is not None:
        event.detector.CopyFrom(resources_pb2.Detector(**detector))
    return event
