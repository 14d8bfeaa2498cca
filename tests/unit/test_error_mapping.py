import grpc
import pytest
from google.rpc import error_details_pb2
from sqlalchemy.exc import IntegrityError, OperationalError

from veritas_grpc.domain import errors
from veritas_grpc.interceptors.errors import status_for
from veritas_grpc.observability import CallContext, bind_call, unbind_call
from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork


def test_invalid_argument_carries_every_field_violation():
    error = errors.InvalidArgument(
        [errors.FieldViolation("email", "bad"), errors.FieldViolation("password", "short")]
    )
    code, message, details = status_for(error)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("email", "bad"),
        ("password", "short"),
    ]


def test_lockout_says_when_to_retry():
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    code, message, details = status_for(errors.TooManyAttempts(now + timedelta(seconds=90), now))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2026-01-01T00:01:30" in message
    retry = error_details_pb2.RetryInfo()
    assert details[0].Unpack(retry) and retry.retry_delay.seconds == 90


@pytest.mark.server_fault
def test_unexpected_errors_reveal_nothing_but_the_request_id(caplog):
    token = bind_call(CallContext("req-123456", "/x/Y", "ipv4:1.2.3.4:5"))
    try:
        code, message, details = status_for(RuntimeError("SELECT password_hash FROM users"))
    finally:
        unbind_call(token)
    assert code is grpc.StatusCode.INTERNAL
    assert message == "internal error (request id req-123456)"
    assert details == []
    assert "SELECT password_hash" in caplog.text  # logged for operators, not returned


class _Session:
    def close(self):
        pass


def test_a_database_outage_leaves_the_unit_of_work_as_unavailable_without_sql():
    with pytest.raises(errors.Unavailable) as raised, SqlAlchemyUnitOfWork(_Session):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))
    code, message, _ = status_for(raised.value)
    assert code is grpc.StatusCode.UNAVAILABLE
    assert "SELECT" not in message and "connect to server" not in message


class _DroppedSession:
    """A session whose connection the database dropped after its last statement."""

    def close(self):
        raise OperationalError("ROLLBACK", {}, Exception("server closed the connection"))


def test_a_connection_dropped_before_the_closing_rollback_is_unavailable_too():
    """Seen in a PostgreSQL restart: a read-only use case ended cleanly, then the
    rollback of close() met the dead connection (it was INTERNAL, logged as ERROR)."""
    with pytest.raises(errors.Unavailable), SqlAlchemyUnitOfWork(_DroppedSession):
        pass


def test_other_database_errors_stay_unexpected():
    with pytest.raises(IntegrityError), SqlAlchemyUnitOfWork(_Session):
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))


def test_overload_is_resource_exhausted_with_a_retry_hint():
    code, _, details = status_for(errors.Overloaded("busy"))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = error_details_pb2.RetryInfo()
    assert details[0].Unpack(retry) and retry.retry_delay.seconds == 1
