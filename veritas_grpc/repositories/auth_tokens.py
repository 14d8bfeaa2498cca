"""Sign-in sessions, refresh tokens, revoked access-token ids and login throttles."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import case, delete, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from veritas_grpc.db.models import (
    AuthSession,
    RefreshToken,
    RevokedAccessToken,
    SignInThrottle,
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

    def extend_session(self, auth_session: AuthSession, expires_at: datetime) -> None:
        auth_session.expires_at = expires_at
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

    def access_is_valid(
        self, user_id: uuid.UUID, role: str, jti: str, session_id: uuid.UUID
    ) -> bool:
        """One statement: the account is active and still has the token's role, the
        session is open, the token is not revoked."""
        query = select(
            exists()
            .where(User.id == user_id, User.is_active.is_(True), User.role == role)
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

    def purge_expired(self, now: datetime, throttle_window: timedelta) -> int:
        """Forget revocations and sessions nobody can present any more, and failure
        counts whose window and lock are both over."""
        revoked = self._session.execute(
            delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now)
        )
        sessions = self._session.execute(delete(AuthSession).where(AuthSession.expires_at < now))
        throttles = self._session.execute(
            delete(SignInThrottle).where(
                SignInThrottle.window_started_at < now - throttle_window,
                or_(SignInThrottle.locked_until.is_(None), SignInThrottle.locked_until < now),
            )
        )
        return sum(int(r.rowcount or 0) for r in (revoked, sessions, throttles))

    # Login throttles -------------------------------------------------------------

    def reserve_login_attempt(
        self, email: str, now: datetime, window: timedelta
    ) -> tuple[int, datetime | None]:
        """Count an attempt before its password is checked, atomically.

        Returns the attempt's number in the current window and the end of a lock in
        force, if any. Counting before bcrypt means parallel guesses cannot all slip
        past the limit while the first ones are still being checked; a success clears
        the count again. A window starts afresh once it is over or its lock expired.
        """
        table = SignInThrottle.__table__
        lock_expired = table.c.locked_until.is_not(None) & (table.c.locked_until <= now)
        window_over = table.c.locked_until.is_(None) & (table.c.window_started_at <= now - window)
        fresh = lock_expired | window_over
        statement = (
            insert(SignInThrottle)
            .values(
                scope="account",
                subject=email,
                failure_count=1,
                window_started_at=now,
                locked_until=None,
            )
            .on_conflict_do_update(
                index_elements=["scope", "subject"],
                set_={
                    "failure_count": case((fresh, 1), else_=table.c.failure_count + 1),
                    "window_started_at": case((fresh, now), else_=table.c.window_started_at),
                    "locked_until": case((fresh, None), else_=table.c.locked_until),
                },
            )
            .returning(SignInThrottle.failure_count, SignInThrottle.locked_until)
        )
        attempt, locked_until = self._session.execute(statement).one()
        return int(attempt), locked_until

    def lock_login(self, email: str, until: datetime) -> bool:
        """Lock sign-in for an address; False when a lock was already in force."""
        result = self._session.execute(
            update(SignInThrottle)
            .where(
                SignInThrottle.scope == "account",
                SignInThrottle.subject == email,
                SignInThrottle.locked_until.is_(None),
            )
            .values(locked_until=until)
        )
        return bool(result.rowcount)

    def clear_login_failures(self, email: str) -> None:
        self._session.execute(
            delete(SignInThrottle).where(
                SignInThrottle.scope == "account", SignInThrottle.subject == email
            )
        )
