"""Sign-in and registration throttles on a real server: repeated failures lock sign-in
for one (account, client address) pair, for one client address across accounts, and for
an account from every address only at a much higher count; the answer says when to
retry. Client addresses other than 127.0.0.1 come through tests/e2e/relay.py."""

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import func, select
from veritas.v1 import auth_pb2, auth_pb2_grpc

from tests.e2e.relay import channel_from
from tests.support import (
    PASSWORD,
    TEST_SECRET,
    ServerThread,
    make_settings,
    unique_email,
    unique_enrollment,
)
from veritas_grpc.db import migrate
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog, SignInThrottle
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
from veritas_grpc.security.passwords import PasswordHasher
from veritas_grpc.security.tokens import AccessTokenCodec
from veritas_grpc.services.auth import AuthService


def _login_code(auth_stub, email, password):
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.Login(auth_pb2.LoginRequest(email=email, password=password))
    return error.value


def test_five_failures_lock_the_pair_even_for_the_right_password(
    auth_stub, student, services, settings
):
    for _ in range(settings.login_max_failures):
        error = _login_code(auth_stub, student.email, "wrong password!")
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == "invalid e-mail or password"
    locked = _login_code(auth_stub, student.email, PASSWORD)
    assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry after" in locked.details()
    status = rpc_status.from_call(locked)
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert 0 < retry.retry_delay.seconds <= settings.login_lockout_seconds

    session_factory = make_session_factory(services.engine)
    with session_factory() as session:
        rows = session.execute(
            select(AuditLog.action, AuditLog.outcome, AuditLog.actor_id)
            .where(AuditLog.resource_id == student.email)
            .order_by(AuditLog.id)
        ).all()
    assert [(a, o) for a, o, _ in rows].count(("auth.login", "failure")) == 5
    assert ("auth.lockout", "success") in [(a, o) for a, o, _ in rows]
    assert rows[-1][:2] == ("auth.login", "denied")
    assert all(str(actor) == student.user_id for a, o, actor in rows if o == "failure")


def test_unknown_and_known_addresses_get_the_same_answers(auth_stub, student, settings):
    ghost = unique_email("ghost")
    for _ in range(settings.login_max_failures):
        known = _login_code(auth_stub, student.email, "wrong password!")
        unknown = _login_code(auth_stub, ghost, "wrong password!")
        assert (known.code(), known.details()) == (unknown.code(), unknown.details())
    assert _login_code(auth_stub, ghost, PASSWORD).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_successful_logins_are_audited(auth_stub, student, services):
    session_factory = make_session_factory(services.engine)
    with session_factory() as session:
        row = session.execute(
            select(AuditLog).where(
                AuditLog.action == "auth.login",
                AuditLog.outcome == "success",
                AuditLog.resource_id == student.user_id,
            )
        ).scalar_one()
    assert row.peer and row.peer.startswith("ipv4:127.0.0.1")
    assert row.request_id and row.actor_role == "student"


# Throttles with small limits, on a server and a database of their own: the shared test
# server counts everything from 127.0.0.1 with its per-address limits out of the way.
LIMITS = {
    "login_max_failures": 3,
    "login_max_failures_per_address": 6,
    "login_max_failures_per_account": 10,
    "register_max_per_address": 3,
}
WRONG = "wrong password!"


@pytest.fixture(scope="module")
def throttled_settings():
    return make_settings(**LIMITS)


@pytest.fixture(scope="module")
def throttled(throttled_settings, fresh_database):
    url = fresh_database("lockout")
    migrate.upgrade(url)
    running = ServerThread(throttled_settings, url)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def owner_stub(throttled):
    """Calls from 127.0.0.1: the owner's own address."""
    with grpc.insecure_channel(throttled.address) as channel:
        yield auth_pb2_grpc.AuthServiceStub(channel)


def _from(throttled, address):
    return channel_from(throttled.address, address)


def _register(stub, email=None):
    email = email or unique_email("owner")
    stub.Register(
        auth_pb2.RegisterRequest(
            email=email, password=PASSWORD, full_name="Owner", enrollment_id=unique_enrollment()
        )
    )
    return email


def _code(stub, email, password, metadata=()):
    try:
        stub.Login(auth_pb2.LoginRequest(email=email, password=password), metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _account(throttled):
    """An account made in the server's process (not through Register: not throttled)."""
    email = unique_email("owner")
    accounts = throttled.running.services.accounts
    accounts.register_student(email, PASSWORD, "Owner", unique_enrollment())
    return email


def _fail(stub, email, times=1, metadata=()):
    for _ in range(times):
        assert _code(stub, email, WRONG, metadata) == grpc.StatusCode.UNAUTHENTICATED


def test_the_owner_signs_in_while_an_attacker_elsewhere_is_locked_out(throttled, owner_stub):
    victim = _account(throttled)
    others = [_account(throttled) for _ in range(3)]
    with _from(throttled, "127.0.0.2") as channel:
        attacker = auth_pb2_grpc.AuthServiceStub(channel)
        _fail(attacker, victim, 3)
        # The pair is locked: even the right password, from the attacker's address.
        assert _code(attacker, victim, PASSWORD) == grpc.StatusCode.RESOURCE_EXHAUSTED
        for other in others:
            _fail(attacker, other)
        # Six failures from that address: every account is locked for it.
        assert _code(attacker, unique_email(), WRONG) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _code(owner_stub, victim, PASSWORD) == grpc.StatusCode.OK
    assert all(_code(owner_stub, o, PASSWORD) == grpc.StatusCode.OK for o in others)


def test_one_address_guessing_many_accounts_is_stopped(throttled, owner_stub):
    accounts = [_account(throttled) for _ in range(7)]
    with _from(throttled, "127.0.0.3") as channel:
        attacker = auth_pb2_grpc.AuthServiceStub(channel)
        for account in accounts[:6]:
            _fail(attacker, account)  # one guess each: no pair comes near its limit
        locked = _code(attacker, accounts[6], PASSWORD)
    assert locked == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _code(owner_stub, accounts[6], PASSWORD) == grpc.StatusCode.OK


def test_the_account_locks_for_everyone_at_the_higher_count(throttled, owner_stub):
    victim = _account(throttled)
    for n, times in zip(range(4, 8), (3, 3, 3, 1), strict=True):
        with _from(throttled, f"127.0.0.{n}") as channel:
            _fail(auth_pb2_grpc.AuthServiceStub(channel), victim, times)
        if n == 6:  # nine failures from three addresses: the owner still gets in
            assert _code(owner_stub, victim, PASSWORD) == grpc.StatusCode.OK
    with pytest.raises(grpc.RpcError) as locked:
        owner_stub.Login(auth_pb2.LoginRequest(email=victim, password=PASSWORD))
    assert locked.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert locked.value.details().startswith("too many failed sign-in attempts; retry after")
    retry = error_details_pb2.RetryInfo()
    assert rpc_status.from_call(locked.value).details[0].Unpack(retry)
    assert 0 < retry.retry_delay.seconds <= 900


def test_a_client_cannot_pick_its_bucket_with_x_forwarded_for(throttled, owner_stub):
    """The server trusts no proxy here: x-forwarded-for, whatever it says, is ignored."""
    victim = _account(throttled)
    with _from(throttled, "127.0.0.8") as channel:
        attacker = auth_pb2_grpc.AuthServiceStub(channel)
        # Naming the owner's address does not put the failures in the owner's bucket...
        _fail(attacker, victim, 3, metadata=(("x-forwarded-for", "127.0.0.1"),))
        assert _code(owner_stub, victim, PASSWORD) == grpc.StatusCode.OK
        # ...and a new address in every call does not get the attacker a new bucket.
        forged = (("x-forwarded-for", "198.51.100.77"),)
        assert _code(attacker, victim, WRONG, forged) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_registrations_are_throttled_per_address(throttled, owner_stub, throttled_settings):
    with _from(throttled, "127.0.0.9") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        taken = _register(stub)
        _register(stub)
        with pytest.raises(grpc.RpcError) as exists:
            _register(stub, taken)
        assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as refused:
            _register(stub)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many registrations from this address" in refused.value.details()
    retry = error_details_pb2.RetryInfo()
    assert rpc_status.from_call(refused.value).details[0].Unpack(retry)
    assert 0 < retry.retry_delay.seconds <= throttled_settings.register_window_seconds
    with _from(throttled, "127.0.0.10") as channel:
        _register(auth_pb2_grpc.AuthServiceStub(channel))  # another address is not affected


def test_the_purge_forgets_buckets_of_every_scope(throttled, owner_stub, throttled_settings):
    """AuthService.purge_expired clears the buckets of every scope once their window
    (an hour for registrations) and lock are over."""
    with _from(throttled, "127.0.0.11") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        _fail(stub, _register(stub))
    session_factory = make_session_factory(throttled.running.services.engine)

    def purge_at(later):
        auth = AuthService(
            lambda: SqlAlchemyUnitOfWork(session_factory),
            PasswordHasher(4),
            AccessTokenCodec(TEST_SECRET, "veritas", "veritas-api", 900),
            throttled_settings,
            lambda: datetime.now(UTC) + later,
        )
        auth.purge_expired()
        with session_factory() as session:
            query = select(SignInThrottle.scope, func.count()).group_by(SignInThrottle.scope)
            return dict(session.execute(query).all())

    assert set(purge_at(timedelta(0))) == {"account", "account_address", "address", "register"}
    assert set(purge_at(timedelta(minutes=31))) == {"register"}  # past every login lock
    assert purge_at(timedelta(minutes=61)) == {}


def test_the_purge_skips_buckets_a_sign_in_holds(throttled, throttled_settings):
    """A sign-in locks its buckets pair, address, account; the purge leaves the rows it
    holds alone instead of waiting for them (the two could deadlock)."""
    with _from(throttled, "127.0.0.12") as channel:
        _fail(auth_pb2_grpc.AuthServiceStub(channel), unique_email("held"))
    engine = throttled.running.services.engine
    session_factory = make_session_factory(engine)
    auth = AuthService(
        lambda: SqlAlchemyUnitOfWork(session_factory),
        PasswordHasher(4),
        AccessTokenCodec(TEST_SECRET, "veritas", "veritas-api", 900),
        throttled_settings,
        lambda: datetime.now(UTC) + timedelta(minutes=61),
    )
    with session_factory() as holder:
        held = holder.execute(
            select(SignInThrottle.scope, SignInThrottle.subject)
            .where(SignInThrottle.subject.contains("127.0.0.12"))
            .with_for_update()
        ).all()
        assert held
        auth.purge_expired()  # does not wait for the holder
        holder.rollback()
    with session_factory() as session:
        left = session.execute(
            select(func.count())
            .select_from(SignInThrottle)
            .where(SignInThrottle.subject.contains("127.0.0.12"))
        ).scalar_one()
    assert left == len(held)
