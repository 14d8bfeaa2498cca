"""AdminService's audit trail through a real server: reading it with filters and pages,
verifying its chain, and the same from `veritas audit` (issue 11)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from veritas.v1 import admin_pb2, auth_pb2

from tests.e2e.conftest import login
from tests.e2e.exam_helpers import rpc_error, timestamp
from tests.support import TEST_SECRET, bad_request_fields


def _query(admin_stub, admin, **filters):
    return admin_stub.QueryAuditLog(
        admin_pb2.QueryAuditLogRequest(**filters), metadata=admin.metadata
    )


def test_a_students_sign_ins_are_read_back_newest_first_in_pages(
    admin_stub, admin, auth_stub, student
):
    login(auth_stub, student.email)  # a second sign-in
    with pytest.raises(grpc.RpcError):
        auth_stub.Login(auth_pb2.LoginRequest(email=student.email, password="wrong password!"))

    first = _query(admin_stub, admin, actor_id=student.user_id, action="auth.login", page_size=1)
    second = _query(
        admin_stub,
        admin,
        actor_id=student.user_id,
        action="auth.login",
        page_size=5,
        page_token=first.next_page_token,
    )

    records = [*first.records, *second.records]
    assert [r.outcome for r in records] == [
        admin_pb2.AUDIT_OUTCOME_FAILURE,
        admin_pb2.AUDIT_OUTCOME_SUCCESS,
        admin_pb2.AUDIT_OUTCOME_SUCCESS,
    ]
    times = [r.occur_time.ToDatetime() for r in records]
    assert times == sorted(times, reverse=True)
    assert [r.sequence for r in records] == sorted((r.sequence for r in records), reverse=True)
    assert all(r.actor_id == student.user_id and r.request_id for r in records)
    assert records[0].details["reason"] == "bad_password"
    assert "wrong password!" not in str(records)  # nothing secret is ever audited


def test_a_page_token_only_serves_the_filters_it_came_from(admin_stub, admin, student):
    first = _query(admin_stub, admin, action="auth.login", page_size=1)
    assert first.next_page_token
    error = rpc_error(
        admin_stub.QueryAuditLog,
        admin_pb2.QueryAuditLogRequest(action="auth.register", page_token=first.next_page_token),
        metadata=admin.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error)) == {"page_token"}


@pytest.mark.parametrize(
    "request_fields, field",
    [
        ({"actor_id": "not-a-uuid"}, "actor_id"),
        ({"outcome": 99}, "outcome"),
        ({"action": "x" * 300}, "action"),
        ({"page_size": 501}, "page_size"),
        (
            {
                "start_time": timestamp(datetime.now(UTC)),
                "end_time": timestamp(datetime.now(UTC) - timedelta(hours=1)),
            },
            "end_time",
        ),
    ],
)
def test_bad_filters_are_invalid_argument_on_their_field(admin_stub, admin, request_fields, field):
    error = rpc_error(
        admin_stub.QueryAuditLog,
        admin_pb2.QueryAuditLogRequest(**request_fields),
        metadata=admin.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error)) == {field}


def test_the_chain_of_the_whole_test_run_is_intact_and_checking_it_is_audited(admin_stub, admin):
    report = admin_stub.VerifyAuditLog(admin_pb2.VerifyAuditLogRequest(), metadata=admin.metadata)

    assert report.intact, report.broken_reason
    assert report.checked_count == report.head_sequence > 0
    assert len(report.head_hash) == 64
    seen = _query(admin_stub, admin, actor_id=admin.user_id, action="audit.verify")
    assert seen.records[0].outcome == admin_pb2.AUDIT_OUTCOME_SUCCESS
    assert seen.records[0].details["checked_count"] == report.checked_count


def _veritas(database_url, *args):
    return subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", *args],
        env={"VERITAS_DATABASE_URL": database_url, "VERITAS_JWT_SECRET": TEST_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_operators_verify_and_query_from_the_command_line(database_url, student):
    verified = _veritas(database_url, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout and "head " in verified.stdout

    queried = _veritas(database_url, "audit", "query", "--action", "auth.login", "--limit", "2")
    assert queried.returncode == 0, queried.stderr
    rows = [json.loads(line) for line in queried.stdout.splitlines()]
    assert len(rows) == 2 and {row["action"] for row in rows} == {"auth.login"}
