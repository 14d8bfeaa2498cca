"""The system-wide figures GetSystemStats serves: a snapshot refreshed on a schedule,
and the per-day event counts of days no event can arrive in any more (migration 0011)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Date, DateTime, SmallInteger
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from veritas_grpc.db.base import Base


class SystemStatsSnapshot(Base):
    """One row: the figures as last computed, and when."""

    __tablename__ = "system_stats_snapshots"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)


class EventDayCount(Base):
    """Events that occurred on one UTC day, as counted at counted_at."""

    __tablename__ = "event_day_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    event_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    counted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
