"""AuthService on a real database, with a clock the tests move."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.support import PASSWORD, unique_email, unique_enrollment
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog, AuthSession, RevokedAccessToken, SignInThrottle, User
from veritas_grpc.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    TooManyAttempts,
    Unauthenticated,
)
from veritas_grpc.domain.identity import Role
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.security import passwords
from veritas_grpc.security.passwords import PasswordHasher
from veritas_grpc.security.tokens import AccessTokenCodec
from veritas_grpc.services.accounts import AccountService
from veritas_grpc.services.auth import AuthService


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def bcrypt_checks(monkeypatch):
    """Every bcrypt verification the code really performs, as (password, hash) pairs."""
    checks: list[bytes] = []
    real = passwords.bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        checks.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(passwords.bcrypt, "checkpw", counting)
    return checks


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def hasher():
    return PasswordHasher(rounds=4)


@pytest.fixture
def session_factory(services):
    return make_session_factory(services.engine)


@pytest.fixture
def auth(settings, session_factory, clock, hasher):
    codec = AccessTokenCodec(settings.jwt_secret, "veritas", "veritas-api", 900)
    lenient = replace(settings, login_max_failures=3)
    return AuthService(lambda: SqlAlchemyUnitOfWork(session_factory), hasher, codec, lenient, clock)


@pytest.fixture
def accounts(session_factory, hasher):
    return AccountService(lambda: SqlAlchemyUnitOfWork(session_factory), hasher)


@pytest.fixture
def student(accounts):
    email = unique_email("student")
    accounts.register_student(email, PASSWORD, "Student Name", unique_enrollment())
    return email


def _count(session_factory, query):
    with session_factory() as session:
        return session.scalar(query)


def test_unknown_email_costs_one_bcrypt_check_like_a_wrong_password(auth, student, bcrypt_checks):
    with pytest.raises(Unauthenticated) as unknown:
        auth.login(unique_email("nobody"), PASSWORD)
    with pytest.raises(Unauthenticated) as wrong:
        auth.login(student, "wrong password!")
    assert len(bcrypt_checks) == 2
    # Same cost: the decoy hash has the configured number of rounds too.
    assert bcrypt_checks[0][:7] == bcrypt_checks[1][:7] == b"$2b$04$"
    assert bcrypt_checks[0] != bcrypt_checks[1]
    assert unknown.value.message == wrong.value.message


def test_lock_after_failures_then_unlock_after_the_lockout(auth, student, clock, session_factory):
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            auth.login(student, "wrong password!")
    with pytest.raises(TooManyAttempts) as locked:
        auth.login(student, PASSWORD)
    assert locked.value.retry_after_seconds == 15 * 60
    clock.advance(minutes=15, seconds=1)
    assert auth.login(student, PASSWORD).account.email == student
    actions = [
        row.action
        for row in _all_audit(session_factory, student)
        if row.action in ("auth.lockout", "auth.login")
    ]
    assert actions.count("auth.lockout") == 1


def _all_audit(session_factory, email):
    with session_factory() as session:
        return list(
            session.scalars(
                select(AuditLog).where(AuditLog.resource_id == email).order_by(AuditLog.id)
            )
        )


def test_failures_outside_the_window_do_not_add_up(auth, student, clock):
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.login(student, "wrong password!")
    clock.advance(minutes=16)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.login(student, "wrong password!")
    assert auth.login(student, PASSWORD).account.email == student


def test_success_resets_the_failure_count(auth, student):
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.login(student, "wrong password!")
    auth.login(student, PASSWORD)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.login(student, "wrong password!")
    auth.login(student, PASSWORD)


def test_unknown_addresses_lock_too_so_a_lock_reveals_no_account(auth):
    email = unique_email("ghost")
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            auth.login(email, PASSWORD)
    with pytest.raises(TooManyAttempts):
        auth.login(email, PASSWORD)


def test_inactive_accounts_cannot_sign_in_and_their_tokens_stop_working(
    auth, student, session_factory
):
    signed_in = auth.login(student, PASSWORD)
    auth.authenticate(signed_in.tokens.access_token)
    with session_factory() as session:
        session.scalar(select(User).where(User.email == student)).is_active = False
        session.commit()
    with pytest.raises(Unauthenticated) as refused:
        auth.login(student, PASSWORD)
    assert refused.value.message == "invalid e-mail or password"
    with pytest.raises(Unauthenticated):
        auth.authenticate(signed_in.tokens.access_token)
    with pytest.raises(Unauthenticated):
        auth.refresh(signed_in.tokens.refresh_token)


def test_refresh_tokens_expire(auth, student, clock):
    signed_in = auth.login(student, PASSWORD)
    clock.advance(days=7, seconds=1)
    with pytest.raises(Unauthenticated):
        auth.refresh(signed_in.tokens.refresh_token)


def test_purge_forgets_expired_revocations_and_sessions(auth, student, clock, session_factory):
    signed_in = auth.login(student, PASSWORD)
    principal = auth.authenticate(signed_in.tokens.access_token)
    auth.logout(principal)
    revoked = select(func.count()).where(RevokedAccessToken.jti == principal.token_id)
    assert _count(session_factory, revoked) == 1
    clock.advance(days=8)
    auth.purge_expired()
    assert _count(session_factory, revoked) == 0
    sessions = select(func.count()).where(AuthSession.id == principal.session_id)
    assert _count(session_factory, sessions) == 0


def test_create_account_of_each_role(accounts):
    for role in Role:
        enrollment = unique_enrollment() if role is Role.STUDENT else None
        view = accounts.create_account(role, unique_email(role.value), PASSWORD, "Name", enrollment)
        assert view.role is role
        assert (view.enrollment_id is not None) == (role is Role.STUDENT)


def test_students_need_an_enrollment_id(accounts):
    with pytest.raises(InvalidArgument) as error:
        accounts.create_account(Role.STUDENT, unique_email(), PASSWORD, "Name")
    assert error.value.violations[0].field == "enrollment_id"


def test_duplicate_enrollment_ids_are_refused(accounts, session_factory):
    enrollment = unique_enrollment()
    accounts.register_student(unique_email(), PASSWORD, "One", enrollment)
    before = _count(session_factory, select(func.count()).select_from(User))
    with pytest.raises(AlreadyExists) as error:
        accounts.register_student(unique_email(), PASSWORD, "Two", enrollment)
    assert error.value.field == "enrollment_id"
    assert _count(session_factory, select(func.count()).select_from(User)) == before


def test_parallel_guesses_get_no_more_password_checks_than_the_limit(auth, student, bcrypt_checks):
    def guess(_):
        try:
            auth.login(student, "wrong password!")
        except (Unauthenticated, TooManyAttempts) as error:
            return type(error)

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(guess, range(32)))
    assert len(bcrypt_checks) == 3  # the limit in this fixture
    assert outcomes.count(Unauthenticated) == 3
    assert outcomes.count(TooManyAttempts) == 29
    with pytest.raises(TooManyAttempts):
        auth.login(student, PASSWORD)


def test_long_addresses_lock_like_any_other(auth, accounts):
    email = "l" * 230 + "@example.edu"
    accounts.register_student(email, PASSWORD, "Long", unique_enrollment())
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            auth.login(email, "wrong password!")
    with pytest.raises(TooManyAttempts):
        auth.login(email, PASSWORD)


def test_addresses_longer_than_any_account_are_invalid(auth):
    with pytest.raises(InvalidArgument) as error:
        auth.login("x" * 250 + "@example.edu", PASSWORD)
    assert error.value.violations[0].field == "email"


def test_a_revoked_access_token_is_refused_while_its_session_lives_on(
    auth, student, session_factory
):
    signed_in = auth.login(student, PASSWORD)
    principal = auth.authenticate(signed_in.tokens.access_token)
    with SqlAlchemyUnitOfWork(session_factory) as uow:
        uow.tokens.revoke_access_token(principal.token_id, principal.token_expires_at)
        uow.commit()
    with pytest.raises(Unauthenticated):
        auth.authenticate(signed_in.tokens.access_token)
    refreshed = auth.refresh(signed_in.tokens.refresh_token)
    assert auth.authenticate(refreshed.tokens.access_token).session_id == principal.session_id


def test_concurrent_refreshes_of_one_token_rotate_it_once(auth, student):
    signed_in = auth.login(student, PASSWORD)

    def refresh(_):
        try:
            return auth.refresh(signed_in.tokens.refresh_token)
        except Unauthenticated:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(refresh, range(8)))
    assert sum(r is not None for r in results) == 1


def test_a_role_change_invalidates_tokens_issued_for_the_old_role(auth, student, session_factory):
    signed_in = auth.login(student, PASSWORD)
    with session_factory() as session:
        session.scalar(select(User).where(User.email == student)).role = "teacher"
        session.commit()
    with pytest.raises(Unauthenticated):
        auth.authenticate(signed_in.tokens.access_token)


def test_rotation_cannot_extend_a_session_beyond_its_absolute_lifetime(auth, student, clock):
    tokens = auth.login(student, PASSWORD).tokens
    for _ in range(4):  # 4 x 6 days: still inside 30 days
        clock.advance(days=6)
        tokens = auth.refresh(tokens.refresh_token).tokens
    assert tokens.refresh_expires_at <= clock.now + timedelta(days=6, seconds=1)
    clock.advance(days=6, seconds=1)
    with pytest.raises(Unauthenticated):
        auth.refresh(tokens.refresh_token)


def test_purge_forgets_failure_counts_once_their_window_is_over(auth, clock, session_factory):
    email = unique_email("purge")
    with pytest.raises(Unauthenticated):
        auth.login(email, PASSWORD)
    query = select(func.count()).where(SignInThrottle.subject == email)
    auth.purge_expired()
    assert _count(session_factory, query) == 1
    clock.advance(minutes=16)
    auth.purge_expired()
    assert _count(session_factory, query) == 0
