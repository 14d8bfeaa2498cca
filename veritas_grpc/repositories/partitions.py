"""Daily partitions of monitoring_events: created ahead, dropped after retention (and
the alert log's rows of the same days with them).

Every lock these changes take is waited for at most LOCK_TIMEOUT: creating or dropping
a partition locks monitoring_events ACCESS EXCLUSIVE, and while that lock request waits
(behind a long reader), every insert waits behind it. A change that times out raises
PartitionBusy, with nothing changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from veritas_grpc.db.models import PARTITION_PREFIX, monitoring_events
from veritas_grpc.db.storage import EVENT_PARTITION_STORAGE, storage_clause
from veritas_grpc.domain.partitions import PartitionBusy

_NAME = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})\Z")
# Serialises partition changes across server processes.
_LOCK_KEY = 7254002
# How long ingestion may wait behind a partition change, at most, per lock it takes.
LOCK_TIMEOUT = "500ms"
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout


# The columns of an archive file, in this order (its CSV header says so too).
ARCHIVE_COLUMNS = tuple(column.name for column in monitoring_events.columns)


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def day_of_partition(name: str) -> date | None:
    """The day a partition (or an archive file named after one) holds; None if the name
    is not one."""
    match = _NAME.match(name)
    if not match:
        return None
    stamp = match.group(1)
    return date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))


class PartitionRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def existing_days(self) -> list[date]:
        rows = self._session.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'monitoring_events'::regclass"
            )
        )
        days = [day for (name,) in rows if (day := day_of_partition(name)) is not None]
        return sorted(days)

    def lock(self) -> None:
        """Start a partition change: short lock waits from here to the end of the
        transaction, and no other process changing partitions meanwhile."""
        self._session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        with _busy_on_lock_timeout():
            self._session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})

    def create(self, day: date) -> None:
        following = day + timedelta(days=1)
        with _busy_on_lock_timeout():
            self._session.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} "
                    f"PARTITION OF monitoring_events "
                    f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') "
                    f"TO ('{following.isoformat()} 00:00:00+00') "
                    # Partitions inherit no storage parameters from monitoring_events.
                    f"WITH ({storage_clause(EVENT_PARTITION_STORAGE)})"
                )
            )

    def drop(self, day: date) -> None:
        name = partition_name(day)
        with _busy_on_lock_timeout():
            if self._session.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is None:
                return
            # The old partition first: waiting for its readers holds up only readers of
            # old events. The DROP then locks monitoring_events, the lock inserts queue
            # behind, for as long as the DROP itself.
            self._session.execute(text(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"))
            self._session.execute(text(f"DROP TABLE {name}"))

    def archive(self, day: date, sink: IO[bytes]) -> int | None:
        """Write the day's partition to sink as CSV with a header (COPY ... TO STDOUT),
        after locking it against writes (SHARE: readers go on); how many rows, None if
        there is no such partition. Call it in the transaction that then drops it."""
        name = partition_name(day)
        with _busy_on_lock_timeout():
            if self._session.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is None:
                return None
            self._session.execute(text(f"LOCK TABLE {name} IN SHARE MODE"))
        columns = ", ".join(ARCHIVE_COLUMNS)
        cursor = self._cursor()
        cursor.copy_expert(
            f"COPY (SELECT {columns} FROM {name} ORDER BY attempt_id, occurred_at, event_id) "
            "TO STDOUT WITH (FORMAT csv, HEADER true)",
            sink,
        )
        return int(cursor.rowcount)

    def restore(self, day: date, source: IO[bytes]) -> tuple[int, int]:
        """Bring an archived day back: its partition created if missing, then every row
        of the file that is not stored already (a second restore adds nothing), of an
        attempt that still exists and whose student was not erased. (rows in the file,
        rows added)."""
        self.create(day)
        self._session.execute(
            text(
                "CREATE TEMPORARY TABLE restored_events "
                "(LIKE monitoring_events INCLUDING DEFAULTS) ON COMMIT DROP"
            )
        )
        columns = ", ".join(ARCHIVE_COLUMNS)
        cursor = self._cursor()
        cursor.copy_expert(
            f"COPY restored_events ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)", source
        )
        read = int(cursor.rowcount)
        following = day + timedelta(days=1)
        result = self._session.execute(
            text(
                f"INSERT INTO monitoring_events ({columns}) "
                f"SELECT {', '.join('r.' + c for c in ARCHIVE_COLUMNS)} FROM restored_events r "
                "JOIN exam_attempts a ON a.id = r.attempt_id "
                "WHERE r.occurred_at >= :start AND r.occurred_at < :end "
                "AND NOT EXISTS (SELECT 1 FROM erased_subjects s WHERE s.user_id = a.student_id) "
                "ON CONFLICT DO NOTHING"
            ),
            {
                "start": f"{day.isoformat()} 00:00:00+00",
                "end": f"{following.isoformat()} 00:00:00+00",
            },
        )
        return read, int(result.rowcount or 0)  # type: ignore[attr-defined]

    def hold(self, day: date, until: datetime) -> None:
        """Keep the day's partition past retention until then (a restored day)."""
        self._session.execute(
            text(
                "INSERT INTO event_partition_holds (day, hold_until) VALUES (:day, :until) "
                "ON CONFLICT (day) DO UPDATE SET hold_until = excluded.hold_until, "
                "restored_at = now()"
            ),
            {"day": day, "until": until},
        )

    def held_days(self, now: datetime) -> set[date]:
        rows = self._session.execute(
            text("SELECT day FROM event_partition_holds WHERE hold_until > :now"), {"now": now}
        )
        return {row[0] for row in rows}

    def _cursor(self) -> Any:
        return self._session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def delete_alerts_before(self, cutoff: date, limit: int) -> int:
        """Delete up to `limit` rows of the alert log whose events occurred before the
        cutoff (they go with their partitions); how many were deleted. Its locks are
        waited for at most LOCK_TIMEOUT too (PartitionBusy)."""
        self._session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        with _busy_on_lock_timeout():
            result = self._session.execute(
                text(
                    "DELETE FROM exam_alerts WHERE ctid = ANY(ARRAY("
                    "SELECT ctid FROM exam_alerts WHERE occurred_at < :cutoff LIMIT :limit))"
                ),
                {"cutoff": f"{cutoff.isoformat()} 00:00:00+00", "limit": limit},
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


@contextmanager
def _busy_on_lock_timeout() -> Iterator[None]:
    try:
        yield
    except OperationalError as error:
        if getattr(error.orig, "pgcode", None) == LOCK_NOT_AVAILABLE:
            raise PartitionBusy(str(error.orig).strip()) from error
        raise
