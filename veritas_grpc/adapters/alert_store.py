"""Reads of the alert log (db.models.alerts) for watchers that catch up: an exam's last
alert number, and its alerts after a number, with their content from monitoring_events.

Run on the database thread pool. A database that cannot be reached is the domain's
Unavailable, so that a watch waits for it instead of ending."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from veritas_grpc.domain.errors import Unavailable

# An alert as watchers receive it: the NOTIFY payload's keys, plus its "sequence".
Alert = dict[str, Any]

_LAST = text("SELECT last_sequence FROM exam_alert_counters WHERE exam_id = :exam")
# The event's content by its key (its partition found at run time); none when the
# event is gone (its partition dropped by retention).
_PAGE = text(
    """
    SELECT a.sequence, a.attempt_id::text, a.event_id::text, a.occurred_at,
           t.student_id::text, e.event_type, e.severity, e.is_anomaly, e.description
    FROM exam_alerts AS a
    LEFT JOIN monitoring_events AS e
        ON e.attempt_id = a.attempt_id AND e.occurred_at = a.occurred_at
        AND e.event_id = a.event_id
    LEFT JOIN exam_attempts AS t ON t.id = a.attempt_id
    WHERE a.exam_id = :exam AND a.sequence > :after
    ORDER BY a.sequence
    LIMIT :limit
    """
)


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def last_sequence(self, exam_id: uuid.UUID) -> int:
        """The number of the exam's last committed alert (0: none yet)."""
        with self._connect() as connection:
            return int(connection.scalar(_LAST, {"exam": exam_id}) or 0)

    def page(self, exam_id: uuid.UUID, after: int, limit: int) -> list[tuple[int, Alert | None]]:
        """The exam's stored alerts numbered after `after`, in order, at most `limit`:
        (number, alert), the alert None when its event is no longer stored. Numbers
        missing between them were removed by retention."""
        with self._connect() as connection:
            rows = connection.execute(_PAGE, {"exam": exam_id, "after": after, "limit": limit})
            return [(row[0], _alert(row)) for row in rows]

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as connection:
                yield connection
        except (OperationalError, PoolTimeoutError) as error:
            raise Unavailable("the database is unavailable; retry later") from error
        except DBAPIError as error:
            if error.connection_invalidated:
                raise Unavailable("the database is unavailable; retry later") from error
            raise


def _alert(row: Any) -> Alert | None:
    sequence, attempt_id, event_id, occurred_at, student_id, event_type = row[:6]
    if event_type is None or student_id is None:
        return None
    severity, is_anomaly, description = row[6:]
    return {
        "attempt_id": attempt_id,
        "student_id": student_id,
        "event_id": event_id,
        "event_type": event_type,
        "severity": severity,
        "is_anomaly": is_anomaly,
        "occurred_at": occurred_at.isoformat(),
        "description": description[:200],
        "sequence": sequence,
    }
