"""AdminService's oversight through a real server: SearchAttempts (filters, pages, bad
input) and GetSystemStats (equal to counts done in SQL, by the test, over the same
database in the same instant; served from a snapshot), both audited (issue 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import create_engine, text
from veritas.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    analysis_pb2,
    analysis_pb2_grpc,
    common_pb2,
    teacher_pb2,
)

from tests.e2e.conftest import login, register_and_login
from tests.e2e.exam_helpers import rpc_error, start, stubs, submit, timestamp
from tests.e2e.monitoring_helpers import event, scene, stream
from tests.support import (
    PASSWORD,
    ServerThread,
    bad_request_fields,
    make_settings,
    unique_email,
)
from veritas_grpc.domain.identity import Role


@pytest.fixture(scope="module")
def world(channel, auth_stub, services):
    """One exam with three students' attempts: in progress and flagged (integrity 0.3),
    submitted and passed (0.9), submitted and failed (unassessed); events of today and,
    20 hours back, maybe of yesterday."""

    def account(role: Role):
        email = unique_email(role.value)
        services.accounts.create_account(role, email, PASSWORD, f"Test {role.value}", None)
        return login(auth_stub, email)

    student_stub, teacher_stub = stubs(channel)
    first = scene(channel, auth_stub, account)
    scorer = account(Role.SERVICE)
    analyses = analysis_pb2_grpc.AnalysisServiceStub(channel)
    now = datetime.now(UTC)
    events = [
        event(first.attempt_id),
        event(first.attempt_id, occur_time=timestamp(now - timedelta(hours=20))),
    ]
    assert stream(channel, first.student.metadata, [events]).accepted_count == 2

    def analyse(attempt_id: str, integrity: float) -> None:
        analyses.CreateBehaviorAnalysis(
            analysis_pb2.CreateBehaviorAnalysisRequest(
                attempt_id=attempt_id,
                integrity_score=integrity,
                dropout_label=common_pb2.DROPOUT_LABEL_SAFE,
                llm_summary="summary",
            ),
            metadata=scorer.metadata,
        )

    analyse(first.attempt_id, 0.3)
    attempts = [first.attempt_id]
    students = [first.student]
    for points, integrity in ((80.0, 0.9), (10.0, None)):
        student = register_and_login(auth_stub)
        attempt = start(student_stub, student, first.exam_id)
        submit(student_stub, student, attempt.id)
        teacher_stub.GradeAttempt(
            teacher_pb2.GradeAttemptRequest(attempt_id=attempt.id, points=points),
            metadata=first.teacher.metadata,
        )
        if integrity is not None:
            analyse(attempt.id, integrity)
        attempts.append(attempt.id)
        students.append(student)
    return {"exam_id": first.exam_id, "attempts": attempts, "students": students}


def _search(admin_stub, admin, **filters):
    return admin_stub.SearchAttempts(
        admin_pb2.SearchAttemptsRequest(**filters), metadata=admin.metadata
    )


def _ids(response):
    return [a.id for a in response.attempts]


def test_search_by_exam_newest_first_in_pages(admin_stub, admin, world):
    newest_first = list(reversed(world["attempts"]))
    whole = _search(admin_stub, admin, exam_id=world["exam_id"])
    assert _ids(whole) == newest_first and not whole.next_page_token
    found = whole.attempts[0]
    assert found.exam_id == world["exam_id"] and found.exam_title and found.student_name
    assert found.status == common_pb2.ATTEMPT_STATUS_SUBMITTED and found.points == 10.0

    seen, token = [], ""
    while True:
        page = _search(admin_stub, admin, exam_id=world["exam_id"], page_size=1, page_token=token)
        assert len(page.attempts) == 1
        seen += _ids(page)
        token = page.next_page_token
        if not token:
            break
    assert seen == newest_first


def test_search_filters(admin_stub, admin, world):
    exam, (flagged, passed, failed) = world["exam_id"], world["attempts"]
    in_progress = common_pb2.ATTEMPT_STATUS_IN_PROGRESS
    submitted = common_pb2.ATTEMPT_STATUS_SUBMITTED
    by_student = _search(admin_stub, admin, student_id=world["students"][1].user_id)
    assert _ids(by_student) == [passed]
    assert _ids(_search(admin_stub, admin, exam_id=exam, status=in_progress)) == [flagged]
    assert _ids(_search(admin_stub, admin, exam_id=exam, status=submitted)) == [failed, passed]
    assert _ids(_search(admin_stub, admin, exam_id=exam, flagged=True)) == [flagged]
    assert _ids(_search(admin_stub, admin, exam_id=exam, flagged=False)) == [failed, passed]
    everyone = _search(admin_stub, admin, exam_id=exam).attempts
    second_start = everyone[1].start_time.ToDatetime(tzinfo=UTC)
    since = _search(admin_stub, admin, exam_id=exam, start_time=timestamp(second_start))
    assert _ids(since) == [failed, passed]
    before = _search(admin_stub, admin, exam_id=exam, end_time=timestamp(second_start))
    assert _ids(before) == [flagged]
    student = world["students"][0].user_id
    both = _search(admin_stub, admin, student_id=student, exam_id=exam, flagged=True)
    assert _ids(both) == [flagged]
    assert not _search(admin_stub, admin, student_id=student, status=submitted).attempts
    # Across every exam: the flagged filter holds on each.
    assert all(a.flagged for a in _search(admin_stub, admin, flagged=True, page_size=500).attempts)


def test_search_is_audited_with_its_filters(admin_stub, admin, world):
    _search(admin_stub, admin, exam_id=world["exam_id"], flagged=True)
    records = admin_stub.QueryAuditLog(
        admin_pb2.QueryAuditLogRequest(actor_id=admin.user_id, action="attempt.search"),
        metadata=admin.metadata,
    ).records
    assert len(records) == 1
    assert dict(records[0].details["filters"]) == {
        "exam_id": world["exam_id"],
        "flagged": "true",
    }


def test_a_page_token_serves_only_its_own_filters(admin_stub, admin, world):
    page = _search(admin_stub, admin, exam_id=world["exam_id"], page_size=1)
    error = rpc_error(
        admin_stub.SearchAttempts,
        admin_pb2.SearchAttemptsRequest(
            exam_id=world["exam_id"], flagged=False, page_token=page.next_page_token
        ),
        metadata=admin.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error)) == {"page_token"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"student_id": "not-a-uuid"}, "student_id"),
        ({"exam_id": "00000000-0000-0000-0000-00000000000G"}, "exam_id"),
        ({"status": 99}, "status"),
        ({"page_size": 501}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "forged"}, "page_token"),
        (
            {
                "start_time": timestamp(datetime(2026, 1, 2, tzinfo=UTC)),
                "end_time": timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
            },
            "end_time",
        ),
    ],
)
def test_search_bad_input(admin_stub, admin, fields, field):
    error = rpc_error(
        admin_stub.SearchAttempts,
        admin_pb2.SearchAttemptsRequest(**fields),
        metadata=admin.metadata,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_fields(error)) == {field}


# GetSystemStats ----------------------------------------------------------------------

COUNTS = {
    "users": "SELECT role, is_active, count(*) FROM users GROUP BY 1, 2 ORDER BY 1, 2",
    "exams": "SELECT status, count(*) FROM exams GROUP BY 1 ORDER BY 1",
    # Practice attempts, and their events, count in no figure.
    "attempts": """
        SELECT status, count(*) FROM exam_attempts WHERE NOT is_practice
        GROUP BY 1 ORDER BY 1""",
    "figures": """
        SELECT count(score), count(*) FILTER (WHERE passed AND score IS NOT NULL),
            count(*) FILTER (WHERE integrity_score >= 0.8),
            count(*) FILTER (WHERE integrity_score >= 0.5 AND integrity_score < 0.8),
            count(*) FILTER (WHERE integrity_score < 0.5),
            count(*) FILTER (WHERE integrity_score IS NULL),
            count(*) FILTER (WHERE flagged)
        FROM exam_attempts WHERE NOT is_practice""",
    "received": """
        SELECT count(*) FILTER (WHERE received_at >= now() - interval '1 hour'),
            count(*) FILTER (WHERE received_at >= now() - interval '1 day')
        FROM monitoring_events
        WHERE attempt_id NOT IN (SELECT id FROM exam_attempts WHERE is_practice)""",
    "days": """
        SELECT to_char(d, 'YYYY-MM-DD'), (SELECT count(*) FROM monitoring_events
            WHERE (occurred_at AT TIME ZONE 'UTC')::date = d
                AND attempt_id NOT IN (SELECT id FROM exam_attempts WHERE is_practice))
        FROM generate_series((now() AT TIME ZONE 'UTC')::date - 29,
                             (now() AT TIME ZONE 'UTC')::date, interval '1 day') d""",
}
ROLES = {Role.STUDENT: "student", Role.TEACHER: "teacher", Role.ADMIN: "admin"}


def _sql_counts(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                name: [tuple(row) for row in connection.execute(text(sql))]
                for name, sql in COUNTS.items()
            }
    finally:
        engine.dispose()


def _as_counts(response):
    role_names = {v: k for k, v in common_pb2.Role.items()}
    exam_names = {v: k for k, v in common_pb2.ExamStatus.items()}
    attempt_names = {v: k for k, v in common_pb2.AttemptStatus.items()}
    r = response
    return {
        "users": sorted(
            (role_names[u.role].removeprefix("ROLE_").lower(), u.active, u.user_count)
            for u in r.user_counts
        ),
        "exams": sorted(
            (exam_names[e.status].removeprefix("EXAM_STATUS_"), e.exam_count) for e in r.exam_counts
        ),
        "attempts": sorted(
            (attempt_names[a.status].removeprefix("ATTEMPT_STATUS_"), a.attempt_count)
            for a in r.attempt_counts
        ),
        "figures": [
            (
                round(r.pass_rate, 9) if r.HasField("pass_rate") else None,
                r.integrity_good_count,
                r.integrity_watch_count,
                r.integrity_at_risk_count,
                r.integrity_unassessed_count,
                r.flagged_attempt_count,
            )
        ],
        "received": [(r.last_hour_event_count, r.last_day_event_count)],
        "days": [(d.day, d.event_count) for d in r.daily_event_counts],
    }


def _expected(sql):
    graded, passed, *rest = sql["figures"][0]
    figures = [(round(passed / graded, 9) if graded else None, *rest)]
    return sql | {"figures": figures}


@pytest.fixture(scope="module")
def live_server(database_url):
    """A second server on the same database computing the figures on every call."""
    running = ServerThread(make_settings(system_stats_refresh_seconds=0), database_url)
    yield running
    running.stop()


def test_system_stats_equal_counts_done_in_sql(live_server, admin, world, database_url):
    with grpc.insecure_channel(live_server.address) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        for _ in range(5):  # a maintenance job may change a figure between the counts
            before = _sql_counts(database_url)
            response = stub.GetSystemStats(
                admin_pb2.GetSystemStatsRequest(), metadata=admin.metadata
            )
            if before == _sql_counts(database_url):
                break
    got, expected = _as_counts(response), _expected(before)
    assert got == expected
    assert len(got["days"]) == 30 and got["days"][-1][0] == datetime.now(UTC).date().isoformat()
    assert sum(n for _, n in got["days"]) >= 2 and got["received"][0][0] >= 2
    assert got["figures"][0][1] >= 1 and got["figures"][0][3] >= 1  # the world's 0.9 and 0.3
    age = datetime.now(UTC) - response.compute_time.ToDatetime(tzinfo=UTC)
    assert timedelta(0) <= age < timedelta(seconds=30)


def test_system_stats_are_served_from_a_snapshot_and_audited(admin_stub, admin, world):
    def read():
        return admin_stub.GetSystemStats(admin_pb2.GetSystemStatsRequest(), metadata=admin.metadata)

    # The shared test server refreshes every 60 s: reads in between are of one
    # snapshot (a refresh may fall between two reads: then the next two agree).
    for _ in range(3):
        first, second = read(), read()
        if first.compute_time == second.compute_time:
            break
    assert second == first
    age = datetime.now(UTC) - first.compute_time.ToDatetime(tzinfo=UTC)
    assert age <= timedelta(seconds=180)  # at most three intervals old
    records = admin_stub.QueryAuditLog(
        admin_pb2.QueryAuditLogRequest(actor_id=admin.user_id, action="system.stats"),
        metadata=admin.metadata,
    ).records
    assert len(records) >= 2
    stamp = first.compute_time.ToDatetime(tzinfo=UTC)
    assert datetime.fromisoformat(records[0].details["compute_time"]) == stamp


@pytest.mark.parametrize("role", [Role.TEACHER, Role.STUDENT, Role.SERVICE])
def test_only_admins_search_and_read_the_figures(admin_stub, make_account, role):
    caller = make_account(role)
    for call, request in (
        (admin_stub.SearchAttempts, admin_pb2.SearchAttemptsRequest()),
        (admin_stub.GetSystemStats, admin_pb2.GetSystemStatsRequest()),
    ):
        error = rpc_error(call, request, metadata=caller.metadata)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
