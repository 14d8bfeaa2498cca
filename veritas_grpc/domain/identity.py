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
