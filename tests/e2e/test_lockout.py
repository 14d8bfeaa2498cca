"""Repeated failures lock sign-in for an address; the answer says when to retry."""

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select
from veritas.v1 import auth_pb2

from tests.support import PASSWORD, unique_email
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog


def _login_code(auth_stub, email, password):
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.Login(auth_pb2.LoginRequest(email=email, password=password))
    return error.value


def test_five_failures_lock_the_account_even_for_the_right_password(
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
