"""Enrolment through a real server (issue 11): CreateUser and ResetPassword hand out
one-time set-password tokens that AuthService.SetPassword redeems; ImportStudents
creates and updates students idempotently by e-mail; `veritas import-students`; and
Register turned off by VERITAS_SELF_REGISTRATION=false."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from sqlalchemy import create_engine, text
from veritas.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, common_pb2

from tests.e2e.conftest import login
from tests.e2e.exam_helpers import rpc_error
from tests.support import (
    PASSWORD,
    TEST_SECRET,
    ServerThread,
    bad_request_fields,
    make_settings,
    unique_email,
    unique_enrollment,
)
from veritas_grpc.domain.identity import Role

NEW_PASSWORD = "a brand new passphrase"
BAD_TOKEN = "invalid or expired set-password token"


@pytest.fixture(scope="module")
def db(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _create(admin_stub, admin, role=common_pb2.ROLE_TEACHER, email=None):
    return admin_stub.CreateUser(
        admin_pb2.CreateUserRequest(
            email=email or unique_email("staff"), full_name="Grace Hopper", role=role
        ),
        metadata=admin.metadata,
    )


def _set_password(auth_stub, token, password=NEW_PASSWORD):
    return auth_stub.SetPassword(auth_pb2.SetPasswordRequest(token=token, new_password=password))


def _audit(db, action, resource_id):
    with db.connect() as connection:
        return connection.execute(
            text(
                "SELECT actor_id, outcome, details::text FROM audit_logs "
                "WHERE action = :a AND resource_id = :r ORDER BY id"
            ),
            {"a": action, "r": str(resource_id)},
        ).all()


# CreateUser, SetPassword -------------------------------------------------------------


def test_a_created_account_signs_in_after_redeeming_its_token_once(
    admin_stub, admin, auth_stub, db
):
    created = _create(admin_stub, admin)
    email, token = created.user.email, created.set_password.token
    assert created.user.role == common_pb2.ROLE_TEACHER
    assert token and created.set_password.expire_time.seconds > time.time() + 6 * 86400
    # No password until the token is redeemed: nothing signs in, not even an empty one.
    for guess in ("!", PASSWORD):
        error = rpc_error(auth_stub.Login, auth_pb2.LoginRequest(email=email, password=guess))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    answer = _set_password(auth_stub, token)
    assert answer.user.id == created.user.id and answer.user.email == email
    signed_in = login(auth_stub, email, NEW_PASSWORD)
    assert signed_in.user_id == created.user.id
    # Single use.
    error = rpc_error(_set_password, auth_stub, token, "another new passphrase")
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)
    login(auth_stub, email, NEW_PASSWORD)
    # Audited, without the token or the password; only the hash is stored.
    (create_row,) = _audit(db, "admin.create_user", created.user.id)
    assert create_row.actor_id == uuid.UUID(admin.user_id)
    rows = _audit(db, "auth.set_password", created.user.id)
    assert [r.outcome for r in rows] == ["success", "failure"]
    with db.connect() as connection:
        everything = connection.execute(
            text("SELECT string_agg(details::text, ' ') FROM audit_logs")
        ).scalar_one()
        stored = connection.execute(
            text(
                "SELECT token_hash, purpose, used_at IS NOT NULL FROM set_password_tokens "
                "WHERE user_id = :u"
            ),
            {"u": created.user.id},
        ).all()
    assert token not in everything and NEW_PASSWORD not in everything
    assert [(s.purpose, s[2]) for s in stored] == [("create", True)]
    assert stored[0].token_hash != token and len(stored[0].token_hash) == 64


def test_a_password_less_account_costs_a_wrong_passwords_time(admin_stub, admin, auth_stub):
    created = _create(admin_stub, admin)
    known = login(auth_stub, admin.email)  # noqa: F841 - warms the path

    def timed(email, password):
        started = time.perf_counter()
        rpc_error(auth_stub.Login, auth_pb2.LoginRequest(email=email, password=password))
        return time.perf_counter() - started

    # bcrypt at cost 4 takes ~1-2 ms; a skipped check would answer in a fraction of it.
    passwordless = min(timed(created.user.email, "some guess here") for _ in range(5))
    wrong = min(timed(admin.email, "some guess here") for _ in range(5))
    assert passwordless > wrong * 0.5


def test_set_password_ends_the_accounts_sessions(admin_stub, admin, auth_stub, make_account):
    owner = make_account(Role.TEACHER)
    reset = admin_stub.ResetPassword(
        admin_pb2.ResetPasswordRequest(user_id=owner.user_id), metadata=admin.metadata
    )
    # The current password keeps working until the token is redeemed.
    still = login(auth_stub, owner.email)
    _set_password(auth_stub, reset.set_password.token)
    for session in (owner, still):
        error = rpc_error(
            auth_stub.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=session.metadata
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = rpc_error(
            auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=session.refresh_token)
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = rpc_error(auth_stub.Login, auth_pb2.LoginRequest(email=owner.email, password=PASSWORD))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    login(auth_stub, owner.email, NEW_PASSWORD)


def test_a_second_reset_token_kills_the_first(admin_stub, admin, auth_stub, db):
    created = _create(admin_stub, admin, role=common_pb2.ROLE_SERVICE)
    first = admin_stub.ResetPassword(
        admin_pb2.ResetPasswordRequest(user_id=created.user.id), metadata=admin.metadata
    ).set_password.token
    second = admin_stub.ResetPassword(
        admin_pb2.ResetPasswordRequest(user_id=created.user.id), metadata=admin.metadata
    ).set_password.token
    for dead in (created.set_password.token, first):
        error = rpc_error(_set_password, auth_stub, dead)
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)
    _set_password(auth_stub, second)
    login(auth_stub, created.user.email, NEW_PASSWORD)
    (first_reset, second_reset) = _audit(db, "admin.reset_password", created.user.id)
    assert '"superseded_tokens": 1' in second_reset.details


def test_a_deactivated_account_cannot_redeem_nor_be_reset(admin_stub, admin, auth_stub, db):
    created = _create(admin_stub, admin)
    with db.begin() as connection:
        connection.execute(
            text("UPDATE users SET is_active = false WHERE id = :u"), {"u": created.user.id}
        )
    error = rpc_error(_set_password, auth_stub, created.set_password.token)
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)
    error = rpc_error(
        admin_stub.ResetPassword,
        admin_pb2.ResetPasswordRequest(user_id=created.user.id),
        metadata=admin.metadata,
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    with db.begin() as connection:
        connection.execute(
            text("UPDATE users SET is_active = true WHERE id = :u"), {"u": created.user.id}
        )
    # The refused attempt did not use the token up.
    _set_password(auth_stub, created.set_password.token)


def test_tokens_expire(database_url):
    server = ServerThread(make_settings(set_password_token_ttl_seconds=1), database_url)
    try:
        with grpc.insecure_channel(server.address) as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            admin_stub = admin_pb2_grpc.AdminServiceStub(channel)
            services = server.running.services
            email = unique_email("admin")
            services.accounts.create_account(Role.ADMIN, email, PASSWORD, "Admin")
            admin = login(auth, email)
            created = _create(admin_stub, admin)
            time.sleep(1.5)
            error = rpc_error(_set_password, auth, created.set_password.token)
            assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)
    finally:
        server.stop()


def _forget_set_password_throttles(db):
    with db.begin() as connection:
        connection.execute(text("DELETE FROM sign_in_throttles WHERE scope = 'set_password'"))


def test_set_password_is_throttled_per_address(database_url, db):
    # Every test calls from 127.0.0.1: start from an empty bucket, and leave none locked.
    _forget_set_password_throttles(db)
    server = ServerThread(
        make_settings(login_max_failures=2, login_max_failures_per_address=3), database_url
    )
    try:
        with grpc.insecure_channel(server.address) as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            codes = []
            for _ in range(5):
                codes.append(rpc_error(_set_password, auth, "guessed-" + uuid.uuid4().hex).code())
    finally:
        server.stop()
        _forget_set_password_throttles(db)
    unauth, exhausted = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED
    assert codes == [unauth, unauth, unauth, exhausted, exhausted]


def test_bad_input(admin_stub, admin, auth_stub):
    def fields(call, request, **kwargs):
        error = rpc_error(call, request, **kwargs)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        return bad_request_fields(error)

    md = {"metadata": admin.metadata}
    got = fields(admin_stub.CreateUser, admin_pb2.CreateUserRequest(), **md)
    assert set(got) == {"email", "full_name", "role"}
    got = fields(
        admin_stub.CreateUser,
        admin_pb2.CreateUserRequest(
            email=unique_email(), full_name="S", role=common_pb2.ROLE_STUDENT
        ),
        **md,
    )
    assert set(got) == {"role"}
    got = fields(
        admin_stub.CreateUser,
        admin_pb2.CreateUserRequest(email="not-an-address", full_name=" ", role=99),
        **md,
    )
    assert set(got) == {"role"}  # an unknown enum value is refused first
    taken = rpc_error(
        admin_stub.CreateUser,
        admin_pb2.CreateUserRequest(email=admin.email, full_name="X", role=common_pb2.ROLE_ADMIN),
        **md,
    )
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    assert set(fields(admin_stub.ResetPassword, admin_pb2.ResetPasswordRequest(), **md)) == {
        "user_id"
    }
    got = fields(admin_stub.ResetPassword, admin_pb2.ResetPasswordRequest(user_id="nope"), **md)
    assert got == {"user_id": "must be a UUID"}
    missing = rpc_error(
        admin_stub.ResetPassword,
        admin_pb2.ResetPasswordRequest(user_id=str(uuid.uuid4())),
        **md,
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert set(fields(admin_stub.ImportStudents, admin_pb2.ImportStudentsRequest(), **md)) == {
        "rows"
    }
    too_many = admin_pb2.ImportStudentsRequest(
        rows=[
            admin_pb2.StudentRow(email=f"s{i}@x.edu", full_name="S", enrollment_id=f"E{i}")
            for i in range(10_001)
        ]
    )
    assert set(fields(admin_stub.ImportStudents, too_many, **md)) == {"rows"}
    got = fields(auth_stub.SetPassword, auth_pb2.SetPasswordRequest())
    assert set(got) == {"token", "new_password"}
    got = fields(
        auth_stub.SetPassword, auth_pb2.SetPasswordRequest(token="x", new_password="short")
    )
    assert set(got) == {"new_password"}


# ImportStudents ---------------------------------------------------------------------


def _rows(prefix, count, name="Student"):
    return [
        admin_pb2.StudentRow(
            email=f"{prefix}-{i}@example.edu",
            full_name=f"{name} {i}",
            enrollment_id=f"{prefix}-{i}",
        )
        for i in range(count)
    ]


def _import(admin_stub, admin, rows):
    return admin_stub.ImportStudents(
        admin_pb2.ImportStudentsRequest(rows=rows), metadata=admin.metadata
    )


def _snapshot(db, prefix):
    with db.connect() as connection:
        return connection.execute(
            text(
                "SELECT (SELECT count(*) FROM users WHERE email LIKE :p), "
                "(SELECT max(updated_at) FROM users WHERE email LIKE :p), "
                "(SELECT count(*) FROM set_password_tokens), (SELECT count(*) FROM audit_logs "
                "WHERE action = 'admin.import_students.accounts')"
            ),
            {"p": f"{prefix}-%"},
        ).one()


def test_the_import_story(admin_stub, admin, auth_stub, db):
    prefix = f"imp{uuid.uuid4().hex[:8]}"
    rows = _rows(prefix, 100)
    first = _import(admin_stub, admin, rows)
    assert (first.created_count, first.unchanged_count, first.rejected_count) == (100, 0, 0)
    assert [r.index for r in first.results] == list(range(100))
    assert all(
        r.outcome == admin_pb2.IMPORT_OUTCOME_CREATED and r.set_password.token
        for r in first.results
    )
    before = _snapshot(db, prefix)
    assert before[0] == 100

    # The same file again: all UNCHANGED, nothing written.
    again = _import(admin_stub, admin, rows)
    assert again.unchanged_count == 100 and again.created_count == 0
    assert all(not r.set_password.token for r in again.results)
    assert [r.user_id for r in again.results] == [r.user_id for r in first.results]
    assert _snapshot(db, prefix) == before

    # A new student signs in with their token.
    student = first.results[7]
    _set_password(auth_stub, student.set_password.token)
    login(auth_stub, student.email, NEW_PASSWORD)

    # A changed name and enrollment id, bad rows and good rows in one call.
    changed = list(rows)
    changed[3] = admin_pb2.StudentRow(
        email=rows[3].email.upper(), full_name="Renamed Student", enrollment_id=f"{prefix}-new3"
    )
    bad = [
        admin_pb2.StudentRow(email="not an address", full_name="X", enrollment_id="E-1"),
        admin_pb2.StudentRow(email=unique_email(), full_name="  ", enrollment_id="E-2"),
        admin_pb2.StudentRow(
            email=unique_email(), full_name="X", enrollment_id=rows[3].enrollment_id
        ),
        admin_pb2.StudentRow(email=admin.email, full_name="X", enrollment_id=unique_enrollment()),
        admin_pb2.StudentRow(
            email=rows[5].email, full_name="Dup", enrollment_id=unique_enrollment()
        ),
        admin_pb2.StudentRow(email=unique_email(), full_name="X", enrollment_id="bad id!"),
    ]
    good = admin_pb2.StudentRow(
        email=unique_email("late"), full_name="Late Student", enrollment_id=unique_enrollment()
    )
    third = _import(admin_stub, admin, changed + bad + [good])
    outcomes = [r.outcome for r in third.results]
    assert outcomes[3] == admin_pb2.IMPORT_OUTCOME_UPDATED
    assert third.results[3].user_id == first.results[3].user_id
    assert (third.updated_count, third.created_count, third.rejected_count) == (1, 1, 6)
    assert third.unchanged_count == 99
    reasons = [r.reason for r in third.results[100:106]]
    assert reasons[0].startswith("email: ")
    assert reasons[1].startswith("full_name: ")
    assert reasons[2] == "enrollment_id: is taken by another student"
    assert reasons[3] == "email: belongs to an account that is not a student"
    assert reasons[4] == "email: is also in row 5 of this import"
    assert reasons[5].startswith("enrollment_id: ")
    assert (
        outcomes[106] == admin_pb2.IMPORT_OUTCOME_CREATED and third.results[106].set_password.token
    )
    with db.connect() as connection:
        name, enrollment = connection.execute(
            text(
                "SELECT u.full_name, p.enrollment_id FROM users u JOIN student_profiles p "
                "ON p.user_id = u.id WHERE u.email = :e"
            ),
            {"e": rows[3].email},
        ).one()
    assert (name, enrollment) == ("Renamed Student", f"{prefix}-new3")
    # The admin's account was not touched by the rejected row that named it.
    assert login(auth_stub, admin.email).user_id == admin.user_id
    # Audited: the import, and the accounts it changed by id (one here: the row's resource).
    (updated_audit,) = _audit(db, "admin.import_students.accounts", first.results[3].user_id)
    assert '"outcome": "updated"' in updated_audit.details


def _cli(database_url, *args):
    return subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", *args],
        env={"VERITAS_DATABASE_URL": database_url, "VERITAS_JWT_SECRET": TEST_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_import_command(database_url, tmp_path, auth_stub):
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    path = tmp_path / "students.csv"
    path.write_text(
        "email,full_name,enrollment_id\n"
        f"{prefix}-a@example.edu,Ada Lovelace,{prefix}-A\n"
        f'{prefix}-b@example.edu,"Hopper, Grace",{prefix}-B\n'
        f"broken,Nobody,{prefix}-C\n",
        encoding="utf-8",
    )
    done = _cli(database_url, "import-students", str(path))
    assert done.returncode == 1, done.stderr  # a row was rejected
    assert "3 rows: 2 created, 0 updated, 0 unchanged, 1 rejected" in done.stderr
    lines = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["line"], r["outcome"]) for r in lines] == [
        ("2", "created"),
        ("3", "created"),
        ("4", "rejected"),
    ]
    assert lines[2]["reason"].startswith("email: ") and not lines[2]["token"]
    _set_password(auth_stub, lines[1]["token"])
    login(auth_stub, f"{prefix}-b@example.edu", NEW_PASSWORD)

    path.write_text(
        path.read_text().splitlines()[0] + "\n" + path.read_text().splitlines()[1] + "\n"
    )
    again = _cli(database_url, "import-students", str(path))
    assert again.returncode == 0, again.stderr
    assert "1 rows: 0 created, 0 updated, 1 unchanged, 0 rejected" in again.stderr

    path.write_text("mail,name\nx,y\n")
    wrong = _cli(database_url, "import-students", str(path))
    assert wrong.returncode == 2 and "email,full_name,enrollment_id" in wrong.stderr


# Register turned off ----------------------------------------------------------------


def test_register_can_be_turned_off(database_url):
    server = ServerThread(make_settings(self_registration=False), database_url)
    try:
        with grpc.insecure_channel(server.address) as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            email = unique_email("off")
            error = rpc_error(
                auth.Register,
                auth_pb2.RegisterRequest(
                    email=email,
                    password=PASSWORD,
                    full_name="Off",
                    enrollment_id=unique_enrollment(),
                ),
            )
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error.details() == (
                "self-registration is turned off; ask your university for an account"
            )
            assert rpc_error(auth.Login, auth_pb2.LoginRequest(email=email, password=PASSWORD))
    finally:
        server.stop()
