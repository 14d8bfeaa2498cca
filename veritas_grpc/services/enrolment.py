"""Enrolment: accounts made by an admin (CreateUser, ImportStudents), set-password
tokens (CreateUser, ResetPassword, ImportStudents) and their redemption (SetPassword).

No password travels from the admin: a new account stores NO_PASSWORD (no password
matches it, and checking one costs the same bcrypt work as a wrong password) until
its owner redeems the one-time token. Tokens are 256 random bits, kept only as their
SHA-256, like refresh tokens; a new token supersedes the account's open ones.

An import classifies its rows in Python and writes them in a few bulk statements in one
transaction: no bcrypt per row, so 10,000 rows take about a second (docs/BENCH_ADMIN.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from veritas_grpc.config import Settings
from veritas_grpc.db.models import SetPasswordToken, User
from veritas_grpc.domain.client_address import throttle_key
from veritas_grpc.domain.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
    Validator,
)
from veritas_grpc.domain.identity import AccountView, Principal, Role
from veritas_grpc.domain.ids import parse_id
from veritas_grpc.domain.throttles import Bucket, ThrottleCount
from veritas_grpc.security.passwords import NO_PASSWORD, PasswordHasher, password_problem
from veritas_grpc.security.tokens import hash_refresh_token, new_refresh_token
from veritas_grpc.services import auditing
from veritas_grpc.services.accounts import (
    EMAIL_PATTERN,
    ENROLLMENT_PATTERN,
    MAX_EMAIL_CHARS,
    MAX_NAME_CHARS,
    account_view,
    normalize_email,
)
from veritas_grpc.services.unit_of_work import UnitOfWork, UnitOfWorkFactory

MAX_IMPORT_ROWS = 10_000
MAX_TOKEN_CHARS = 256
AUDIT_IDS_PER_ROW = 500
# One answer for every token that does not work: unknown, used, superseded, expired, or
# of a deactivated account.
BAD_TOKEN = "invalid or expired set-password token"
STAFF_ROLES = (Role.TEACHER, Role.ADMIN, Role.SERVICE)

CREATED, UNCHANGED, UPDATED, REJECTED = "created", "unchanged", "updated", "rejected"

BAD_EMAIL = "email: is not a valid e-mail address"
BAD_NAME = f"full_name: must have 1 to {MAX_NAME_CHARS} characters"
BAD_ENROLLMENT = (
    "enrollment_id: must be 1 to 64 letters, digits, '.', '_', '/' or '-', "
    "starting with a letter or digit"
)
NOT_A_STUDENT = "email: belongs to an account that is not a student"
ENROLLMENT_TAKEN = "enrollment_id: is taken by another student"
RACED = "email: an account with this e-mail or enrollment id was made while the import ran"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IssuedToken:
    """A set-password token's text (shown once, never stored) and its expiry."""

    token: str
    expires_at: datetime


@dataclass(frozen=True)
class CreatedAccount:
    account: AccountView
    set_password: IssuedToken


@dataclass(frozen=True)
class StudentRow:
    email: str
    full_name: str
    enrollment_id: str


@dataclass(frozen=True)
class RowResult:
    index: int
    email: str
    outcome: str
    reason: str = ""
    user_id: uuid.UUID | None = None
    set_password: IssuedToken | None = None


@dataclass(frozen=True)
class ImportReport:
    results: list[RowResult]
    counts: dict[str, int] = field(default_factory=dict)


def _name_ok(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME_CHARS and name.isprintable()


def _email_ok(email: str) -> bool:
    return len(email) <= MAX_EMAIL_CHARS and bool(EMAIL_PATTERN.match(email))


class EnrolmentService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        settings: Settings,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        self._clock = clock
        self._ttl = timedelta(seconds=settings.set_password_token_ttl_seconds)
        self._window = timedelta(seconds=settings.login_failure_window_seconds)
        self._lockout = timedelta(seconds=settings.login_lockout_seconds)
        self._max_per_address = settings.login_max_failures_per_address

    # Tokens ------------------------------------------------------------------------

    def _new_token(self, now: datetime) -> tuple[IssuedToken, str]:
        text = new_refresh_token()
        return IssuedToken(text, now + self._ttl), hash_refresh_token(text)

    # CreateUser --------------------------------------------------------------------

    def create_user(
        self, actor: Principal | None, email: str, full_name: str, role: Role | None
    ) -> CreatedAccount:
        """A TEACHER, ADMIN or SERVICE account without a password, and its token."""
        email, full_name = normalize_email(email), full_name.strip()
        check = Validator()
        check.check(_email_ok(email), "email", "must be a valid e-mail address")
        check.check(_name_ok(full_name), "full_name", f"must have 1 to {MAX_NAME_CHARS} characters")
        if role is None:
            check.add("role", "is required")
        elif role not in STAFF_ROLES:
            check.add(
                "role", "must be TEACHER, ADMIN or SERVICE (students come from ImportStudents)"
            )
        check.raise_if_any()
        assert role is not None
        now = self._clock()
        issued, token_hash = self._new_token(now)
        try:
            with self._uow_factory() as uow:
                if uow.users.email_taken(email):
                    raise AlreadyExists("an account with this e-mail already exists", "email")
                user = uow.users.add(
                    User(email=email, password_hash=NO_PASSWORD, full_name=full_name, role=role)
                )
                if role is Role.TEACHER:
                    uow.users.add_teacher_profile(user)
                uow.set_password_tokens.issue(
                    user.id, token_hash, "create", issued.expires_at, _actor_id(actor), now
                )
                auditing.record(
                    uow,
                    "admin.create_user",
                    "success",
                    actor=actor,
                    resource_type="user",
                    resource_id=user.id,
                    details={"role": role.value, "token_expires_at": issued.expires_at.isoformat()},
                )
                view = account_view(user)
                uow.commit()
        except Conflict:
            raise AlreadyExists("an account with this e-mail already exists", "email") from None
        return CreatedAccount(view, issued)

    # ResetPassword -----------------------------------------------------------------

    def reset_password(self, actor: Principal | None, user_id: str) -> IssuedToken:
        """A new token for an active account; its earlier open tokens stop working. The
        current password keeps working until the token is redeemed."""
        account_id = parse_id(user_id, "user_id")
        now = self._clock()
        issued, token_hash = self._new_token(now)
        with self._uow_factory() as uow:
            user = uow.users.get(account_id)
            if user is None:
                raise NotFound("account not found")
            if not user.is_active:
                raise FailedPrecondition("the account is deactivated; reactivate it first")
            superseded = uow.set_password_tokens.issue(
                user.id, token_hash, "reset", issued.expires_at, _actor_id(actor), now
            )
            auditing.record(
                uow,
                "admin.reset_password",
                "success",
                actor=actor,
                resource_type="user",
                resource_id=user.id,
                details={
                    "superseded_tokens": superseded,
                    "token_expires_at": issued.expires_at.isoformat(),
                },
            )
            uow.commit()
        return issued

    # ImportStudents ----------------------------------------------------------------

    def import_students(self, actor: Principal | None, rows: Sequence[StudentRow]) -> ImportReport:
        if not rows:
            raise InvalidArgument.of("rows", "is required")
        if len(rows) > MAX_IMPORT_ROWS:
            raise InvalidArgument.of("rows", f"must have at most {MAX_IMPORT_ROWS} rows")
        results: dict[int, RowResult] = {}
        candidates = self._valid_rows(rows, results)
        now = self._clock()
        with self._uow_factory() as uow:
            uow.enrolment.lock_imports()
            existing = uow.enrolment.accounts_by_email([r.email for _, r in candidates])
            owners = uow.enrolment.enrollment_owners([r.enrollment_id for _, r in candidates])
            to_create: list[tuple[int, StudentRow]] = []
            changes: list[tuple[int, StudentRow, uuid.UUID]] = []
            for index, row in candidates:
                account = existing.get(row.email)
                owner = owners.get(row.enrollment_id)
                if account is not None and account.role != Role.STUDENT.value:
                    results[index] = RowResult(index, row.email, REJECTED, NOT_A_STUDENT)
                elif owner is not None and (account is None or owner != account.id):
                    results[index] = RowResult(index, row.email, REJECTED, ENROLLMENT_TAKEN)
                elif account is None:
                    to_create.append((index, row))
                elif (account.full_name, account.enrollment_id) == (
                    row.full_name,
                    row.enrollment_id,
                ):
                    results[index] = RowResult(index, row.email, UNCHANGED, user_id=account.id)
                else:
                    changes.append((index, row, account.id))
            made = uow.enrolment.add_students(
                [(r.email, r.full_name, r.enrollment_id) for _, r in to_create], NO_PASSWORD
            )
            tokens: list[tuple[uuid.UUID, str]] = []
            for index, row in to_create:
                new_id = made.get(row.email)
                if new_id is None:
                    results[index] = RowResult(index, row.email, REJECTED, RACED)
                    continue
                issued, token_hash = self._new_token(now)
                tokens.append((new_id, token_hash))
                results[index] = RowResult(index, row.email, CREATED, "", new_id, issued)
            uow.set_password_tokens.issue_many(tokens, "import", now + self._ttl, _actor_id(actor))
            uow.enrolment.update_students(
                [(uid, r.full_name, r.enrollment_id) for _, r, uid in changes], now
            )
            for index, row, uid in changes:
                results[index] = RowResult(index, row.email, UPDATED, user_id=uid)
            report = _report(rows, results)
            self._audit_import(uow, actor, report)
            uow.commit()
        return report

    @staticmethod
    def _valid_rows(
        rows: Sequence[StudentRow], results: dict[int, RowResult]
    ) -> list[tuple[int, StudentRow]]:
        """Normalised rows that pass the checks and are each the first of their e-mail
        and enrollment id in the file; the others get their REJECTED result."""
        first_email: dict[str, int] = {}
        first_enrollment: dict[str, int] = {}
        valid: list[tuple[int, StudentRow]] = []
        for index, raw in enumerate(rows):
            row = StudentRow(
                normalize_email(raw.email), raw.full_name.strip(), raw.enrollment_id.strip()
            )
            reason = ""
            if not _email_ok(row.email):
                reason = BAD_EMAIL
            elif not _name_ok(row.full_name):
                reason = BAD_NAME
            elif not ENROLLMENT_PATTERN.match(row.enrollment_id):
                reason = BAD_ENROLLMENT
            elif row.email in first_email:
                reason = f"email: is also in row {first_email[row.email]} of this import"
            elif row.enrollment_id in first_enrollment:
                first = first_enrollment[row.enrollment_id]
                reason = f"enrollment_id: is also in row {first} of this import"
            if reason:
                results[index] = RowResult(index, row.email[:MAX_EMAIL_CHARS], REJECTED, reason)
                continue
            first_email[row.email] = index
            first_enrollment[row.enrollment_id] = index
            valid.append((index, row))
        return valid

    @staticmethod
    def _audit_import(uow: UnitOfWork, actor: Principal | None, report: ImportReport) -> None:
        """One row for the import, and rows listing the accounts it created or changed,
        AUDIT_IDS_PER_ROW ids each (never a token): a row per account would make the
        audit chain, sealed row by row, the bulk of a 10,000-row import's time."""
        auditing.record(
            uow,
            "admin.import_students",
            "success",
            actor=actor,
            details={"rows": len(report.results), **report.counts},
        )
        for outcome in (CREATED, UPDATED):
            ids = [str(r.user_id) for r in report.results if r.outcome == outcome]
            for start in range(0, len(ids), AUDIT_IDS_PER_ROW):
                chunk = ids[start : start + AUDIT_IDS_PER_ROW]
                auditing.record(
                    uow,
                    "admin.import_students.accounts",
                    "success",
                    actor=actor,
                    # One account: its id is the row's resource, so a search finds it.
                    resource_type="user" if len(chunk) == 1 else None,
                    resource_id=chunk[0] if len(chunk) == 1 else None,
                    details={"outcome": outcome, "user_ids": chunk},
                )

    # SetPassword -------------------------------------------------------------------

    def set_password(self, token: str, new_password: str, client: str | None) -> AccountView:
        """Redeem a token: the password is set, the token used up, every session of the
        account ended. `client` is the caller's address (throttled); None: in-process."""
        check = Validator()
        check.check(bool(token), "token", "is required")
        check.check(len(token) <= MAX_TOKEN_CHARS, "token", "is too long")
        problem = password_problem(new_password)
        if problem:
            check.add("new_password", problem)
        check.raise_if_any()
        now = self._clock()
        bucket = Bucket.set_password(throttle_key(client)) if client is not None else None
        counted = self._reserve(bucket, client, now) if bucket else None
        token_hash = hash_refresh_token(token)
        with self._uow_factory() as uow:
            found = uow.set_password_tokens.find(token_hash)
            reason = self._unusable(uow, found, now)
            if reason:
                self._refuse(uow, bucket, counted, client, found, reason, now)
        # bcrypt outside any transaction, only for a token that works.
        password_hash = self._hasher.hash(new_password)
        with self._uow_factory() as uow:
            found = uow.set_password_tokens.find(token_hash, for_update=True)
            reason = self._unusable(uow, found, now)
            if reason or found is None:
                # Redeemed or superseded while bcrypt ran.
                self._refuse(uow, bucket, counted, client, found, reason or "unknown", now)
            user = uow.users.get(found.user_id)
            assert user is not None
            uow.set_password_tokens.redeem(found, now)
            uow.set_password_tokens.supersede(user.id, now)
            uow.enrolment.set_password_hash(user.id, password_hash, now)
            # Every session ends, and every server process re-checks the account's open
            # streams at commit (the NOTIFY DeactivateUser and RevokeSessions use).
            ended = uow.tokens.revoke_sessions_of(user.id, now, "password_set")
            uow.tokens.notify_sessions_ended(user.id)
            if bucket is not None and counted is not None:
                uow.tokens.release_attempt(bucket, counted.window_started_at)
            auditing.record(
                uow,
                "auth.set_password",
                "success",
                actor_id=user.id,
                actor_role=Role(user.role),
                resource_type="user",
                resource_id=user.id,
                details={"purpose": found.purpose, "sessions_ended": ended, "client": client},
            )
            view = account_view(user)
            uow.commit()
        return view

    def _reserve(self, bucket: Bucket, client: str | None, now: datetime) -> ThrottleCount:
        """Count the attempt in the address's bucket, or refuse it while it is locked."""
        with self._uow_factory() as uow:
            count = uow.tokens.reserve_attempt(bucket, now, self._window)
            overflowing = count.locked_until is None and count.attempts > self._max_per_address
            if not count.locked_at(now) and not overflowing:
                uow.commit()
                return count
            uow.rollback()
            retry_at = count.locked_until if count.locked_at(now) else now + self._lockout
            assert retry_at is not None
            if overflowing:
                uow.tokens.lock(bucket, retry_at)
            auditing.record(
                uow,
                "auth.set_password",
                "denied",
                resource_type="client_address",
                resource_id=bucket.subject,
                details={"reason": "locked", "client": client, "retry_at": retry_at.isoformat()},
            )
            uow.commit()
        raise TooManyAttempts(retry_at, now, "set-password attempts from this address")

    @staticmethod
    def _unusable(uow: UnitOfWork, token: SetPasswordToken | None, now: datetime) -> str:
        if token is None:
            return "unknown"
        if token.used_at is not None:
            return "used"
        if token.revoked_at is not None:
            return "superseded"
        if token.expires_at <= now:
            return "expired"
        user = uow.users.get(token.user_id)
        if user is None or not user.is_active:
            return "inactive"
        return ""

    def _refuse(
        self,
        uow: UnitOfWork,
        bucket: Bucket | None,
        counted: ThrottleCount | None,
        client: str | None,
        token: SetPasswordToken | None,
        reason: str,
        now: datetime,
    ) -> NoReturn:
        """Audit the failure, lock the address at its limit, and answer UNAUTHENTICATED."""
        uow.rollback()
        # The attempt was counted before the token was looked up: at the limit, the
        # address is locked.
        if bucket and counted and counted.attempts >= self._max_per_address:
            uow.tokens.lock(bucket, now + self._lockout)
        auditing.record(
            uow,
            "auth.set_password",
            "failure",
            actor_id=token.user_id if token else None,
            resource_type="user" if token else None,
            resource_id=token.user_id if token else None,
            details={"reason": reason, "client": client},
        )
        uow.commit()
        raise Unauthenticated(BAD_TOKEN)


def _actor_id(actor: Principal | None) -> uuid.UUID | None:
    return actor.user_id if actor else None


def _report(rows: Sequence[StudentRow], results: dict[int, RowResult]) -> ImportReport:
    ordered = [results[index] for index in range(len(rows))]
    counts = {outcome: 0 for outcome in (CREATED, UNCHANGED, UPDATED, REJECTED)}
    for result in ordered:
        counts[result.outcome] += 1
    return ImportReport(ordered, counts)
