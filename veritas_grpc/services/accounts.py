"""Creating accounts: self-registration (students only) and operator-made accounts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from veritas_grpc.config import Settings
from veritas_grpc.db.models import User
from veritas_grpc.domain.client_address import throttle_key
from veritas_grpc.domain.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    TooManyAttempts,
    Validator,
)
from veritas_grpc.domain.identity import AccountView, Role
from veritas_grpc.domain.throttles import Bucket
from veritas_grpc.security.passwords import PasswordHasher, password_problem
from veritas_grpc.services import auditing
from veritas_grpc.services.unit_of_work import UnitOfWorkFactory

# Deliberately simple: one '@', a dot in the domain, no spaces. Deliverability is the
# institution's concern; this only keeps obvious garbage out.
# \Z, not $: $ also matches before a trailing newline.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
ENROLLMENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}\Z")
MAX_EMAIL_CHARS = 254
MAX_NAME_CHARS = 200
SELF_REGISTRATION_OFF = "self-registration is turned off; ask your university for an account"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def account_view(user: User) -> AccountView:
    profile = user.student_profile
    return AccountView(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        role=Role(user.role),
        active=user.is_active,
        created_at=user.created_at,
        enrollment_id=profile.enrollment_id if profile else None,
    )


def _validate_new_account(
    email: str, password: str, full_name: str, enrollment_id: str | None
) -> None:
    check = Validator()
    check.check(
        len(email) <= MAX_EMAIL_CHARS and bool(EMAIL_PATTERN.match(email)),
        "email",
        "must be a valid e-mail address",
    )
    problem = password_problem(password)
    if problem:
        check.add("password", problem)
    check.check(
        0 < len(full_name) <= MAX_NAME_CHARS,
        "full_name",
        f"must have 1 to {MAX_NAME_CHARS} characters",
    )
    if enrollment_id is not None:
        check.check(
            bool(ENROLLMENT_PATTERN.match(enrollment_id)),
            "enrollment_id",
            "must be 1 to 64 letters, digits, '.', '_', '/' or '-', "
            "starting with a letter or digit",
        )
    check.raise_if_any()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AccountService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        settings: Settings | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        settings = settings or Settings()
        self._register_limit = settings.register_max_per_address
        self._register_window = timedelta(seconds=settings.register_window_seconds)
        self._self_registration = settings.self_registration
        self._clock = clock

    def register_student(
        self,
        email: str,
        password: str,
        full_name: str,
        enrollment_id: str,
        client: str | None = None,
    ) -> AccountView:
        """Self-registration: always a student, whatever the request says.

        `client` is the caller's address (api resolves it); registrations from one
        address are throttled. None: a caller in this process (seeding, tests), not
        throttled. With self-registration turned off, refused before anything else.
        """
        if not self._self_registration:
            raise FailedPrecondition(SELF_REGISTRATION_OFF)
        return self._create(
            Role.STUDENT,
            email,
            password,
            full_name,
            enrollment_id.strip(),
            action="auth.register",
            client=client,
        )

    def _reserve_registration(self, client: str) -> None:
        """Count a Register call from this address before bcrypt, or refuse it.

        Every call that passes validation counts, whatever its outcome: the limit is on
        how fast one address can create accounts and on how fast it can ask whether an
        e-mail address is taken (ALREADY_EXISTS). The window is fixed: the count starts
        afresh when it ends, and that is when a refused caller may retry.
        """
        now = self._clock()
        bucket = Bucket.register(throttle_key(client))
        with self._uow_factory() as uow:
            count = uow.tokens.reserve_attempt(bucket, now, self._register_window)
            if count.attempts <= self._register_limit:
                uow.commit()
                return
            retry_at = count.window_started_at + self._register_window
            if count.attempts == self._register_limit + 1:
                # Audited once per window, not once per refused call.
                auditing.record(
                    uow,
                    "auth.register",
                    "denied",
                    resource_type="client_address",
                    resource_id=bucket.subject,
                    details={
                        "reason": "throttled",
                        "client": client,
                        "retry_at": retry_at.isoformat(),
                    },
                )
            uow.commit()
        raise TooManyAttempts(retry_at, now, "registrations from this address")

    def ids_by_email(self, emails: list[str]) -> dict[str, uuid.UUID]:
        with self._uow_factory() as uow:
            return {
                email: user.id
                for email in emails
                if (user := uow.users.get_by_email(email)) is not None
            }

    def create_account(
        self,
        role: Role,
        email: str,
        password: str,
        full_name: str,
        enrollment_id: str | None = None,
    ) -> AccountView:
        """An operator-made account of any role (the `veritas create-user` command)."""
        if role is Role.STUDENT and not enrollment_id:
            raise InvalidArgument.of("enrollment_id", "is required for students")
        if role is not Role.STUDENT:
            enrollment_id = None
        return self._create(role, email, password, full_name, enrollment_id, "account.create")

    def _create(
        self,
        role: Role,
        email: str,
        password: str,
        full_name: str,
        enrollment_id: str | None,
        action: str,
        client: str | None = None,
    ) -> AccountView:
        email, full_name = normalize_email(email), full_name.strip()
        _validate_new_account(email, password, full_name, enrollment_id)
        if client is not None:
            self._reserve_registration(client)
        # bcrypt runs before the transaction opens: no connection waits on it.
        password_hash = self._hasher.hash(password)
        try:
            with self._uow_factory() as uow:
                if uow.users.email_taken(email):
                    raise AlreadyExists("an account with this e-mail already exists", "email")
                if enrollment_id and uow.users.enrollment_taken(enrollment_id):
                    raise AlreadyExists("this enrollment id is already registered", "enrollment_id")
                user = uow.users.add(
                    User(email=email, password_hash=password_hash, full_name=full_name, role=role)
                )
                if role is Role.STUDENT:
                    assert enrollment_id is not None
                    uow.users.add_student_profile(user, enrollment_id)
                elif role is Role.TEACHER:
                    uow.users.add_teacher_profile(user)
                auditing.record(
                    uow,
                    action,
                    "success",
                    actor_id=user.id if action == "auth.register" else None,
                    actor_role=role if action == "auth.register" else None,
                    resource_type="user",
                    resource_id=user.id,
                    details={"role": role.value},
                )
                view = account_view(user)
                uow.commit()
                return view
        except Conflict:
            # Two registrations raced past the checks above; the unique index decided.
            raise AlreadyExists(
                "an account with this e-mail or enrollment id already exists"
            ) from None
