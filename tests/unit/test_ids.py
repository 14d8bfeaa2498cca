"""Ids are checked exactly: a value the database (or another reader) would take
differently from the check is refused at the check."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from veritas_grpc.domain.errors import InvalidArgument
from veritas_grpc.domain.events import EVENT_TYPE, EventWindow, IncomingEvent, Refusal, check_event
from veritas_grpc.domain.ids import canonical_uuid, parse_id
from veritas_grpc.interceptors.request_log import _CLIENT_REQUEST_ID
from veritas_grpc.services.accounts import EMAIL_PATTERN, ENROLLMENT_PATTERN
from veritas_grpc.services.exams import EVENT_TYPE as RULE_EVENT_TYPE

VALID = "0b3c2a9e-5d1f-4c7a-9e2b-8f6d4a1c3e5b"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
# Each is a UUID to uuid.UUID() or to a `^...$` pattern, and none is one exactly.
NEAR_MISSES = [
    VALID + "\n",
    VALID + " ",
    " " + VALID,
    "{" + VALID + "}",
    "urn:uuid:" + VALID,
    VALID.replace("-", ""),
    VALID.replace("0b3c", "+b3c"),
    VALID.replace("0b3c", "0_3c"),
]


@pytest.mark.parametrize("value", NEAR_MISSES)
def test_only_the_exact_form_is_an_id(value):
    assert canonical_uuid(value) is None
    with pytest.raises(InvalidArgument) as error:
        parse_id(value, "exam_id")
    assert error.value.violations[0].field == "exam_id"


def test_an_id_is_read_in_either_case_and_kept_in_lower_case():
    assert parse_id(VALID.upper(), "exam_id") == uuid.UUID(VALID)
    assert canonical_uuid(VALID.upper()) == VALID


@pytest.mark.parametrize("field", ["event_id", "attempt_id"])
def test_an_event_whose_id_ends_in_a_newline_is_refused_by_the_rules(field):
    values = {
        "event_id": str(uuid.uuid4()),
        "attempt_id": str(uuid.uuid4()),
        "event_type": "tab_switch",
        "category": None,
        "severity": None,
        "is_anomaly": False,
        "occurred_at": NOW - timedelta(seconds=5),
        "data_json": "",
        "description": "",
    }
    values[field] = VALID + "\n"
    refusal = check_event(IncomingEvent(**values), NOW, EventWindow())
    assert isinstance(refusal, Refusal) and refusal.field == field


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        (EVENT_TYPE, "tab_switch"),
        (EMAIL_PATTERN, "a@b.example"),
        (ENROLLMENT_PATTERN, "S-2026/17"),
        (RULE_EVENT_TYPE, "tab_switch"),
        (_CLIENT_REQUEST_ID, "req-17"),
    ],
)
def test_patterns_do_not_take_a_trailing_newline(pattern, value):
    assert pattern.match(value)
    assert not pattern.match(value + "\n")
