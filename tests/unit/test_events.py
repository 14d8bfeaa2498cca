import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from veritas_grpc.domain.events import (
    EventRow,
    EventWindow,
    IncomingEvent,
    Refusal,
    RefusalKind,
    check_event,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _incoming(**fields):
    values = {
        "event_id": str(uuid.uuid4()),
        "attempt_id": str(uuid.uuid4()),
        "event_type": "tab_switch",
        "category": None,
        "severity": None,
        "is_anomaly": False,
        "occurred_at": NOW - timedelta(seconds=5),
        "data_json": '{"n": 1}',
        "description": "",
    }
    values.update(fields)
    return IncomingEvent(**values)


def test_a_valid_event_becomes_a_row_with_defaults():
    row = check_event(_incoming(), NOW, EventWindow())
    assert isinstance(row, EventRow)
    assert row.category == "INTEGRITY" and row.severity is None
    assert row.data == '{"n": 1}'


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event_id": "x"}, "event_id: must be a UUID"),
        ({"attempt_id": ""}, "attempt_id: must be a UUID"),
        ({"event_type": "x" * 65}, "event_type: must be lower_snake_case, 1 to 64 characters"),
        ({"occurred_at": None}, "occur_time: is required"),
        ({"occurred_at": NOW - timedelta(hours=25)}, "occur_time: too far in the past"),
        ({"occurred_at": NOW + timedelta(minutes=6)}, "occur_time: in the future"),
        ({"data_json": "[]"}, "data_json: must be a JSON object"),
        ({"data_json": "{"}, "data_json: not valid JSON"),
        ({"data_json": '{"a": 1} {"b": 2}'}, "data_json: not valid JSON"),
        ({"data_json": '{"a": 1}x'}, "data_json: not valid JSON"),
        ({"data_json": ' "text" '}, "data_json: must be a JSON object"),
        ({"data_json": json.dumps({"k": "v" * 17000})}, "data_json: larger than 16 KiB"),
        ({"description": "d" * 1001}, "description: longer than 1000 characters"),
        ({"detector_confidence": 1.5}, "detector.confidence_score: must be between 0 and 1"),
    ],
)
def test_each_defect_has_its_reason(fields, reason):
    result = check_event(_incoming(**fields), NOW, EventWindow())
    field, _, problem = reason.partition(": ")
    assert isinstance(result, Refusal) and result.kind is RefusalKind.INVALID
    assert result.field == field and result.problem.startswith(problem)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"description": "a\x00b"}, "description: must not contain NUL"),
        ({"detector_name": "gaze\x00"}, "detector.name: must not contain NUL"),
        ({"detector_version": "1\x00"}, "detector.version: must not contain NUL"),
        ({"detector_name": "n" * 65}, "detector.name: longer than 64 characters"),
        ({"data_json": '{"x": NaN}'}, "data_json: not valid JSON"),
        ({"data_json": '{"x": Infinity}'}, "data_json: not valid JSON"),
        ({"data_json": '{"x": "\\ud800"}'}, "data_json: not valid JSON"),
        ({"data_json": '{"x": 1e400}'}, "data_json: not valid JSON (number is infinity"),
        ({"data_json": '{"x": "a\tb"}'}, "data_json: not valid JSON"),
    ],
)
def test_values_that_cannot_be_stored_or_read_back_are_refused_per_event(fields, reason):
    result = check_event(_incoming(**fields), NOW, EventWindow())
    field, _, problem = reason.partition(": ")
    assert isinstance(result, Refusal) and result.kind is RefusalKind.INVALID
    assert result.field == field and result.problem.startswith(problem)


def test_a_confidence_too_small_for_a_real_is_stored_as_zero():
    row = check_event(_incoming(detector_confidence=1e-300), NOW, EventWindow())
    assert isinstance(row, EventRow) and row.detector_confidence == 0.0
    row = check_event(_incoming(detector_confidence=2e-38), NOW, EventWindow())
    assert isinstance(row, EventRow) and row.detector_confidence == 2e-38


def test_deeply_nested_payloads_are_judged_not_crashed_on():
    escaped = '{"a":' + "[" * 900 + '"C:\\\\u0000"' + "]" * 900 + "}"
    assert isinstance(check_event(_incoming(data_json=escaped), NOW, EventWindow()), EventRow)
    too_deep = '{"a":' + "[" * 5000 + "]" * 5000 + "}"
    result = check_event(_incoming(data_json=too_deep), NOW, EventWindow())
    assert isinstance(result, Refusal) and result.field == "data_json"


@pytest.mark.parametrize(
    "data_json",
    [
        '{"a":1}',
        ' {"a": 1}',
        '{"a": 1}\n',
        '\t{ "a" : [1, {}] }  ',
        '{"path": "C:\\\\u0000", "nul": "\\u0000"}',  # json keeps escapes as text
        '{"tiny": 1e-20000, "long": 123456789012345678901234567890}',
    ],
)
def test_valid_json_objects_are_accepted(data_json):
    row = check_event(_incoming(data_json=data_json), NOW, EventWindow())
    assert isinstance(row, EventRow) and row.data == data_json


def test_escaped_characters_postgresql_accepts_stay_accepted():
    ok = check_event(
        _incoming(data_json='{"emoji": "\\ud83d\\ude00", "e": "\\u00e9"}'), NOW, EventWindow()
    )
    assert isinstance(ok, EventRow)


def test_alert_notifications_are_split_under_the_notify_limit():
    from veritas_grpc.repositories.events import MAX_NOTIFY_BYTES, _chunks

    alerts = [json.dumps({"n": n, "description": "dé😀" * 50}) for n in range(200)]
    chunks = list(_chunks("exam-1", alerts))
    # The database completes each payload with its first alert's sequence (up to 19
    # digits) and a closing brace.
    payloads = [head + str(10**18 + first) + "}" for first, head in chunks]
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_NOTIFY_BYTES and p.isascii() for p in payloads)
    decoded = [json.loads(p) for p in payloads]
    assert {d["exam_id"] for d in decoded} == {"exam-1"}
    assert [a["n"] for d in decoded for a in d["alerts"]] == list(range(200))
    # Each chunk starts at the ordinal of its first alert among the exam's.
    firsts = [first for first, _ in chunks]
    assert firsts[0] == 1
    assert firsts[1:] == [
        1 + sum(len(d["alerts"]) for d in decoded[:i]) for i in range(1, len(decoded))
    ]
    assert decoded[0]["alerts"][0]["description"] == "dé😀" * 50
