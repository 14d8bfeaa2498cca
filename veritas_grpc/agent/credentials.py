"""How an agent signs in, and when its access token needs refreshing.

StreamEvents admits a STUDENT (for their own attempt) and a SERVICE account (any
attempt); both sign in with AuthService.Login and keep their session alive with
AuthService.Refresh, which rotates the refresh token: the old one is used up, and
presenting it again revokes the whole session (the server takes it for a stolen copy).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenCredentials:
    """An access and refresh token pair of a Login (or Refresh) answer."""

    access_token: str
    refresh_token: str = field(repr=False)

    @classmethod
    def from_pair(cls, tokens: object) -> TokenCredentials:
        """From a veritas.v1.TokenPair (LoginResponse.tokens)."""
        return cls(tokens.access_token, tokens.refresh_token)  # type: ignore[attr-defined]

    @property
    def origin(self) -> str:
        # Names this sign-in without keeping its secret: a spool whose tokens grew from
        # the same pair continues with its own, newer ones (see TokenState.resume).
        return "tokens:" + hashlib.sha256(self.refresh_token.encode()).hexdigest()


@dataclass(frozen=True)
class PasswordCredentials:
    """The library signs in itself (Login), and again whenever its session is lost."""

    email: str
    password: str = field(repr=False)

    @property
    def origin(self) -> str:
        return "password:" + self.email.strip().lower()


Credentials = TokenCredentials | PasswordCredentials


def jwt_times(token: str) -> tuple[float, float] | None:
    """(iat, exp) of a JWT, read without verifying it (the server verifies; the agent
    only needs to know when to refresh), or None when it is no readable JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["iat"]), float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


@dataclass
class TokenState:
    """The current pair, when it was obtained (the agent's clock) and its lifetime.

    Refresh is due `margin` seconds before the end of the lifetime, counted on the
    agent's own clock from when the pair arrived: a skewed clock does not matter."""

    access: str
    refresh: str
    obtained_at: float
    lifetime: float | None

    @classmethod
    def issued(cls, access: str, refresh: str, now: float | None = None) -> TokenState:
        times = jwt_times(access)
        received = time.time() if now is None else now
        return cls(access, refresh, received, times[1] - times[0] if times else None)

    @classmethod
    def given(cls, credentials: TokenCredentials) -> TokenState:
        """A pair handed in from outside: it was issued at its iat (the server's clock;
        the best guess there is), so a half-used token is refreshed early enough."""
        times = jwt_times(credentials.access_token)
        if times is None:
            return cls(credentials.access_token, credentials.refresh_token, time.time(), None)
        iat, exp = times
        return cls(credentials.access_token, credentials.refresh_token, iat, exp - iat)

    def refresh_due(self, margin: float | None, now: float) -> bool:
        if self.lifetime is None:
            return False  # unknown: refreshed when the server says UNAUTHENTICATED
        return now >= self.obtained_at + self.lifetime - self.margin(margin)

    def expired(self, now: float) -> bool:
        return self.lifetime is not None and now >= self.obtained_at + self.lifetime

    def margin(self, margin: float | None) -> float:
        """Explicit, or a quarter of the lifetime up to a minute (225 s of 900 -> 60)."""
        if margin is not None:
            return margin
        return min(60.0, (self.lifetime or 0.0) / 4)
