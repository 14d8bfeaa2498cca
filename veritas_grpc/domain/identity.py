"""Who is calling: roles, the authenticated principal, and the account views services return."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


class Role(enum.StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"
    ADMIN = "admin"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """The caller of an authenticated RPC, established from a verified access token."""

    user_id: uuid.UUID
    role: Role
    token_id: str  # the access token's jti
    session_id: uuid.UUID  # the sign-in session (refresh-token family)
    token_expires_at: datetime


@dataclass
class TokenCheck:
    """An RPC's check that its access token still holds (the account active with the
    token's role, its session open, the token not revoked), made by the first
    transaction the call begins on the primary, as its first statement, or else at the
    call's end, before it answers (interceptors/authentication.py). A refusal sticks:
    the call answers UNAUTHENTICATED, whatever it did after."""

    principal: Principal
    done: bool = False
    refused: bool = False


@dataclass(frozen=True)
class AccountView:
    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    active: bool
    created_at: datetime
    enrollment_id: str | None = None


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class SignIn:
    tokens: IssuedTokens
    account: AccountView
