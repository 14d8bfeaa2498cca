"""Access tokens (HS256 JWT) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from veritas_grpc.domain.errors import Unauthenticated
from veritas_grpc.domain.identity import Principal, Role

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "role", "jti", "sid", "iat", "exp", "iss", "aud"]
# Small allowance for clock differences between server processes.
LEEWAY_SECONDS = 5
# RFC 7519 NumericDate claims. PyJWT converts them with int(), so it also takes the
# string "1764590000"; the RFC allows only JSON numbers.
NUMERIC_DATE_CLAIMS = ("exp", "iat", "nbf")


@dataclass(frozen=True)
class AccessToken:
    value: str
    jti: str
    expires_at: datetime


class AccessTokenCodec:
    def __init__(self, secret: str, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = timedelta(seconds=ttl_seconds)

    def issue(
        self, user_id: uuid.UUID, role: Role, session_id: uuid.UUID, now: datetime
    ) -> AccessToken:
        now = now.replace(microsecond=0)
        expires_at = now + self._ttl
        jti = uuid.uuid4().hex
        claims = {
            "sub": str(user_id),
            "role": role.value,
            "jti": jti,
            "sid": str(session_id),
            "iat": now,
            "exp": expires_at,
            "iss": self._issuer,
            "aud": self._audience,
        }
        return AccessToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), jti, expires_at)

    def verify(self, token: str) -> Principal:
        """The principal a token names; Unauthenticated for any defect, with one message."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
            if not _numeric_dates_are_numbers(claims):
                raise Unauthenticated()
            return Principal(
                user_id=uuid.UUID(claims["sub"]),
                role=Role(claims["role"]),
                token_id=str(claims["jti"]),
                session_id=uuid.UUID(claims["sid"]),
                token_expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        # OverflowError and OSError: an exp beyond what a datetime can hold.
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError, OSError):
            raise Unauthenticated() from None


def _numeric_dates_are_numbers(claims: dict[str, object]) -> bool:
    # bool is an int in Python, but `true` is no JSON number.
    return all(
        isinstance(claims[name], int | float) and not isinstance(claims[name], bool)
        for name in NUMERIC_DATE_CLAIMS
        if name in claims
    )


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are 256 random bits: a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
