"""The seed's scale, reproducibly from a seed: 100,000 students, 1,000,000 attempts and
10,000,000 monitoring events (docs/BENCH_SCALE.md).

- Accounts, exams, attempts and their running figures: bench_dashboards.load (COPY;
  100,000 students x 10 finished attempts over 1,000 exams by 50 teachers; exam 0 has
  one attempt from each of the first --target-attempts students: a 5,000-student exam),
  plus one admin.
- Events, in SQL from the same seed (setseed): every attempt's inside its own window
  (started_at to ended_at), in the daily partitions they fall in; a skewed mix: most
  attempts get a handful (an exponential count, mean --mean-events), the first
  --heavy-attempts attempts of exam 0 get --heavy-events each (a detector at 10-15 Hz
  for an hour). Event ids are md5s of (student, exam, attempt number, n): the same on
  every load (attempts are drawn in that order too). Then the events' tallies by type
  and severity (what ingestion keeps, migration 0018) and, from those, each attempt's
  counters, so that event_count == COUNT(*).
- VACUUM ANALYZE.

Timestamps are relative to now (the attempts of the last ten weeks), so a load today
and one next month have the same shape. Prints the time of each phase and the ids a
benchmark needs (scripts/bench_scale.py reads them from the database instead).

Usage (from scripts/): python generate_scale_data.py [--students 100000]
    [--target-attempts 5000] [--mean-events 9.5] [--heavy-attempts 20]
    [--heavy-events 50000] [--seed 2026] [--database-url URL]
Without --database-url: a fresh database on the embedded server (benchlib.database_url).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta

import psycopg2
from bench_dashboards import PASSWORD, load
from benchlib import database_url
from sqlalchemy.engine import make_url

from veritas_grpc.repositories.partitions import partition_name
from veritas_grpc.security.passwords import PasswordHasher

ADMIN = "scale-admin@university.edu"
EVENT_TYPES = "{gaze_away,eye_movement,tab_switch,window_blur,face_not_detected,voice_detected}"
# Each attempt's events: n per attempt (heavy or exponential), occur times spread
# uniformly over the attempt's window, one type in six technical.
EVENTS = """
INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, received_at, event_type,
    category, severity, is_anomaly, description, detector_name, detector_version)
SELECT a.id, o.t, md5(a.key || ':' || o.g)::uuid, o.t + interval '1 second',
    (%(types)s::text[])[1 + o.g %% 6],
    CASE WHEN o.g %% 6 = 5 THEN 'TECHNICAL' ELSE 'INTEGRITY' END,
    CASE WHEN o.g %% 50 = 0 THEN 'CRITICAL' WHEN o.g %% 10 = 0 THEN 'WARNING' ELSE 'INFO' END,
    o.g %% 25 = 0, '', 'scale-detector', '1.0'
FROM (
    SELECT id, started_at, ended_at, student_id || ':' || exam_id || ':' || attempt_number AS key,
        CASE WHEN id = ANY(%(heavy)s::uuid[]) THEN %(heavy_events)s
             ELSE floor(-ln(1 - random()) * %(mean)s)::int END AS n
    FROM exam_attempts ORDER BY student_id, exam_id, attempt_number
) a
CROSS JOIN LATERAL (
    SELECT g, a.started_at + random() * (a.ended_at - a.started_at) AS t
    FROM generate_series(1, a.n) g
) o
"""
# What ingestion keeps, from the events: their tallies by type and severity (migration
# 0018), then each attempt's counters from those (bench_dashboards.load made them up).
TALLIES = """
INSERT INTO attempt_event_tallies (attempt_id, event_type, severity, event_count,
    anomaly_count, first_occurred_at, last_occurred_at)
SELECT attempt_id, event_type, severity, count(*),
    count(*) FILTER (WHERE is_anomaly), min(occurred_at), max(occurred_at)
FROM monitoring_events GROUP BY attempt_id, event_type, severity
"""
COUNTERS = """
UPDATE exam_attempts a SET event_count = COALESCE(c.n, 0),
    anomaly_count = COALESCE(c.anomalies, 0), critical_count = COALESCE(c.criticals, 0)
FROM exam_attempts x LEFT JOIN (
    SELECT attempt_id, sum(event_count) AS n, sum(anomaly_count) AS anomalies,
        COALESCE(sum(event_count) FILTER (WHERE severity = 'CRITICAL'), 0) AS criticals
    FROM attempt_event_tallies GROUP BY attempt_id) c ON c.attempt_id = x.id
WHERE a.id = x.id
"""


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--attempts-per-student", type=int, default=10)
    parser.add_argument("--exams", type=int, default=1000)
    parser.add_argument("--teachers", type=int, default=50)
    parser.add_argument("--target-attempts", type=int, default=5000)
    parser.add_argument("--mean-events", type=float, default=9.5)
    parser.add_argument("--heavy-attempts", type=int, default=20)
    parser.add_argument("--heavy-events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--database-url")
    return parser.parse_args()


def add_events(dsn: str, args: argparse.Namespace, exam_id: str) -> dict[str, float]:
    phases: dict[str, float] = {}
    connection = psycopg2.connect(dsn)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (email, password_hash, full_name, role) "
            "VALUES (%s, %s, 'Scale Admin', 'admin') ON CONFLICT DO NOTHING",
            (ADMIN, PasswordHasher(rounds=4).hash(PASSWORD)),
        )
        cursor.execute("SELECT min(started_at)::date, max(ended_at)::date FROM exam_attempts")
        first, last = cursor.fetchone()
        day = first
        while day <= last:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF "
                f"monitoring_events FOR VALUES FROM ('{day}') TO ('{day + timedelta(days=1)}')"
            )
            day += timedelta(days=1)
        cursor.execute(
            "SELECT id::text FROM exam_attempts WHERE exam_id = %s ORDER BY started_at, student_id "
            "LIMIT %s",
            (exam_id, args.heavy_attempts),
        )
        heavy = [row[0] for row in cursor.fetchall()]
        # Deterministic: one session, setseed first, attempts in id order, no parallel plan.
        cursor.execute("SET max_parallel_workers_per_gather = 0")
        cursor.execute("SELECT setseed(%s)", (((args.seed % 2000) - 1000) / 1000,))
        t0 = time.perf_counter()
        cursor.execute(
            EVENTS,
            {
                "types": EVENT_TYPES,
                "heavy": heavy,
                "heavy_events": args.heavy_events,
                "mean": args.mean_events,
            },
        )
        phases["events"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cursor.execute(TALLIES)
        phases["event_tallies"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cursor.execute(COUNTERS)
        phases["event_counters"] = time.perf_counter() - t0
    connection.autocommit = True
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) monitoring_events")
        cursor.execute("VACUUM (ANALYZE) exam_attempts")
        cursor.execute("VACUUM (ANALYZE) attempt_event_tallies")
    phases["vacuum_analyze_events"] = time.perf_counter() - t0
    connection.close()
    return phases


def main() -> None:
    args = parse()
    url = args.database_url or database_url()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    loaded = load(dsn, args)
    phases = add_events(dsn, args, loaded["exam"])
    loaded["load_s"] |= {name: round(seconds, 1) for name, seconds in phases.items()}
    loaded["database"] = make_url(url).database
    print(json.dumps(loaded, indent=2), file=sys.stdout)


if __name__ == "__main__":
    main()
