"""The event's columns are declared once (domain.events.EVENT_COLUMNS): the row, the
table and the COPY lines the repository (and the ingest benchmark) write must agree."""

import uuid
from datetime import UTC, datetime

from veritas_grpc.db.models import monitoring_events
from veritas_grpc.domain.events import EVENT_COLUMNS, EventRow
from veritas_grpc.repositories.events import NULL, copy_line, copy_text

OCCURRED = datetime(2026, 11, 29, 12, 0, 1, 250000, tzinfo=UTC)


def _row(**fields) -> EventRow:
    values = {
        "attempt_id": str(uuid.UUID(int=1)),
        "occurred_at": OCCURRED,
        "event_id": str(uuid.UUID(int=2)),
        "event_type": "tab_switch",
        "category": "INTEGRITY",
        "severity": "WARNING",
        "is_anomaly": True,
        "description": "left\tthe\nexam\\tab\r",
        "detector_name": "vision",
        "detector_version": "2.3",
        "detector_confidence": 0.75,
        "data": '{"k": "v"}',
        "sent_by": str(uuid.UUID(int=3)),
    }
    values.update(fields)
    return EventRow(**values)


def _unescape(field: str) -> str | None:
    if field == NULL:
        return None
    out, chars = [], iter(field)
    for char in chars:
        if char == "\\":
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[next(chars)])
        else:
            out.append(char)
    return "".join(out)


def test_the_table_stores_the_row_columns_and_adds_only_the_receipt_time():
    assert set(monitoring_events.c.keys()) - set(EVENT_COLUMNS) == {"received_at"}
    assert set(EVENT_COLUMNS) <= set(monitoring_events.c.keys())


def test_the_row_holds_exactly_the_columns_and_its_key():
    assert EventRow.__slots__ == (*EVENT_COLUMNS, "key")


def test_a_copy_line_holds_each_column_in_order_escaped():
    row = _row()
    line = copy_line(row)
    assert line.endswith("\n") and line.count("\n") == 1
    fields = dict(zip(EVENT_COLUMNS, map(_unescape, line[:-1].split("\t")), strict=True))
    assert fields == {
        "attempt_id": row.attempt_id,
        "occurred_at": "2026-11-29T12:00:01.250000+00:00",
        "event_id": row.event_id,
        "event_type": "tab_switch",
        "category": "INTEGRITY",
        "severity": "WARNING",
        "is_anomaly": "t",
        "description": "left\tthe\nexam\\tab\r",
        "detector_name": "vision",
        "detector_version": "2.3",
        "detector_confidence": "0.75",
        "data": '{"k": "v"}',
        "sent_by": row.sent_by,
    }


def test_absent_values_are_copy_nulls():
    line = copy_line(_row(detector_confidence=None, data=None, sent_by=None, is_anomaly=False))
    fields = dict(zip(EVENT_COLUMNS, line[:-1].split("\t"), strict=True))
    assert (fields["detector_confidence"], fields["data"], fields["sent_by"]) == (NULL,) * 3
    assert fields["is_anomaly"] == "f"


def test_copy_text_is_one_line_per_row():
    rows = [_row(event_id=str(uuid.uuid4())) for _ in range(3)]
    assert copy_text(rows) == "".join(copy_line(row) for row in rows)
