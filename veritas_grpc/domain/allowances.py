"""Accommodations: what an allowance grants, what a valid one is, and what a student's
standing allowances at an exam make of its rules (window, attempts, deadline, which
event types count). Everyone who applies an exam's rules to a student asks
`Accommodations`, so that StartAttempt, the deadline, the time-out sweep, the scorer,
flagging and the evidence agree."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from veritas_grpc.domain.errors import Validator
from veritas_grpc.domain.events import EVENT_TYPE

MAX_NOTE = 2000
MAX_EXEMPT_TYPES = 20
# "Absurd" amounts: more than 10 times the exam's own.
MAX_FACTOR = 10
MAX_PERCENT = 100 * MAX_FACTOR
MAX_WINDOW = timedelta(days=366)


class AllowanceKind(enum.StrEnum):
    EXTRA_TIME = "EXTRA_TIME"
    EXTRA_ATTEMPTS = "EXTRA_ATTEMPTS"
    PERSONAL_WINDOW = "PERSONAL_WINDOW"
    EVENT_EXEMPTION = "EVENT_EXEMPTION"


@dataclass(frozen=True)
class ExtraTime:
    """Minutes, or a percentage of the exam's duration (exactly one is set)."""

    minutes: int | None = None
    percent: int | None = None
    kind = AllowanceKind.EXTRA_TIME

    def minutes_for(self, duration_minutes: int) -> int:
        if self.minutes is not None:
            return self.minutes
        return math.ceil(duration_minutes * (self.percent or 0) / 100)


@dataclass(frozen=True)
class ExtraAttempts:
    count: int
    kind = AllowanceKind.EXTRA_ATTEMPTS


@dataclass(frozen=True)
class PersonalWindow:
    opens_at: datetime
    closes_at: datetime
    kind = AllowanceKind.PERSONAL_WINDOW


@dataclass(frozen=True)
class EventExemption:
    event_types: tuple[str, ...]  # distinct, sorted
    kind = AllowanceKind.EVENT_EXEMPTION


Terms = ExtraTime | ExtraAttempts | PersonalWindow | EventExemption


@dataclass(frozen=True)
class ExamLimits:
    """What of the exam bounds an allowance."""

    duration_minutes: int
    max_attempts: int


def check_grant(terms: Terms | None, note: str, limits: ExamLimits, now: datetime) -> Terms:
    """The terms, valid for the exam; InvalidArgument with field violations naming the
    request's fields otherwise."""
    check = Validator()
    check.check(len(note) <= MAX_NOTE, "note", f"must have at most {MAX_NOTE} characters")
    check.check("\x00" not in note, "note", "must not contain NUL characters")
    if terms is None:
        check.add("allowance", "is required: one of extra_time, extra_attempts, ...")
    elif isinstance(terms, ExtraTime):
        _check_extra_time(check, terms, limits)
    elif isinstance(terms, ExtraAttempts):
        most = MAX_FACTOR * limits.max_attempts
        check.check(
            1 <= terms.count <= most,
            "allowance.extra_attempts.count",
            f"must be 1 to {most} (10 x the exam's max_attempts)",
        )
    elif isinstance(terms, PersonalWindow):
        _check_window(check, terms, now)
    else:
        _check_exemption(check, terms)
    check.raise_if_any()
    assert terms is not None
    return terms


def _check_extra_time(check: Validator, terms: ExtraTime, limits: ExamLimits) -> None:
    if terms.minutes is not None:
        most = MAX_FACTOR * limits.duration_minutes
        check.check(
            1 <= terms.minutes <= most,
            "allowance.extra_time.minutes",
            f"must be 1 to {most} (10 x the exam's duration)",
        )
    elif terms.percent is not None:
        check.check(
            1 <= terms.percent <= MAX_PERCENT,
            "allowance.extra_time.percent_of_duration",
            f"must be 1 to {MAX_PERCENT}",
        )
    else:
        check.add("allowance.extra_time", "set minutes or percent_of_duration")


def _check_window(check: Validator, terms: PersonalWindow, now: datetime) -> None:
    field_path = "allowance.personal_window.close_time"
    if terms.closes_at <= terms.opens_at:
        check.add(field_path, "must be after open_time")
    elif terms.closes_at - terms.opens_at > MAX_WINDOW:
        check.add(field_path, "must be at most 366 days after open_time")
    check.check(terms.closes_at > now, field_path, "must be in the future")


def _check_exemption(check: Validator, terms: EventExemption) -> None:
    field_path = "allowance.event_exemption.event_types"
    count = len(terms.event_types)
    check.check(
        1 <= count <= MAX_EXEMPT_TYPES, field_path, f"must name 1 to {MAX_EXEMPT_TYPES} types"
    )
    for index, event_type in enumerate(terms.event_types):
        check.check(
            EVENT_TYPE.match(event_type) is not None,
            f"{field_path}[{index}]",
            "must be lower_snake_case, at most 64 characters",
        )


def exemption(event_types: Iterable[str]) -> EventExemption:
    """An exemption of these types, each once, in order (a resend of the same set is the
    same exemption)."""
    return EventExemption(tuple(sorted(set(event_types))))


@dataclass(frozen=True)
class Accommodations:
    """A student's standing allowances at one exam, combined: at most one of each kind
    stands at a time, so nothing is summed."""

    extra_time: ExtraTime | None = None
    extra_attempts: int = 0
    window: PersonalWindow | None = None
    exempt_types: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, standing: Iterable[Terms]) -> Accommodations:
        extra_time, extra_attempts, window, exempt = None, 0, None, frozenset[str]()
        for terms in standing:
            if isinstance(terms, ExtraTime):
                extra_time = terms
            elif isinstance(terms, ExtraAttempts):
                extra_attempts = terms.count
            elif isinstance(terms, PersonalWindow):
                window = terms
            else:
                exempt = exempt | frozenset(terms.event_types)
        return cls(extra_time, extra_attempts, window, exempt)

    def extra_minutes(self, duration_minutes: int) -> int:
        return self.extra_time.minutes_for(duration_minutes) if self.extra_time else 0

    def window_of(
        self, opens_at: datetime | None, closes_at: datetime | None
    ) -> tuple[datetime | None, datetime | None]:
        """The student's window: their personal one, else the exam's."""
        if self.window is not None:
            return self.window.opens_at, self.window.closes_at
        return opens_at, closes_at

    def is_open(self, opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> bool:
        start, end = self.window_of(opens_at, closes_at)
        return (start is None or start <= now) and (end is None or now < end)

    def attempts_allowed(self, max_attempts: int) -> int:
        return max_attempts + self.extra_attempts

    def deadline(
        self,
        started_at: datetime,
        duration_minutes: int,
        closes_at: datetime | None,
    ) -> datetime:
        """The start + the duration + the extra time, capped by the close of the
        student's window."""
        _, end = self.window_of(None, closes_at)
        minutes = duration_minutes + self.extra_minutes(duration_minutes)
        deadline = started_at + timedelta(minutes=minutes)
        return min(deadline, end) if end is not None else deadline

    def is_exempt(self, event_type: str) -> bool:
        return event_type in self.exempt_types


def extra_minutes_in(started_at: datetime, duration_minutes: int, deadline: datetime) -> int:
    """The extra time a deadline actually holds, in whole minutes rounded down: less than
    granted when the window's close caps it, none when the close cuts the duration."""
    extra = deadline - started_at - timedelta(minutes=duration_minutes)
    return max(0, extra // timedelta(minutes=1))
