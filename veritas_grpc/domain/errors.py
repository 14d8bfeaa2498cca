"""Domain errors. Services raise them; one interceptor turns them into gRPC statuses.

Messages are written for the caller: they never carry SQL, stack traces or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request is malformed; nothing was written."""

    def __init__(
        self, violations: list[FieldViolation] | FieldViolation, message: str | None = None
    ) -> None:
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = tuple(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(message or f"invalid argument: {fields}")

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(field, description))

    @classmethod
    def unparseable(cls) -> InvalidArgument:
        """The request's bytes are not a message of its type: no field is to blame."""
        return cls([], "the request could not be parsed")


class NotFound(DomainError):
    """The resource does not exist, or the caller may not know that it exists."""


class AlreadyExists(DomainError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Conflict(DomainError):
    """A write broke a constraint of the stored data: usually a concurrent request got
    there first (two registrations of one address, two starts of one attempt). Use cases
    that expect such a race turn it into their own answer; anywhere else it is an
    unexpected error, answered as INTERNAL like any other."""


class Unauthenticated(DomainError):
    """No valid credentials. One message for every cause, so callers learn nothing."""

    def __init__(self, message: str = "invalid or missing credentials") -> None:
        super().__init__(message)


class PermissionDenied(DomainError):
    def __init__(self, message: str = "permission denied") -> None:
        super().__init__(message)


class FailedPrecondition(DomainError):
    pass


class TooManyAttempts(DomainError):
    """Sign-in (or registration) is throttled until retry_at."""

    def __init__(
        self, retry_at: datetime, now: datetime, what: str = "failed sign-in attempts"
    ) -> None:
        self.retry_at = retry_at
        self.retry_after_seconds = max(1, int((retry_at - now).total_seconds() + 0.999))
        super().__init__(
            f"too many {what}; retry after "
            f"{retry_at.isoformat(timespec='seconds')} ({self.retry_after_seconds} s)"
        )


class Overloaded(DomainError):
    """Too much of one kind of work is queued already; retrying shortly may succeed."""

    retry_after_seconds = 1


class Unavailable(DomainError):
    """A dependency (the database) cannot be reached; retrying later may succeed."""


class Validator:
    """Collects every field violation of a request, so one answer lists them all."""

    def __init__(self) -> None:
        self._violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._violations.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self.add(field, description)

    def raise_if_any(self) -> None:
        if self._violations:
            raise InvalidArgument(self._violations)
