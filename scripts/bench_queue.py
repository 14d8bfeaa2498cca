"""Analysis-queue throughput: jobs claimed and completed per second by 1 and by 4
reference scorers (`veritas scorer` processes, the built-in rules) against one server
process (`veritas serve`). Each run pre-makes its ended attempts with their PENDING
jobs in bulk through the migrations' schema (tests/e2e/scorer_world.py), starts the
scorers, and watches analysis_jobs: claimed/s over the span from the first lease to
the last, completed/s from the first DONE to the last.

    .venv/bin/python scripts/bench_queue.py [--jobs 2000] [--events 5] [--runs 1]
        [--scorers 1 4] [--concurrency 4]

Figures: docs/BENCH_QUEUE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import time

from benchlib import database_url, server_process
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.e2e.scorer_world import ScorerProcess, ended_attempts
from tests.support import PASSWORD, TEST_SECRET, make_settings
from veritas_grpc import bootstrap
from veritas_grpc.domain.identity import Role

POLL_SECONDS = 0.05
SCORER_EMAIL = "bench-scorer@example.edu"


def _counts(engine: Engine, attempts: list[str]) -> tuple[int, int]:
    """(jobs ever leased, jobs DONE) among the run's attempts."""
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE state IN ('LEASED', 'DONE') OR failed_tries > 0),"
                " count(*) FILTER (WHERE state = 'DONE')"
                " FROM analysis_jobs WHERE attempt_id = ANY(CAST(:a AS uuid[]))"
            ),
            {"a": attempts},
        ).one()


def one_run(engine: Engine, address: str, args: argparse.Namespace, scorers: int) -> dict:
    attempts = ended_attempts(engine, args.jobs, events_per_attempt=args.events)
    started = [
        ScorerProcess(
            address,
            SCORER_EMAIL,
            "--concurrency",
            str(args.concurrency),
            "--wait-seconds",
            "5",
            "--log-level",
            "WARNING",
        )
        for _ in range(scorers)
    ]
    first_claim = first_done = all_claimed = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        claimed, done = _counts(engine, attempts)
        now = time.monotonic()
        first_claim = first_claim or (now if claimed else None)
        first_done = first_done or (now if done else None)
        all_claimed = all_claimed or (now if claimed == args.jobs else None)
        if done == args.jobs:
            break
        time.sleep(POLL_SECONDS)
    else:
        raise RuntimeError("the jobs were not done in 15 minutes")
    for scorer in started:
        scorer.signal(signal.SIGTERM)
    for scorer in started:
        scorer.wait()
    assert first_claim and first_done and all_claimed
    return {
        "scorers": scorers,
        "jobs": args.jobs,
        "claimed_per_second": round(args.jobs / max(all_claimed - first_claim, 1e-3), 1),
        "completed_per_second": round(args.jobs / max(now - first_done, 1e-3), 1),
        "seconds": round(now - first_claim, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5, help="events per attempt")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--scorers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--concurrency", type=int, default=4, help="jobs in flight per scorer")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

    url = database_url()
    bootstrap.configure_audit_chain(make_settings())
    services = bootstrap.build_services(make_settings(), url)
    services.accounts.create_account(Role.SERVICE, SCORER_EMAIL, PASSWORD, "Bench scorer", None)
    services.close()
    engine = create_engine(url)
    print(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count()}), flush=True)
    results: dict[int, list[dict]] = {n: [] for n in args.scorers}
    with server_process(url, VERITAS_JWT_SECRET=TEST_SECRET, VERITAS_BCRYPT_ROUNDS="4") as (
        address,
        _,
    ):
        for _ in range(args.runs):
            for scorers in args.scorers:
                result = one_run(engine, address, args, scorers)
                results[scorers].append(result)
                print(json.dumps(result), flush=True)
    base = statistics.median(r["completed_per_second"] for r in results[args.scorers[0]])
    for scorers, runs in results.items():
        completed = statistics.median(r["completed_per_second"] for r in runs)
        claimed = statistics.median(r["claimed_per_second"] for r in runs)
        print(
            f"{scorers} scorer(s) x {args.concurrency} in flight: claimed {claimed}/s, "
            f"completed {completed}/s (x{completed / base:.2f})",
            flush=True,
        )
    print(json.dumps({"load_average": os.getloadavg()}), flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()
