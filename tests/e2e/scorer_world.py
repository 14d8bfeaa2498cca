"""The reference scorer's e2e world: a server on a database of its own (claims take the
oldest claimable job, so no other test's jobs may be there), `veritas scorer`
subprocesses, and ended attempts made in bulk through the migrations' schema (also
used by scripts/bench_queue.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.support import PASSWORD, ServerThread, make_settings, unique_email, unique_enrollment
from veritas_grpc import bootstrap
from veritas_grpc.db import migrate
from veritas_grpc.domain.identity import Role

POLL_SECONDS = 0.1


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll until `condition` is truthy; never a fixed sleep (the machine may be slow)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(POLL_SECONDS)


class ScorerProcess:
    """`veritas scorer` as a subprocess, its JSON log read as it comes."""

    def __init__(self, target: str, email: str, *options: str, password: str = PASSWORD) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "veritas_grpc.cli", "scorer", "--target", target]
            + ["--email", email, "--log-format", "json", *options],
            env={**os.environ, "VERITAS_SCORER_PASSWORD": password},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.records: list[dict[str, object]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                self.records.append(json.loads(line))
            except ValueError:
                self.records.append({"level": "RAW", "message": line.rstrip("\n")})

    def jobs(self, outcome: str | None = None) -> list[dict[str, object]]:
        """Its one line per job, of one outcome or all."""
        lines = [r for r in list(self.records) if str(r.get("message", "")).startswith("job ")]
        return [r for r in lines if outcome is None or r.get("outcome") == outcome]

    def wait_for_jobs(self, outcome: str, count: int = 1, timeout: float = 30) -> list[dict]:
        return wait_until(  # type: ignore[return-value]
            lambda: len(self.jobs(outcome)) >= count and self.jobs(outcome),
            timeout,
            f"{count} jobs {outcome} by the scorer; its log: {self.records[-5:]}",
        )

    def errors(self) -> list[dict[str, object]]:
        """ERROR lines and anything not JSON (a traceback)."""
        return [r for r in list(self.records) if r.get("level") in ("ERROR", "CRITICAL", "RAW")]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


@dataclass
class ScorerWorld:
    database_url: str
    server: ServerThread
    channel: grpc.Channel
    services: bootstrap.Services
    engine: Engine
    scorers: list[ScorerProcess]

    def account(self, role: Role) -> str:
        """A new account's e-mail (its password is PASSWORD)."""
        email = unique_email(role.value)
        enrollment = unique_enrollment() if role is Role.STUDENT else None
        self.services.accounts.create_account(
            role, email, PASSWORD, f"Test {role.value}", enrollment
        )
        return email

    def scorer(self, *options: str, email: str | None = None) -> ScorerProcess:
        started = ScorerProcess(
            self.server.address,
            email or self.account(Role.SERVICE),
            "--wait-seconds",
            "2",
            *options,
        )
        self.scorers.append(started)
        return started

    def jobs_of(self, attempt_ids: list[str]) -> list[dict[str, object]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, attempt_id, state, failed_tries, last_error, analysis_id"
                    " FROM analysis_jobs WHERE attempt_id = ANY(CAST(:a AS uuid[]))"
                ),
                {"a": attempt_ids},
            )
            return [dict(row._mapping) for row in rows]

    def analyses_per_attempt(self, attempt_ids: list[str]) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT attempt_id, count(*) FROM behavior_analyses"
                    " WHERE attempt_id = ANY(CAST(:a AS uuid[])) GROUP BY attempt_id"
                ),
                {"a": attempt_ids},
            )
            return {str(attempt): count for attempt, count in rows}


def scorer_world(fresh_database, **settings: object) -> Iterator[ScorerWorld]:
    """For a module-scoped fixture: `yield from scorer_world(fresh_database)`."""
    url = fresh_database("scorer")
    migrate.upgrade(url)
    server = ServerThread(make_settings(**settings), url)
    services = bootstrap.build_services(make_settings(), url)
    channel = grpc.insecure_channel(server.address)
    engine = create_engine(url)
    world = ScorerWorld(url, server, channel, services, engine, [])
    try:
        yield world
    finally:
        for scorer in world.scorers:
            scorer.stop()
        channel.close()
        engine.dispose()
        services.close()
        server.stop()


def ended_attempts(engine: Engine, count: int, events_per_attempt: int = 0) -> list[str]:
    """`count` submitted attempts of new students at one exam, each with its PENDING
    ATTEMPT_ENDED job (as SubmitAttempt leaves them) and `events_per_attempt` events
    (every fourth an anomaly), inserted in bulk."""
    tag = re.sub(r"\W", "", unique_email("bulk"))[:24]
    with engine.begin() as connection:
        teacher = connection.execute(
            text(
                "INSERT INTO users (email, password_hash, full_name, role)"
                " VALUES (:e, 'x', 'Bulk Teacher', 'teacher') RETURNING id"
            ),
            {"e": f"{tag}-teacher@example.edu"},
        ).scalar_one()
        exam = connection.execute(
            text(
                "INSERT INTO exams (title, max_score, pass_score, duration_minutes, status,"
                " created_by) VALUES ('Bulk', 10, 5, 120, 'PUBLISHED', :t) RETURNING id"
            ),
            {"t": teacher},
        ).scalar_one()
        connection.execute(text("INSERT INTO exam_stats (exam_id) VALUES (:x)"), {"x": exam})
        attempts = [
            str(a)
            for a in connection.execute(
                text(
                    "WITH students AS ("
                    " INSERT INTO users (email, password_hash, full_name, role)"
                    " SELECT :tag || '-' || n || '@example.edu', 'x', 'S' || n, 'student'"
                    " FROM generate_series(1, :count) AS n RETURNING id)"
                    " INSERT INTO exam_attempts (exam_id, student_id, attempt_number,"
                    " deadline_at, status, started_at, ended_at)"
                    " SELECT :x, id, 1, now() + interval '1 hour', 'SUBMITTED',"
                    " now() - interval '10 minutes', now() FROM students RETURNING id"
                ),
                {"tag": tag, "count": count, "x": exam},
            ).scalars()
        ]
        connection.execute(
            text(
                "INSERT INTO analysis_jobs (attempt_id, reason, state, created_at, available_at)"
                " SELECT a, 'ATTEMPT_ENDED', 'PENDING', now(), now()"
                " FROM unnest(CAST(:a AS uuid[])) AS a"
            ),
            {"a": attempts},
        )
        if events_per_attempt:
            connection.execute(
                text(
                    "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id,"
                    " event_type, category, severity, is_anomaly)"
                    " SELECT a, now() - interval '5 minutes' + n * interval '1 second',"
                    " gen_random_uuid(), 'tab_switch', 'INTEGRITY', 'WARNING', n % 4 = 0"
                    " FROM unnest(CAST(:a AS uuid[])) AS a, generate_series(1, :n) AS n"
                ),
                {"a": attempts, "n": events_per_attempt},
            )
    return attempts
