"""Allowances between protobuf messages and the domain's terms."""

from __future__ import annotations

from veritas.v1 import resources_pb2

from veritas_grpc.api.convert import optional_time, set_time
from veritas_grpc.domain.allowances import (
    EventExemption,
    ExtraAttempts,
    ExtraTime,
    PersonalWindow,
    Terms,
)
from veritas_grpc.domain.errors import Validator
from veritas_grpc.services.views.allowances import AllowanceView

FIELD = "allowance"  # GrantAllowanceRequest.allowance: violations name paths under it


def terms(message: resources_pb2.AllowanceTerms) -> Terms | None:
    """The terms a request grants; None when it set no kind (the use case says so on
    `allowance`). Event types keep the request's order here, so that a violation's
    index names the request's entry."""
    kind = message.WhichOneof("kind")
    if kind == "extra_time":
        return _extra_time(message.extra_time)
    if kind == "extra_attempts":
        return ExtraAttempts(message.extra_attempts.count)
    if kind == "personal_window":
        return _window(message.personal_window)
    if kind == "event_exemption":
        return EventExemption(tuple(message.event_exemption.event_types))
    return None


def _extra_time(message: resources_pb2.ExtraTime) -> ExtraTime:
    amount = message.WhichOneof("amount")
    if amount == "minutes":
        return ExtraTime(minutes=message.minutes)
    if amount == "percent_of_duration":
        return ExtraTime(percent=message.percent_of_duration)
    return ExtraTime()  # neither: the use case's check names allowance.extra_time


def _window(message: resources_pb2.PersonalWindow) -> PersonalWindow:
    path = f"{FIELD}.personal_window"
    opens = optional_time(message, "open_time", f"{path}.open_time")
    closes = optional_time(message, "close_time", f"{path}.close_time")
    check = Validator()
    check.check(opens is not None, f"{path}.open_time", "is required")
    check.check(closes is not None, f"{path}.close_time", "is required")
    check.raise_if_any()
    assert opens is not None and closes is not None
    return PersonalWindow(opens, closes)


def terms_message(value: Terms) -> resources_pb2.AllowanceTerms:
    if isinstance(value, ExtraTime):
        if value.minutes is not None:
            return resources_pb2.AllowanceTerms(
                extra_time=resources_pb2.ExtraTime(minutes=value.minutes)
            )
        return resources_pb2.AllowanceTerms(
            extra_time=resources_pb2.ExtraTime(percent_of_duration=value.percent or 0)
        )
    if isinstance(value, ExtraAttempts):
        return resources_pb2.AllowanceTerms(
            extra_attempts=resources_pb2.ExtraAttempts(count=value.count)
        )
    if isinstance(value, PersonalWindow):
        window = resources_pb2.PersonalWindow()
        set_time(window, "open_time", value.opens_at)
        set_time(window, "close_time", value.closes_at)
        return resources_pb2.AllowanceTerms(personal_window=window)
    return resources_pb2.AllowanceTerms(
        event_exemption=resources_pb2.EventExemption(event_types=value.event_types)
    )


def allowance(view: AllowanceView) -> resources_pb2.Allowance:
    message = resources_pb2.Allowance(
        id=str(view.id),
        exam_id=str(view.exam_id),
        student_id=str(view.student_id),
        student_name=view.student_name,
        terms=terms_message(view.terms),
        note=view.note,
        granter_id=str(view.granter_id) if view.granter_id else "",
    )
    set_time(message, "grant_time", view.grant_time)
    set_time(message, "revoke_time", view.revoke_time)
    return message
