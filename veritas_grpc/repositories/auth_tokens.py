"""Sign-in sessions, refresh tokens, revoked access-token ids and sign-in throttles."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from veritas_grpc.db.models import (
    AuthSession,
    RefreshToken,
    RevokedAccessToken,
    SignInThrottle,
    User,
)
from veritas_grpc.db.models.auth import SESSION_CHANNEL
from veritas_grpc.db.prepared import Prepared
from veritas_grpc.domain.errors import Unauthenticated
from veritas_grpc.domain.identity import TokenCheck
from veritas_grpc.domain.throttles import Bucket, Scope, ThrottleCount

# Every authenticated call runs it: built once, with its parameters bound at each run
# (building and keying a fresh statement cost ~4 times its execution; docs/BENCH_SCALE.md),
# and planned once per connection.
_ACCESS_IS_VALID = Prepared(
    select(
        exists()
        .where(
            User.id == bindparam("user_id"),
            User.is_active.is_(True),
            User.role == bindparam("role"),
        )
        .where(
            exists().where(
                AuthSession.id == bindparam("session_id"),
                AuthSession.user_id == bindparam("user_id"),
                AuthSession.revoked_at.is_(None),
            )
        )
        .where(~exists().where(RevokedAccessToken.jti == bindparam("jti")))
    )
)


def _access_parameters(
    user_id: uuid.UUID, role: str, jti: str, session_id: uuid.UUID
) -> dict[str, object]:
    return {"user_id": user_id, "role": role, "session_id": session_id, "jti": jti}


def check_tokens_at_begin(
    session_factory: sessionmaker[Session], current: Callable[[], TokenCheck | None]
) -> None:
    """Make the current RPC's token check the first statement of the first transaction
    it begins through `session_factory` (the primary's: a replica may lag behind a
    revocation), whatever the transaction's isolation (it runs after BEGIN). A refused
    token raises Unauthenticated there, before the call reads or writes anything, and
    again at every later transaction and commit of the call: a use case that caught the
    refusal still writes nothing. A statement that fails leaves the check to be made
    (the call ends with the outage, or the interceptor checks at its end)."""

    def check(session: Session, _transaction: object, connection: Connection) -> None:
        token_check = current()
        if token_check is not None and not token_check.done:
            principal = token_check.principal
            valid = _ACCESS_IS_VALID.scalar(
                connection,
                _access_parameters(
                    principal.user_id,
                    principal.role.value,
                    principal.token_id,
                    principal.session_id,
                ),
            )
            # refused before done: another thread of the call sees one or both
            token_check.refused = not valid
            token_check.done = True
        refuse_if_refused(session)

    def refuse_if_refused(_session: Session) -> None:
        token_check = current()
        if token_check is not None and token_check.refused:
            raise Unauthenticated()

    event.listen(session_factory, "after_begin", check)
    event.listen(session_factory, "before_commit", refuse_if_refused)


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

    def open_sessions(self, user_id: uuid.UUID, now: datetime, limit: int) -> list[AuthSession]:
        """The account's sessions neither revoked nor expired, newest first."""
        return list(
            self._session.scalars(
                select(AuthSession)
                .where(
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > now,
                )
                .order_by(AuthSession.created_at.desc(), AuthSession.id)
                .limit(limit)
            )
        )

    def revoke_sessions_of(self, user_id: uuid.UUID, now: datetime, reason: str) -> int:
        """End every session of the account not ended yet; how many were still open."""
        result = self._session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
            .returning(AuthSession.expires_at)
        )
        return sum(1 for (expires_at,) in result if expires_at > now)

    def notify_sessions_ended(self, user_id: uuid.UUID) -> None:
        """At commit, every server process hears that the account's sessions ended and
        re-checks that account's open streams (NOTIFY is sent only if the transaction
        commits)."""
        payload = json.dumps({"user_id": str(user_id)})
        self._session.execute(select(func.pg_notify(SESSION_CHANNEL, payload)))

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
        found = _ACCESS_IS_VALID.scalar(
            self._session.connection(), _access_parameters(user_id, role, jti, session_id)
        )
        return bool(found)

    def purge_expired(self, now: datetime, throttle_windows: Mapping[Scope, timedelta]) -> int:
        """Forget revocations and sessions nobody can present any more, and throttle
        buckets whose window (per scope) and lock are both over."""
        revoked = self._session.execute(
            delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now)
        )
        sessions = self._session.execute(delete(AuthSession).where(AuthSession.expires_at < now))
        window_over = or_(
            *(
                and_(
                    SignInThrottle.scope == scope.value,
                    SignInThrottle.window_started_at < now - window,
                )
                for scope, window in throttle_windows.items()
            )
        )
        # Rows a sign-in holds are skipped (it is using them, and it locks its buckets in
        # an order a plain DELETE would not follow: the two could deadlock).
        stale = (
            select(SignInThrottle.scope, SignInThrottle.subject)
            .where(
                window_over,
                or_(SignInThrottle.locked_until.is_(None), SignInThrottle.locked_until < now),
            )
            .with_for_update(skip_locked=True)
        )
        throttles = self._session.execute(
            delete(SignInThrottle).where(
                tuple_(SignInThrottle.scope, SignInThrottle.subject).in_(stale)
            )
        )
        return sum(int(r.rowcount or 0) for r in (revoked, sessions, throttles))

    # Sign-in throttles -----------------------------------------------------------

    @staticmethod
    def _is(bucket: Bucket) -> ColumnElement[bool]:
        return and_(
            SignInThrottle.scope == bucket.scope.value, SignInThrottle.subject == bucket.subject
        )

    def reserve_attempt(self, bucket: Bucket, now: datetime, window: timedelta) -> ThrottleCount:
        """Count an attempt in a bucket before its password is checked, atomically.

        Counting before bcrypt means parallel guesses cannot all slip past a limit while
        the first ones are still being checked; a success gives the attempt back
        (release_attempt) or clears the bucket. A window starts afresh once it is over
        or its lock expired. The row stays locked until the transaction ends, so
        concurrent attempts on one bucket count one after the other.
        """
        table = SignInThrottle.__table__
        lock_expired = table.c.locked_until.is_not(None) & (table.c.locked_until <= now)
        window_over = table.c.locked_until.is_(None) & (table.c.window_started_at <= now - window)
        fresh = lock_expired | window_over
        statement = (
            insert(SignInThrottle)
            .values(
                scope=bucket.scope.value,
                subject=bucket.subject,
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
            .returning(
                SignInThrottle.failure_count,
                SignInThrottle.window_started_at,
                SignInThrottle.locked_until,
            )
        )
        attempts, started, locked_until = self._session.execute(statement).one()
        return ThrottleCount(int(attempts), started, locked_until)

    def release_attempt(self, bucket: Bucket, window_started_at: datetime) -> None:
        """Give back an attempt reserved in this window (it succeeded, so it was no failure)."""
        self._session.execute(
            update(SignInThrottle)
            .where(
                self._is(bucket),
                SignInThrottle.window_started_at == window_started_at,
                SignInThrottle.failure_count > 0,
            )
            .values(failure_count=SignInThrottle.failure_count - 1)
        )

    def lock(self, bucket: Bucket, until: datetime) -> bool:
        """Lock a bucket; False when a lock was already set in this window."""
        result = self._session.execute(
            update(SignInThrottle)
            .where(self._is(bucket), SignInThrottle.locked_until.is_(None))
            .values(locked_until=until)
        )
        return bool(result.rowcount)

    def clear(self, bucket: Bucket) -> None:
        self._session.execute(delete(SignInThrottle).where(self._is(bucket)))

    @staticmethod
    def _of_account(email: str) -> ColumnElement[bool]:
        """The buckets of an e-mail address: its own and those per client address."""
        return or_(
            and_(SignInThrottle.scope == Scope.ACCOUNT.value, SignInThrottle.subject == email),
            and_(
                SignInThrottle.scope == Scope.ACCOUNT_ADDRESS.value,
                func.starts_with(SignInThrottle.subject, f"{email} "),
            ),
        )

    def throttles_of(self, email: str) -> list[SignInThrottle]:
        """The e-mail address's `account` and `account_address` buckets."""
        query = (
            select(SignInThrottle)
            .where(self._of_account(email))
            .order_by(SignInThrottle.scope, SignInThrottle.subject)
        )
        return list(self._session.scalars(query))

    def clear_sign_in(self, email: str, address_key: str | None) -> int:
        """Delete the e-mail address's buckets, and that client address's own; how many
        of them counted a failure or held a lock (a success leaves a bucket at 0)."""
        condition = self._of_account(email)
        if address_key is not None:
            condition = or_(condition, self._is(Bucket.address(address_key)))
        result = self._session.execute(
            delete(SignInThrottle)
            .where(condition)
            .returning(SignInThrottle.failure_count, SignInThrottle.locked_until)
        )
        return sum(1 for count, locked in result if count > 0 or locked is not None)
