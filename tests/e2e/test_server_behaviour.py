"""Server-wide behaviour: one request id per call in the logs, the message size limit."""

import logging
import time

import grpc
import pytest
from sqlalchemy import select
from veritas.v1 import auth_pb2

from tests.e2e.conftest import register_and_login
from tests.support import PASSWORD, unique_email, unique_enrollment
from veritas_grpc.db.engine import make_session_factory
from veritas_grpc.db.models import AuditLog


def _access_records(caplog, request_id, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            r.fields
            for r in caplog.records
            if r.name == "veritas.access" and r.fields.get("request_id") == request_id
        ]
        if found:
            return found
        time.sleep(0.02)
    return []


def test_each_call_logs_one_line_with_its_request_id_method_and_status(auth_stub, caplog):
    caplog.set_level(logging.INFO, logger="veritas.access")
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.Login(auth_pb2.LoginRequest(email=unique_email(), password="wrong password"))
    request_id = dict(error.value.trailing_metadata())["x-request-id"]
    records = _access_records(caplog, request_id)
    assert len(records) == 1
    assert records[0]["method"] == "/veritas.v1.AuthService/Login"
    assert records[0]["status"] == "UNAUTHENTICATED"
    assert records[0]["duration_ms"] > 0
    assert "wrong password" not in caplog.text


def test_messages_over_the_configured_size_are_refused(auth_stub, settings):
    huge = "x" * (settings.max_message_bytes + 1)
    with pytest.raises(grpc.RpcError) as error:
        auth_stub.Register(
            auth_pb2.RegisterRequest(
                email=unique_email(),
                password=PASSWORD,
                full_name=huge,
                enrollment_id=unique_enrollment(),
            )
        )
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_refresh_token_reuse_is_audited(auth_stub, services):
    student = register_and_login(auth_stub)
    auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=student.refresh_token))
    with pytest.raises(grpc.RpcError):
        auth_stub.Refresh(auth_pb2.RefreshRequest(refresh_token=student.refresh_token))
    with make_session_factory(services.engine)() as session:
        row = session.execute(
            select(AuditLog).where(
                AuditLog.action == "auth.refresh_reuse", AuditLog.actor_id == student.user_id
            )
        ).scalar_one()
    assert row.outcome == "denied" and row.resource_type == "auth_session"
    assert row.request_id and row.peer
