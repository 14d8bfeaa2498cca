"""Signing in and out: login with throttles per (account, client address), per client
address and per account, refresh-token rotation with reuse detection,
logout, and the per-call check of access tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from veritas_grpc.config import Settings
from veritas_grpc.db.models import User
from veritas_grpc.domain.client_address import throttle_key
from veritas_grpc.domain.errors import (
    InvalidArgument,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
    Validator,
)
from veritas_grpc.domain.identity import AccountView, IssuedTokens, Principal, Role, SignIn
from veritas_grpc.domain.throttles import Bucket, Scope, ThrottleCount
from veritas_grpc.security.passwords import MAX_PASSWORD_CHARS, PasswordHasher
from veritas_grpc.security.tokens import AccessTokenCodec, hash_refresh_token, new_refresh_token
from veritas_grpc.services import auditing
from veritas_grpc.services.accounts import MAX_EMAIL_CHARS, account_view, normalize_email
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory

Clock = Callable[[], datetime]
BAD_CREDENTIALS = "invalid e-mail or password"
# An attempt beyond a limit while the ones before it are still being checked: when to
# try again (by then they have failed, and locked the bucket, or succeeded).
IN_FLIGHT_RETRY = timedelta(seconds=5)
# The (account, address) bucket of sign-ins made in this process, without a client address.
IN_PROCESS = "in-process"


def utc_now() -> datetime:
    return datetime.now(UTC)


class SignInObserver(Protocol):
    """Told of refused sign-ins and locked throttle buckets once they are committed (the
    server's metrics: adapters.metrics.Metrics)."""

    def sign_in_failed(self, reason: str) -> None: ...

    def locked_out(self, scope: str) -> None: ...


class Unobserved:
    """No one is told: commands that sign nobody in, and tests."""

    def sign_in_failed(self, reason: str) -> None:
        pass

    def locked_out(self, scope: str) -> None:
        pass


@dataclass(frozen=True)
class Counted:
    """An attempt counted in a bucket, and the bucket's limit."""

    bucket: Bucket
    limit: int
    count: ThrottleCount


class AuthService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        codec: AccessTokenCodec,
        settings: Settings,
        clock: Clock = utc_now,
        observer: SignInObserver | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        self._codec = codec
        self._clock = clock
        self._observer = observer or Unobserved()
        self._refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_seconds)
        self._window = timedelta(seconds=settings.login_failure_window_seconds)
        self._lockout = timedelta(seconds=settings.login_lockout_seconds)
        self._max_per_pair = settings.login_max_failures
        self._max_per_address = settings.login_max_failures_per_address
        self._max_per_account = settings.login_max_failures_per_account
        # How long the purge keeps a bucket whose lock (if any) is over, per scope.
        register_window = timedelta(seconds=settings.register_window_seconds)
        self._windows = {scope: self._window for scope in Scope} | {Scope.REGISTER: register_window}
        self._max_age = timedelta(seconds=settings.session_max_age_seconds)

    # Login ---------------------------------------------------------------------

    def login(self, email: str, password: str, client: str | None = None) -> SignIn:
        """Sign in from a client address (api resolves it: the peer, or the address a
        trusted proxy forwarded). None: a caller in this process, with no address; only
        the per-account buckets count its failures."""
        email = normalize_email(email)
        check = Validator()
        check.check(bool(email), "email", "is required")
        check.check(len(email) <= MAX_EMAIL_CHARS, "email", "is too long")
        check.check(bool(password), "password", "is required")
        check.check(len(password) <= MAX_PASSWORD_CHARS, "password", "is too long")
        check.raise_if_any()
        now = self._clock()
        counts, candidate = self._reserve_attempt(email, client, now)
        # bcrypt outside any transaction. An unknown address is checked against a decoy
        # hash so that it costs the same time as a wrong password.
        password_ok = self._hasher.verify(password, candidate.password_hash if candidate else None)
        with self._uow_factory() as uow:
            # Read again: the account may have changed while bcrypt ran.
            user = uow.users.get(candidate.id) if candidate and password_ok else None
            if user is None or not user.is_active:
                reason = "unknown_email" if candidate is None else "bad_password"
                if user is not None:
                    reason = "inactive"
                locked = self._record_failure(uow, email, client, counts, candidate, reason, now)
                uow.commit()
                self._observer.sign_in_failed(reason)
                for scope in locked:
                    self._observer.locked_out(scope)
                raise Unauthenticated(BAD_CREDENTIALS)
            self._forget_success(uow, counts)
            tokens = self._open_session(uow, user, now)
            auditing.record(
                uow,
                "auth.login",
                "success",
                actor_id=user.id,
                actor_role=Role(user.role),
                resource_type="user",
                resource_id=user.id,
                details={"client": client},
            )
            view = account_view(user)
            uow.commit()
        return SignIn(tokens, view)

    def _buckets(self, email: str, client: str | None) -> list[tuple[Bucket, int]]:
        """The buckets a sign-in counts in, with their limits. Always in this order: the
        rows are locked in it, so concurrent sign-ins cannot deadlock."""
        key = throttle_key(client) if client is not None else IN_PROCESS
        buckets = [(Bucket.account_address(email, key), self._max_per_pair)]
        if client is not None:
            buckets.append((Bucket.address(key), self._max_per_address))
        buckets.append((Bucket.account(email), self._max_per_account))
        return buckets

    def _reserve_attempt(
        self, email: str, client: str | None, now: datetime
    ) -> tuple[list[Counted], User | None]:
        """Count this attempt in every bucket, or refuse it while any of them is locked.

        A refused attempt is counted nowhere (the reservations are rolled back): an owner
        waiting out a lock does not run up their own counts meanwhile.
        """
        with self._uow_factory() as uow:
            counts = [
                Counted(bucket, limit, uow.tokens.reserve_attempt(bucket, now, self._window))
                for bucket, limit in self._buckets(email, client)
            ]
            locked = [c for c in counts if c.count.locked_at(now)]
            # Beyond a limit with the attempts before it still in bcrypt (a lock in force
            # shows in locked_until): refused, but not locked yet. Those attempts may
            # still succeed (a hall of students signing in at once); if they fail, the
            # last failure locks the bucket.
            overflowing = [
                c for c in counts if c.count.locked_until is None and c.count.attempts > c.limit
            ]
            if not locked and not overflowing:
                user = uow.users.get_by_email(email)
                uow.commit()
                return counts, user
            uow.rollback()
            ends = [c.count.locked_until for c in locked if c.count.locked_until is not None]
            in_flight = [now + IN_FLIGHT_RETRY] if overflowing else []
            retry_at = max(ends + in_flight)
            auditing.record(
                uow,
                "auth.login",
                "denied",
                resource_type="email",
                resource_id=email,
                details={
                    "reason": "locked",
                    "locked_until": retry_at.isoformat(),
                    "client": client,
                    "buckets": sorted({c.bucket.scope.value for c in locked + overflowing}),
                },
            )
            uow.commit()
            self._observer.sign_in_failed("locked")
            # One answer whichever bucket is locked: see the README ("Sign-in throttles").
            raise TooManyAttempts(retry_at, now)

    def _record_failure(
        self,
        uow: UnitOfWork,
        email: str,
        client: str | None,
        counts: list[Counted],
        user: User | None,
        reason: str,
        now: datetime,
    ) -> list[str]:
        """Audit the failure; lock the buckets it filled. The scopes locked now."""
        auditing.record(
            uow,
            "auth.login",
            "failure",
            actor_id=user.id if user else None,
            actor_role=Role(user.role) if user else None,
            resource_type="email",
            resource_id=email,
            details={
                "reason": reason,
                "client": client,
                "failures": {c.bucket.scope.value: c.count.attempts for c in counts},
            },
        )
        until = now + self._lockout
        locked = []
        for counted in counts:
            failures = counted.count.attempts
            if failures >= counted.limit and uow.tokens.lock(counted.bucket, until):
                self._audit_lockout(uow, counted, failures, email, client, user, until)
                locked.append(counted.bucket.scope.value)
        return locked

    @staticmethod
    def _forget_success(uow: UnitOfWork, counts: list[Counted]) -> None:
        """A success clears its (account, address) bucket: that source knows the password.
        In the per-address and per-account buckets it only gives its own attempt back:
        clearing them would let an attacker with one account of their own wipe the count
        of their guesses at other accounts by signing into it, and an owner's sign-in
        would wipe the count of a distributed attack on their account."""
        for counted in counts:
            if counted.bucket.scope is Scope.ACCOUNT_ADDRESS:
                uow.tokens.clear(counted.bucket)
            else:
                uow.tokens.release_attempt(counted.bucket, counted.count.window_started_at)

    @staticmethod
    def _audit_lockout(
        uow: UnitOfWork,
        counted: Counted,
        failures: int,
        email: str,
        client: str | None,
        user: User | None,
        locked_until: datetime,
    ) -> None:
        by_address = counted.bucket.scope is Scope.ADDRESS
        auditing.record(
            uow,
            "auth.lockout",
            "success",
            actor_id=user.id if user else None,
            resource_type="client_address" if by_address else "email",
            resource_id=counted.bucket.subject if by_address else email,
            details={
                "scope": counted.bucket.scope.value,
                "client": client,
                "locked_until": locked_until.isoformat(),
                "failures": failures,
            },
        )

    # Refresh -------------------------------------------------------------------

    def refresh(self, refresh_token: str) -> SignIn:
        if not refresh_token:
            raise InvalidArgument.of("refresh_token", "is required")
        now = self._clock()
        with self._uow_factory() as uow:
            found = uow.tokens.find_refresh_token_for_update(hash_refresh_token(refresh_token))
            if found is None:
                raise Unauthenticated()
            token, auth_session = found
            if token.used_at is not None:
                self._revoke_after_reuse(uow, auth_session.id, auth_session.user_id, now)
                uow.commit()
                raise Unauthenticated()
            user = uow.users.get(auth_session.user_id)
            # Rotation never extends a session past its absolute lifetime.
            expires_at = min(now + self._refresh_ttl, auth_session.created_at + self._max_age)
            usable = (
                auth_session.revoked_at is None
                and token.expires_at > now
                and expires_at > now
                and user is not None
                and user.is_active
            )
            if not usable or user is None:
                raise Unauthenticated()
            uow.tokens.mark_used(token, now)
            tokens = self._issue(uow, user, auth_session.id, now, expires_at)
            uow.tokens.extend_session(auth_session, expires_at)
            view = account_view(user)
            uow.commit()
            return SignIn(tokens, view)

    def _revoke_after_reuse(
        self, uow: UnitOfWork, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> None:
        """A used refresh token came back: someone holds a copy. End the whole session."""
        uow.tokens.revoke_session(session_id, now, "refresh_reuse")
        uow.tokens.notify_sessions_ended(user_id)
        auditing.record(
            uow,
            "auth.refresh_reuse",
            "denied",
            actor_id=user_id,
            resource_type="auth_session",
            resource_id=session_id,
            details={"effect": "session revoked"},
        )

    # Logout --------------------------------------------------------------------

    def logout(self, principal: Principal, refresh_token: str = "") -> None:
        now = self._clock()
        with self._uow_factory() as uow:
            other_session = None
            if refresh_token:
                found = uow.tokens.find_refresh_token_for_update(hash_refresh_token(refresh_token))
                if found is None or found[1].user_id != principal.user_id:
                    raise InvalidArgument.of("refresh_token", "is not a token of this account")
                other_session = found[1].id
            uow.tokens.revoke_access_token(principal.token_id, principal.token_expires_at)
            uow.tokens.revoke_session(principal.session_id, now, "logout")
            if other_session is not None and other_session != principal.session_id:
                uow.tokens.revoke_session(other_session, now, "logout")
            # Open streams of the account, in every process, are checked again at once.
            uow.tokens.notify_sessions_ended(principal.user_id)
            auditing.record(
                uow,
                "auth.logout",
                "success",
                actor=principal,
                resource_type="auth_session",
                resource_id=principal.session_id,
            )
            uow.commit()

    # Per-call checks -----------------------------------------------------------

    def authenticate(self, access_token: str) -> Principal:
        """The principal of a bearer token that is well-formed, signed, unexpired and unrevoked."""
        principal = self.verify(access_token)
        self.ensure_unrevoked(principal)
        return principal

    def verify(self, access_token: str) -> Principal:
        """The principal of a well-formed, signed, unexpired bearer token (no database:
        whether it was revoked is ensure_unrevoked's, or the call's first transaction's:
        services/token_checks.py)."""
        return self._codec.verify(access_token)

    def ensure_unrevoked(self, principal: Principal) -> None:
        """Unauthenticated unless the account is active with the token's role, the
        session open and the token not revoked."""
        with self._uow_factory() as uow:
            if not uow.tokens.access_is_valid(
                principal.user_id, principal.role.value, principal.token_id, principal.session_id
            ):
                raise Unauthenticated()

    def current_user(self, principal: Principal) -> AccountView:
        with self._uow_factory() as uow:
            user = uow.users.get(principal.user_id)
            if user is None:
                raise NotFound("account not found")
            return account_view(user)

    def purge_expired(self) -> int:
        with self._uow_factory() as uow:
            purged = uow.tokens.purge_expired(self._clock(), self._windows)
            uow.commit()
            return purged

    # Issuing -------------------------------------------------------------------

    def _open_session(self, uow: UnitOfWork, user: User, now: datetime) -> IssuedTokens:
        expires_at = now + self._refresh_ttl
        auth_session = uow.tokens.open_session(user.id, expires_at)
        return self._issue(uow, user, auth_session.id, now, expires_at)

    def _issue(
        self,
        uow: UnitOfWork,
        user: User,
        session_id: uuid.UUID,
        now: datetime,
        refresh_expires_at: datetime,
    ) -> IssuedTokens:
        refresh = new_refresh_token()
        uow.tokens.add_refresh_token(session_id, hash_refresh_token(refresh), refresh_expires_at)
        access = self._codec.issue(user.id, Role(user.role), session_id, now)
        return IssuedTokens(access.value, access.expires_at, refresh, refresh_expires_at)
