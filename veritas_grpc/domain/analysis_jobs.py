"""The analysis queue's rules: job states and reasons, lease bounds, and the backoff
after a failed try."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from veritas_grpc.domain.errors import Validator


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    LEASED = "LEASED"
    DONE = "DONE"
    DEAD = "DEAD"


class JobReason(enum.StrEnum):
    ATTEMPT_ENDED = "ATTEMPT_ENDED"
    LATE_EVENTS = "LATE_EVENTS"
    EVENT_REVIEWED = "EVENT_REVIEWED"


DEFAULT_LEASE_SECONDS = 300
MIN_LEASE_SECONDS = 10
MAX_LEASE_SECONDS = 3600
MAX_CLAIM = 100
MAX_WAIT_SECONDS = 60
MAX_RETRY_AFTER_SECONDS = 86_400
MAX_BACKOFF_SECONDS = 3600
MAX_ERROR_CHARS = 1000
MAX_TOKEN_CHARS = 100
LEASE_EXPIRED = "the lease expired"

# One message whether the token is unknown, expired, completed or another caller's: a
# token's existence is nobody else's business.
LEASE_NOT_HELD = "the lease is not held: it expired, was completed, or is not yours"


@dataclass(frozen=True)
class QueueCounts:
    pending: int
    claimable: int
    leased: int
    dead: int
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class RetryPolicy:
    """How many failed tries a job gets, and the backoff before each next one."""

    max_tries: int = 5
    base_seconds: float = 10.0

    def backoff(self, failed_tries: int) -> timedelta:
        """base × 2^(tries − 1), at most an hour."""
        seconds = self.base_seconds * 2 ** max(failed_tries - 1, 0)
        return timedelta(seconds=min(seconds, MAX_BACKOFF_SECONDS))


@dataclass(frozen=True)
class ClaimRequest:
    max_jobs: int
    lease_seconds: int
    wait_seconds: int


def claim_request(max_jobs: int, lease_seconds: int, wait_seconds: int) -> ClaimRequest:
    check = Validator()
    check.check(0 <= max_jobs <= MAX_CLAIM, "max_jobs", f"must be between 0 and {MAX_CLAIM}")
    _check_lease(check, lease_seconds)
    check.check(
        0 <= wait_seconds <= MAX_WAIT_SECONDS,
        "wait_seconds",
        f"must be between 0 and {MAX_WAIT_SECONDS}",
    )
    check.raise_if_any()
    return ClaimRequest(max_jobs or 1, lease_seconds or DEFAULT_LEASE_SECONDS, wait_seconds)


def lease_duration(lease_seconds: int) -> timedelta:
    check = Validator()
    _check_lease(check, lease_seconds)
    check.raise_if_any()
    return timedelta(seconds=lease_seconds or DEFAULT_LEASE_SECONDS)


def _check_lease(check: Validator, lease_seconds: int) -> None:
    check.check(
        lease_seconds == 0 or MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS,
        "lease_seconds",
        f"must be 0 or between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS}",
    )


def check_failure(reason: str, retry_after_seconds: int | None) -> None:
    check = Validator()
    check.check(bool(reason.strip()), "reason", "is required")
    check.check(len(reason) <= MAX_ERROR_CHARS, "reason", f"at most {MAX_ERROR_CHARS} characters")
    if retry_after_seconds is not None:
        check.check(
            0 <= retry_after_seconds <= MAX_RETRY_AFTER_SECONDS,
            "retry_after_seconds",
            f"must be between 0 and {MAX_RETRY_AFTER_SECONDS}",
        )
    check.raise_if_any()


def new_lease_token() -> str:
    return secrets.token_urlsafe(32)


def lease_token_hash(token: str) -> str:
    """What is stored of a token. A token no server issued hashes to nothing stored, so
    it is refused like an expired one (LEASE_NOT_HELD)."""
    check = Validator()
    check.check(bool(token), "lease_token", "is required")
    check.check(
        len(token) <= MAX_TOKEN_CHARS, "lease_token", f"at most {MAX_TOKEN_CHARS} characters"
    )
    check.raise_if_any()
    return hashlib.sha256(token.encode()).hexdigest()
