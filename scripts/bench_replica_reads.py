"""Dashboards read from a streaming replica against the same reads on the primary, while
agents stream events in at --rate events/s (docs/BENCH_SCALE.md, "Reads under ingest").

A primary and an asynchronous streaming standby from the embedded binaries (the drills'
tests/drills/replication.py, as docs/OPERATIONS.md sets them up), bench_dashboards' data
(--students x 10 finished attempts, migrated and VACUUM ANALYZEd on the primary, replayed
on the standby), and three `veritas serve` processes: one taking the agents' streams, one
reading everything from the primary, one with VERITAS_DATABASE_READ_URL on the standby.
A second process (the agents) streams --streams x 500-event messages paced to --rate,
built before the clock starts. Meanwhile this process calls, one at a time,
TeacherService.GetTeacherDashboard and GetExamAnalytics (a 1,000-student exam, page of
100) as the exam's teacher, in --windows windows of --window-seconds alternating between
the two reading servers, after 2 windows without ingest. Reports per window the
p50/p99 (ms), the events/s the agents got acknowledged meanwhile, the replica's replay
lag, and the reading servers' veritas_db_reads_total by source (the replica's really
served the replica's reads).

Usage (from scripts/): python bench_replica_reads.py [--rate 50000] [--students 20000]
    [--windows 6] [--window-seconds 10] [--streams 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import socket
import statistics
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import grpc
from bench_dashboards import PASSWORD, load
from bench_ingest import Database, EventSource, sign_in, stream_call
from benchlib import ROOT, percentiles, server_process
from sqlalchemy.engine import make_url
from veritas.v1 import auth_pb2, auth_pb2_grpc, teacher_pb2, teacher_pb2_grpc

TEACHER = "teacher000000@bench.example.edu"
EVENTS_PER_MESSAGE = 500
REPLAY_LAG = "SELECT COALESCE(EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000, help="events/s asked of agents")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--students", type=int, default=20_000)
    parser.add_argument("--windows", type=int, default=6, help="under ingest, alternating")
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--base-port", type=int, default=47000)
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The agents: a process of their own, so that building and sending does not share this
# process's event loop with the timed reads. --------------------------------------------


def agents(address, metadata, attempts, rate, seconds, ready, go, results) -> None:
    """Stream events paced to `rate` for `seconds`: each attempt's stream sends a
    500-event message every len(attempts) * 500 / rate seconds."""
    per_stream = int(rate * seconds / len(attempts)) + EVENTS_PER_MESSAGE
    source = EventSource(seed=7)
    built = [source.messages(a, per_stream, EVENTS_PER_MESSAGE, seconds) for a in attempts]
    ready.set()
    go.wait()
    results.put(asyncio.run(_send(address, metadata, built, rate, seconds)))


async def _send(address, metadata, built, rate, seconds) -> dict[str, float]:
    interval = len(built) * EVENTS_PER_MESSAGE / rate
    started = time.perf_counter()

    async def paced(messages):
        for n, message in enumerate(messages):
            due = started + n * interval
            if due - started >= seconds:
                return
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            yield message

    async with grpc.aio.insecure_channel(address) as channel:
        call = stream_call(channel)
        answers = await asyncio.gather(*(call(paced(m), metadata=metadata) for m in built))
    wall = time.perf_counter() - started
    accepted = sum(answer.accepted_count for answer in answers)
    return {"accepted": accepted, "wall_s": round(wall, 1), "events_per_s": round(accepted / wall)}


# The reads --------------------------------------------------------------------------------


async def read_window(address: str, exam_id: str, seconds: float) -> dict[str, list[float]]:
    """GetTeacherDashboard and GetExamAnalytics in turn, one at a time, for `seconds`."""
    async with grpc.aio.insecure_channel(address) as channel:
        signed = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(email=TEACHER, password=PASSWORD)
        )
        metadata = (("authorization", f"Bearer {signed.tokens.access_token}"),)
        teachers = teacher_pb2_grpc.TeacherServiceStub(channel)
        calls = {
            "GetTeacherDashboard": (
                teachers.GetTeacherDashboard,
                teacher_pb2.GetTeacherDashboardRequest(),
            ),
            "GetExamAnalytics": (
                teachers.GetExamAnalytics,
                teacher_pb2.GetExamAnalyticsRequest(exam_id=exam_id, page_size=100),
            ),
        }
        for call, request in calls.values():  # warm this channel and the server's caches
            await call(request, metadata=metadata)
        samples: dict[str, list[float]] = {name: [] for name in calls}
        ends = time.perf_counter() + seconds
        while time.perf_counter() < ends:
            for name, (call, request) in calls.items():
                t0 = time.perf_counter()
                await call(request, metadata=metadata)
                samples[name].append((time.perf_counter() - t0) * 1000)
    return samples


def reads_by_source(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
        found = re.findall(
            r'veritas_db_reads_total\{source="(\w+)"\} ([0-9.e+]+)', answer.read().decode()
        )
    return {source: float(value) for source, value in found}


def windows(servers, exam_id, count, seconds, standby) -> list[dict[str, object]]:
    """`count` windows alternating between the reading servers (primary first)."""
    done = []
    for n in range(count):
        name, address, metrics_port = servers[n % len(servers)]
        before = reads_by_source(metrics_port)
        t0 = time.perf_counter()
        samples = asyncio.run(read_window(address, exam_id, seconds))
        lag = float(standby.sql(REPLAY_LAG, "veritas"))
        after = reads_by_source(metrics_port)
        done.append(
            {
                "reads_from": name,
                "wall_s": round(time.perf_counter() - t0, 1),
                **{rpc: percentiles(ms) for rpc, ms in samples.items()},
                "replica_replay_lag_s_at_end": round(lag, 3),
                "db_reads_by_source": {k: after[k] - before.get(k, 0) for k in after},
            }
        )
        print(json.dumps(done[-1]), file=sys.stderr, flush=True)
    return done


def summary(done: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """Median over the windows of each way of each RPC's p50 and p99."""
    out: dict[str, dict[str, float]] = {}
    for way in ("primary", "replica"):
        mine = [w for w in done if w["reads_from"] == way]
        for rpc in ("GetTeacherDashboard", "GetExamAnalytics"):
            out[f"{rpc} on the {way}"] = {
                q: statistics.median(w[rpc][q] for w in mine) for q in ("p50", "p99")
            }
    return out


def main() -> None:
    args = parse()
    from tests.drills import replication

    results: dict[str, object] = {"settings": vars(args)}
    with replication.migrated_pair("veritas-replica-bench-", args.base_port, False) as pair:
        primary, standby = pair
        url = replication.database_url([primary], "veritas")
        read_url = replication.database_url([standby], "veritas").replace(
            "&target_session_attrs=read-write", ""
        )
        sizes = SimpleNamespace(
            students=args.students,
            attempts_per_student=10,
            exams=200,
            teachers=10,
            target_attempts=1000,
            seed=2026,
        )
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        loaded = load(dsn, sizes)
        primary.sql("CHECKPOINT")
        results["load_s"] = loaded["load_s"]
        db = Database(url)
        email, _ = db.service_account()
        attempts = db.attempts(args.streams)
        primary.wait_for(
            "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn = pg_current_wal_lsn()",
            "1",
            timeout=300,
        )
        with ExitStack() as stack:
            ingest, _ = stack.enter_context(server_process(url))
            readers = []
            for name, extra in (
                ("primary", {}),
                ("replica", {"VERITAS_DATABASE_READ_URL": read_url}),
            ):
                metrics_port = free_port()
                address, _ = stack.enter_context(
                    server_process(url, VERITAS_METRICS_LISTEN=f"127.0.0.1:{metrics_port}", **extra)
                )
                readers.append((name, address, metrics_port))
            idle = windows(readers, loaded["exam"], 2, args.window_seconds, standby)
            results["idle"] = {"windows": idle, "median": summary(idle)}
            seconds = args.windows * (args.window_seconds + 1.5) + 5
            spawn = multiprocessing.get_context("spawn")
            ready, go, answers = spawn.Event(), spawn.Event(), spawn.Queue()
            metadata = asyncio.run(sign_in(ingest, email))
            worker = spawn.Process(
                target=agents,
                args=(ingest, metadata, attempts, args.rate, seconds, ready, go, answers),
            )
            worker.start()
            ready.wait(timeout=600)
            go.set()
            time.sleep(3)  # the streams reach their pace
            loaded_windows = windows(
                readers, loaded["exam"], args.windows, args.window_seconds, standby
            )
            results["ingest"] = answers.get(timeout=seconds + 120)
            worker.join()
            results["under_ingest"] = {
                "windows": loaded_windows,
                "median": summary(loaded_windows),
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
