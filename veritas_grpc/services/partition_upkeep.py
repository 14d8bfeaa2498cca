"""Creating and dropping the daily partitions of monitoring_events, without stalling
ingestion.

CREATE TABLE ... PARTITION OF and DROP TABLE of a partition take an ACCESS EXCLUSIVE
lock on monitoring_events itself; while such a lock waits (behind a long reader), every
insert queues behind it. So each change waits for its locks only briefly (the
repository sets a lock timeout), runs in a transaction of its own (the lock is held for
that one change), and a partition that stays busy is reported and left for a later run
while the others go ahead.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from veritas_grpc.db.models import PARTITION_PREFIX
from veritas_grpc.domain.errors import InvalidArgument
from veritas_grpc.domain.partitions import PartitionBusy, PartitionUpkeep
from veritas_grpc.services.unit_of_work import PartitionRepository, UnitOfWorkFactory

Change = Callable[[PartitionRepository, date], None]
# Alert log rows deleted per transaction at retention.
ALERT_BATCH = 1000
ARCHIVE_SUFFIX = ".csv.gz"
DEFAULT_HOLD_DAYS = 30

# Where retention writes each partition before dropping it (None: it just drops). Set
# once at start-up by the composition root (use_archive_dir), or by the CLI's option.
_archive_dir: Path | None = None


def use_archive_dir(directory: Path | None) -> None:
    global _archive_dir
    _archive_dir = directory


def archive_path(directory: Path, day: date) -> Path:
    return directory / f"{PARTITION_PREFIX}{day:%Y%m%d}{ARCHIVE_SUFFIX}"


def day_of_archive(path: Path) -> date | None:
    name = path.name
    if not name.startswith(PARTITION_PREFIX) or not name.endswith(ARCHIVE_SUFFIX):
        return None
    stamp = name[len(PARTITION_PREFIX) : -len(ARCHIVE_SUFFIX)]
    try:
        return datetime.strptime(stamp, "%Y%m%d").date() if len(stamp) == 8 else None
    except ValueError:
        return None


def create_missing(uow_factory: UnitOfWorkFactory, wanted: list[date]) -> PartitionUpkeep:
    existing = set(_existing_days(uow_factory))
    missing = [day for day in wanted if day not in existing]
    return _one_by_one(uow_factory, missing, lambda partitions, day: partitions.create(day))


def drop_older(uow_factory: UnitOfWorkFactory, cutoff: date) -> PartitionUpkeep:
    """Drop the partitions before the cutoff (archived first when an archive folder is
    set), except days restored for an appeal and still held."""
    with uow_factory() as uow:
        held = uow.partitions.held_days(datetime.now(UTC))
    doomed = [day for day in _existing_days(uow_factory) if day < cutoff and day not in held]
    directory = _archive_dir
    change: Change = (
        (lambda partitions, day: _archive_and_drop(partitions, day, directory))
        if directory is not None
        else (lambda partitions, day: partitions.drop(day))
    )
    done = _one_by_one(uow_factory, doomed, change)
    delete_alerts_before(uow_factory, cutoff)
    return done


def _archive_and_drop(partitions: PartitionRepository, day: date, directory: Path) -> None:
    """The file complete and on disk (written aside, synced, renamed) before the DROP;
    both in the partition's transaction, which holds it against writes meanwhile. If the
    drop then fails the file stays, and the next run writes it again."""
    directory.mkdir(parents=True, exist_ok=True)
    final = archive_path(directory, day)
    partial = final.with_name(final.name + ".partial")
    try:
        with open(partial, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as sink:
                rows = partitions.archive(day, sink)
            raw.flush()
            os.fsync(raw.fileno())
        if rows is None:
            return
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    partitions.drop(day)


@dataclass(frozen=True)
class RestoredDay:
    day: date
    read_count: int  # rows in the file
    added_count: int  # rows not stored already (0 on a second restore)
    held_until: datetime


class EventArchive:
    """Bringing an archived day of events back, for an appeal."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Callable[[], datetime]) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def restore(self, path: Path, hold_days: int = DEFAULT_HOLD_DAYS) -> RestoredDay:
        day = day_of_archive(path)
        if day is None:
            raise InvalidArgument.of(
                "file", f"must be named {PARTITION_PREFIX}YYYYMMDD{ARCHIVE_SUFFIX}"
            )
        if hold_days < 1:
            raise InvalidArgument.of("hold_days", "must be at least 1")
        held_until = self._clock() + timedelta(days=hold_days)
        with gzip.open(path, "rb") as source, self._uow_factory() as uow:
            uow.partitions.lock()
            read, added = uow.partitions.restore(day, source)
            uow.partitions.hold(day, held_until)
            uow.commit()
        return RestoredDay(day, read, added, held_until)


def delete_alerts_before(
    uow_factory: UnitOfWorkFactory, cutoff: date, batch: int = ALERT_BATCH
) -> int:
    """The alert log's rows of events before the cutoff go too, a small batch per
    transaction; a batch that meets a busy lock leaves the rest for the next run. How
    many were deleted. (A watcher that had not read them yet counts them as dropped.)"""
    deleted = 0
    while True:
        try:
            with uow_factory() as uow:
                count = uow.partitions.delete_alerts_before(cutoff, batch)
                uow.commit()
        except PartitionBusy:
            return deleted
        deleted += count
        if count < batch:
            return deleted


def _existing_days(uow_factory: UnitOfWorkFactory) -> list[date]:
    with uow_factory() as uow:
        return uow.partitions.existing_days()


def _one_by_one(
    uow_factory: UnitOfWorkFactory, days: list[date], change: Change
) -> PartitionUpkeep:
    changed, busy = [], []
    for day in days:
        try:
            with uow_factory() as uow:
                uow.partitions.lock()
                change(uow.partitions, day)
                uow.commit()
            changed.append(day)
        except PartitionBusy:
            busy.append(day)
    return PartitionUpkeep(changed, busy)
