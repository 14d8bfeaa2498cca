"""AdminService's accounts through a real server (issue 11): ListUsers with filters, text
search and pages, GetUser, UpdateUser and its mask, DeactivateUser / ReactivateUser /
RevokeSessions ending tokens and open streams in another server process within a second,
UnlockSignIn after a lockout; bad input and NOT_FOUND for each; every call audited."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2
from veritas.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    monitoring_pb2,
    monitoring_pb2_grpc,
    resources_pb2,
)

from tests.e2e.conftest import login, register_and_login
from tests.e2e.exam_helpers import rpc_error
from tests.e2e.monitoring_helpers import event, scene
from tests.support import (
    PASSWORD,
    ServerProcess,
    ServerThread,
    bad_request_fields,
    make_settings,
    unique_email,
)
from veritas_grpc.domain.identity import Role

INVALID = grpc.StatusCode.INVALID_ARGUMENT
GET_ME = auth_pb2.GetCurrentUserRequest()
# A stream must end within a second of the commit; the margin is for a loaded machine.
STREAM_END_SECONDS = 1.5


@pytest.fixture(scope="module")
def other_process(database_url):
    process = ServerProcess(database_url)
    yield process
    process.stop()


def _call(admin_stub, admin, name, **fields):
    method = getattr(admin_stub, name)
    request = getattr(admin_pb2, f"{name}Request")(**fields)
    return method(request, metadata=admin.metadata)


def _error(admin_stub, admin, name, **fields) -> grpc.RpcError:
    return rpc_error(_call, admin_stub, admin, name, **fields)


def _audited(admin_stub, admin, action, resource_id):
    return _call(admin_stub, admin, "QueryAuditLog", action=action, resource_id=resource_id).records


# ListUsers ---------------------------------------------------------------------------


@pytest.fixture
def tagged(services):
    """Four accounts whose names carry a tag of their own: three students, a teacher."""
    tag = uuid.uuid4().hex[:10]
    made = []
    for number, role in enumerate((Role.STUDENT, Role.STUDENT, Role.STUDENT, Role.TEACHER)):
        enrollment = f"ENR-{tag}-{number}" if role is Role.STUDENT else None
        view = services.accounts.create_account(
            role, unique_email(f"p{number}"), PASSWORD, f"Name {tag.upper()} {number}", enrollment
        )
        made.append(view)
    return tag, made


def test_list_users_filters_by_text_role_and_state_in_email_order(admin_stub, admin, tagged):
    tag, made = tagged
    everyone = _call(admin_stub, admin, "ListUsers", query=tag).users
    assert [u.id for u in everyone] == [str(v.id) for v in sorted(made, key=lambda v: v.email)]
    # Case-insensitive over the name (upper-cased), the enrollment id and the e-mail.
    assert len(_call(admin_stub, admin, "ListUsers", query=f"enr-{tag}-1").users) == 1
    assert _call(admin_stub, admin, "ListUsers", query=made[2].email.upper()).users[0].id == str(
        made[2].id
    )
    students = _call(admin_stub, admin, "ListUsers", query=tag, role=common_pb2.ROLE_STUDENT)
    assert {u.id for u in students.users} == {str(v.id) for v in made[:3]}
    assert students.users[0].enrollment_id.startswith("ENR-")
    _call(admin_stub, admin, "DeactivateUser", user_id=str(made[0].id), reason="left")
    inactive = _call(admin_stub, admin, "ListUsers", query=tag, active=False).users
    assert [u.id for u in inactive] == [str(made[0].id)] and not inactive[0].active
    assert len(_call(admin_stub, admin, "ListUsers", query=tag, active=True).users) == 3
    # LIKE's wildcards are plain characters in a query.
    assert _call(admin_stub, admin, "ListUsers", query=f"{tag[:4]}%{tag[5:]}").users == []
    assert _call(admin_stub, admin, "ListUsers", query="___").users == []
    records = _call(
        admin_stub, admin, "QueryAuditLog", action="user.list", actor_id=admin.user_id
    ).records
    assert records[-1].details["filters"]["query"] == tag


def test_list_users_pages_and_a_token_serves_only_its_filters(admin_stub, admin, tagged):
    tag, made = tagged
    first = _call(admin_stub, admin, "ListUsers", query=tag, page_size=3)
    assert len(first.users) == 3 and first.next_page_token
    second = _call(
        admin_stub, admin, "ListUsers", query=tag, page_size=3, page_token=first.next_page_token
    )
    assert len(second.users) == 1 and not second.next_page_token
    emails = [u.email for u in [*first.users, *second.users]]
    assert emails == sorted(v.email for v in made)
    error = _error(
        admin_stub,
        admin,
        "ListUsers",
        query=tag,
        role=common_pb2.ROLE_STUDENT,
        page_token=first.next_page_token,
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"page_token"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"query": "ab"}, "query"),
        ({"query": "  ab  "}, "query"),
        ({"query": "x" * 257}, "query"),
        ({"role": 99}, "role"),
        ({"page_size": 501}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "garbage"}, "page_token"),
    ],
)
def test_list_users_refuses_bad_input(admin_stub, admin, fields, field):
    error = _error(admin_stub, admin, "ListUsers", **fields)
    assert error.code() == INVALID
    assert set(bad_request_fields(error)) == {field}


# GetUser -----------------------------------------------------------------------------


def test_get_user_shows_sessions_last_sign_in_and_throttles(admin_stub, admin, auth_stub):
    student = register_and_login(auth_stub)
    with pytest.raises(grpc.RpcError):
        auth_stub.Login(auth_pb2.LoginRequest(email=student.email, password="wrong password!"))
    detail = _call(admin_stub, admin, "GetUser", user_id=student.user_id)
    assert detail.user.email == student.email and detail.user.active
    assert len(detail.open_sessions) == 1
    assert (
        detail.open_sessions[0].expire_time.ToDatetime()
        > detail.open_sessions[0].create_time.ToDatetime()
    )
    assert detail.HasField("last_sign_in_time")
    assert not detail.HasField("deactivate_time") and detail.deactivate_reason == ""
    buckets = {(t.scope, t.client_address): t for t in detail.sign_in_throttles}
    assert buckets[("account", "")].failure_count == 1
    (pair,) = [t for t in detail.sign_in_throttles if t.scope == "account_address"]
    assert pair.client_address == "127.0.0.1" and not pair.HasField("lock_expire_time")
    assert _audited(admin_stub, admin, "user.read", student.user_id)


def test_get_user_bad_input_and_not_found(admin_stub, admin):
    error = _error(admin_stub, admin, "GetUser", user_id="not-a-uuid")
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"user_id"}
    assert _error(admin_stub, admin, "GetUser").code() == INVALID
    missing = str(uuid.uuid4())
    assert _error(admin_stub, admin, "GetUser", user_id=missing).code() == grpc.StatusCode.NOT_FOUND
    (record,) = _audited(admin_stub, admin, "user.read", missing)
    assert record.outcome == admin_pb2.AUDIT_OUTCOME_FAILURE


# UpdateUser --------------------------------------------------------------------------


def _update(admin_stub, admin, paths, **user):
    return _call(
        admin_stub,
        admin,
        "UpdateUser",
        user=resources_pb2.User(**user),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


def test_update_user_changes_the_fields_in_the_mask(admin_stub, admin, auth_stub):
    student = register_and_login(auth_stub)
    enrollment = f"NEW-{uuid.uuid4().hex[:8]}"
    updated = _update(
        admin_stub,
        admin,
        ["full_name", "enrollment_id"],
        id=student.user_id,
        full_name="  Ada Lovelace ",
        enrollment_id=enrollment,
        email="ignored@example.edu",
    ).user
    assert (updated.full_name, updated.enrollment_id) == ("Ada Lovelace", enrollment)
    assert updated.email == student.email
    # Only the masked field changes.
    renamed = _update(
        admin_stub, admin, ["full_name"], id=student.user_id, full_name="A. Lovelace"
    ).user
    assert (renamed.full_name, renamed.enrollment_id) == ("A. Lovelace", enrollment)
    me = auth_stub.GetCurrentUser(GET_ME, metadata=student.metadata).user
    assert me.full_name == "A. Lovelace"
    (record, *_) = _audited(admin_stub, admin, "user.update", student.user_id)
    assert list(record.details["changed"]) == ["full_name"]


def test_update_user_enrollment_id_taken_is_already_exists(admin_stub, admin, auth_stub, services):
    first = register_and_login(auth_stub)
    second = register_and_login(auth_stub)
    taken = _call(admin_stub, admin, "GetUser", user_id=first.user_id).user.enrollment_id
    error = rpc_error(
        _update, admin_stub, admin, ["enrollment_id"], id=second.user_id, enrollment_id=taken
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "enrollment id" in error.details()


@pytest.mark.parametrize(
    ("paths", "values", "field"),
    [
        ([], {"full_name": "X"}, "update_mask"),
        (["email"], {"email": "new@example.edu"}, "update_mask"),
        (["role"], {"role": common_pb2.ROLE_ADMIN}, "update_mask"),
        (["full_name", "active"], {"full_name": "X"}, "update_mask"),
        (["full_name"], {"full_name": "   "}, "user.full_name"),
        (["full_name"], {"full_name": "x" * 201}, "user.full_name"),
        (["enrollment_id"], {"enrollment_id": "-bad id"}, "user.enrollment_id"),
    ],
)
def test_update_user_refuses_bad_masks_and_values(admin_stub, admin, student, paths, values, field):
    error = rpc_error(_update, admin_stub, admin, paths, id=student.user_id, **values)
    assert error.code() == INVALID
    assert set(bad_request_fields(error)) == {field}


def test_update_user_enrollment_id_only_for_students_and_not_found(admin_stub, admin, make_account):
    teacher = make_account(Role.TEACHER)
    error = rpc_error(
        _update, admin_stub, admin, ["enrollment_id"], id=teacher.user_id, enrollment_id="T-1"
    )
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"update_mask"}
    error = rpc_error(_update, admin_stub, admin, ["full_name"], id="nope", full_name="X")
    assert set(bad_request_fields(error)) == {"user.id"}
    missing = rpc_error(
        _update, admin_stub, admin, ["full_name"], id=str(uuid.uuid4()), full_name="X"
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


# Deactivation and sessions -------------------------------------------------------------


class _OpenAgentStream:
    """A StreamEvents call kept open: one batch sent, then waiting for more."""

    def __init__(self, channel, metadata, attempt_id):
        self._queue: queue.Queue = queue.Queue()
        self._queue.put(monitoring_pb2.StreamEventsRequest(events=[event(attempt_id)]))
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        self.future = stub.StreamEvents.future(self._requests(), metadata=metadata, timeout=60)
        self.ended_at: float | None = None
        self.future.add_done_callback(lambda _: setattr(self, "ended_at", time.monotonic()))

    def _requests(self):
        while (item := self._queue.get()) is not None:
            yield item

    def close(self):
        self._queue.put(None)


class _OpenWatch:
    """A teacher's WatchExamAlerts read in a thread until it ends."""

    def __init__(self, channel, metadata, exam_id):
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        self.call = stub.WatchExamAlerts(
            monitoring_pb2.WatchExamAlertsRequest(exam_id=exam_id), metadata=metadata, timeout=60
        )
        assert next(self.call).HasField("heartbeat")  # live
        self.ended_at: float | None = None
        self.code: grpc.StatusCode | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as error:
            self.code = error.code()
        self.ended_at = time.monotonic()

    def wait(self, timeout):
        self._thread.join(timeout)
        return self.code


def test_deactivating_a_student_ends_everything_in_another_process_within_a_second(
    channel, auth_stub, admin_stub, admin, make_account, other_process
):
    world = scene(channel, auth_stub, make_account)
    student = world.student
    with grpc.insecure_channel(other_process.address) as other:
        other_auth = auth_pb2_grpc.AuthServiceStub(other)
        assert other_auth.GetCurrentUser(GET_ME, metadata=student.metadata).user.id
        agent = _OpenAgentStream(other, student.metadata, world.attempt_id)
        time.sleep(1.0)  # the stream is open and authenticated on the other process
        assert not agent.future.done()

        deactivated_at = time.monotonic()
        answer = _call(
            admin_stub, admin, "DeactivateUser", user_id=student.user_id, reason="misconduct"
        )
        with pytest.raises(grpc.RpcError) as ended:
            agent.future.result(timeout=10)
        agent.close()
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert agent.ended_at is not None
        assert agent.ended_at - deactivated_at < STREAM_END_SECONDS, agent.ended_at - deactivated_at

        assert answer.revoked_session_count == 1 and not answer.user.active
        refused = rpc_error(other_auth.GetCurrentUser, GET_ME, metadata=student.metadata)
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        refresh = rpc_error(
            other_auth.Refresh, auth_pb2.RefreshRequest(refresh_token=student.refresh_token)
        )
        assert refresh.code() == grpc.StatusCode.UNAUTHENTICATED
    login_error = rpc_error(login, auth_stub, student.email)
    assert login_error.code() == grpc.StatusCode.UNAUTHENTICATED

    detail = _call(admin_stub, admin, "GetUser", user_id=student.user_id)
    assert detail.deactivate_reason == "misconduct" and detail.HasField("deactivate_time")
    assert list(detail.open_sessions) == []
    # Again: nothing changes, and it says so.
    again = _call(admin_stub, admin, "DeactivateUser", user_id=student.user_id, reason="other")
    assert again.revoked_session_count == 0
    assert _call(admin_stub, admin, "GetUser", user_id=student.user_id).deactivate_reason == (
        "misconduct"
    )
    (record, *_) = _audited(admin_stub, admin, "user.deactivate", student.user_id)
    assert record.actor_id == admin.user_id and record.details["reason"] == "other"

    reactivated = _call(admin_stub, admin, "ReactivateUser", user_id=student.user_id).user
    assert reactivated.active
    assert login(auth_stub, student.email).user_id == student.user_id
    # The old tokens stay dead.
    assert (
        rpc_error(auth_stub.GetCurrentUser, GET_ME, metadata=student.metadata).code()
        == grpc.StatusCode.UNAUTHENTICATED
    )
    detail = _call(admin_stub, admin, "GetUser", user_id=student.user_id)
    assert not detail.HasField("deactivate_time") and detail.deactivate_reason == ""
    assert _audited(admin_stub, admin, "user.reactivate", student.user_id)


def test_revoking_a_teachers_sessions_ends_their_watch_in_another_process(
    channel, auth_stub, admin_stub, admin, make_account, other_process
):
    world = scene(channel, auth_stub, make_account)
    teacher = world.teacher
    second_login = login(auth_stub, teacher.email)
    with grpc.insecure_channel(other_process.address) as other:
        watch = _OpenWatch(other, teacher.metadata, world.exam_id)
        time.sleep(0.5)
        revoked_at = time.monotonic()
        answer = _call(admin_stub, admin, "RevokeSessions", user_id=teacher.user_id)
        assert watch.wait(timeout=10) == grpc.StatusCode.UNAUTHENTICATED
        assert watch.ended_at - revoked_at < STREAM_END_SECONDS, watch.ended_at - revoked_at
    assert answer.revoked_session_count == 2
    for signed_in in (teacher, second_login):
        error = rpc_error(auth_stub.GetCurrentUser, GET_ME, metadata=signed_in.metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # The account stays active: a new sign-in works.
    assert login(auth_stub, teacher.email).user_id == teacher.user_id
    (record,) = _audited(admin_stub, admin, "user.revoke_sessions", teacher.user_id)
    assert record.details["revoked_session_count"] == 2


def test_logging_out_ends_that_sessions_watch_in_another_process_and_only_that(
    channel, auth_stub, make_account, other_process
):
    world = scene(channel, auth_stub, make_account)
    teacher = world.teacher
    other_session = login(auth_stub, teacher.email)
    with grpc.insecure_channel(other_process.address) as other:
        ended = _OpenWatch(other, teacher.metadata, world.exam_id)
        kept = _OpenWatch(other, other_session.metadata, world.exam_id)
        time.sleep(0.5)
        logged_out_at = time.monotonic()
        auth_stub.Logout(auth_pb2.LogoutRequest(), metadata=teacher.metadata)
        assert ended.wait(timeout=10) == grpc.StatusCode.UNAUTHENTICATED
        assert ended.ended_at - logged_out_at < STREAM_END_SECONDS
        assert kept.wait(timeout=1.0) is None  # the other session's watch goes on
        kept.call.cancel()


def test_a_stream_of_someone_else_is_not_ended(
    channel, auth_stub, admin_stub, admin, make_account, other_process
):
    world = scene(channel, auth_stub, make_account)
    bystander = register_and_login(auth_stub)
    with grpc.insecure_channel(other_process.address) as other:
        agent = _OpenAgentStream(other, world.student.metadata, world.attempt_id)
        time.sleep(0.5)
        _call(admin_stub, admin, "RevokeSessions", user_id=bystander.user_id)
        time.sleep(1.0)
        assert not agent.future.done()
        agent.close()
        assert agent.future.result(timeout=10).accepted_count == 1


def test_deactivate_bad_input_oneself_and_not_found(admin_stub, admin, student):
    for name in ("DeactivateUser", "ReactivateUser", "RevokeSessions"):
        error = _error(admin_stub, admin, name, user_id="x")
        assert error.code() == INVALID and set(bad_request_fields(error)) == {"user_id"}
        missing = _error(admin_stub, admin, name, user_id=str(uuid.uuid4()))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
    error = _error(admin_stub, admin, "DeactivateUser", user_id=student.user_id, reason="r" * 501)
    assert error.code() == INVALID and set(bad_request_fields(error)) == {"reason"}
    own = _error(admin_stub, admin, "DeactivateUser", user_id=admin.user_id)
    assert own.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Nothing changed: the student and the admin still work.
    assert _call(admin_stub, admin, "GetUser", user_id=student.user_id).user.active


# UnlockSignIn --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_server(database_url):
    server = ServerThread(make_settings(login_max_failures=2), database_url)
    yield server
    server.stop()


def test_unlock_sign_in_clears_a_lockout(strict_server, services):
    with grpc.insecure_channel(strict_server.address) as opened:
        auth = auth_pb2_grpc.AuthServiceStub(opened)
        admin_stub = admin_pb2_grpc.AdminServiceStub(opened)
        admin_email, student_email = unique_email("admin"), unique_email("locked")
        services.accounts.create_account(Role.ADMIN, admin_email, PASSWORD, "Admin")
        services.accounts.create_account(
            Role.STUDENT, student_email, PASSWORD, "Locked Out", f"L-{uuid.uuid4().hex[:8]}"
        )
        admin = login(auth, admin_email)
        for _ in range(2):
            assert rpc_error(login, auth, student_email, "wrong password!").code() == (
                grpc.StatusCode.UNAUTHENTICATED
            )
        locked = rpc_error(login, auth, student_email)
        assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        user_id = services.accounts.ids_by_email([student_email])[student_email]
        detail = _call(admin_stub, admin, "GetUser", user_id=str(user_id))
        assert any(t.HasField("lock_expire_time") for t in detail.sign_in_throttles)

        cleared = _call(
            admin_stub,
            admin,
            "UnlockSignIn",
            email=student_email.upper(),
            client_address="127.0.0.1",
        )
        # The account's bucket, its (account, 127.0.0.1) bucket, 127.0.0.1's bucket.
        assert cleared.cleared_count == 3
        assert login(auth, student_email).email == student_email
        assert _call(admin_stub, admin, "UnlockSignIn", email=student_email).cleared_count == 0
        (record, *_) = _audited(admin_stub, admin, "auth.unlock", student_email)
        assert record.details["cleared_count"] in (0, 3)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "email"),
        ({"email": "x" * 255}, "email"),
        ({"email": "a@example.edu", "client_address": "not an address"}, "client_address"),
    ],
)
def test_unlock_sign_in_refuses_bad_input(admin_stub, admin, fields, field):
    error = _error(admin_stub, admin, "UnlockSignIn", **fields)
    assert error.code() == INVALID and set(bad_request_fields(error)) == {field}
