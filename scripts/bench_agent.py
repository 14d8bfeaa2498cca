"""The agent library's costs: record() overhead, and 1,000 library agents on one server.

1. record: the time of one Agent.record() call (median and p99 of --record-calls timed
   calls, ns), against building and serializing the same MonitoringEvent alone (what the
   spool adds), with the spool's synchronous=NORMAL (default) and FULL (durable=True).
   The agent's target has no server, so no sender competes for the GIL: the caller's
   cost alone.
2. agents: --agents library agents (a SERVICE account, an attempt each, each signing
   in itself) spread over --processes processes, all on one shared sender loop per
   process, record --rate events/s each for --seconds against one `veritas serve`
   (default settings), then close. Stored events/s (rows in the database over the
   recording time), record-to-answer and stream latencies (median / p99 over every
   agent's samples), threads of an agent process and of the server, CPU.

Usage (from scripts/, with the project's venv):
    python bench_agent.py                 # ~1.5 minutes on 2 cores
    python bench_agent.py --agents 200 --seconds 10
Prints a JSON summary. Figures and their reading: docs/BENCH_AGENT.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
from bench_ingest import CORES, PASSWORD, CpuMeter, Database, busy_neighbours
from benchlib import database_url, percentiles, process_threads, server_process
from veritas.v1 import auth_pb2, auth_pb2_grpc

from veritas_grpc.agent import Agent, PasswordCredentials, TokenCredentials
from veritas_grpc.agent.events import build_event


def _timed(call, calls: int) -> dict[str, float]:
    samples = []
    for n in range(calls):
        started = time.perf_counter_ns()
        call(n)
        samples.append(time.perf_counter_ns() - started)
    ordered = sorted(samples)
    return {"median_ns": statistics.median(ordered), "p99_ns": ordered[int(len(ordered) * 0.99)]}


def record_overhead(calls: int) -> dict[str, object]:
    attempt = str(uuid.uuid4())
    nowhere = "127.0.0.1:9"  # discard port: nothing listens, the sender only backs off
    fields = {"is_anomaly": True, "data": {"gaze_x": 0.31, "duration_ms": 1200}}

    def encode(n: int) -> None:
        build_event(
            attempt,
            str(uuid.uuid4()),
            time.time_ns(),
            "gaze_away",
            severity="WARNING",
            category=0,
            data_json=None,
            description="",
            detector=None,
            **fields,
        ).SerializeToString()

    results: dict[str, object] = {"encode_only": _timed(encode, calls)}
    for name, durable in (("record_normal", False), ("record_durable", True)):
        folder = Path(tempfile.mkdtemp(prefix="bench-agent-record-"))
        agent = Agent(
            nowhere,
            PasswordCredentials("bench@example.edu", PASSWORD),
            attempt,
            spool_path=folder / "spool",
            max_spool_events=calls + 1,
            durable=durable,
            backoff_base=5.0,
            backoff_cap=60.0,
        )
        for _ in range(200):  # warm-up
            agent.record("gaze_away", "WARNING", **fields)
        results[name] = _timed(
            lambda n, agent=agent: agent.record("gaze_away", "WARNING", **fields), calls
        )
        agent.close(timeout=0)
        shutil.rmtree(folder)
    base = results["encode_only"]["median_ns"]  # type: ignore[index]
    results["ratio_record_to_encode"] = {
        k: round(results[k]["median_ns"] / base, 1)  # type: ignore[index]
        for k in ("record_normal", "record_durable")
    }
    return results


def _sign_in(target: str, email: str) -> TokenCredentials:
    with grpc.insecure_channel(target) as channel:
        answer = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(email=email, password=PASSWORD), timeout=60
        )
    return TokenCredentials.from_pair(answer.tokens)


def _agent_process(target, email, attempts, rate, seconds, barrier, folder, out) -> None:
    # A session per agent (refresh tokens rotate: agents must not share one), signed in
    # one after another before the clock starts: the figures are the steady state, not
    # 1,000 first sign-ins at once (docs/BENCH_AGENT.md: that herd meets the password
    # queue limit).
    agents = [
        Agent(
            target,
            _sign_in(target, email),
            attempt,
            spool_path=Path(folder) / f"{attempt}.spool",
            flush_interval=2.0,
        )
        for attempt in attempts
    ]
    barrier.wait(timeout=600)
    started = time.monotonic()
    recorded = 0
    step = 1.0 / (rate * len(agents))  # one record() every step seconds, round robin
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed / step) + 1
        while recorded < due:
            agents[recorded % len(agents)].record("gaze_away", data={"n": recorded})
            recorded += 1
        time.sleep(step)
    threads = process_threads(os.getpid())
    record_end = time.time()
    deadline = time.monotonic() + 60
    closers = [
        threading.Thread(target=a.close, args=(max(1.0, deadline - time.monotonic()),))
        for a in agents
    ]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join()
    delivery, streams = [], []
    for agent in agents:
        d, s = agent.latency_samples()
        delivery += d
        streams += s
    stats = [agent.stats() for agent in agents]
    out.put(
        {
            "recorded": recorded,
            "threads_while_recording": threads,
            "record_end": record_end,
            "left": sum(s.pending for s in stats),
            "stream_failures": sum(s.stream_failures for s in stats),
            "logins": sum(s.logins for s in stats),
            "delivery": delivery,
            "streams": streams,
        }
    )


def many_agents(args: argparse.Namespace) -> dict[str, object]:
    db = Database(database_url())
    email, _ = db.service_account()
    attempts = db.attempts(args.agents)
    folder = tempfile.mkdtemp(prefix="bench-agent-spools-")
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    try:
        with server_process(db.url) as (address, pid):
            server_threads_before = process_threads(pid)
            barrier = context.Barrier(args.processes + 1)  # every agent built first
            share = [attempts[n :: args.processes] for n in range(args.processes)]
            workers = [
                context.Process(
                    target=_agent_process,
                    args=(address, email, part, args.rate, args.seconds, barrier, folder, out),
                )
                for part in share
            ]
            for worker in workers:
                worker.start()
            barrier.wait(timeout=600)
            meter = CpuMeter(pid)
            meter.start()
            time.sleep(args.seconds / 2)
            server_threads = process_threads(pid)
            results = [out.get(timeout=args.seconds + 300) for _ in workers]
            usage = meter.stop(sum(r["recorded"] for r in results))
            for worker in workers:
                worker.join(timeout=30)
        stored = db.stored(attempts)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        db.drop()
    recorded = sum(r["recorded"] for r in results)
    delivery = [s * 1000 for r in results for s in r["delivery"]]
    streams = [s * 1000 for r in results for s in r["streams"]]
    return {
        "agents": args.agents,
        "processes": args.processes,
        "rate_per_agent": args.rate,
        "seconds": args.seconds,
        "recorded": recorded,
        "stored_rows": stored["rows"],
        "event_count": stored["event_count"],
        "left_in_spools": sum(r["left"] for r in results),
        "stored_events_per_s": round(stored["rows"] / args.seconds),
        "offered_events_per_s": round(args.agents * args.rate),
        "record_to_answer_ms": percentiles(delivery),
        "stream_ms": percentiles(streams),
        "stream_failures": sum(r["stream_failures"] for r in results),
        "logins": sum(r["logins"] for r in results),
        "threads_per_agent_process": [r["threads_while_recording"] for r in results],
        "server_threads_before": server_threads_before,
        "server_threads_during": server_threads,
        **usage,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", default="record,agents")
    parser.add_argument("--record-calls", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    summary: dict[str, object] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": CORES,
        "load_average_at_start": os.getloadavg(),
        "other_benchmarks_running_at_start": busy_neighbours(),
        "settings": vars(args),
    }
    if "record" in args.phases:
        summary["record"] = record_overhead(args.record_calls)
        print(json.dumps(summary["record"]), file=sys.stderr, flush=True)
    if "agents" in args.phases:
        summary["agents"] = many_agents(args)
    summary["load_average_at_end"] = os.getloadavg()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
