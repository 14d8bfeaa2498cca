"""`veritas agent-simulate`: a monitoring agent made of the agent library, for load
tests and demos. It records `--rate` events per second for the attempt (a mix of the
well-known types, some anomalies) until `--duration` seconds have passed or it is
stopped (SIGTERM, Ctrl-C), then flushes for up to `--close-timeout` seconds and prints
its figures as JSON. Signs in with --email (the password from VERITAS_AGENT_PASSWORD
or standard input) or with VERITAS_AGENT_ACCESS_TOKEN and VERITAS_AGENT_REFRESH_TOKEN.
`--print-ids` prints each event id once record() accepted it (for tests)."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict

from veritas_grpc.agent import Agent, Credentials, PasswordCredentials, TokenCredentials
from veritas_grpc.cli_tls import add_client_tls_arguments, channel_credentials

# (event_type, severity, is_anomaly, weight): mostly ordinary observations.
EVENT_MIX = (
    ("eye_movement", "INFO", False, 40),
    ("heartbeat", "INFO", False, 20),
    ("gaze_away", "WARNING", True, 15),
    ("window_blur", "WARNING", False, 10),
    ("tab_switch", "WARNING", True, 8),
    ("face_not_detected", "WARNING", True, 5),
    ("multiple_faces", "CRITICAL", True, 2),
)


def _credentials(args: argparse.Namespace) -> Credentials:
    if args.email:
        password = os.environ.get("VERITAS_AGENT_PASSWORD") or sys.stdin.readline().rstrip("\n")
        return PasswordCredentials(args.email, password)
    access = os.environ.get("VERITAS_AGENT_ACCESS_TOKEN", "")
    refresh = os.environ.get("VERITAS_AGENT_REFRESH_TOKEN", "")
    if not (access and refresh):
        raise SystemExit(
            "agent-simulate: give --email, or VERITAS_AGENT_ACCESS_TOKEN and "
            "VERITAS_AGENT_REFRESH_TOKEN"
        )
    return TokenCredentials(access, refresh)


def _record_one(agent: Agent, rng: random.Random, n: int) -> str | None:
    """Record one event of the mix; its id when accepted."""
    event_type, severity, anomaly, _ = rng.choices(EVENT_MIX, [k[3] for k in EVENT_MIX])[0]
    return agent.record(
        event_type,
        severity,
        is_anomaly=anomaly,
        data={"n": n, "gaze_x": round(rng.random(), 3)},
        detector={"name": "agent-simulate", "version": "1"},
    )


def cmd_agent_simulate(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    agent = Agent(
        args.target,
        _credentials(args),
        args.attempt,
        spool_path=args.spool or f"veritas-agent-{args.attempt}.spool",
        max_spool_events=args.max_spool_events,
        flush_interval=args.flush_interval,
        batch_events=args.batch_events,
        backoff_cap=args.backoff_cap,
        channel_credentials=channel_credentials(args),
    )
    rng = random.Random()
    started = time.monotonic()
    n = 0
    while args.rate > 0 and not stop.is_set():
        elapsed = time.monotonic() - started
        if args.duration is not None and elapsed >= args.duration:
            break
        due = int(elapsed * args.rate) + 1 - n  # events owed by now: a steady rate
        for _ in range(max(due, 0)):
            event_id = _record_one(agent, rng, n)
            n += 1
            if event_id and args.print_ids:
                print(event_id, flush=True)
        stop.wait(max(0.0, (n / args.rate) - (time.monotonic() - started)))
    left = agent.close(args.close_timeout)
    print(json.dumps({"left_in_spool": left, **asdict(agent.stats())}), file=sys.stderr)
    return 0 if left == 0 else 3


def add_agent_commands(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "agent-simulate", help="a monitoring agent sending events (load and demo tool)"
    )
    simulate.add_argument("--attempt", required=True, help="the attempt id to monitor")
    simulate.add_argument("--rate", type=float, default=5.0, help="events per second (5)")
    simulate.add_argument("--target", default="127.0.0.1:50051", help="host:port of the server")
    simulate.add_argument("--email", help="sign in with this account (password: see above)")
    simulate.add_argument("--spool", help="the spool file (default veritas-agent-ATTEMPT.spool)")
    simulate.add_argument(
        "--duration", type=float, help="seconds to record for (default: until stopped)"
    )
    simulate.add_argument("--max-spool-events", type=int, default=100_000)
    simulate.add_argument("--flush-interval", type=float, default=2.0)
    simulate.add_argument("--batch-events", type=int, default=500)
    simulate.add_argument("--backoff-cap", type=float, default=30.0)
    simulate.add_argument("--close-timeout", type=float, default=10.0)
    simulate.add_argument("--print-ids", action="store_true", help="print each accepted event id")
    add_client_tls_arguments(simulate)
    simulate.set_defaults(handler=cmd_agent_simulate)
