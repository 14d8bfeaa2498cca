"""Administering accounts (AdminService, users): list and read them, change a name or an
enrollment id, deactivate and reactivate, end sessions, clear sign-in throttles.

Every call is audited, reads included. Roles never change. Deactivating an account or
revoking its sessions ends them in the same transaction and NOTIFYs every server
process at commit, so that their open streams of that account end within a second
(interceptors/authentication.py); unary calls already check the account and the session
on every call.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from veritas_grpc.config import Settings
from veritas_grpc.db.models import SignInThrottle, User
from veritas_grpc.domain.client_address import parse_address, throttle_key
from veritas_grpc.domain.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Validator,
)
from veritas_grpc.domain.identity import AccountView, Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.domain.throttles import Scope
from veritas_grpc.services import auditing
from veritas_grpc.services.accounts import (
    ENROLLMENT_PATTERN,
    MAX_EMAIL_CHARS,
    MAX_NAME_CHARS,
    account_view,
    normalize_email,
)
from veritas_grpc.services.paging import Page, page_request, paginate, position
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory

Clock = Callable[[], datetime]
DEFAULT_USER_PAGE = 50
MAX_USER_PAGE = 500
# Trigrams need three characters: shorter texts could only be answered by reading every
# account, so they are refused (README: Administration).
MIN_QUERY_CHARS = 3
MAX_QUERY_CHARS = 256
MAX_REASON_CHARS = 500
# Open sessions GetUser lists at most (newest first).
MAX_LISTED_SESSIONS = 100
UPDATABLE = ("full_name", "enrollment_id")
NOT_FOUND = "no such account"
TAKEN = "this enrollment id is already registered"


@dataclass(frozen=True)
class UserQuery:
    role: Role | None = None
    active: bool | None = None
    text: str = ""


@dataclass(frozen=True)
class SessionView:
    id: uuid.UUID
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ThrottleView:
    scope: str
    client_address: str
    failure_count: int
    locked_until: datetime | None  # set while locked


@dataclass(frozen=True)
class UserDetail:
    account: AccountView
    open_sessions: list[SessionView]
    last_sign_in: datetime | None
    throttles: list[ThrottleView]
    deactivated_at: datetime | None
    deactivate_reason: str | None


@dataclass(frozen=True)
class UserChange:
    """UpdateUser's values; only the fields named in the mask are used."""

    full_name: str = ""
    enrollment_id: str = ""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class UserAdministration:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, settings: Settings, clock: Clock = _utc_now
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._window = timedelta(seconds=settings.login_failure_window_seconds)

    # Reading ---------------------------------------------------------------------

    def list(
        self, actor: Principal, query: UserQuery, page_size: int, page_token: str
    ) -> Page[AccountView]:
        query = _checked_query(query)
        request = page_request(
            page_size, page_token, _scope(query), DEFAULT_USER_PAGE, MAX_USER_PAGE
        )
        after = position(request, str)
        with self._uow_factory() as uow:
            views = uow.users.search(
                query.role.value if query.role else None,
                query.active,
                query.text or None,
                after[0] if after else None,
                request.size + 1,
            )
            auditing.record(
                uow, "user.list", "success", actor=actor, details={"filters": _filters(query)}
            )
            uow.commit()
        return paginate(views, request, lambda view: (view.email,))

    def get(self, actor: Principal, user_id: str) -> UserDetail:
        target = parse_id(user_id, "user_id")
        now = self._clock()
        with self._uow_factory() as uow:
            user = self._require(uow, actor, target, "user.read")
            sessions = uow.tokens.open_sessions(user.id, now, MAX_LISTED_SESSIONS)
            detail = UserDetail(
                account=account_view(user),
                open_sessions=[SessionView(s.id, s.created_at, s.expires_at) for s in sessions],
                last_sign_in=uow.users.last_sign_in(user.id),
                throttles=[
                    _throttle_view(row, now)
                    for row in uow.tokens.throttles_of(user.email)
                    if _current(row, now, self._window)
                ],
                deactivated_at=user.deactivated_at,
                deactivate_reason=user.deactivate_reason,
            )
            auditing.record(
                uow, "user.read", "success", actor=actor, resource_type="user", resource_id=user.id
            )
            uow.commit()
        return detail

    # Changing --------------------------------------------------------------------

    def update(
        self, actor: Principal, user_id: str, change: UserChange, paths: list[str]
    ) -> AccountView:
        """Set the fields named in `paths` (an update mask: `full_name`, `enrollment_id`)."""
        fields = set(paths)
        if not fields:
            raise InvalidArgument.of("update_mask", "is required: full_name, enrollment_id")
        unknown = fields - set(UPDATABLE)
        if unknown:
            raise InvalidArgument.of(
                "update_mask", f"unknown or immutable paths: {', '.join(sorted(unknown))}"
            )
        target = parse_id(user_id, "user.id")
        full_name, enrollment_id = change.full_name.strip(), change.enrollment_id.strip()
        check = Validator()
        if "full_name" in fields:
            check.check(
                0 < len(full_name) <= MAX_NAME_CHARS,
                "user.full_name",
                f"must have 1 to {MAX_NAME_CHARS} characters",
            )
        if "enrollment_id" in fields:
            check.check(
                bool(ENROLLMENT_PATTERN.match(enrollment_id)),
                "user.enrollment_id",
                "must be 1 to 64 letters, digits, '.', '_', '/' or '-', "
                "starting with a letter or digit",
            )
        check.raise_if_any()
        try:
            with self._uow_factory() as uow:
                user = self._require(uow, actor, target, "user.update", lock=True)
                profile = user.student_profile
                if "enrollment_id" in fields and profile is None:
                    raise InvalidArgument.of(
                        "update_mask", "enrollment_id: only students have an enrollment id"
                    )
                changed = []
                if "full_name" in fields and user.full_name != full_name:
                    user.full_name = full_name
                    changed.append("full_name")
                new_enrollment = "enrollment_id" in fields and profile is not None
                if new_enrollment and profile and profile.enrollment_id != enrollment_id:
                    if uow.users.enrollment_taken(enrollment_id):
                        raise AlreadyExists(TAKEN, "enrollment_id")
                    profile.enrollment_id = enrollment_id
                    changed.append("enrollment_id")
                if changed:
                    uow.users.save(user)
                auditing.record(
                    uow,
                    "user.update",
                    "success",
                    actor=actor,
                    resource_type="user",
                    resource_id=user.id,
                    details={"fields": sorted(fields), "changed": changed},
                )
                view = account_view(user)
                uow.commit()
                return view
        except Conflict:
            # A concurrent change took the enrollment id between the check and the write.
            raise AlreadyExists(TAKEN, "enrollment_id") from None

    def deactivate(self, actor: Principal, user_id: str, reason: str) -> tuple[AccountView, int]:
        """The account can no longer sign in and its sessions end, in every process.
        Deactivating an inactive account changes nothing. The view and how many open
        sessions were ended."""
        target = parse_id(user_id, "user_id")
        reason = reason.strip()
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidArgument.of("reason", f"must have at most {MAX_REASON_CHARS} characters")
        if target == actor.user_id:
            raise FailedPrecondition("an administrator cannot deactivate their own account")
        now = self._clock()
        with self._uow_factory() as uow:
            user = self._require(uow, actor, target, "user.deactivate", lock=True)
            was_active = user.is_active
            if was_active:
                user.is_active = False
                user.deactivated_at = now
                user.deactivate_reason = reason or None
                uow.users.save(user)
            revoked = uow.tokens.revoke_sessions_of(user.id, now, "deactivated")
            uow.tokens.notify_sessions_ended(user.id)
            auditing.record(
                uow,
                "user.deactivate",
                "success",
                actor=actor,
                resource_type="user",
                resource_id=user.id,
                details={
                    "reason": reason,
                    "was_active": was_active,
                    "revoked_session_count": revoked,
                },
            )
            view = account_view(user)
            uow.commit()
        return view, revoked

    def reactivate(self, actor: Principal, user_id: str) -> AccountView:
        """The account may sign in again; the sessions it had stay ended."""
        target = parse_id(user_id, "user_id")
        with self._uow_factory() as uow:
            user = self._require(uow, actor, target, "user.reactivate", lock=True)
            was_active = user.is_active
            if not was_active:
                user.is_active = True
                user.deactivated_at = None
                user.deactivate_reason = None
                uow.users.save(user)
            auditing.record(
                uow,
                "user.reactivate",
                "success",
                actor=actor,
                resource_type="user",
                resource_id=user.id,
                details={"was_active": was_active},
            )
            view = account_view(user)
            uow.commit()
        return view

    def revoke_sessions(self, actor: Principal, user_id: str) -> int:
        """End every session of the account, in every process; it stays active."""
        target = parse_id(user_id, "user_id")
        now = self._clock()
        with self._uow_factory() as uow:
            user = self._require(uow, actor, target, "user.revoke_sessions", lock=True)
            revoked = uow.tokens.revoke_sessions_of(user.id, now, "admin_revoked")
            uow.tokens.notify_sessions_ended(user.id)
            auditing.record(
                uow,
                "user.revoke_sessions",
                "success",
                actor=actor,
                resource_type="user",
                resource_id=user.id,
                details={"revoked_session_count": revoked},
            )
            uow.commit()
        return revoked

    def unlock_sign_in(self, actor: Principal, email: str, client_address: str) -> int:
        """Clear the e-mail address's sign-in buckets (its own, and one per client
        address), and with a client address that address's bucket across accounts. The
        e-mail address need not belong to an account (throttles count unknown ones
        too). How many buckets were cleared."""
        email = normalize_email(email)
        client_address = client_address.strip()
        check = Validator()
        check.check(bool(email), "email", "is required")
        check.check(len(email) <= MAX_EMAIL_CHARS, "email", "is too long")
        check.check(" " not in email, "email", "must not contain spaces")
        if client_address:
            check.check(
                parse_address(client_address) is not None,
                "client_address",
                "must be an IP address",
            )
        check.raise_if_any()
        key = throttle_key(client_address) if client_address else None
        with self._uow_factory() as uow:
            cleared = uow.tokens.clear_sign_in(email, key)
            auditing.record(
                uow,
                "auth.unlock",
                "success",
                actor=actor,
                resource_type="email",
                resource_id=email,
                details={"client_address": key, "cleared_count": cleared},
            )
            uow.commit()
        return cleared

    # Helpers ---------------------------------------------------------------------

    @staticmethod
    def _require(
        uow: UnitOfWork, actor: Principal, target: uuid.UUID, action: str, lock: bool = False
    ) -> User:
        user = uow.users.get_for_update(target) if lock else uow.users.get(target)
        if user is None:
            auditing.record(
                uow,
                action,
                "failure",
                actor=actor,
                resource_type="user",
                resource_id=target,
                details={"reason": "not_found"},
            )
            uow.commit()
            raise NotFound(NOT_FOUND)
        return user


def _checked_query(query: UserQuery) -> UserQuery:
    text = query.text.strip()
    check = Validator()
    check.check(
        not text or len(text) >= MIN_QUERY_CHARS,
        "query",
        f"must have at least {MIN_QUERY_CHARS} characters (or be empty)",
    )
    check.check(
        len(text) <= MAX_QUERY_CHARS, "query", f"must have at most {MAX_QUERY_CHARS} characters"
    )
    check.raise_if_any()
    return UserQuery(query.role, query.active, text)


def _filters(query: UserQuery) -> dict[str, str]:
    values = {
        "role": query.role.value if query.role else None,
        "active": None if query.active is None else str(query.active).lower(),
        "query": query.text or None,
    }
    return {name: value for name, value in values.items() if value is not None}


def _scope(query: UserQuery) -> str:
    """The listing a page token belongs to: the same filters, or it is refused."""
    encoded = json.dumps(_filters(query), sort_keys=True).encode()
    return "users:" + hashlib.sha256(encoded).hexdigest()[:32]


def _current(row: SignInThrottle, now: datetime, window: timedelta) -> bool:
    """A bucket that still counts: locked, or its window not over."""
    locked = row.locked_until is not None and row.locked_until > now
    return locked or (row.locked_until is None and row.window_started_at > now - window)


def _throttle_view(row: SignInThrottle, now: datetime) -> ThrottleView:
    address = row.subject.partition(" ")[2] if row.scope == Scope.ACCOUNT_ADDRESS.value else ""
    locked = row.locked_until if row.locked_until and row.locked_until > now else None
    return ThrottleView(row.scope, address, row.failure_count, locked)
