"""Throttle buckets: what a failure (or registration) counter counts.

A bucket is a (scope, subject) pair, stored as one row of sign_in_throttles:

- ACCOUNT: an e-mail address (known or not, so a lock reveals no account), counting
  failed sign-ins from every client address;
- ACCOUNT_ADDRESS: an e-mail address signed into from one client address;
- ADDRESS: a client address (IPv6: its /64), counting failed sign-ins for any account;
- REGISTER: a client address, counting Register calls;
- SET_PASSWORD: a client address, counting SetPassword calls (a success gives its own
  back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Scope(StrEnum):
    ACCOUNT = "account"
    ACCOUNT_ADDRESS = "account_address"
    ADDRESS = "address"
    REGISTER = "register"
    SET_PASSWORD = "set_password"


@dataclass(frozen=True)
class Bucket:
    scope: Scope
    subject: str

    @classmethod
    def account(cls, email: str) -> Bucket:
        return cls(Scope.ACCOUNT, email)

    @classmethod
    def account_address(cls, email: str, address_key: str) -> Bucket:
        # A space appears in neither a valid e-mail address nor an address key.
        return cls(Scope.ACCOUNT_ADDRESS, f"{email} {address_key}")

    @classmethod
    def address(cls, address_key: str) -> Bucket:
        return cls(Scope.ADDRESS, address_key)

    @classmethod
    def register(cls, address_key: str) -> Bucket:
        return cls(Scope.REGISTER, address_key)

    @classmethod
    def set_password(cls, address_key: str) -> Bucket:
        return cls(Scope.SET_PASSWORD, address_key)


@dataclass(frozen=True)
class ThrottleCount:
    """A bucket after an attempt was counted in it: the attempt's number in the current
    window, when that window started, and the end of a lock (in force or past), if any."""

    attempts: int
    window_started_at: datetime
    locked_until: datetime | None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now
