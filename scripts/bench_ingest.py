"""Event ingestion throughput, its ceiling, memory and many agents, in one run.

A benchmark script (not a timed test). It makes a fresh migrated database on the
embedded PostgreSQL, a SERVICE account and exam attempts in progress, starts
`veritas serve` processes (default settings unless said otherwise) and measures:

1. matrix: 1, 8 and 64 concurrent StreamEvents streams x messages of 1, 50 and 500
   events; each stream sends its messages back to back, then closes. Events/s = events
   / wall time from the first send to the last answer. Every accepted_count is checked.
2. ratio: the ceiling, a raw psycopg2 COPY of the same kind of rows (the 13 columns
   the server writes) straight into monitoring_events, in --ceiling-batch-row
   transactions, on as many connections (threads) as the server has event writers; the
   same rows written with the server's SQL alone (COPY into a temp table, INSERT ... ON
   CONFLICT DO NOTHING RETURNING, TRUNCATE: "staged"); and the 8 streams x 500-event
   case end to end. --rounds rounds of the three, so the ratio e2e / ceiling compares
   neighbours in time; the target is >= 60 %.
3. gin: the same COPY into a scratch, non-partitioned copy of the table (same primary
   key and partial indexes): data as json (the schema), as jsonb, and as jsonb with a
   GIN index (jsonb_path_ops, and the default jsonb_ops): what jsonb and such an index
   would cost. The schema has neither.
4. memory: one stream of --memory-events events in 500-event messages; the server's
   RSS sampled every 0.5 s (min / median / max, and at 10 %, 50 %, 100 % of the stream).
5. agents: --agents concurrent streams over 10 connections, each sending 5 messages of
   2 events about 1 s apart, then closing: events/s, time from the last message sent to
   the answer (p50 / p99), peak server threads and RSS, counts checked in the database.

With --pin, PostgreSQL (its postmaster and every process of it; backends forked later
inherit) runs on CPU 0 and this script with the servers it starts on CPU 1
(sched_setaffinity, what taskset does) for every phase, the masks undone at the end:
the server's and PostgreSQL's CPU per event against PostgreSQL's per raw COPY row, with
PostgreSQL on a core of its own (the client shares the server's). --baseline-root DIR
serves the same rounds from a second server run from another checkout (a `git
worktree` of the code before a change), alternating with this one: before and after in
one run. --profile DIR samples each server with py-spy during
one extra, untimed 8 x 500 cell and prints where its CPU went.

Client messages are built and serialized before the clock starts, so the client's CPU
goes into gRPC only. CPU use of the server process, of all PostgreSQL processes, of the
client and of the whole machine (of 100 % x cores) is reported for each timed part,
with "other": CPU used by anything else meanwhile (noise). Each timed part starts
after a CHECKPOINT. Figures and their reading: docs/BENCH_INGEST.md.

Usage (from scripts/, with the project's venv):
    python bench_ingest.py                      # everything, ~6 minutes on 2 cores
    python bench_ingest.py --quick              # small sizes, under a minute
    python bench_ingest.py --phases ratio,gin   # only some parts
    python bench_ingest.py --writers-variant 4  # also the ratio with 4 event writers
    python bench_ingest.py --phases ratio --pin --baseline-root /tmp/before --profile /tmp/p
Options shrink every size; see --help. Prints a JSON summary (also to --json-out).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg2
from benchlib import (
    database_url,
    percentiles,
    process_rss_mib,
    process_threads,
    server_process,
)
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from veritas.v1 import auth_pb2, auth_pb2_grpc, common_pb2, monitoring_pb2, resources_pb2

from veritas_grpc.domain.events import EVENT_COLUMNS, EventRow
from veritas_grpc.repositories.events import copy_text
from veritas_grpc.security.passwords import PasswordHasher

PASSWORD = "bench ingest password 2026"
STREAM_METHOD = "/veritas.v1.MonitoringService/StreamEvents"
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
CALL_TIMEOUT = 1800.0
EVENT_TYPES = (
    "eye_movement",
    "gaze_away",
    "window_focus",
    "window_blur",
    "tab_switch",
    "face_not_detected",
    "copy_paste",
    "noise",
    "voice_detected",
    "heartbeat",
)
ANOMALY_RATE = 0.05
QUICK = {
    "events": 4_000,
    "small_events": 1_000,
    "rounds": 1,
    "ratio_events": 20_000,
    "ceiling_rows": 40_000,
    "memory_events": 100_000,
    "agents": 200,
    "agent_messages": 3,
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


# Events --------------------------------------------------------------------------------


class EventSource:
    """Realistic small events for one attempt: ~5-key JSON payload, random types, ~5 %
    anomalies, occurred_at increasing over the last `span` seconds, fresh event_ids."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def fields(self, attempt_id: str, count: int, span: float = 600.0) -> Iterator[dict]:
        rng = self._rng
        start = datetime.now(UTC) - timedelta(seconds=span + 5)
        step = span / max(count, 1)
        for n in range(count):
            event_type = rng.choice(EVENT_TYPES)
            anomaly = rng.random() < ANOMALY_RATE
            data = {
                "gaze_x": round(rng.uniform(-1, 1), 3),
                "gaze_y": round(rng.uniform(-1, 1), 3),
                "duration_ms": rng.randint(20, 5000),
                "screen": rng.randint(0, 2),
                "confidence": round(rng.random(), 3),
            }
            yield {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "attempt_id": attempt_id,
                "event_type": event_type,
                "category": "TECHNICAL" if event_type == "heartbeat" else "INTEGRITY",
                "severity": "WARNING" if anomaly else "INFO",
                "is_anomaly": anomaly,
                "occurred_at": start + timedelta(seconds=n * step),
                "data": json.dumps(data, separators=(",", ":")),
                "description": f"{event_type} detected" if anomaly else "",
                "detector_name": "agent-vision",
                "detector_version": "2.3.1",
                "detector_confidence": round(rng.uniform(0.5, 1.0), 3),
            }

    def messages(self, attempt_id: str, count: int, size: int, span: float = 600.0) -> list[bytes]:
        """count events as serialized StreamEventsRequest messages of `size` events."""
        out, batch = [], []
        for f in self.fields(attempt_id, count, span):
            stamp = Timestamp()
            stamp.FromDatetime(f["occurred_at"])
            batch.append(
                resources_pb2.MonitoringEvent(
                    event_id=f["event_id"],
                    attempt_id=attempt_id,
                    event_type=f["event_type"],
                    category=common_pb2.EventCategory.Value(f"EVENT_CATEGORY_{f['category']}"),
                    severity=common_pb2.SEVERITY_WARNING if f["is_anomaly"] else 0,
                    is_anomaly=f["is_anomaly"],
                    occur_time=stamp,
                    data_json=f["data"],
                    description=f["description"],
                    detector=resources_pb2.Detector(
                        name=f["detector_name"],
                        version=f["detector_version"],
                        confidence_score=f["detector_confidence"],
                    ),
                )
            )
            if len(batch) == size:
                out.append(monitoring_pb2.StreamEventsRequest(events=batch).SerializeToString())
                batch = []
        if batch:
            out.append(monitoring_pb2.StreamEventsRequest(events=batch).SerializeToString())
        return out

    def copy_chunks(self, attempts: list[str], sent_by: str, rows: int, batch: int) -> list[str]:
        """rows rows in COPY text format, formatted by the server's own formatter,
        `batch` a chunk, spread evenly over the attempts."""
        per_attempt = -(-rows // len(attempts))
        events: list[EventRow] = []
        for attempt in attempts:
            for f in self.fields(attempt, per_attempt):
                events.append(
                    EventRow(
                        attempt,
                        f["occurred_at"],
                        f["event_id"],
                        f["event_type"],
                        f["category"],
                        f["severity"],
                        f["is_anomaly"],
                        f["description"],
                        f["detector_name"],
                        f["detector_version"],
                        f["detector_confidence"],
                        f["data"],
                        sent_by,
                    )
                )
        events = events[:rows]
        return [copy_text(events[i : i + batch]) for i in range(0, len(events), batch)]


# Database set-up -----------------------------------------------------------------------


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        sa_url = make_url(url)
        args, kwargs = self.engine.dialect.create_connect_args(sa_url)
        self._connect_args = (args, kwargs)
        self.can_checkpoint = True

    def connect(self) -> psycopg2.extensions.connection:
        args, kwargs = self._connect_args
        return psycopg2.connect(*args, **kwargs)

    def service_account(self) -> tuple[str, str]:
        """A SERVICE account with a real (cheap) bcrypt hash: (email, user id)."""
        email = f"bench-agent-{uuid.uuid4().hex[:8]}@example.edu"
        password_hash = PasswordHasher(rounds=4).hash(PASSWORD)
        with self.engine.begin() as connection:
            user_id = connection.execute(
                text(
                    "INSERT INTO users (email, password_hash, full_name, role) "
                    "VALUES (:e, :h, 'Bench agent', 'service') RETURNING id"
                ),
                {"e": email, "h": password_hash},
            ).scalar_one()
        return email, str(user_id)

    def attempts(self, count: int) -> list[str]:
        """count students with an attempt in progress at one published exam (bulk SQL)."""
        tag = uuid.uuid4().hex[:8]
        with self.engine.begin() as connection:
            teacher = connection.execute(
                text(
                    "INSERT INTO users (email, password_hash, full_name, role) "
                    "VALUES (:e, 'x', 'Bench Teacher', 'teacher') RETURNING id"
                ),
                {"e": f"bench-teacher-{tag}@example.edu"},
            ).scalar_one()
            exam = connection.execute(
                text(
                    "INSERT INTO exams (title, max_score, pass_score, duration_minutes, "
                    "status, created_by) VALUES ('Bench', 10, 5, 480, 'PUBLISHED', :t) "
                    "RETURNING id"
                ),
                {"t": teacher},
            ).scalar_one()
            connection.execute(text("INSERT INTO exam_stats (exam_id) VALUES (:x)"), {"x": exam})
            attempts = connection.execute(
                text(
                    "WITH students AS ("
                    " INSERT INTO users (email, password_hash, full_name, role)"
                    " SELECT 'bench-' || :tag || '-' || n || '@example.edu', 'x', 'S' || n,"
                    " 'student' FROM generate_series(1, :count) AS n RETURNING id)"
                    " INSERT INTO exam_attempts (exam_id, student_id, attempt_number,"
                    " deadline_at)"
                    " SELECT :x, id, 1, now() + interval '8 hours' FROM students RETURNING id"
                ),
                {"tag": tag, "count": count, "x": exam},
            ).scalars()
            return [str(a) for a in attempts]

    def stored(self, attempts: list[str]) -> dict[str, int]:
        """Rows stored for the attempts, and their counters."""
        with self.engine.connect() as connection:
            rows, counted, anomalies = connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM monitoring_events"
                    " WHERE attempt_id = ANY(CAST(:a AS uuid[]))),"
                    " sum(event_count), sum(anomaly_count) FROM exam_attempts"
                    " WHERE id = ANY(CAST(:a AS uuid[]))"
                ),
                {"a": attempts},
            ).one()
        return {"rows": rows, "event_count": int(counted), "anomaly_count": int(anomalies)}

    def checkpoint(self) -> None:
        """Start each timed part with no dirty pages left by the previous one."""
        if self.can_checkpoint:
            try:
                self.execute("CHECKPOINT")
            except psycopg2.Error:
                self.can_checkpoint = False

    def execute(self, *statements: str) -> None:
        connection = self.connect()
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()

    def empty_events(self) -> None:
        """Back to an empty event table, so that each ratio variant starts on the same
        table size (rounds add ~700,000 rows each, and inserts slow as it grows)."""
        self.execute(
            "TRUNCATE monitoring_events, attempt_event_tallies",
            "UPDATE exam_attempts SET event_count = 0, anomaly_count = 0, critical_count = 0",
            "VACUUM ANALYZE monitoring_events",
            "CHECKPOINT",
        )

    def drop(self) -> None:
        self.engine.dispose()
        name = make_url(self.url).database
        admin = create_engine(make_url(self.url).set(database="postgres"))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# CPU and memory sampling ----------------------------------------------------------------


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _server_cpu_seconds(pid: int) -> float:
    """CPU seconds of the server process and of its children (VERITAS_PROCESSES > 1
    starts the other server processes as its children)."""
    total = _proc_cpu_seconds(pid)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += _proc_cpu_seconds(int(entry.name))
    return total


def _postgres_cpu_seconds() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process, by pid."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if raw.split("(", 1)[1].startswith("postgres)"):
            fields = raw.rsplit(")", 1)[1].split()
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def _machine_busy_seconds() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


class CpuMeter:
    """CPU used between start() and stop(), as % of one core (machine: of all cores)."""

    def __init__(self, server_pid: int | None) -> None:
        self._pid = server_pid

    def _read(self) -> dict[str, float]:
        busy, _ = _machine_busy_seconds()
        return {
            "wall": time.perf_counter(),
            "server": _server_cpu_seconds(self._pid) if self._pid else 0.0,
            "client": time.process_time(),
            "machine": busy,
        }

    def start(self) -> None:
        self._postgres = _postgres_cpu_seconds()
        self._start = self._read()

    def stop(self, events: int) -> dict[str, float]:
        """CPU % per process group, and CPU microseconds per event (or row). PostgreSQL:
        processes that ended meanwhile are not counted (connections here are pooled)."""
        end = self._read()
        postgres = _postgres_cpu_seconds()
        end["postgres"] = sum(cpu - self._postgres.get(pid, 0.0) for pid, cpu in postgres.items())
        self._start["postgres"] = 0.0
        wall = end["wall"] - self._start["wall"]
        usage: dict[str, float] = {}
        for k in ("server", "postgres", "client") if self._pid else ("postgres", "client"):
            used = end[k] - self._start[k]
            usage[f"{k}_cpu_pct"] = round(100 * used / wall)
            if k != "client":
                usage[f"{k}_cpu_us_per_event"] = round(1e6 * used / events, 1)
        machine = 100 * (end["machine"] - self._start["machine"]) / wall
        ours = sum(v for k, v in usage.items() if k.endswith("_cpu_pct"))
        usage["machine_busy_pct"] = round(machine)
        # Anything else on the machine meanwhile (other benchmarks, tests): noise.
        usage["other_cpu_pct"] = max(0, round(machine - ours))
        return usage


class Sampler:
    """Samples fn() every `every` seconds on a thread while in use."""

    def __init__(self, fn: Callable[[], object], every: float) -> None:
        self._fn, self._every = fn, every
        self.samples: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._fn())
            self._stop.wait(self._every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self._fn())


def busy_neighbours() -> list[str]:
    """Other benchmark processes running now (they would disturb the figures)."""
    mine = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == mine:
            continue
        try:
            command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if ".py" in command and "bench_" in command and "bench_ingest" not in command:
            found.append(command.strip())
    return found


# gRPC clients ---------------------------------------------------------------------------


def _identity(message: bytes) -> bytes:
    return message


def stream_call(channel: grpc.aio.Channel) -> grpc.aio.StreamUnaryMultiCallable:
    """StreamEvents taking pre-serialized requests."""
    return channel.stream_unary(
        STREAM_METHOD,
        request_serializer=_identity,
        response_deserializer=monitoring_pb2.StreamEventsResponse.FromString,
    )


async def sign_in(address: str, email: str) -> tuple[tuple[str, str]]:
    async with grpc.aio.insecure_channel(address) as channel:
        login = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(email=email, password=PASSWORD)
        )
    return (("authorization", f"Bearer {login.tokens.access_token}"),)


def check_responses(
    what: str, responses: list[monitoring_pb2.StreamEventsResponse], expected: list[int]
) -> None:
    """Fail loudly unless every stream had all its events accepted."""
    bad = [
        (n, r.accepted_count, r.duplicate_count, r.rejected_count, want)
        for n, (r, want) in enumerate(zip(responses, expected, strict=True))
        if r.accepted_count != want or r.duplicate_count or r.rejected_count
    ]
    if bad:
        sample = [r.rejections[0].reason for r in responses if r.rejections][:3]
        raise SystemExit(
            f"{what}: {len(bad)} streams with wrong counts (stream, accepted, duplicates, "
            f"rejected, expected): {bad[:5]}; rejections: {sample}"
        )


async def send_streams(
    address: str,
    metadata: tuple[tuple[str, str]],
    per_stream: list[list[bytes]],
    connections: int,
) -> tuple[list[monitoring_pb2.StreamEventsResponse], float]:
    """Each stream sends its messages back to back and closes; returns the answers and
    the wall time from the first send to the last answer."""
    channels = [
        grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) for _ in range(connections)
    ]
    for channel in channels:
        await channel.channel_ready()
    calls = [stream_call(channel) for channel in channels]
    started = time.perf_counter()
    responses = await asyncio.gather(
        *(
            calls[n % connections](iter(messages), metadata=metadata, timeout=CALL_TIMEOUT)
            for n, messages in enumerate(per_stream)
        )
    )
    wall = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return list(responses), wall


# 1. Matrix ------------------------------------------------------------------------------


def cell_plan(streams: int, size: int, events: int, min_messages: int) -> tuple[int, int]:
    """(messages per stream, total events): at least `events`, whole messages, at least
    min_messages per stream."""
    messages = max(min_messages, -(-events // (streams * size)))
    return messages, messages * streams * size


def run_cell(
    ctx: Context, attempts: list[str], streams: int, size: int, events: int, min_messages: int
) -> dict[str, object]:
    messages, total = cell_plan(streams, size, events, min_messages)
    per_stream = [ctx.source.messages(attempts[n], messages * size, size) for n in range(streams)]
    ctx.db.checkpoint()
    meter = CpuMeter(ctx.pid)
    meter.start()
    responses, wall = asyncio.run(
        send_streams(ctx.address, ctx.metadata, per_stream, min(streams, 8))
    )
    usage = meter.stop(total)
    check_responses(f"{streams} x {size}", responses, [messages * size] * streams)
    return {
        "streams": streams,
        "events_per_message": size,
        "messages_per_stream": messages,
        "events": total,
        "wall_s": round(wall, 3),
        "events_per_s": round(total / wall),
        **usage,
    }


# 2. and 3. COPY ceiling -----------------------------------------------------------------


COLUMNS = ", ".join(EVENT_COLUMNS)
# The statements the server runs per batch (repositories/events.py), minus the counters.
STAGED = (
    "CREATE TEMP TABLE IF NOT EXISTS event_stage "
    "(LIKE monitoring_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    f"COPY event_stage ({COLUMNS}) FROM STDIN",
    f"INSERT INTO monitoring_events ({COLUMNS}) SELECT {COLUMNS} FROM event_stage "
    "ON CONFLICT DO NOTHING RETURNING attempt_id, occurred_at, event_id",
    "TRUNCATE event_stage",
)


def _copy_chunk(cursor: psycopg2.extensions.cursor, table: str, chunk: str) -> None:
    cursor.copy_expert(f"COPY {table} ({COLUMNS}) FROM STDIN", io.StringIO(chunk))


def _staged_chunk(cursor: psycopg2.extensions.cursor, table: str, chunk: str) -> None:
    create, copy, insert, truncate = STAGED
    cursor.execute(create)
    cursor.copy_expert(copy, io.StringIO(chunk))
    cursor.execute(insert)
    cursor.fetchall()
    cursor.execute(truncate)


def copy_rows_per_s(
    db: Database,
    table: str,
    chunks: list[str],
    connections: int,
    staged: bool = False,
    meter: CpuMeter | None = None,
) -> tuple[float, dict[str, float]]:
    """COPY the chunks (one transaction each) on `connections` threads, each with its own
    connection; rows/s from the moment all start to the last commit, and the CPU used
    meanwhile. staged: the way the server writes instead (COPY into a temp table, then
    INSERT ... ON CONFLICT)."""
    meter = meter or CpuMeter(None)
    rows = sum(chunk.count("\n") for chunk in chunks)
    write = _staged_chunk if staged else _copy_chunk
    opened = [db.connect() for _ in range(connections)]
    gate = threading.Barrier(connections + 1)
    errors: list[BaseException] = []

    def worker(connection: psycopg2.extensions.connection, mine: list[str]) -> None:
        try:
            cursor = connection.cursor()
            gate.wait()
            for chunk in mine:
                write(cursor, table, chunk)
                connection.commit()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=worker, args=(opened[n], chunks[n::connections]))
        for n in range(connections)
    ]
    for thread in threads:
        thread.start()
    meter.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    # Before closing: the backends' CPU is read while they still exist.
    usage = meter.stop(rows)
    for connection in opened:
        connection.close()
    if errors:
        raise SystemExit(f"COPY into {table} failed: {errors[0]!r}")
    return rows / wall, usage


def ceiling(
    ctx: Context,
    attempts: list[str],
    table: str,
    rows: int,
    batch: int,
    connections: int,
    staged: bool = False,
) -> dict[str, object]:
    chunks = ctx.source.copy_chunks(attempts, ctx.user_id, rows, batch)
    ctx.db.checkpoint()
    rate, usage = copy_rows_per_s(ctx.db, table, chunks, connections, staged)
    return {
        "table": table,
        "how": "staged (temp table + INSERT ... ON CONFLICT)" if staged else "COPY",
        "rows": rows,
        "rows_per_transaction": batch,
        "connections": connections,
        "rows_per_s": round(rate),
        **usage,
    }


_AS_JSONB = "ALTER TABLE bench_scratch ALTER COLUMN data TYPE jsonb"
GIN_VARIANTS: dict[str, tuple[str, ...]] = {
    "data json, as stored (primary key + partial anomaly index only)": (),
    "data jsonb, no GIN": (_AS_JSONB,),
    "data jsonb, GIN (data jsonb_path_ops)": (
        _AS_JSONB,
        "CREATE INDEX ON bench_scratch USING gin (data jsonb_path_ops)",
    ),
    "data jsonb, GIN (data), default jsonb_ops": (
        _AS_JSONB,
        "CREATE INDEX ON bench_scratch USING gin (data)",
    ),
}


def gin_round(ctx: Context, attempts: list[str], args: argparse.Namespace) -> list[dict]:
    """The COPY ceiling into a fresh scratch copy of the table, per index variant."""
    results = []
    for name, statements in GIN_VARIANTS.items():
        ctx.db.execute(
            "DROP TABLE IF EXISTS bench_scratch",
            "CREATE TABLE bench_scratch (LIKE monitoring_events INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING INDEXES)",
            *statements,
        )
        result = ceiling(
            ctx, attempts, "bench_scratch", args.ceiling_rows, args.ceiling_batch, args.writers
        )
        results.append({"variant": name, **result})
    ctx.db.execute("DROP TABLE IF EXISTS bench_scratch")
    return results


# 4. Memory ------------------------------------------------------------------------------


async def one_long_stream(
    ctx: Context, attempt: str, messages: list[bytes], size: int
) -> tuple[monitoring_pb2.StreamEventsResponse, float, list[tuple[float, int, float]]]:
    sent = [0]

    async def requests():
        for message in messages:
            yield message
            sent[0] += size

    started = time.perf_counter()

    def sample() -> tuple[float, int, float]:
        return (time.perf_counter() - started, sent[0], process_rss_mib(ctx.pid))

    async with grpc.aio.insecure_channel(ctx.address, options=CHANNEL_OPTIONS) as channel:
        with Sampler(sample, 0.5) as sampler:
            response = await stream_call(channel)(
                requests(), metadata=ctx.metadata, timeout=CALL_TIMEOUT
            )
            wall = time.perf_counter() - started
    return response, wall, sampler.samples  # type: ignore[return-value]


def memory_run(ctx: Context, attempt: str, events: int, size: int) -> dict[str, object]:
    built = time.perf_counter()
    # Events spread over the last 20 hours so a long stream stays inside the window.
    messages = ctx.source.messages(attempt, events, size, span=20 * 3600)
    build_s = time.perf_counter() - built
    ctx.db.checkpoint()
    before = process_rss_mib(ctx.pid)
    meter = CpuMeter(ctx.pid)
    meter.start()
    response, wall, samples = asyncio.run(one_long_stream(ctx, attempt, messages, size))
    usage = meter.stop(events)
    check_responses("memory", [response], [events])
    rss = [s[2] for s in samples]

    def rss_at(fraction: float) -> float:
        return round(next(r for _, n, r in samples if n >= fraction * events), 1)

    return {
        "events": events,
        "events_per_message": size,
        "client_build_s": round(build_s, 1),
        "wall_s": round(wall, 2),
        "events_per_s": round(events / wall),
        "rss_mib_before": round(before, 1),
        "rss_mib_min": round(min(rss), 1),
        "rss_mib_median": round(statistics.median(rss), 1),
        "rss_mib_max": round(max(rss), 1),
        "rss_mib_at_10pct": rss_at(0.1),
        "rss_mib_at_50pct": rss_at(0.5),
        "rss_mib_at_100pct": rss_at(1.0),
        "rss_mib_at_each_tenth": [rss_at(n / 10) for n in range(1, 11)],
        "rss_mib_after_answer": round(process_rss_mib(ctx.pid), 1),
        "samples": len(samples),
        **usage,
    }


# 5. Many agents -------------------------------------------------------------------------


async def agents_run(
    ctx: Context, attempts: list[str], messages: int, per_message: int, pause: float
) -> dict[str, object]:
    rng = random.Random(7)
    plans = [ctx.source.messages(a, messages * per_message, per_message) for a in attempts]
    channels = [grpc.aio.insecure_channel(ctx.address, options=CHANNEL_OPTIONS) for _ in range(10)]
    for channel in channels:
        await channel.channel_ready()
    calls = [stream_call(channel) for channel in channels]

    async def agent(n: int, plan: list[bytes]) -> tuple[object, float]:
        closed = 0.0
        first_delay = rng.uniform(0, pause)
        pauses = [rng.uniform(0.9 * pause, 1.1 * pause) for _ in plan]

        async def requests():
            nonlocal closed
            await asyncio.sleep(first_delay)
            for k, message in enumerate(plan):
                if k:
                    await asyncio.sleep(pauses[k])
                yield message
            closed = time.perf_counter()

        response = await calls[n % 10](requests(), metadata=ctx.metadata, timeout=CALL_TIMEOUT)
        return response, (time.perf_counter() - closed) * 1000

    threads_before = process_threads(ctx.pid)
    rss_before = process_rss_mib(ctx.pid)
    meter = CpuMeter(ctx.pid)
    with Sampler(lambda: (process_threads(ctx.pid), process_rss_mib(ctx.pid)), 0.2) as sampler:
        meter.start()
        started = time.perf_counter()
        results = await asyncio.gather(*(agent(n, plan) for n, plan in enumerate(plans)))
        wall = time.perf_counter() - started
        usage = meter.stop(len(attempts) * messages * per_message)
    for channel in channels:
        await channel.close()
    responses = [r for r, _ in results]
    check_responses("agents", responses, [messages * per_message] * len(attempts))
    events = len(attempts) * messages * per_message
    threads = [t for t, _ in sampler.samples]  # type: ignore[misc]
    rss = [r for _, r in sampler.samples]  # type: ignore[misc]
    return {
        "streams": len(attempts),
        "connections": 10,
        "messages_per_stream": messages,
        "events_per_message": per_message,
        "events": events,
        "wall_s": round(wall, 2),
        "events_per_s": round(events / wall),
        "ack_ms_after_last_message": percentiles([ms for _, ms in results]),
        "threads_before": threads_before,
        "threads_peak": max(threads),
        "rss_mib_before": round(rss_before, 1),
        "rss_mib_peak": round(max(rss), 1),
        **usage,
    }


# Orchestration --------------------------------------------------------------------------


class Context:
    """What every measurement needs: the database, the account, the server, events."""

    def __init__(self, db: Database, email: str, user_id: str) -> None:
        self.db, self.email, self.user_id = db, email, user_id
        self.source = EventSource(seed=int.from_bytes(os.urandom(4), "big"))
        self.address = ""
        self.pid = 0
        self.metadata: tuple[tuple[str, str]] = (("", ""),)

    @contextmanager
    def server(self, root: Path | None = None, **env: str) -> Iterator[None]:
        with server_process(self.db.url, root=root, **env) as (address, pid):
            self.address, self.pid = address, pid
            self.metadata = asyncio.run(sign_in(address, self.email))
            yield
        self.address, self.pid = "", 0

    def sign_in_again(self) -> None:
        """Access tokens live 15 minutes; long parts sign in before they start."""
        self.metadata = asyncio.run(sign_in(self.address, self.email))


def ratio_rounds(
    ctx: Context,
    attempts: list[str],
    args: argparse.Namespace,
    writers: int,
    baseline: Context | None = None,
):
    """Alternate the COPY ceiling, the server's SQL alone (staged) and the 8 streams x
    500 case (and the baseline server's, when given), --rounds times; the ratio compares
    e2e and ceiling medians."""
    rounds: dict[str, list[dict]] = {"ceiling": [], "staged": [], "e2e": []}
    if baseline:
        rounds["e2e_baseline"] = []
    ctx.db.empty_events()
    for n in range(args.rounds):
        for staged in (False, True):
            rounds["staged" if staged else "ceiling"].append(
                ceiling(
                    ctx,
                    attempts[:8],
                    "monitoring_events",
                    args.ceiling_rows,
                    args.ceiling_batch,
                    writers,
                    staged,
                )
            )
        # The table grows with every cell: the baseline goes first every other round.
        servers = [("e2e", ctx), ("e2e_baseline", baseline)] if baseline else [("e2e", ctx)]
        for variant, server in servers[:: -1 if n % 2 else 1]:
            server.sign_in_again()
            rounds[variant].append(run_cell(server, attempts, 8, 500, args.ratio_events, 1))
    medians = {
        "ceiling_rows_per_s": statistics.median(c["rows_per_s"] for c in rounds["ceiling"]),
        "staged_rows_per_s": statistics.median(c["rows_per_s"] for c in rounds["staged"]),
        "e2e_events_per_s": statistics.median(c["events_per_s"] for c in rounds["e2e"]),
    }
    per_event = cpu_per_event(rounds)
    if baseline:
        medians["e2e_baseline_events_per_s"] = statistics.median(
            c["events_per_s"] for c in rounds["e2e_baseline"]
        )
    return {
        "cpu_us_median": per_event,
        "writers": writers,
        "rounds": rounds,
        "medians": {k: round(v) for k, v in medians.items()},
        "ratio_per_round": [
            round(e["events_per_s"] / c["rows_per_s"], 3)
            for c, e in zip(rounds["ceiling"], rounds["e2e"], strict=True)
        ],
        "ratio_of_medians": round(medians["e2e_events_per_s"] / medians["ceiling_rows_per_s"], 3),
        "staged_over_ceiling": round(
            medians["staged_rows_per_s"] / medians["ceiling_rows_per_s"], 3
        ),
        "target": 0.6,
    }


def cpu_per_event(rounds: dict[str, list[dict]]) -> dict[str, float]:
    """Median CPU µs per event of each e2e variant (server, PostgreSQL) and PostgreSQL's
    per raw COPY row."""
    found = {
        "postgres_per_copy_row": statistics.median(
            c["postgres_cpu_us_per_event"] for c in rounds["ceiling"]
        )
    }
    for variant in ("e2e", "e2e_baseline"):
        for side in ("server", "postgres"):
            if variant in rounds:
                found[f"{variant}_{side}_per_event"] = statistics.median(
                    c[f"{side}_cpu_us_per_event"] for c in rounds[variant]
                )
    return found


# Pinning and profiles ------------------------------------------------------------------

POSTGRES_CPU, OUR_CPU = 0, 1


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def postmaster(db: Database) -> int:
    """The PostgreSQL server's postmaster: the parent of a backend of ours."""
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return _parent(cursor.fetchone()[0])
    finally:
        connection.close()


def postgres_processes(main: int) -> list[int]:
    """The postmaster and every process it runs now."""
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if _parent(int(entry.name)) == main:
                    children.append(int(entry.name))
            except OSError:
                continue
    return [main, *children]


@contextmanager
def pinned(db: Database) -> Iterator[dict[str, object]]:
    """PostgreSQL on POSTGRES_CPU, this process (the client) and the servers it starts
    on OUR_CPU, until the end; then every PostgreSQL process on every CPU again. Only
    the embedded bench server, which this script runs. Enter before any thread
    starts: threads and children inherit the mask."""
    if CORES < 2:
        raise SystemExit("--pin needs two CPUs")
    if os.environ.get("VERITAS_BENCH_DATABASE_URL"):
        raise SystemExit("--pin pins the embedded bench server only, not a configured one")
    every_cpu = os.sched_getaffinity(0)
    main = postmaster(db)
    processes = postgres_processes(main)
    for pid in processes:
        os.sched_setaffinity(pid, {POSTGRES_CPU})
    os.sched_setaffinity(0, {OUR_CPU})
    try:
        yield {
            "postgres_cpu": POSTGRES_CPU,
            "postgres_processes_pinned": len(processes),
            "server_and_client_cpu": OUR_CPU,
        }
    finally:
        for pid in postgres_processes(main):
            with suppress(ProcessLookupError):  # a backend that ended meanwhile
                os.sched_setaffinity(pid, every_cpu)


def profiled_cell(ctx: Context, attempts: list[str], args, out: Path) -> dict[str, object]:
    """One untimed 8 x 500 cell with py-spy sampling the server: where its CPU went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    sampler = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(ctx.pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # py-spy attaches
    ctx.sign_in_again()
    run_cell(ctx, attempts, 8, 500, args.ratio_events, 1)
    sampler.send_signal(signal.SIGINT)
    _, complaint = sampler.communicate(timeout=60)
    if not out.exists():  # e.g. ptrace not allowed (kernel.yama.ptrace_scope)
        return {"error": f"py-spy wrote no profile: {complaint.strip()[-500:]}"}
    return {"collapsed_stacks": str(out), **summarize_profile(out)}


def _frame(sampled: str) -> str:
    """`function (path/file.py:line)` as `function (file.py)`."""
    name, _, where = sampled.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0].rsplit('/', 1)[-1]})"


def summarize_profile(collapsed: Path, top: int = 15) -> dict[str, object]:
    """Share of samples of each function, on top of the stack (self) and anywhere on it
    (inclusive), from py-spy's collapsed stacks ("frame;frame;... count")."""
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            anywhere[frame] = anywhere.get(frame, 0) + n

    def shares(counts: dict[str, int]) -> dict[str, float]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return {frame: round(100 * n / total, 1) for frame, n in ranked}

    return {"samples": total, "self_pct": shares(own), "inclusive_pct": shares(anywhere)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--phases", default="matrix,ratio,gin,memory,agents", help="comma-separated parts")
    add("--streams", default="1,8,64", help="matrix: concurrent streams")
    add("--sizes", default="1,50,500", help="matrix: events per message")
    add("--events", type=int, default=20_000, help="matrix: events per cell (50+ per message)")
    add("--small-events", type=int, default=5_000, help="matrix: events per 1-event cell")
    add("--min-messages", type=int, default=2, help="matrix: messages per stream, at least")
    add("--rounds", type=int, default=5, help="ratio and gin: rounds")
    add(
        "--anomaly-rate",
        type=float,
        default=ANOMALY_RATE,
        help="share of events that are anomalies (each raises an alert)",
    )
    add("--ratio-events", type=int, default=100_000, help="ratio: events of the 8 x 500 case")
    add("--ceiling-rows", type=int, default=300_000, help="rows per COPY ceiling measurement")
    add("--ceiling-batch", type=int, default=1_000, help="rows per COPY transaction")
    add("--writers", type=int, default=2, help="server's event writers = COPY connections")
    add("--writers-variant", type=int, default=0, help="also the ratio with N writers (0: no)")
    add(
        "--processes-variant",
        type=int,
        default=0,
        help="also the ratio with N server processes on one port (0: no)",
    )
    add("--memory-events", type=int, default=1_000_000, help="memory: events in one stream")
    add("--agents", type=int, default=1_000, help="agents: concurrent streams")
    add("--agent-messages", type=int, default=5, help="agents: messages per stream")
    add("--agent-pause", type=float, default=1.0, help="agents: seconds between messages")
    add("--pin", action="store_true", help="PostgreSQL on CPU 0, servers and client on CPU 1")
    add("--baseline-root", type=Path, help="ratio: also a server run from this checkout")
    add("--profile", type=Path, help="ratio: py-spy profiles of each server into this folder")
    add("--quick", action="store_true", help="small sizes for a quick run (under a minute)")
    add("--keep-database", action="store_true", help="do not drop the benchmark database")
    add("--json-out", type=Path, help="also write the JSON summary here")
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(**QUICK)  # sizes given explicitly still win
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    global ANOMALY_RATE
    args = parse_args()
    ANOMALY_RATE = args.anomaly_rate
    phases = set(args.phases.split(","))
    streams_list = [int(s) for s in args.streams.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    neighbours = busy_neighbours()
    db = Database(database_url())
    with ExitStack() as pinning_until_the_end:
        pinning = pinning_until_the_end.enter_context(pinned(db)) if args.pin else None
        run(args, db, pinning, phases, streams_list, sizes, neighbours)


def run(args, db, pinning, phases, streams_list, sizes, neighbours) -> None:
    """Every phase asked for, then the summary (printed, and to --json-out)."""
    email, user_id = db.service_account()
    ctx = Context(db, email, user_id)
    baseline = Context(db, email, user_id) if args.baseline_root else None
    matrix_attempts = db.attempts(max(streams_list + [8]))
    summary: dict[str, object] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": CORES,
        "other_benchmarks_running_at_start": neighbours,
        "settings": {k: str(v) for k, v in vars(args).items() if k != "json_out"},
        "pinning": pinning,
    }
    try:
        if phases & {"matrix", "ratio"}:
            with ExitStack() as servers:
                servers.enter_context(ctx.server(VERITAS_INGEST_WRITERS=str(args.writers)))
                run_cell(ctx, matrix_attempts, 8, 50, 4_000, 1)  # warm-up, not reported
                if baseline and "ratio" in phases:
                    servers.enter_context(
                        baseline.server(
                            args.baseline_root, VERITAS_INGEST_WRITERS=str(args.writers)
                        )
                    )
                    run_cell(baseline, matrix_attempts, 8, 50, 4_000, 1)
                if "matrix" in phases:
                    cells = []
                    for streams in streams_list:
                        for size in sizes:
                            ctx.sign_in_again()
                            events = args.small_events if size == 1 else args.events
                            cells.append(
                                run_cell(
                                    ctx, matrix_attempts, streams, size, events, args.min_messages
                                )
                            )
                            print(json.dumps(cells[-1]), flush=True)
                    summary["matrix"] = cells
                if "ratio" in phases:
                    summary["ratio"] = ratio_rounds(
                        ctx, matrix_attempts, args, args.writers, baseline
                    )
                    print(json.dumps(summary["ratio"]), flush=True)
                if "ratio" in phases and args.profile:
                    summary["profile"] = {
                        name: profiled_cell(server, matrix_attempts, args, args.profile / name)
                        for name, server in (("current.txt", ctx), ("baseline.txt", baseline))
                        if server
                    }
        if "ratio" in phases and args.writers_variant:
            writers = str(args.writers_variant)
            with ctx.server(VERITAS_INGEST_WRITERS=writers):
                run_cell(ctx, matrix_attempts, 8, 50, 4_000, 1)
                variant = ratio_rounds(ctx, matrix_attempts, args, args.writers_variant)
                summary["ratio_writers_variant"] = variant
                print(json.dumps(variant), flush=True)
        if "ratio" in phases and args.processes_variant:
            # Several server processes on one port: Python gets more than one core.
            with ctx.server(
                VERITAS_PROCESSES=str(args.processes_variant),
                VERITAS_LISTEN=f"127.0.0.1:{free_port()}",
            ):
                run_cell(ctx, matrix_attempts, 8, 50, 4_000, 1)
                variant = ratio_rounds(ctx, matrix_attempts, args, args.writers)
                summary["ratio_processes_variant"] = variant
                print(json.dumps(variant), flush=True)
        if "gin" in phases:
            rounds = [gin_round(ctx, matrix_attempts[:8], args) for _ in range(args.rounds)]
            medians = {
                name: round(statistics.median(r[n]["rows_per_s"] for r in rounds))
                for n, name in enumerate(GIN_VARIANTS)
            }
            base = next(iter(medians.values()))
            summary["gin"] = {
                "rounds": rounds,
                "rows_per_s_median": medians,
                "relative_to_json": {k: round(v / base, 3) for k, v in medians.items()},
            }
            print(json.dumps(summary["gin"]["rows_per_s_median"]), flush=True)
        if "memory" in phases:
            (attempt,) = db.attempts(1)
            with ctx.server():
                run_cell(ctx, matrix_attempts, 8, 50, 4_000, 1)
                summary["memory"] = memory_run(ctx, attempt, args.memory_events, 500)
                print(json.dumps(summary["memory"]), flush=True)
            summary["memory"]["database"] = db.stored([attempt])  # type: ignore[index]
        if "agents" in phases:
            agent_attempts = db.attempts(args.agents)
            with ctx.server():
                summary["agents"] = asyncio.run(
                    agents_run(ctx, agent_attempts, args.agent_messages, 2, args.agent_pause)
                )
            stored = db.stored(agent_attempts)
            expected = args.agents * args.agent_messages * 2
            if stored["rows"] != expected or stored["event_count"] != expected:
                raise SystemExit(f"agents: stored {stored}, expected {expected} rows")
            summary["agents"]["database"] = stored  # type: ignore[index]
        summary["other_benchmarks_running_at_end"] = busy_neighbours()
        summary["checkpoint_before_each_timed_part"] = db.can_checkpoint
    finally:
        if not args.keep_database:
            db.drop()
    output = json.dumps(summary, indent=2)
    print(output)
    if args.json_out:
        args.json_out.write_text(output + "\n")


if __name__ == "__main__":
    main()
