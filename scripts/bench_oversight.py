"""Oversight reads at scale: AdminService GetSystemStats, SearchAttempts and QueryAuditLog.

Builds the data set with COPY and generate_series: the accounts, exams and 1,000,000
attempts of bench_dashboards.load (100,000 students x 10 finished attempts over 1,000
exams, with exam_stats and the student sums derived in SQL), one admin who signs in,
--events monitoring events spread evenly over the last 30 UTC days (one partition a
day; today's only up to now), and --audit-rows audit rows over the last year, each with
a chain sequence, a content digest and a link (computed in SQL: sha256, not the
server's HMAC, so `audit verify` would not pass them; the chain head is set after the
last of them, so the server's own rows extend it), then VACUUM ANALYZE. The time of
each phase is printed.

Then, through `veritas serve` processes on that database:
- GetSystemStats served from the snapshot (VERITAS_SYSTEM_STATS_REFRESH_SECONDS=60),
  and computed on every call (=0, everything counted from the tables); and, in this
  process, the snapshot refresh itself (what the maintenance loop pays every minute:
  closed days' counts kept, today's and the open days' counted).
- SearchAttempts for each filter combination, first and second page (page_size 50),
  with the plan of its query (EXPLAIN): the index it walks, or "SEQ SCAN".
- QueryAuditLog for each filter, first page (50), with its plan too.
Medians and p99 of one run, in ms (a noisy 2-core machine: compare within a run).

Usage (from scripts/): python bench_oversight.py [--events 10000000]
    [--audit-rows 10000000] [--calls 200] [--live-calls 10] [--keep | --load-only]
    [--database NAME] [--lists-only]
The database lives on an embedded server under --data-dir (default /tmp/oversight-bench);
--database NAME reuses one loaded by an earlier --keep or --load-only run instead of
loading (load on a busy machine, measure on a quiet one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import grpc
import psycopg2
from bench_dashboards import NOW, load
from benchlib import ROOT, percentiles, server_process
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from veritas.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, common_pb2

from veritas_grpc.security.passwords import PasswordHasher

PASSWORD = "bench password 2026"
ADMIN = "admin@bench.example.edu"
DAYS = 30
EVENT_TYPES = "{gaze_away,tab_switch,face_missing,noise,copy_paste,heartbeat}"
ACTIONS = (
    "{auth.login,auth.refresh,auth.logout,attempt.read_events,attempt.read,exam.update,"
    "exam.grant,analysis.submit,metrics.recompute,audit.query,user.deactivate,attempt.search}"
)

EVENTS_OF_DAY = """
INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, received_at, event_type,
    category, severity, is_anomaly, description)
SELECT md5((%(base)s + g / 40)::text)::uuid, t, gen_random_uuid(),
    t + (random() * interval '3 seconds'),
    (%(types)s::text[])[1 + g %% 6], CASE WHEN g %% 6 = 5 THEN 'TECHNICAL' ELSE 'INTEGRITY' END,
    CASE WHEN g %% 50 = 0 THEN 'CRITICAL' WHEN g %% 10 = 0 THEN 'WARNING' ELSE 'INFO' END,
    g %% 25 = 0, ''
FROM (SELECT g, %(start)s::timestamptz + random() * %(span)s::interval AS t
      FROM generate_series(1, %(n)s) g) s
"""
AUDIT_ROWS = """
INSERT INTO audit_logs (occurred_at, actor_id, actor_role, action, resource_type, resource_id,
    outcome, peer, request_id, details, sequence, content_digest, link_hash, key_id)
SELECT %(first)s::timestamptz + (g - %(base)s) * %(step)s::interval,
    CASE WHEN g %% 97 = 0 THEN NULL ELSE md5((g %% 100000)::text)::uuid END,
    CASE WHEN g %% 10 = 0 THEN 'teacher' WHEN g %% 501 = 0 THEN 'admin' ELSE 'student' END,
    (%(actions)s::text[])[1 + g %% 12],
    CASE WHEN g %% 3 = 0 THEN 'attempt' WHEN g %% 3 = 1 THEN 'user' ELSE 'exam' END,
    md5((g %% 200000)::text)::uuid::text,
    CASE WHEN g %% 100 = 7 THEN 'denied' WHEN g %% 25 = 3 THEN 'failure' ELSE 'success' END,
    'ipv4:10.0.' || (g %% 250) || '.' || (g %% 200) || ':50000', md5(g::text), '{}'::jsonb,
    g, sha256(int8send(g)), sha256(int8send(g) || '\\x01'::bytea), 'bench'
FROM generate_series(%(low)s, %(high)s) g
"""


def embedded_server_url(data_dir: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from veritas_grpc.db.embedded import start_embedded

    return start_embedded(data_dir, database="postgres")


def create_database(server_url: str) -> str:
    from veritas_grpc.db import migrate

    name = f"veritas_oversight_{secrets.token_hex(4)}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def drop_database(url: str) -> None:
    server = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)'))
    server.dispose()


def dsn_of(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def without_indexes(connection, table: str) -> Iterator[None]:
    """Drop the table's indexes but its primary key for a bulk load, then build them
    again: maintaining five B-trees (one on a random uuid) row by row made the audit
    rows load at ~3 minutes a million; built afterwards, 10 million take minutes."""
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.tablename = %s AND i.indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE contype = 'p')",
            (table,),
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
    yield
    t0 = time.perf_counter()
    with connection, connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            cursor.execute(definition)
    elapsed = time.perf_counter() - t0
    print(f"{table}: {len(indexes)} indexes built ({elapsed:.0f} s)", file=sys.stderr)


def load_all(url: str, args) -> dict[str, float]:
    sizes = SimpleNamespace(
        students=args.students,
        attempts_per_student=10,
        exams=1000,
        teachers=50,
        target_attempts=min(1000, args.students),
    )
    t0 = time.perf_counter()
    load(dsn_of(url), sizes)  # accounts, exams, attempts, exam_stats, sums, VACUUM ANALYZE
    phases = {"accounts_exams_attempts_figures": time.perf_counter() - t0}
    connection = psycopg2.connect(dsn_of(url))
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (email, password_hash, full_name, role) "
            "VALUES (%s, %s, 'Bench Admin', 'admin')",
            (ADMIN, PasswordHasher(rounds=4).hash(PASSWORD)),
        )
    today = NOW.date()
    per_day = args.events // DAYS
    t0 = time.perf_counter()
    for back in range(DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        span = min(timedelta(days=1), NOW - start)
        with connection, connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS monitoring_events_p{day:%Y%m%d} PARTITION OF "
                f"monitoring_events FOR VALUES FROM ('{day.isoformat()}') "
                f"TO ('{(day + timedelta(days=1)).isoformat()}')"
            )
            params = {"base": back * per_day, "types": EVENT_TYPES, "n": per_day}
            cursor.execute(EVENTS_OF_DAY, params | {"start": start, "span": span})
        print(f"events: day {day} loaded ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    phases["events"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = NOW - timedelta(days=365)
    step = timedelta(days=365) / max(1, args.audit_rows)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(sequence), 0) FROM audit_logs")
        base = cursor.fetchone()[0]
    batch = 1_000_000
    with without_indexes(connection, "audit_logs"):
        for low in range(base + 1, base + args.audit_rows + 1, batch):
            high = min(low + batch - 1, base + args.audit_rows)
            with connection, connection.cursor() as cursor:
                params = {"first": first, "base": base, "low": low, "high": high, "step": step}
                cursor.execute(AUDIT_ROWS, params | {"actions": ACTIONS})
            elapsed = time.perf_counter() - t0
            print(f"audit: {high - base} rows ({elapsed:.0f} s)", file=sys.stderr)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_chain_head SET last_sequence = s, last_link_hash = h FROM "
            "(SELECT sequence AS s, link_hash AS h FROM audit_logs "
            " WHERE sequence IS NOT NULL ORDER BY sequence DESC LIMIT 1) last"
        )
    phases["audit_rows"] = time.perf_counter() - t0
    connection.autocommit = True
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) monitoring_events")
        cursor.execute("VACUUM (ANALYZE) audit_logs")
        cursor.execute("VACUUM (ANALYZE) users")
    phases["vacuum_analyze"] = time.perf_counter() - t0
    connection.close()
    return {phase: round(seconds, 1) for phase, seconds in phases.items()}


def sample_ids(url: str) -> dict[str, object]:
    engine = create_engine(url)
    with engine.connect() as c:
        row = c.execute(
            text(
                "SELECT student_id, exam_id FROM exam_attempts "
                "WHERE exam_id <> (SELECT exam_id FROM exam_attempts GROUP BY exam_id "
                "ORDER BY count(*) DESC LIMIT 1) LIMIT 1"
            )
        ).one()
        actor = c.execute(
            text("SELECT actor_id FROM audit_logs WHERE actor_id IS NOT NULL LIMIT 1")
        ).scalar_one()
        resource = c.execute(
            text("SELECT resource_id FROM audit_logs WHERE resource_type = 'attempt' LIMIT 1")
        ).scalar_one()
        # The middle of the audit rows' time span: the time-range cases read 10 days of it.
        middle = c.execute(
            text(
                "SELECT occurred_at FROM audit_logs "
                "WHERE sequence = (SELECT max(sequence) / 2 FROM audit_logs)"
            )
        ).scalar_one()
    engine.dispose()
    ids = {"student": str(row[0]), "exam": str(row[1]), "actor": str(actor), "res": resource}
    return ids | {"audit_middle": middle}


def search_cases(ids: dict[str, object]) -> dict[str, dict[str, object]]:
    week = timedelta(days=7)
    t_end, t_start = NOW - 4 * week, NOW - 6 * week
    submitted, timed_out = common_pb2.ATTEMPT_STATUS_SUBMITTED, common_pb2.ATTEMPT_STATUS_TIMED_OUT
    s, e = ids["student"], ids["exam"]
    span = {"start_time": t_start, "end_time": t_end}
    return {
        "none": {},
        "student": {"student_id": s},
        "exam": {"exam_id": e},
        "status_submitted": {"status": submitted},
        "status_timed_out": {"status": timed_out},
        "flagged_true": {"flagged": True},
        "flagged_false": {"flagged": False},
        "time_range": span,
        "student_exam": {"student_id": s, "exam_id": e},
        "student_status": {"student_id": s, "status": submitted},
        "exam_status": {"exam_id": e, "status": timed_out},
        "exam_flagged": {"exam_id": e, "flagged": True},
        "exam_time_range": {"exam_id": e} | span,
        "status_flagged": {"status": timed_out, "flagged": True},
        "status_time_range": {"status": timed_out} | span,
        "flagged_time_range": {"flagged": True} | span,
        "all": {"student_id": s, "exam_id": e, "status": submitted, "flagged": False} | span,
    }


def audit_cases(ids: dict[str, object]) -> dict[str, dict[str, object]]:
    middle = ids["audit_middle"]
    span = {"start_time": middle - timedelta(days=5), "end_time": middle + timedelta(days=5)}
    return {
        "none": {},
        "actor": {"actor_id": ids["actor"]},
        "action": {"action": "exam.grant"},
        "resource": {"resource_type": "attempt", "resource_id": ids["res"]},
        "resource_type": {"resource_type": "user"},
        "outcome_denied": {"outcome": admin_pb2.AUDIT_OUTCOME_DENIED},
        "outcome_failure": {"outcome": admin_pb2.AUDIT_OUTCOME_FAILURE},
        "time_range": span,
        "actor_action": {"actor_id": ids["actor"], "action": "auth.login"},
        "action_time_range": {"action": "auth.login"} | span,
        "denied_time_range": {"outcome": admin_pb2.AUDIT_OUTCOME_DENIED} | span,
    }


def request_of(kind, fields: dict[str, object]):
    message = kind(page_size=50)
    for name, value in fields.items():
        if isinstance(value, datetime):
            getattr(message, name).FromDatetime(value)
        else:
            setattr(message, name, value)
    return message


async def timed(call, request, metadata, calls: int, warmup: int) -> tuple[list[float], object]:
    samples, response = [], None
    for n in range(warmup + calls):
        t0 = time.perf_counter()
        response = await call(request, metadata=metadata)
        if n >= warmup:
            samples.append((time.perf_counter() - t0) * 1000)
    return samples, response


async def sign_in(channel) -> tuple[tuple[str, str]]:
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    answer = await auth.Login(auth_pb2.LoginRequest(email=ADMIN, password=PASSWORD))
    return (("authorization", f"Bearer {answer.tokens.access_token}"),)


async def measure_stats(address: str, calls: int, warmup: int) -> dict[str, object]:
    async with grpc.aio.insecure_channel(address) as channel:
        metadata = await sign_in(channel)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        samples, response = await timed(
            admin.GetSystemStats, admin_pb2.GetSystemStatsRequest(), metadata, calls, warmup
        )
    age = datetime.now(UTC) - response.compute_time.ToDatetime(tzinfo=UTC)
    days = [d.event_count for d in response.daily_event_counts]
    figures = {
        "events_30_days": sum(days),
        "last_hour": response.last_hour_event_count,
        "last_day": response.last_day_event_count,
        "attempts": sum(a.attempt_count for a in response.attempt_counts),
        "users": sum(u.user_count for u in response.user_counts),
        "age_s": round(age.total_seconds(), 1),
    }
    return percentiles(samples) | {"figures": figures}


async def measure_lists(address: str, ids, calls: int) -> dict[str, object]:
    results: dict[str, object] = {"SearchAttempts": {}, "QueryAuditLog": {}}
    async with grpc.aio.insecure_channel(address) as channel:
        metadata = await sign_in(channel)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        rpcs = (
            ("SearchAttempts", admin.SearchAttempts, admin_pb2.SearchAttemptsRequest, search_cases),
            ("QueryAuditLog", admin.QueryAuditLog, admin_pb2.QueryAuditLogRequest, audit_cases),
        )
        for rpc, call, kind, cases in rpcs:
            for name, fields in cases(ids).items():
                request = request_of(kind, fields)
                samples, first = await timed(call, request, metadata, calls, 5)
                entry = {"page1": percentiles(samples)}
                items = first.attempts if rpc == "SearchAttempts" else first.records
                entry["rows"] = len(items)
                if first.next_page_token:
                    request.page_token = first.next_page_token
                    samples, _ = await timed(call, request, metadata, max(20, calls // 4), 2)
                    entry["page2"] = percentiles(samples)
                results[rpc][name] = entry
                print(f"{rpc} {name}: {entry}", file=sys.stderr)
    return results


def plans(url: str, ids) -> dict[str, dict[str, str]]:
    """The plan of each case's query, as the repository builds it: which index it scans."""
    from veritas_grpc.api import admin_convert
    from veritas_grpc.repositories.audit import AuditRepository
    from veritas_grpc.repositories.oversight import OversightRepository

    engine = create_engine(url)
    captured: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def capture(_connection, _cursor, sql, params, *_) -> None:
        captured.append((sql, params))

    found: dict[str, dict[str, str]] = {"SearchAttempts": {}, "QueryAuditLog": {}}
    with Session(engine) as session:
        for name, fields in search_cases(ids).items():
            search = admin_convert.attempt_search(
                request_of(admin_pb2.SearchAttemptsRequest, fields)
            )
            captured.clear()
            OversightRepository(session).search_attempts(search, None, 51)
            found["SearchAttempts"][name] = explain(session, *captured[-1])
        for name, fields in audit_cases(ids).items():
            query = admin_convert.audit_query(request_of(admin_pb2.QueryAuditLogRequest, fields))
            captured.clear()
            AuditRepository(session).query(query, None, 51)
            found["QueryAuditLog"][name] = explain(session, *captured[-1])
    engine.dispose()
    return found


def explain(session: Session, sql: str, params) -> str:
    cursor = session.connection().connection.dbapi_connection.cursor()
    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
    plan = cursor.fetchone()[0][0]
    scans: list[str] = []

    def walk(node) -> None:
        kind = node["Node Type"]
        if kind == "Seq Scan":
            scans.append(f"SEQ SCAN {node['Relation Name']}")
        elif "Index" in kind:
            scans.append(f"{kind.replace(' Scan', '')} {node.get('Index Name')}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return f"{plan['Execution Time']:.1f} ms: " + ", ".join(scans)


def parts(factory) -> dict[str, float]:
    """What each figure costs to count (the median of 3), to see where the time goes."""
    from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork

    now, today, day = datetime.now(UTC), datetime.now(UTC).date(), timedelta(days=1)
    jobs = {
        "users_by_role_100k": lambda u: u.oversight.users_by_role(),
        "exams_by_status": lambda u: u.oversight.exams_by_status(),
        "attempts_by_status_1m": lambda u: u.oversight.attempts_by_status(),
        "exam_stats_totals": lambda u: u.exams.totals(),
        "events_received_last_hour": lambda u: u.oversight.events_received_since(
            now - timedelta(hours=1), day
        ),
        "events_received_last_day": lambda u: u.oversight.events_received_since(now - day, day),
        "events_on_today": lambda u: u.oversight.events_on(today),
        "events_on_a_closed_day": lambda u: u.oversight.events_on(today - 10 * day),
        "events_per_day_30_days": lambda u: u.oversight.events_per_day(today - 29 * day, today),
    }
    timings = {}
    for name, job in jobs.items():
        samples = []
        for _ in range(3):
            with SqlAlchemyUnitOfWork(factory) as uow:
                t0 = time.perf_counter()
                job(uow)
                samples.append((time.perf_counter() - t0) * 1000)
        timings[name] = round(sorted(samples)[1], 1)
    return timings


def measure_refresh(url: str, calls: int) -> dict[str, object]:
    """The snapshot refresh and the fully live computation, in this process."""
    from veritas_grpc.db.engine import make_engine, make_session_factory
    from veritas_grpc.repositories.unit_of_work import SqlAlchemyUnitOfWork
    from veritas_grpc.services.oversight import Oversight

    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    oversight = Oversight(
        lambda: SqlAlchemyUnitOfWork(factory),
        lambda: datetime.now(UTC),
        refresh=timedelta(seconds=60),
        event_max_age=timedelta(days=1),
    )
    out: dict[str, object] = {"parts_ms": parts(factory)}
    t0 = time.perf_counter()
    oversight.compute(keep_days=True)  # counts and keeps the closed days
    out["first_refresh_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    for keep_days in (True, False):
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter()
            oversight.compute(keep_days=keep_days)
            samples.append((time.perf_counter() - t0) * 1000)
        out["refresh_kept_days" if keep_days else "all_live"] = percentiles(samples)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--audit-rows", type=int, default=10_000_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--live-calls", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/oversight-bench"))
    parser.add_argument("--database", help="reuse this loaded database (no load)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--skip-lists", action="store_true")
    parser.add_argument("--lists-only", action="store_true", help="only the two listings")
    parser.add_argument(
        "--load-only", action="store_true", help="load and keep the database, measure later"
    )
    args = parser.parse_args()
    server = embedded_server_url(args.data_dir)
    if args.database:
        url = make_url(server).set(database=args.database).render_as_string(hide_password=False)
        from veritas_grpc.db import migrate

        migrate.upgrade(url)
    else:
        url = create_database(server)
    result: dict[str, object] = {"database": make_url(url).database}
    try:
        if not args.database:
            result["load_s"] = load_all(url, args)
            print(json.dumps(result), file=sys.stderr)
            if args.load_only:
                return
        ids = sample_ids(url)
        if args.lists_only:
            with server_process(url, VERITAS_BCRYPT_ROUNDS="4") as (a, _):
                result.update(asyncio.run(measure_lists(a, ids, args.calls)))
            print(json.dumps(result | {"plans": plans(url, ids)}, indent=2, default=str))
            return
        result["stats_in_process_ms"] = measure_refresh(url, args.live_calls)
        print(json.dumps(result), file=sys.stderr)
        env = {"VERITAS_BCRYPT_ROUNDS": "4"}
        with server_process(url, VERITAS_SYSTEM_STATS_REFRESH_SECONDS="60", **env) as (a, _):
            result["GetSystemStats_snapshot"] = asyncio.run(measure_stats(a, args.calls, 20))
            if not args.skip_lists:
                result.update(asyncio.run(measure_lists(a, ids, args.calls)))
        with server_process(url, VERITAS_SYSTEM_STATS_REFRESH_SECONDS="0", **env) as (a, _):
            result["GetSystemStats_live"] = asyncio.run(measure_stats(a, args.live_calls, 1))
        result["plans"] = plans(url, ids)
        engine = create_engine(url)
        with engine.connect() as connection:
            result["database_size"] = connection.execute(
                text("SELECT pg_size_pretty(pg_database_size(current_database()))")
            ).scalar_one()
        engine.dispose()
        print(json.dumps(result, indent=2, default=str))
    finally:
        if not (args.keep or args.database or args.load_only):
            drop_database(url)


if __name__ == "__main__":
    main()
