"""Sign-in lockout (services.auth) on the in-memory unit of work: failures within the
window lock the address, the right password is refused while it is locked, and the lock
ends on time."""

from datetime import timedelta

import pytest

from tests.unit.fakes import EPOCH, FakeDatabase
from tests.unit.use_cases import Clock
from veritas_grpc.config import Settings
from veritas_grpc.domain.errors import TooManyAttempts, Unauthenticated
from veritas_grpc.domain.identity import Role
from veritas_grpc.security.passwords import PasswordHasher
from veritas_grpc.security.tokens import AccessTokenCodec
from veritas_grpc.services.auth import AuthService

PASSWORD = "correct horse battery"
WRONG = "wrong password, again"
SETTINGS = Settings(
    environment="test",
    jwt_secret="unit-test-secret-0123456789-abcdefghijklmnop",
    login_max_failures=3,
    login_failure_window_seconds=600,
    login_lockout_seconds=900,
)
HASHER = PasswordHasher(4)  # bcrypt's lowest cost: the rules, not the hashing, are tested


@pytest.fixture
def world():
    db = FakeDatabase()
    student = db.add_user(Role.STUDENT, "Sam Student", HASHER.hash(PASSWORD))
    clock = Clock()
    codec = AccessTokenCodec(SETTINGS.jwt_secret, "veritas", "veritas-api", 900)
    auth = AuthService(db.uow, HASHER, codec, SETTINGS, clock)
    return auth, db, student.email, clock


def _fail(auth, email, times):
    for _ in range(times):
        with pytest.raises(Unauthenticated):
            auth.login(email, WRONG)


def test_the_right_password_signs_in_and_clears_the_count(world):
    auth, db, email, _ = world
    _fail(auth, email, 2)
    signed_in = auth.login(email, PASSWORD)
    assert signed_in.account.email == email and signed_in.tokens.refresh_token
    assert email not in db.stores.throttles
    _fail(auth, email, 2)  # counting starts again: two more are not yet a lock
    assert auth.login(email, PASSWORD).account.email == email


def test_failures_within_the_window_lock_the_address(world):
    auth, db, email, clock = world
    _fail(auth, email, 3)
    assert db.stores.throttles[email].locked_until == EPOCH + timedelta(seconds=900)
    assert db.audit_actions().count("auth.lockout") == 1
    clock.advance(60)
    with pytest.raises(TooManyAttempts) as locked:
        auth.login(email, PASSWORD)  # the right password, refused while locked
    assert locked.value.retry_at == EPOCH + timedelta(seconds=900)
    assert locked.value.retry_after_seconds == 840
    denied = [e for e in db.stores.audit if e.outcome == "denied"]
    assert [e.details["reason"] for e in denied] == ["locked"]


def test_the_lock_ends_on_time(world):
    auth, _, email, clock = world
    _fail(auth, email, 3)
    clock.advance(899)
    with pytest.raises(TooManyAttempts):
        auth.login(email, PASSWORD)
    clock.advance(1)
    assert auth.login(email, PASSWORD).account.email == email


def test_failures_spread_beyond_the_window_never_lock(world):
    auth, db, email, clock = world
    _fail(auth, email, 2)
    clock.advance(601)  # the window is over: the count starts afresh
    _fail(auth, email, 2)
    assert db.stores.throttles[email].locked_until is None
    assert auth.login(email, PASSWORD).account.email == email


def test_an_unknown_address_is_counted_and_locked_like_a_known_one(world):
    auth, db, _, _ = world
    _fail(auth, "nobody@example.edu", 3)
    with pytest.raises(TooManyAttempts):
        auth.login("nobody@example.edu", WRONG)
    reasons = [e.details.get("reason") for e in db.stores.audit if e.outcome == "failure"]
    assert reasons == ["unknown_email"] * 3
