"""Dashboard reads at scale: StudentService/GetStudentDashboard and TeacherService/GetExamAnalytics.

Fills a fresh, migrated database (benchlib.database_url) with COPY: 100,000 students with 10
finished attempts each (1,000,000) over 1,000 published exams by 50 teachers; exam 0 gets
exactly 1,000 attempts (one from each of the first students), the others share the rest.
The denormalised figures (exam_stats, student_profiles sums, performance_metrics) are then
derived from the attempts with set-based SQL (the rules of veritas_grpc.domain.exams), and
the database is VACUUM ANALYZEd. Student 0 and teacher 0 (exam 0's creator) have real bcrypt
hashes and sign in with AuthService/Login on a `veritas serve` process; over one grpc.aio
channel, after --warmup calls, --calls sequential GetStudentDashboard calls as the student, then
--calls GetExamAnalytics(exam 0, page_size=100) as the teacher (each writes an audit row).
Prints JSON: load time per phase (s), p50/p99 (ms), database size and row counts. --explain
adds EXPLAIN (ANALYZE, BUFFERS) of the repository queries behind both RPCs (plans on stderr).

Usage (from scripts/): python bench_dashboards.py [--students 100000]
    [--attempts-per-student 10] [--exams 1000] [--teachers 50] [--target-attempts 1000]
    [--calls 1000] [--warmup 50] [--explain] [--keep]
The database is dropped at the end unless --keep (or VERITAS_BENCH_DATABASE_URL is set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import psycopg2
from benchlib import database_url, percentiles, server_process
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from veritas.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    student_pb2,
    student_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)

from veritas_grpc.security.passwords import PasswordHasher

PASSWORD = "bench password 2026"
FAKE_HASH = "$2b$04$" + "." * 53  # bcrypt-shaped; nobody signs in with it
FIRST = ("Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kemal")
LAST = ("Adams", "Brown", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Kim")
SUBJECTS = ("Algebra", "Biology", "Chemistry", "History", "Physics", "Statistics")
NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)
LABELS = (("SAFE",), ("SAFE", "INCAPABLE"), ("INCAPABLE", "COPY", "NO_INTEREST"))  # by integrity
ATTEMPT_COLUMNS = (
    "exam_id, student_id, attempt_number, status, started_at, deadline_at, ended_at, score, "
    "percentage, passed, graded_at, graded_by, integrity_score, dropout_label, flagged, "
    "flagged_at, event_count, anomaly_count, critical_count"
)
EXAM_COLUMNS = (
    "id, title, subject, max_score, pass_score, duration_minutes, max_attempts, status, "
    "settings, created_by, published_at"
)
EXAM_RULES = (100, 50, 60, 10, "PUBLISHED", "{}")
SIZES = {"students": 100_000, "attempts-per-student": 10, "exams": 1000, "teachers": 50}
SIZES |= {"target-attempts": 1000, "calls": 1000, "warmup": 50}
FOOTPRINT = """
SELECT pg_size_pretty(pg_database_size(current_database())) AS database_size, json_build_object(
    'users', (SELECT count(*) FROM users), 'exams', (SELECT count(*) FROM exams),
    'exam_attempts', (SELECT count(*) FROM exam_attempts),
    'exam_stats', (SELECT count(*) FROM exam_stats),
    'performance_metrics', (SELECT count(*) FROM performance_metrics),
    'audit_logs', (SELECT count(*) FROM audit_logs)) AS rows
"""


class RowStream:
    """A read()-only file over generated text rows, so copy_expert streams them."""

    def __init__(self, rows: Iterable[str]) -> None:
        self._rows = iter(rows)

    def read(self, size: int = -1) -> str:
        parts, length = [], 0
        for row in self._rows:
            parts.append(row)
            length += len(row)
            if 0 <= size <= length:
                break
        return "".join(parts)


def line(*values: object) -> str:
    return "\t".join(r"\N" if v is None else str(v) for v in values) + "\n"


def cents(value: int, places: int) -> str:
    """An integer number of 1/10**places as a decimal string, without float rounding."""
    scale = 10**places
    return f"{value // scale}.{value % scale:0{places}d}"


def attempt_rows(args, students, exams, creators, rng) -> Iterator[str]:
    """Finished attempts, a week apart per student; exam 0 gets exactly one from each of
    the first --target-attempts students, the other exams share the rest round-robin."""
    turn = 0
    for i, student in enumerate(students):
        numbers: dict[int, int] = {}
        first = NOW - timedelta(days=7 * args.attempts_per_student + 1, minutes=rng.randrange(9999))
        for j in range(args.attempts_per_student):
            if i < args.target_attempts and j == 0:
                e = 0
            else:
                e, turn = 1 + turn % (len(exams) - 1), turn + 1
            numbers[e] = numbers.get(e, 0) + 1
            start = first + timedelta(days=7 * j)
            r = rng.random()
            status = "SUBMITTED" if r < 0.9 else "TIMED_OUT" if r < 0.95 else "ABANDONED"
            ended = start + timedelta(minutes=60 if status == "TIMED_OUT" else rng.randint(5, 60))
            times = (start.isoformat(), (start + HOUR).isoformat(), ended.isoformat())
            graded: tuple[object, ...] = (None,) * 5
            if status != "ABANDONED" and rng.random() < 0.95:
                points = rng.randrange(10001)  # max_score 100: percentage == score
                score, passed = cents(points, 2), "t" if points >= 5000 else "f"
                graded = (score, score, passed, (ended + 20 * HOUR).isoformat(), creators[e])
            assessed: tuple[object, ...] = (None, None, "f", None)
            if status != "ABANDONED" and rng.random() < 0.8:
                units = min(10000, int(10000 * rng.random() ** 0.4))
                label = rng.choice(LABELS[0 if units >= 8000 else 1 if units >= 5000 else 2])
                flagged = label == "COPY" or units < 5000  # the server's flag rule
                flagged_at = (ended + HOUR).isoformat() if flagged else None
                assessed = (cents(units, 4), label, "t" if flagged else "f", flagged_at)
            events = rng.randrange(50, 500)
            counts = (events, events // 25, events // 100)
            yield line(exams[e], student, numbers[e], status, *times, *graded, *assessed, *counts)


EXAM_STATS = """
INSERT INTO exam_stats (exam_id, attempt_count, student_count, finished_count, graded_count,
    score_sum, passed_count, integrity_count, integrity_sum, flagged_count, high_risk_count,
    safe_count, incapable_count, copy_count, no_interest_count, integrity_good_count,
    integrity_watch_count, integrity_at_risk_count)
SELECT e.id, count(a.id), count(DISTINCT a.student_id),
    count(*) FILTER (WHERE a.status IN ('SUBMITTED', 'TIMED_OUT')),
    count(a.score), coalesce(sum(a.score), 0), count(*) FILTER (WHERE a.passed),
    count(a.integrity_score), coalesce(sum(a.integrity_score), 0),
    count(*) FILTER (WHERE a.flagged),
    count(*) FILTER (WHERE a.dropout_label IN ('COPY', 'NO_INTEREST') OR a.integrity_score < 0.5),
    count(*) FILTER (WHERE a.dropout_label = 'SAFE'),
    count(*) FILTER (WHERE a.dropout_label = 'INCAPABLE'),
    count(*) FILTER (WHERE a.dropout_label = 'COPY'),
    count(*) FILTER (WHERE a.dropout_label = 'NO_INTEREST'),
    count(*) FILTER (WHERE a.integrity_score >= 0.8),
    count(*) FILTER (WHERE a.integrity_score >= 0.5 AND a.integrity_score < 0.8),
    count(*) FILTER (WHERE a.integrity_score < 0.5)
FROM exams e LEFT JOIN exam_attempts a ON a.exam_id = e.id
GROUP BY e.id
"""
PROFILE_SUMS = """
UPDATE student_profiles p SET finished_count = s.finished, graded_count = s.graded,
    passed_count = s.passed, percentage_sum = s.percentage_sum,
    integrity_count = s.assessed, integrity_sum = s.integrity_sum, flagged_count = s.flagged
FROM (SELECT student_id,
        count(*) FILTER (WHERE status IN ('SUBMITTED', 'TIMED_OUT')) AS finished,
        count(score) AS graded, count(*) FILTER (WHERE passed AND score IS NOT NULL) AS passed,
        coalesce(sum(percentage) FILTER (WHERE score IS NOT NULL), 0) AS percentage_sum,
        count(integrity_score) AS assessed,
        coalesce(sum(integrity_score), 0) AS integrity_sum,
        count(*) FILTER (WHERE flagged) AS flagged
      FROM exam_attempts GROUP BY student_id) s
WHERE p.user_id = s.student_id
"""
METRICS = """
INSERT INTO performance_metrics (student_id, exams_taken, exams_passed, average_score,
    average_integrity, flagged, risk_label)
SELECT p.user_id, p.finished_count, p.passed_count,
    CASE WHEN p.graded_count > 0 THEN round(p.percentage_sum / p.graded_count, 2) END,
    CASE WHEN p.integrity_count > 0 THEN round(p.integrity_sum / p.integrity_count, 4) END,
    p.flagged_count > 0, latest.dropout_label
FROM student_profiles p
LEFT JOIN (SELECT DISTINCT ON (student_id) student_id, dropout_label FROM exam_attempts
           WHERE dropout_label IS NOT NULL ORDER BY student_id, started_at DESC, id DESC)
    latest ON latest.student_id = p.user_id
"""
DERIVED = {"exam_stats": EXAM_STATS, "student_profiles_sums": PROFILE_SUMS}
DERIVED["performance_metrics"] = METRICS  # from the sums just set


def account(uid: str, n: int, role: str, password_hash: str, rng: random.Random) -> str:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return line(uid, f"{role}{n:06d}@bench.example.edu", password_hash, name, role)


def exam(eid: str, e: int, creator: str) -> str:
    subject, published = SUBJECTS[e % len(SUBJECTS)], (NOW - timedelta(days=400)).isoformat()
    return line(eid, f"{subject} exam {e:04d}", subject, *EXAM_RULES, creator, published)


def load(dsn: str, args) -> dict[str, object]:
    """Fill the database; return the ids the benchmark needs and the time per phase (s)."""
    rng = random.Random(getattr(args, "seed", 2026))
    real_hash = PasswordHasher(rounds=4).hash(PASSWORD)  # student 0 and teacher 0 sign in

    def new_id() -> str:  # from the seed: the same ids on every load
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    students = [new_id() for _ in range(args.students)]
    teachers = [new_id() for _ in range(args.teachers)]
    exams = [new_id() for _ in range(args.exams)]
    creators = [teachers[e % args.teachers] for e in range(args.exams)]
    people = [(uid, n, "student") for n, uid in enumerate(students)]
    people += [(uid, n, "teacher") for n, uid in enumerate(teachers)]
    users = (account(u, n, r, FAKE_HASH if n else real_hash, rng) for u, n, r in people)
    profiles = (line(uid, f"E{n:07d}") for n, uid in enumerate(students))
    departments = (line(uid, rng.choice(SUBJECTS)) for uid in teachers)
    catalogue = (exam(eid, e, creators[e]) for e, eid in enumerate(exams))
    attempts = attempt_rows(args, students, exams, creators, rng)
    copies = {
        "accounts_and_exams_copy": [
            ("users (id, email, password_hash, full_name, role)", users),
            ("student_profiles (user_id, enrollment_id)", profiles),
            ("teacher_profiles (user_id, department)", departments),
            (f"exams ({EXAM_COLUMNS})", catalogue),
        ],
        "attempts_copy": [(f"exam_attempts ({ATTEMPT_COLUMNS})", attempts)],
    }
    phases: dict[str, float] = {}
    connection = psycopg2.connect(dsn)
    with connection, connection.cursor() as cursor:
        for phase, targets in copies.items():
            t0 = time.perf_counter()
            for target, rows in targets:
                cursor.copy_expert(f"COPY {target} FROM STDIN", RowStream(rows), size=1 << 20)
            connection.commit()
            phases[phase] = time.perf_counter() - t0
        for phase, sql in DERIVED.items():
            t0 = time.perf_counter()
            cursor.execute(sql)
            connection.commit()
            phases[phase] = time.perf_counter() - t0
    connection.autocommit = True
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    phases["vacuum_analyze"] = time.perf_counter() - t0
    connection.close()
    phases["total"] = sum(phases.values())
    rounded = {phase: round(seconds, 1) for phase, seconds in phases.items()}
    return {"student": students[0], "teacher": teachers[0], "exam": exams[0], "load_s": rounded}


async def timed(call, request, metadata, args) -> tuple[list[float], object]:
    """args.warmup calls, then args.calls timed ones (ms); also the last response."""
    samples = []
    for n in range(args.warmup + args.calls):
        t0 = time.perf_counter()
        response = await call(request, metadata=metadata)
        if n >= args.warmup:
            samples.append((time.perf_counter() - t0) * 1000)
    return samples, response


async def measure(address: str, exam_id: str, args) -> dict[str, object]:
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)

        async def bearer(email: str) -> tuple[tuple[str, str]]:
            signed = await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
            return (("authorization", f"Bearer {signed.tokens.access_token}"),)

        student = await bearer("student000000@bench.example.edu")
        teacher = await bearer("teacher000000@bench.example.edu")
        dashboard = student_pb2_grpc.StudentServiceStub(channel).GetStudentDashboard
        request = student_pb2.GetStudentDashboardRequest()
        board_ms, board = await timed(dashboard, request, student, args)
        analytics = teacher_pb2_grpc.TeacherServiceStub(channel).GetExamAnalytics
        request = teacher_pb2.GetExamAnalyticsRequest(exam_id=exam_id, page_size=100)
        analytics_ms, page = await timed(analytics, request, teacher, args)
    return {
        "get_dashboard_ms": percentiles(board_ms),
        "get_dashboard_history_entries": len(board.exam_history),
        "get_exam_analytics_ms": percentiles(analytics_ms),
        "get_exam_analytics_total_attempts": page.analytics.total_attempts,
        "get_exam_analytics_students_on_page": len(page.students),
    }


EXPLAINED = ("dashboard.profile", "dashboard.history", "analytics.students", "analytics.attempts")


def explain(url: str, ids: dict[str, object]) -> dict[str, float]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements the dashboard repositories send."""
    from veritas_grpc.repositories.attempts import AttemptRepository
    from veritas_grpc.repositories.student_stats import StudentStatsRepository
    from veritas_grpc.services.dashboards import HISTORY_LIMIT

    engine = create_engine(url)
    engine.connect().close()  # the dialect's own first-connect queries are not ours
    sent: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def capture(_connection, _cursor, sql, params, *_) -> None:
        sent.append((sql, params))

    student, exam = uuid.UUID(str(ids["student"])), uuid.UUID(str(ids["exam"]))
    with Session(engine) as session:
        attempts = AttemptRepository(session)
        StudentStatsRepository(session).dashboard(student)
        attempts.history(student, HISTORY_LIMIT)
        page = attempts.students_page(exam, None, 101)
        attempts.of_students(exam, [sid for sid, _ in page[:100]])
    event.remove(engine, "before_cursor_execute", capture)
    names = EXPLAINED if len(sent) == len(EXPLAINED) else [f"#{n}" for n in range(len(sent))]
    times = {}
    with engine.connect() as connection:
        for name, (sql, params) in zip(names, sent, strict=True):
            raw = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            plan = [row[0] for row in raw]
            print(f"--- {name}\n" + "\n".join(plan), file=sys.stderr)
            times[name] = float(plan[-1].split(":")[1].split()[0])
    engine.dispose()
    return times


def verify(url: str, ids: dict[str, object]) -> str:
    """Exam 0's and student 0's figures must be the sums of what the server's own rules
    (domain.exams.contribution) say their attempts add: the SQL above must not drift."""
    from veritas_grpc.db.models import ExamAttempt, ExamStats, StudentProfile
    from veritas_grpc.domain.exams import contribution
    from veritas_grpc.services.attempts import facts

    engine = create_engine(url)
    owners = (
        (ExamAttempt.exam_id, ExamStats, "exam"),
        (ExamAttempt.student_id, StudentProfile, "student"),
    )
    with Session(engine) as session:
        for column, table, key in owners:
            owner, expected = uuid.UUID(str(ids[key])), Counter[str]()
            for attempt in session.scalars(select(ExamAttempt).where(column == owner)):
                expected.update(contribution(facts(attempt)))
            row = session.get(table, owner)
            wrong = {
                k: (getattr(row, k), v)
                for k, v in expected.items()
                if hasattr(row, k) and getattr(row, k) != v
            }
            if wrong:
                raise SystemExit(f"{key} 0: figures (found, expected) disagree: {wrong}")
    engine.dispose()
    return "exam 0 and student 0 match domain.exams.contribution"


def drop_database(url: str) -> None:
    server = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)'))
    server.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in SIZES.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--explain", action="store_true", help="print query plans to stderr")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    args.target_attempts = min(args.target_attempts, args.students)
    if args.exams < 2 or args.teachers < 1 or args.attempts_per_student < 1:
        parser.error("need at least 2 exams, 1 teacher and 1 attempt per student")
    keep = args.keep or bool(os.environ.get("VERITAS_BENCH_DATABASE_URL"))
    url = database_url()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        ids = load(dsn, args)
        sizes = [name.replace("-", "_") for name in SIZES]
        result = {"sizes": {name: getattr(args, name) for name in sizes}, "load_s": ids["load_s"]}
        result["figures_check"] = verify(url, ids)
        with server_process(url, VERITAS_BCRYPT_ROUNDS="4") as (address, _pid):
            result.update(asyncio.run(measure(address, str(ids["exam"]), args)))
        if args.explain:
            result["explain_execution_ms"] = explain(url, ids)
        engine = create_engine(url)
        with engine.connect() as connection:
            result.update(connection.execute(text(FOOTPRINT)).mappings().one())
        engine.dispose()
        print(json.dumps(result, indent=2, default=str))
    finally:
        if not keep:
            drop_database(url)


if __name__ == "__main__":
    main()
