"""Helpers for the agent library's e2e tests: what the server stored, waiting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from sqlalchemy import text

from veritas_grpc.db.engine import make_session_factory


def stored(services, attempt_id: str) -> dict[str, object]:
    """The attempt's stored event ids (with how often each is stored) and counters."""
    with make_session_factory(services.engine)() as session:
        rows = session.execute(
            text(
                "SELECT event_id::text, count(*) FROM monitoring_events"
                " WHERE attempt_id = :a GROUP BY event_id"
            ),
            {"a": attempt_id},
        ).all()
        counters = session.execute(
            text("SELECT event_count, anomaly_count FROM exam_attempts WHERE id = :a"),
            {"a": attempt_id},
        ).one()
    return {
        "ids": {row[0] for row in rows},
        "max_copies": max((row[1] for row in rows), default=0),
        "rows": sum(row[1] for row in rows),
        "event_count": counters[0],
        "anomaly_count": counters[1],
    }


def wait_until(condition: Callable[[], object], timeout: float = 60, every: float = 0.1):
    """Poll until condition() is truthy (returns it) or fail after a generous timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
