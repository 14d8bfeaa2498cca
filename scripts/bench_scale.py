"""Reads at the seed's scale, through a real channel (docs/BENCH_SCALE.md): on a database
scripts/generate_scale_data.py loaded (100,000 students, 1,000,000 attempts, 10,000,000
events), one `veritas serve`, one grpc.aio channel, sequential calls, p50 and p99 (ms)
of one run each:

- the floors: grpc.health.v1 Check (no token, no SQL) and AuthService.GetCurrentUser
  (the token check and one row)
- StudentService.GetStudentDashboard (a student with 10 attempts)
- TeacherService.GetTeacherDashboard (the teacher of the big exam: 20 exams)
- TeacherService.GetExamAnalytics of the 5,000-student exam (page of 100 students)
- TeacherService.GetAttemptMonitoring of a 50,000-event attempt (timeline of 100)
- MonitoringService.ListEvents through all 50,000 events of it, 500 a page (deep paging:
  every page's time, the last pages' too)
- TeacherService.ListFlaggedAttempts of the big exam, AnalysisService.GetHighRiskSummary
- AdminService.ListUsers (a surname), SearchAttempts (the big exam, flagged),
  GetSystemStats (the snapshot), AnalysisService.GetAttemptEvidence of the 50,000-event
  attempt (the whole stream, 1,000 a message)

Then, with --explain, the same reads called in-process (the time of a call, its
statements and its time waiting for PostgreSQL: what is Python and what is SQL) and
EXPLAIN (ANALYZE, BUFFERS) of every statement each read sends, captured from those
service calls (plans on stderr, times in the JSON).

Usage (from scripts/): python bench_scale.py --database NAME [--calls 200]
    [--explain] [--database-url URL] [--planner deploy|default]
    [--baseline-root DIR [--rounds 4]]
NAME is a database on the embedded bench server (.veritas-data/bench) that
generate_scale_data.py printed; --database-url names any other. The database gets the
planner settings of deploy/postgresql/postgresql.conf (--planner default: PostgreSQL's),
with ALTER DATABASE: they stay the database's for whatever connects to it later.
With --baseline-root, the unary reads are measured against a server of that checkout
too (`git worktree add DIR COMMIT`), in alternating rounds, with the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from bench_dashboards import PASSWORD
from benchlib import ROOT, percentiles, server_process, use_planner
from generate_scale_data import ADMIN
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from veritas.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    analysis_pb2,
    analysis_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    student_pb2,
    student_pb2_grpc,
    teacher_pb2,
    teacher_pb2_grpc,
)

from veritas_grpc.db.prepared import REGISTRY, Prepared

STUDENT = "student000000@bench.example.edu"
# The statements EXPLAIN ANALYZE may run again: reads only (an audit row's INSERT is not;
# a prepared statement's EXECUTE is a read when the statement it runs is).
READS = ("SELECT", "WITH")
TEACHER = "teacher000000@bench.example.edu"
TEACHER_READ = "GetTeacherDashboard (20 exams, 1,000,000 attempts in all)"


def database_arguments(parser: argparse.ArgumentParser) -> None:
    """--database (on the embedded bench server) or --database-url: see resolve_url."""
    parser.add_argument("--database")
    parser.add_argument("--database-url")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    database_arguments(parser)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--baseline-root",
        type=Path,
        help="also serve this checkout (a git worktree) and compare the unary reads",
    )
    parser.add_argument("--rounds", type=int, default=4, help="with --baseline-root")
    parser.add_argument(
        "--planner",
        choices=("deploy", "default"),
        default="deploy",
        help="the database's planner settings: deploy/postgresql's, or PostgreSQL's defaults",
    )
    return parser.parse_args()


def resolve_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return args.database_url
    from veritas_grpc.db.embedded import start_embedded

    server = make_url(start_embedded(ROOT / ".veritas-data" / "bench", database="postgres"))
    return server.set(database=args.database).render_as_string(hide_password=False)


def targets(url: str) -> dict[str, str]:
    """The big exam, the heaviest attempt (generate_scale_data puts it there), and a
    common surname."""
    engine = create_engine(url)
    with engine.connect() as connection:
        # Exam 0 of the load: the signing-in teacher's, with the most students.
        exam = connection.execute(
            text(
                "SELECT a.exam_id::text FROM exam_attempts a JOIN exams e ON e.id = a.exam_id "
                "JOIN users u ON u.id = e.created_by WHERE u.email = :teacher "
                "GROUP BY a.exam_id ORDER BY count(DISTINCT a.student_id) DESC LIMIT 1"
            ),
            {"teacher": TEACHER},
        ).scalar_one()
        heavy = connection.execute(
            text("SELECT id::text FROM exam_attempts ORDER BY event_count DESC LIMIT 1")
        ).scalar_one()
    engine.dispose()
    return {"exam": exam, "heavy_attempt": heavy, "surname": "Garcia"}


async def timed(call, request, metadata, calls: int, warmup: int) -> list[float]:
    samples = []
    for n in range(warmup + calls):
        t0 = time.perf_counter()
        await call(request, metadata=metadata)
        if n >= warmup:
            samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def streamed(call, request, metadata, calls: int) -> tuple[list[float], int]:
    """Whole server streams: ms per stream, and the events of the last."""
    samples, events = [], 0
    for _ in range(calls):
        t0 = time.perf_counter()
        events = 0
        async for message in call(request, metadata=metadata):
            events += len(message.events)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples, events


async def deep_paging(stub, metadata, attempt_id: str) -> dict[str, object]:
    """ListEvents through every page of the attempt, 500 a page."""
    pages, token, events = [], "", 0
    while True:
        request = monitoring_pb2.ListEventsRequest(
            attempt_id=attempt_id, page_size=500, page_token=token
        )
        t0 = time.perf_counter()
        page = await stub.ListEvents(request, metadata=metadata)
        pages.append((time.perf_counter() - t0) * 1000)
        events += len(page.events)
        token = page.next_page_token
        if not token:
            break
    return {
        "pages": len(pages),
        "events": events,
        "page_ms": percentiles(pages),
        "last_10_pages_ms": percentiles(pages[-10:]),
    }


async def unary_calls(channel, ids: dict[str, str]) -> dict[str, tuple]:
    """The unary reads measured: name -> (stub method, request, metadata)."""
    auth = auth_pb2_grpc.AuthServiceStub(channel)

    async def bearer(email: str) -> tuple[tuple[str, str]]:
        signed = await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
        return (("authorization", f"Bearer {signed.tokens.access_token}"),)

    student, teacher, admin = [await bearer(e) for e in (STUDENT, TEACHER, ADMIN)]
    students = student_pb2_grpc.StudentServiceStub(channel)
    teachers = teacher_pb2_grpc.TeacherServiceStub(channel)
    analysis = analysis_pb2_grpc.AnalysisServiceStub(channel)
    admins = admin_pb2_grpc.AdminServiceStub(channel)
    exam, heavy = ids["exam"], ids["heavy_attempt"]
    return {
        # The floors: a call with no token and no SQL; the token check and one row.
        "Health.Check": (
            health_pb2_grpc.HealthStub(channel).Check,
            health_pb2.HealthCheckRequest(),
            (),
        ),
        "GetCurrentUser": (auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), student),
        "GetStudentDashboard": (
            students.GetStudentDashboard,
            student_pb2.GetStudentDashboardRequest(),
            student,
        ),
        "GetTeacherDashboard (20 exams, 1,000,000 attempts in all)": (
            teachers.GetTeacherDashboard,
            teacher_pb2.GetTeacherDashboardRequest(),
            teacher,
        ),
        "GetExamAnalytics (5,000 students, page of 100)": (
            teachers.GetExamAnalytics,
            teacher_pb2.GetExamAnalyticsRequest(exam_id=exam, page_size=100),
            teacher,
        ),
        "GetAttemptMonitoring (50,000 events)": (
            teachers.GetAttemptMonitoring,
            teacher_pb2.GetAttemptMonitoringRequest(attempt_id=heavy),
            teacher,
        ),
        "ListFlaggedAttempts (the big exam)": (
            teachers.ListFlaggedAttempts,
            teacher_pb2.ListFlaggedAttemptsRequest(exam_id=exam),
            teacher,
        ),
        "GetHighRiskSummary": (
            analysis.GetHighRiskSummary,
            analysis_pb2.GetHighRiskSummaryRequest(),
            admin,
        ),
        "ListUsers (a surname)": (
            admins.ListUsers,
            admin_pb2.ListUsersRequest(query=ids["surname"], page_size=50),
            admin,
        ),
        "SearchAttempts (the big exam, flagged)": (
            admins.SearchAttempts,
            admin_pb2.SearchAttemptsRequest(exam_id=exam, flagged=True, page_size=50),
            admin,
        ),
        "GetSystemStats": (admins.GetSystemStats, admin_pb2.GetSystemStatsRequest(), admin),
    }


async def measure(address: str, ids: dict[str, str], args) -> dict[str, object]:
    async with grpc.aio.insecure_channel(address) as channel:
        unary = await unary_calls(channel, ids)
        teacher, admin = unary[TEACHER_READ][2], unary["GetHighRiskSummary"][2]
        monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        analysis = analysis_pb2_grpc.AnalysisServiceStub(channel)
        heavy = ids["heavy_attempt"]
        results: dict[str, object] = {}
        for name, (call, request, metadata) in unary.items():
            samples = await timed(call, request, metadata, args.calls, args.warmup)
            results[name] = percentiles(samples)
            print(f"{name}: {results[name]}", file=sys.stderr)
        results["ListEvents deep paging (50,000 events, 500 a page)"] = await deep_paging(
            monitoring, teacher, heavy
        )
        evidence_ms, events = await streamed(
            analysis.GetAttemptEvidence,
            analysis_pb2.GetAttemptEvidenceRequest(attempt_id=heavy, page_size=1000),
            admin,
            max(3, args.calls // 20),
        )
        results["GetAttemptEvidence (50,000 events, whole stream)"] = {
            **percentiles(evidence_ms),
            "events": events,
        }
    return results


async def compare(address: str, baseline: str, ids: dict[str, str], args) -> dict[str, object]:
    """The unary reads against this checkout's server and a baseline's, both on the same
    database, in alternating rounds (who goes first alternates too): the figures of the
    two come from the same minutes of a noisy machine."""
    async with (
        grpc.aio.insecure_channel(address) as this_channel,
        grpc.aio.insecure_channel(baseline) as baseline_channel,
    ):
        sides = {
            "this": await unary_calls(this_channel, ids),
            "baseline": await unary_calls(baseline_channel, ids),
        }
        per_round = max(1, args.calls // args.rounds)
        results: dict[str, object] = {}
        for name in sides["this"]:
            samples: dict[str, list[float]] = {"this": [], "baseline": []}
            for n in range(args.rounds):
                for side in ("this", "baseline") if n % 2 == 0 else ("baseline", "this"):
                    call, request, metadata = sides[side][name]
                    samples[side] += await timed(call, request, metadata, per_round, args.warmup)
            this, before = percentiles(samples["this"]), percentiles(samples["baseline"])
            results[name] = {
                "this": this,
                "baseline": before,
                "p50_ratio": round(this["p50"] / before["p50"], 2),
                "p99_ratio": round(this["p99"] / before["p99"], 2),
            }
            print(f"{name}: {results[name]}", file=sys.stderr)
    return results


def breakdown(engine, reads, calls: int = 50) -> dict[str, dict[str, float]]:
    """Each read called in this process (no gRPC, no token check): median ms per call,
    statements per call, and the median ms of a call spent waiting for PostgreSQL
    (round trips, planning, execution); the rest is Python."""
    waited = [0.0]
    started = [0.0]
    statements = [0]

    def before(*_) -> None:
        started[0] = time.perf_counter()

    def after(*_) -> None:
        waited[0] += time.perf_counter() - started[0]
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    found = {}
    for name, read in reads.items():
        totals, waits = [], []
        for n in range(calls + 5):
            waited[0], statements[0] = 0.0, 0
            t0 = time.perf_counter()
            read()
            if n >= 5:
                totals.append((time.perf_counter() - t0) * 1000)
                waits.append(waited[0] * 1000)
        found[name] = {
            "call_ms": percentiles(totals)["p50"],
            "postgresql_ms": percentiles(waits)["p50"],
            "statements": statements[0],
        }
        print(f"in process {name}: {found[name]}", file=sys.stderr)
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)
    return found


def explain(url: str, ids: dict[str, str]) -> dict[str, dict[str, float]]:
    """EXPLAIN (ANALYZE, BUFFERS) of what each read sends, from the service calls."""
    from veritas_grpc import bootstrap
    from veritas_grpc.config import load_settings
    from veritas_grpc.domain.identity import Principal, Role
    from veritas_grpc.domain.oversight import AttemptSearch
    from veritas_grpc.services.monitoring import EventFilter
    from veritas_grpc.services.user_admin import UserQuery

    os.environ.setdefault("VERITAS_JWT_SECRET", secrets.token_urlsafe(48))
    os.environ["VERITAS_ENV"] = "test"
    settings = load_settings()
    services = bootstrap.build_services(settings, url)
    engine = services.engine
    with engine.connect() as connection:
        people = dict(
            connection.execute(
                text("SELECT email, id FROM users WHERE email = ANY(:e)"),
                {"e": [STUDENT, TEACHER, ADMIN]},
            ).all()
        )

    def principal(email: str, role: Role) -> Principal:
        return Principal(
            people[email], role, "bench", uuid.uuid4(), datetime.now(UTC) + timedelta(hours=1)
        )

    student, teacher = principal(STUDENT, Role.STUDENT), principal(TEACHER, Role.TEACHER)
    admin = principal(ADMIN, Role.ADMIN)
    exam, heavy = ids["exam"], ids["heavy_attempt"]
    reads = {
        "GetStudentDashboard": lambda: services.dashboards.student_dashboard(student),
        "GetTeacherDashboard": lambda: services.dashboards.teacher_dashboard(teacher),
        "GetExamAnalytics": lambda: services.dashboards.exam_analytics(teacher, exam, 100, ""),
        "GetAttemptMonitoring": lambda: services.monitoring.attempt_monitoring(teacher, heavy, 100),
        "ListEvents (first page)": lambda: services.monitoring.list_events(
            teacher, heavy, EventFilter(), 500, ""
        ),
        "ListFlaggedAttempts": lambda: services.dashboards.flagged(teacher, exam, 50, ""),
        "GetHighRiskSummary": lambda: services.analysis.high_risk_summary(admin),
        "ListUsers": lambda: services.user_admin.list(
            admin, UserQuery(text=ids["surname"]), 50, ""
        ),
        "SearchAttempts": lambda: services.oversight.search_attempts(
            admin, AttemptSearch(exam_id=uuid.UUID(exam), flagged=True), 50, ""
        ),
    }
    found: dict[str, dict[str, float]] = {"in_process": breakdown(engine, reads)}
    sent: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def capture(_connection, _cursor, sql, params, *_) -> None:
        sent.append((sql, params))

    for name, read in reads.items():
        sent.clear()
        read()
        statements = [(sql, p) for sql, p in sent if _is_read(sql)]
        found[name] = {}
        with engine.connect() as connection:
            for n, (sql, params) in enumerate(statements):
                shown = sql
                prepared = _prepared(sql)
                if prepared is not None:  # its generic plan, as the server runs it
                    prepared.prepare_on(connection)
                    shown = sql + "".join(
                        f"\n  -- {line}" for line in prepared.prepare_sql.splitlines()
                    )
                raw = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                plan = [row[0] for row in raw]
                print(f"--- {name} #{n}\n{shown}\n" + "\n".join(plan), file=sys.stderr)
                found[name][f"#{n}"] = float(plan[-1].split(":")[1].split()[0])
    event.remove(engine, "before_cursor_execute", capture)
    services.close()
    return found


def _prepared(sql: str) -> Prepared | None:
    """The db/prepared.py statement an `EXECUTE name(...)` runs, or None."""
    words = sql.split(None, 1)
    if len(words) < 2 or words[0].upper() != "EXECUTE":
        return None
    return REGISTRY.get(words[1].split("(", 1)[0].strip())


def _is_read(sql: str) -> bool:
    prepared = _prepared(sql)
    return prepared.reads if prepared is not None else sql.lstrip().upper().startswith(READS)


def main() -> None:
    args = parse()
    url = resolve_url(args)
    ids = targets(url)
    results: dict[str, object] = {"database": make_url(url).database, **ids}
    results["planner"] = {args.planner: use_planner(url, args.planner)}
    if args.baseline_root:
        with (
            server_process(url, VERITAS_BCRYPT_ROUNDS="4") as (address, _pid),
            server_process(url, args.baseline_root, VERITAS_BCRYPT_ROUNDS="4") as (before, _),
        ):
            results["compared_with"] = str(args.baseline_root)
            results |= asyncio.run(compare(address, before, ids, args))
    else:
        with server_process(url, VERITAS_BCRYPT_ROUNDS="4") as (address, _pid):
            results |= asyncio.run(measure(address, ids, args))
    if args.explain:
        results["explain_execution_ms"] = explain(url, ids)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
