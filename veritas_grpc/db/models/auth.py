"""Sign-in sessions, refresh tokens, revoked access tokens and sign-in throttles."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base
from veritas_grpc.db.models._columns import created_at, uuid_pk

# Every server process LISTENs on this channel (adapters/alert_listener.py). A commit
# that ends sessions NOTIFYs {"user_id": ...} on it, and each process re-checks the
# open streams of that user at once.
SESSION_CHANNEL = "veritas_sessions"


class AuthSession(Base):
    """One sign-in (a Login) and the family of refresh tokens rotated from it."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoke_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("auth_sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    issued_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RevokedAccessToken(Base):
    """Access-token ids revoked before they expire; purged once past expires_at."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )
    revoked_at: Mapped[datetime] = created_at()


class SignInThrottle(Base):
    """A failure counter and lock for one bucket: what it counts is (scope, subject).

    Scopes: 'account' (an e-mail address, known or not, so a lock reveals no account;
    failures from every client address), 'account_address' ("e-mail client-address"),
    'address' (a client address: failures across accounts) and 'register' (a client
    address: Register calls) and 'set_password' (a client address: failed SetPassword
    calls).
    """

    __tablename__ = "sign_in_throttles"
    __table_args__ = (
        CheckConstraint(
            "scope IN ('account', 'account_address', 'address', 'register', 'set_password')",
            name="scope",
        ),
    )

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(400), primary_key=True)
    failure_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    window_started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
