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

from collections.abc import Callable
from datetime import date

from veritas_grpc.domain.partitions import PartitionBusy, PartitionUpkeep
from veritas_grpc.services.unit_of_work import PartitionRepository, UnitOfWorkFactory

Change = Callable[[PartitionRepository, date], None]
# Alert log rows deleted per transaction at retention.
ALERT_BATCH = 1000


def create_missing(uow_factory: UnitOfWorkFactory, wanted: list[date]) -> PartitionUpkeep:
    existing = set(_existing_days(uow_factory))
    missing = [day for day in wanted if day not in existing]
    return _one_by_one(uow_factory, missing, lambda partitions, day: partitions.create(day))


def drop_older(uow_factory: UnitOfWorkFactory, cutoff: date) -> PartitionUpkeep:
    doomed = [day for day in _existing_days(uow_factory) if day < cutoff]
    done = _one_by_one(uow_factory, doomed, lambda partitions, day: partitions.drop(day))
    delete_alerts_before(uow_factory, cutoff)
    return done


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
