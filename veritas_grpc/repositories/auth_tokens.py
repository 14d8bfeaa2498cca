"""Sign-in sessions, refresh tokens, revoked access-token ids and login throttles."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import case, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from veritas_grpc.db.models import (
    AuthSession,
    LoginThrottle,
    RefreshToken,
    RevokedAccessToken,
    User,
)


class AuthTokenRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # Sessions and refresh tokens -------------------------------------------------

    def open_session(self, user_id: uuid.UUID, expires_at: datetime) -> AuthSession:
        auth_session = AuthSession(user_id=user_id, expires_at=expires_at)
        self._session.add(auth_session)
        self._session.flush()
        return auth_session

    def add_refresh_token(
        self, session_id: uuid.UUID, token_hash: str, expires_at: datetime
    ) -> RefreshToken:
        token = RefreshToken(session_id=session_id, token_hash=token_hash, expires_at=expires_at)
        self._session.add(token)
        self._session.flush()
        return token

    def find_refresh_token_for_update(
        self, token_hash: str
    ) -> tuple[RefreshToken, AuthSession] | None:
        """The token and its session, row-locked so two concurrent refreshes serialise."""
        query = (
            select(RefreshToken, AuthSession)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == token_hash)
            .with_for_update(of=RefreshToken)
        )
        row = self._session.execute(query).one_or_none()
        return None if row is None else (row[0], row[1])

    def mark_used(self, token: RefreshToken, now: datetime) -> None:
        token.used_at = now
        self._session.flush()

    def revoke_session(self, session_id: uuid.UUID, now: datetime, reason: str) -> None:
        self._session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )

    def revoke_access_token(self, jti: str, expires_at: datetime) -> None:
        self._session.execute(
            insert(RevokedAccessToken)
            .values(jti=jti, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["jti"])
        )

    def access_is_valid(self, user_id: uuid.UUID, jti: str, session_id: uuid.UUID) -> bool:
        """One statement: the account is active, the session open, the token not revoked."""
        query = select(
            exists()
            .where(User.id == user_id, User.is_active.is_(True))
            .where(
                exists().where(
                    AuthSession.id == session_id,
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                )
            )
            .where(~exists().where(RevokedAccessToken.jti == jti))
        )
        return bool(self._session.scalar(query))

    def purge_expired(self, now: datetime) -> int:
        """Forget revocations and sessions nobody can present any more."""
        revoked = self._session.execute(
            delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now)
        )
        sessions = self._session.execute(delete(AuthSession).where(AuthSession.expires_at < now))
        return int(revoked.rowcount or 0) + int(sessions.rowcount or 0)

    # Login throttles -------------------------------------------------------------

    def lock_of(self, email: str) -> datetime | None:
        return self._session.scalar(
            select(LoginThrottle.locked_until).where(LoginThrottle.email == email)
        )

    def record_login_failure(
        self, email: str, now: datetime, window: timedelta, max_failures: int, lockout: timedelta
    ) -> tuple[int, datetime | None]:
        """Count one failure atomically (concurrent failures each count); lock at the limit.

        Returns the failure count in the current window and the lock's end, if locked.
        """
        table = LoginThrottle.__table__
        window_over = table.c.window_started_at <= now - window
        count = case((window_over, 1), else_=table.c.failure_count + 1)
        statement = (
            insert(LoginThrottle)
            .values(email=email, failure_count=1, window_started_at=now, locked_until=None)
            .on_conflict_do_update(
                index_elements=["email"],
                set_={
                    "failure_count": count,
                    "window_started_at": case((window_over, now), else_=table.c.window_started_at),
                    "locked_until": case(
                        (count >= max_failures, now + lockout), else_=table.c.locked_until
                    ),
                },
            )
            .returning(LoginThrottle.failure_count, LoginThrottle.locked_until)
        )
        failures, locked_until = self._session.execute(statement).one()
        if failures >= max_failures and locked_until is None:
            # The very first failure can already reach a limit of 1.
            locked_until = now + lockout
            self._session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.email == email)
                .values(locked_until=locked_until)
            )
        return failures, locked_until

    def clear_login_failures(self, email: str) -> None:
        self._session.execute(delete(LoginThrottle).where(LoginThrottle.email == email))
