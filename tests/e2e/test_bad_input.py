"""Bad input: a clear status with field violations, and nothing written."""

import grpc
import pytest
from sqlalchemy import func, select
from veritas.v1 import auth_pb2

from tests.support import PASSWORD, bad_request_fields, unique_email, unique_enrollment
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog, User


@pytest.fixture
def row_counts(services):
    session_factory = make_session_factory(services.engine)

    def counts():
        with session_factory() as session:
            return (
                session.scalar(select(func.count()).select_from(User)),
                session.scalar(select(func.count()).where(AuditLog.action == "auth.register")),
            )

    return counts


def _register(auth_stub, **fields):
    request = {
        "email": unique_email(),
        "password": PASSWORD,
        "full_name": "Valid Name",
        "enrollment_id": unique_enrollment(),
        **fields,
    }
    return auth_stub.Register(auth_pb2.RegisterRequest(**request))


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        ({"password": "short"}, {"password"}),
        ({"password": "p" * 129}, {"password"}),
        ({"email": "not-an-email"}, {"email"}),
        ({"email": "a@b"}, {"email"}),
        ({"full_name": "   "}, {"full_name"}),
        ({"enrollment_id": ""}, {"enrollment_id"}),
        ({"enrollment_id": "has spaces"}, {"enrollment_id"}),
        ({"email": "", "password": "", "full_name": ""}, {"email", "password", "full_name"}),
    ],
)
def test_invalid_registrations_name_each_bad_field_and_write_nothing(
    auth_stub, row_counts, fields, violations
):
    before = row_counts()
    with pytest.raises(grpc.RpcError) as error:
        _register(auth_stub, **fields)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error.value)) == violations
    assert row_counts() == before


def test_duplicate_email_differing_only_in_case(auth_stub, row_counts):
    email = unique_email("dup")
    _register(auth_stub, email=email)
    before = row_counts()
    with pytest.raises(grpc.RpcError) as error:
        _register(auth_stub, email=email.upper())
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert row_counts() == before


def test_login_requires_both_fields(auth_stub):
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.Login(auth_pb2.LoginRequest())
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error.value)) == {"email", "password"}


@pytest.mark.server_fault
def test_unexpected_errors_are_internal_with_a_request_id_only(
    auth_stub, student, server, monkeypatch
):
    def explode(principal):
        raise RuntimeError("SELECT password_hash FROM users WHERE secret='hunter2'")

    monkeypatch.setattr(server.running.services.auth, "current_user", explode)
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=student.metadata)
    assert error.value.code() == grpc.StatusCode.INTERNAL
    details = error.value.details()
    assert details.startswith("internal error (request id ")
    assert "SELECT" not in details and "hunter2" not in details and "Traceback" not in details
    request_id = dict(error.value.trailing_metadata())["x-request-id"]
    assert request_id in details
