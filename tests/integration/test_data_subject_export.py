"""An export of a student with many events reads them a page at a time: the Python
memory it takes stays a small fraction of what the whole export weighs."""

from __future__ import annotations

import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.support import PASSWORD, unique_email, unique_enrollment
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.services.data_subjects import DataSubjects
from veritas_grpc.services.exams import ExamDraft

EVENTS = 50_000
PAGE = 500
# Held at once: a page of rows and a chunk of records, a few MB (50,000 events come to
# ~31 MiB as text, more as Python objects).
PEAK_LIMIT_BYTES = 8 * 1024 * 1024


def _principal(user_id, role):
    now = datetime.now(UTC)
    return Principal(user_id, role, "jti", uuid.uuid4(), now + timedelta(hours=1))


@pytest.mark.drill  # ~32 s: a 50,000-event export with its memory traced
def test_a_student_with_many_events_exports_in_bounded_memory(services):
    teacher = services.accounts.create_account(
        Role.TEACHER, unique_email("t"), PASSWORD, "Teacher", None
    )
    student = services.accounts.create_account(
        Role.STUDENT, unique_email("s"), PASSWORD, "Many Events", unique_enrollment()
    )
    teacher_p = _principal(teacher.id, Role.TEACHER)
    exam = services.exams.create(
        teacher_p,
        ExamDraft(title="Long", max_points=10, pass_points=5, duration_minutes=600, max_attempts=1),
    )
    services.exams.publish(teacher_p, str(exam.id))
    attempt = services.attempts.start(_principal(student.id, Role.STUDENT), str(exam.id)).attempt
    services.monitoring.ensure_partitions(1, 1)
    with services.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, event_type, "
                "category, severity, description, data) "
                "SELECT :attempt, now() - n * interval '1 millisecond', gen_random_uuid(), "
                "'eye_movement', 'INTEGRITY', 'INFO', repeat('x', 200), "
                "json_build_object('n', n, 'gaze_x', 0.31) FROM generate_series(1, :count) n"
            ),
            {"attempt": attempt.id, "count": EVENTS},
        )
    exporter = DataSubjects(
        lambda: services.data_subjects._uow_factory(),  # the same database
        None,
        lambda: datetime.now(UTC),
        events_per_page=PAGE,
    )

    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        events, total_size = 0, 0
        for chunk in exporter.export(None, str(student.id)):
            events += sum(1 for r in chunk if r.kind == "event")
            total_size += sum(len(repr(r.data)) for r in chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = peak - baseline
    print(
        f"export of {events} events: {total_size / 2**20:.1f} MiB as text, "
        f"peak {held / 2**20:.1f} MiB"
    )
    assert events == EVENTS
    # Holding every record at once takes more than their text (dicts, strings, UUIDs):
    # a peak under a quarter of it means they were not all held.
    assert held < total_size / 4, f"peak {held / 2**20:.1f} MiB of {total_size / 2**20:.1f}"
    assert held < PEAK_LIMIT_BYTES
