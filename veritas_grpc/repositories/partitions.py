"""Daily partitions of monitoring_events: created ahead, dropped after retention."""

from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from veritas_grpc.db.models import PARTITION_PREFIX

_NAME = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})$")
# Serialises partition changes across server processes.
_LOCK_KEY = 7254002


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


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
        days = []
        for (name,) in rows:
            match = _NAME.match(name)
            if match:
                stamp = match.group(1)
                days.append(date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:])))
        return sorted(days)

    def lock(self) -> None:
        self._session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})

    def create(self, day: date) -> None:
        following = day + timedelta(days=1)
        self._session.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF monitoring_events "
                f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') "
                f"TO ('{following.isoformat()} 00:00:00+00')"
            )
        )

    def drop(self, day: date) -> None:
        self._session.execute(text(f"DROP TABLE IF EXISTS {partition_name(day)}"))
