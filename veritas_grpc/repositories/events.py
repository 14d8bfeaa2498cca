"""Monitoring events: batch writes through COPY, counters, numbered alerts and their
notifications, reads."""

from __future__ import annotations

import functools
import io
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.errors
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.orm import Session

from veritas_grpc.db.models import ALERT_CHANNEL, monitoring_events
from veritas_grpc.domain.event_store import (
    EventsAlreadyStored,
    EventTally,
    StoredEvent,
    ValuesRefused,
)
from veritas_grpc.domain.events import (
    EVENT_COLUMNS,
    SEVERITY_ORDER,
    AlertTarget,
    EventKey,
    EventRow,
)
from veritas_grpc.domain.readiness import (
    MAX_DETECTORS,
    MAX_EVENT_TYPES,
    DetectorReport,
    Readiness,
)
from veritas_grpc.domain.scoring import ScoredEvent
from veritas_grpc.repositories.attempts import practice_attempt_ids
from veritas_grpc.repositories.keysets import past

# NOTIFY payloads must stay under 8,000 bytes.
MAX_NOTIFY_BYTES = 7000
_COLUMNS = ", ".join(EVENT_COLUMNS)
_COPY_INTO_TABLE = f"COPY monitoring_events ({_COLUMNS}) FROM STDIN"
# An attempt's tallies with its event_count, in one statement (one row of NULLs but the
# count when it has none, no row for no such attempt).
_TALLIES = text(
    """
    SELECT t.event_type, t.severity, t.event_count AS count, t.anomaly_count AS anomalies,
        t.first_occurred_at, t.last_occurred_at, a.event_count AS total
    FROM exam_attempts a LEFT JOIN attempt_event_tallies t ON t.attempt_id = a.id
    WHERE a.id = :attempt
    ORDER BY t.event_count DESC, t.event_type, t.severity
    """
)
# The first statement locks the attempts in id order, so that concurrent batches touching
# the same attempts never deadlock; their tallies are then only ever moved under that
# lock (migration 0018).
_MOVE_COUNTERS = text(
    """
    SELECT 1 FROM exam_attempts WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE;
    UPDATE exam_attempts AS a SET event_count = a.event_count + v.n,
        anomaly_count = a.anomaly_count + v.anomalies,
        critical_count = a.critical_count + v.critical
    FROM unnest(CAST(:ids AS uuid[]), CAST(:n AS bigint[]), CAST(:anomalies AS bigint[]),
                CAST(:critical AS bigint[])) AS v(id, n, anomalies, critical)
    WHERE a.id = v.id;
    INSERT INTO attempt_event_tallies AS t (attempt_id, event_type, severity, event_count,
        anomaly_count, first_occurred_at, last_occurred_at)
    SELECT * FROM unnest(CAST(:t_attempts AS uuid[]), CAST(:t_types AS text[]),
        CAST(:t_severities AS text[]), CAST(:t_counts AS bigint[]),
        CAST(:t_anomalies AS bigint[]), CAST(:t_first AS timestamptz[]),
        CAST(:t_last AS timestamptz[]))
    ON CONFLICT (attempt_id, event_type, severity) DO UPDATE SET
        event_count = t.event_count + EXCLUDED.event_count,
        anomaly_count = t.anomaly_count + EXCLUDED.anomaly_count,
        first_occurred_at = LEAST(t.first_occurred_at, EXCLUDED.first_occurred_at),
        last_occurred_at = GREATEST(t.last_occurred_at, EXCLUDED.last_occurred_at)
    """
)
# Payloads are read back as the text the agent sent, never decoded and encoded again.
# Numbers a batch's alerts and NOTIFYs them, in one round trip. The counters' upsert
# takes the exams in id order (the lock order that keeps batches from deadlocking);
# the data-modifying CTEs run once and completely whether or not the query reads them;
# pg_notify is volatile, so it runs after the ORDER BY, in the order of the chunks.
_NUMBER_AND_NOTIFY = text(
    """
    WITH k AS (
        SELECT * FROM unnest(CAST(:exams AS uuid[]), CAST(:counts AS bigint[])) AS k(exam_id, n)
    ), counters AS (
        INSERT INTO exam_alert_counters AS c (exam_id, last_sequence)
        SELECT exam_id, n FROM k ORDER BY exam_id
        ON CONFLICT (exam_id) DO UPDATE SET last_sequence = c.last_sequence + EXCLUDED.last_sequence
        RETURNING c.exam_id, c.last_sequence
    ), base AS (
        SELECT counters.exam_id, counters.last_sequence - k.n AS base
        FROM counters JOIN k USING (exam_id)
    ), numbered AS (
        INSERT INTO exam_alerts (exam_id, sequence, attempt_id, occurred_at, event_id)
        SELECT a.exam_id, base.base + a.ord, a.attempt_id, a.occurred_at, a.event_id
        FROM unnest(
            CAST(:a_exam AS uuid[]), CAST(:a_ord AS bigint[]), CAST(:a_attempt AS uuid[]),
            CAST(:a_occurred AS timestamptz[]), CAST(:a_event AS uuid[])
        ) AS a(exam_id, ord, attempt_id, occurred_at, event_id)
        JOIN base USING (exam_id)
    )
    SELECT pg_notify(:channel, p.head || (base.base + p.first)::text || '}')
    FROM unnest(CAST(:p_exam AS uuid[]), CAST(:p_first AS bigint[]), CAST(:p_head AS text[]))
        WITH ORDINALITY AS p(exam_id, first, head, position)
    JOIN base USING (exam_id)
    ORDER BY p.position
    """
)
_READ_COLUMNS = [
    cast(column, Text).label("data") if column.name == "data" else column
    for column in monitoring_events.c
]


NULL = "\\N"


def _text(value: str | None) -> str:
    """COPY text-format escaping (backslash first). Four replace() calls cost a seventh
    of one str.translate() with a mapping, and this runs four times per event."""
    if value is None:
        return NULL
    if not value:
        return value  # descriptions are mostly empty
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def copy_line(row: EventRow) -> str:
    """One COPY text-format line, the values in EVENT_COLUMNS order (spelled out, not
    looped over: this runs once per event). Ids, type, category and severity are
    validated tokens that need no escaping; free text is escaped."""
    confidence = NULL if row.detector_confidence is None else repr(row.detector_confidence)
    return (
        f"{row.attempt_id}\t{row.occurred_at.isoformat()}\t{row.event_id}\t{row.event_type}\t"
        f"{row.category}\t{row.severity}\t{'t' if row.is_anomaly else 'f'}\t"
        f"{_text(row.description)}\t{_text(row.detector_name)}\t"
        f"{_text(row.detector_version)}\t{confidence}\t{_text(row.data)}\t"
        f"{row.sent_by or NULL}\n"
    )


def copy_text(rows: Iterable[EventRow]) -> str:
    """Rows as the body of a COPY ... FROM STDIN in text format."""
    return "".join(copy_line(row) for row in rows)


def _first_of_each(rows: Sequence[EventRow]) -> dict[EventKey, EventRow]:
    """The rows by key, the first of any repeated event kept."""
    unique: dict[EventKey, EventRow] = {}
    for row in rows:
        unique.setdefault(row.key, row)
    return unique


@dataclass(frozen=True)
class _EventPage:
    """Which filters a page of an attempt's events has: its statement is built once per
    shape, the values bound at each read (docs/BENCH_SCALE.md)."""

    span: bool
    severities: bool
    anomalies_only: bool
    event_types: bool
    start: bool
    end: bool
    after: bool


@functools.cache
def _event_page(shape: _EventPage) -> Select[Any]:
    events = monitoring_events.c
    conditions = [events.attempt_id == bindparam("attempt_id")]
    if shape.span:
        conditions.append(events.occurred_at >= bindparam("span_first"))
        conditions.append(events.occurred_at <= bindparam("span_last"))
    if shape.severities:
        conditions.append(events.severity.in_(bindparam("severities", expanding=True)))
    if shape.anomalies_only:
        conditions.append(events.is_anomaly.is_(True))
    if shape.event_types:
        conditions.append(events.event_type.in_(bindparam("event_types", expanding=True)))
    if shape.start:
        conditions.append(events.occurred_at >= bindparam("start"))
    if shape.end:
        conditions.append(events.occurred_at < bindparam("end"))
    if shape.after:
        position = (events.occurred_at, events.event_id)
        conditions.append(past(position, ("after_occurred_at", "after_event_id")))
    return (
        select(*_READ_COLUMNS)
        .where(and_(*conditions))
        .order_by(events.occurred_at, events.event_id)
        .limit(bindparam("limit"))
    )


class EventRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # Writes ------------------------------------------------------------------------

    def copy_new(self, rows: Sequence[EventRow]) -> list[EventRow]:
        """Store rows believed new with one COPY straight into the table; return them,
        each event once. If any is stored already (a resend), nothing is written and
        EventsAlreadyStored is raised: the transaction must be rolled back, and the
        batch stored with insert_skipping_stored instead."""
        unique = _first_of_each(rows)
        cursor = self._cursor()
        try:
            cursor.copy_expert(_COPY_INTO_TABLE, io.StringIO(copy_text(unique.values())))
        except psycopg2.errors.UniqueViolation as error:
            raise EventsAlreadyStored from error
        except psycopg2.DataError as error:
            raise ValuesRefused from error
        finally:
            cursor.close()
        return list(unique.values())

    def insert_skipping_stored(self, rows: Sequence[EventRow]) -> list[EventRow]:
        """Store the rows not stored yet; return those stored now, each event once: COPY
        into a staging table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING."""
        unique = _first_of_each(rows)
        cursor = self._cursor()
        try:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS event_stage "
                "(LIKE monitoring_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cursor.copy_expert(
                f"COPY event_stage ({_COLUMNS}) FROM STDIN",
                io.StringIO(copy_text(unique.values())),
            )
            cursor.execute(
                f"INSERT INTO monitoring_events ({_COLUMNS}) SELECT {_COLUMNS} FROM event_stage "
                "ON CONFLICT DO NOTHING RETURNING attempt_id::text, occurred_at, event_id::text"
            )
            stored = {(row[0], row[1], row[2]) for row in cursor.fetchall()}
        except psycopg2.DataError as error:
            raise ValuesRefused from error
        finally:
            cursor.close()
        return [row for key, row in unique.items() if key in stored]

    def _cursor(self) -> Any:
        return self._session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def add_to_counters(self, stored: Iterable[EventRow]) -> None:
        """Move each attempt's counters, and its tallies by event type and severity, by
        its newly stored events. Attempts are locked in id order, so concurrent batches
        touching the same attempts never deadlock."""
        tallies: dict[tuple[str, str, str], list[Any]] = {}
        for row in stored:
            key = (row.attempt_id, row.event_type, row.severity)
            tally = tallies.get(key)
            occurred_at = row.occurred_at
            if tally is None:
                tallies[key] = [1, int(row.is_anomaly), occurred_at, occurred_at]
                continue
            tally[0] += 1
            tally[1] += row.is_anomaly
            if occurred_at < tally[2]:
                tally[2] = occurred_at
            elif occurred_at > tally[3]:
                tally[3] = occurred_at
        if not tallies:
            return
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for (attempt_id, _, severity), (n, anomalies, _, _) in tallies.items():
            count = counts[attempt_id]
            count[0] += n
            count[1] += anomalies
            count[2] += n if severity == "CRITICAL" else 0
        ids = sorted(counts)
        keys = sorted(tallies)
        # Three statements, one round trip: under load every round trip also waits for
        # the GIL. (psycopg2 fills in parameters client-side and sends one simple query;
        # a driver with server-side parameters would need three calls.)
        self._session.execute(
            _MOVE_COUNTERS,
            {
                "ids": ids,
                "n": [counts[i][0] for i in ids],
                "anomalies": [counts[i][1] for i in ids],
                "critical": [counts[i][2] for i in ids],
                "t_attempts": [key[0] for key in keys],
                "t_types": [key[1] for key in keys],
                "t_severities": [key[2] for key in keys],
                "t_counts": [tallies[key][0] for key in keys],
                "t_anomalies": [tallies[key][1] for key in keys],
                "t_first": [tallies[key][2] for key in keys],
                "t_last": [tallies[key][3] for key in keys],
            },
        )

    def notify_alerts(self, alerts: Sequence[EventRow], targets: dict[str, AlertTarget]) -> None:
        """Number the batch's alerts and queue their NOTIFYs, in one statement: the last
        of the transaction. Each exam's counter (exam_alert_counters) moves by its
        alerts, the exams locked in id order (concurrent batches never deadlock); the
        lock is held until commit, so per exam the numbers follow commit order without
        gaps. One exam_alerts row per alert keeps its number and its event's key, and
        the NOTIFYs (delivered to every listening server process at commit) carry the
        numbers. The payloads are ASCII (json escapes the rest), so any server encoding
        takes them."""
        by_exam: dict[uuid.UUID, list[EventRow]] = defaultdict(list)
        for row in alerts:
            by_exam[targets[row.attempt_id].exam_id].append(row)
        if not by_exam:
            return
        exams = sorted(by_exam)
        columns: dict[str, list[Any]] = defaultdict(list)
        for exam_id in exams:
            rows = by_exam[exam_id]
            columns["exams"].append(exam_id)
            columns["counts"].append(len(rows))
            for ordinal, row in enumerate(rows, 1):
                columns["a_exam"].append(exam_id)
                columns["a_ord"].append(ordinal)
                columns["a_attempt"].append(row.attempt_id)
                columns["a_occurred"].append(row.occurred_at)
                columns["a_event"].append(row.event_id)
            items = [_alert_json(row, targets[row.attempt_id]) for row in rows]
            for first, head in _chunks(str(exam_id), items):
                columns["p_exam"].append(exam_id)
                columns["p_first"].append(first)
                columns["p_head"].append(head)
        self._session.execute(_NUMBER_AND_NOTIFY, {"channel": ALERT_CHANNEL, **columns})

    # Reads -------------------------------------------------------------------------

    def page(
        self,
        attempt_id: uuid.UUID,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        min_severity: str | None = None,
        anomalies_only: bool = False,
        event_types: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[StoredEvent]:
        params: dict[str, Any] = {"attempt_id": attempt_id, "limit": limit}
        span = self._span(attempt_id)
        if span is not None:
            params |= {"span_first": span[0], "span_last": span[1]}
        if min_severity:
            floor = SEVERITY_ORDER[min_severity]
            params["severities"] = [s for s, rank in SEVERITY_ORDER.items() if rank >= floor]
        if event_types:
            params["event_types"] = list(event_types)
        if start is not None:
            params["start"] = start
        if end is not None:
            params["end"] = end
        if after is not None:
            params |= {"after_occurred_at": after[0], "after_event_id": after[1]}
        shape = _EventPage(
            span is not None,
            bool(min_severity),
            anomalies_only,
            bool(event_types),
            start is not None,
            end is not None,
            after is not None,
        )
        return [
            StoredEvent(**row._mapping) for row in self._session.execute(_event_page(shape), params)
        ]

    def summary(self, attempt_id: uuid.UUID) -> list[EventTally]:
        """The attempt's events by type and severity, most frequent first: its tallies,
        or counted from the events where the tallies do not add up."""
        tallies = self._tallies(attempt_id)
        if tallies is not None:
            return [EventTally(t.event_type, t.severity, t.count, t.anomalies) for t in tallies]
        events = monitoring_events.c
        query = (
            select(
                events.event_type,
                events.severity,
                func.count().label("count"),
                func.count().filter(events.is_anomaly).label("anomaly_count"),
            )
            .where(events.attempt_id == attempt_id)
            .group_by(events.event_type, events.severity)
            .order_by(func.count().desc(), events.event_type, events.severity)
        )
        return [EventTally(*row) for row in self._session.execute(query)]

    def _tallies(self, attempt_id: uuid.UUID) -> list[Row] | None:
        """The attempt's tallies (migration 0018), most frequent first, if there are any
        and they add up to its event_count (moved in the same transactions); None
        otherwise (events written around ingestion, by hand or before 0018's backfill,
        are then counted from the events themselves)."""
        rows = self._session.execute(_TALLIES, {"attempt": attempt_id}).all()
        if not rows or rows[0].count is None or sum(row.count for row in rows) != rows[0].total:
            return None
        return rows

    def _span(self, attempt_id: uuid.UUID) -> tuple[datetime, datetime] | None:
        """The attempt's first and last occur time, which keep a read of its events to
        the partitions that can hold them; None when unknown."""
        tallies = self._tallies(attempt_id)
        if tallies is None:
            return None
        first = min(t.first_occurred_at for t in tallies)
        return first, max(t.last_occurred_at for t in tallies)

    def for_scoring(self, attempt_id: uuid.UUID) -> list[ScoredEvent]:
        """The attempt's events as the scorer reads them (none dismissed yet: reviews
        are the analyses' business)."""
        c = monitoring_events.c
        query = select(
            c.event_id, c.event_type, c.category, c.severity, c.is_anomaly, c.occurred_at
        ).where(c.attempt_id == attempt_id)
        return [ScoredEvent(*row) for row in self._session.execute(query)]

    def readiness(self, attempt_id: uuid.UUID, start: datetime, end: datetime) -> Readiness:
        """The attempt's events whose occur_time is from start to end, by detector."""
        rows = self._session.execute(
            _READINESS, {"attempt": attempt_id, "start": start, "end": end}
        ).all()
        if not rows:
            return Readiness(0, None, None, ())
        return Readiness(
            event_count=int(rows[0].total),
            first_event_time=rows[0].first_of_all,
            last_event_time=rows[0].last_of_all,
            detectors=tuple(
                DetectorReport(r.name, r.version, int(r.n), r.last, tuple(r.types)) for r in rows
            ),
        )

    def critical_since(self, since: datetime) -> int:
        """CRITICAL events since then, less those of practice attempts."""
        c = monitoring_events.c
        conditions = [c.severity == "CRITICAL", c.occurred_at >= since]
        return int(self._session.scalar(select(count_without_practice(conditions, since))) or 0)


def count_without_practice(
    conditions: list[ColumnElement[bool]], since: datetime
) -> ColumnElement[int]:
    """The events meeting the conditions, less those of practice attempts (which count
    in no figure). A subtraction, not a filter: the whole count stays a plain count of
    its partitions, and the practice attempts' events, few, are found through their
    attempts' index; `since` bounds which practice attempts can have such events."""
    c = monitoring_events.c
    every = select(func.count()).where(*conditions).scalar_subquery()
    practice = (
        select(func.count())
        .where(*conditions, c.attempt_id.in_(practice_attempt_ids(since)))
        .scalar_subquery()
    )
    return every - practice


# One pass over the attempt's events (its partitions only): per detector its count, last
# time and first event types, and over all of them the totals, before the limit.
_READINESS = text(
    f"""
    WITH by_detector AS (
        SELECT coalesce(detector_name, '') AS name, coalesce(detector_version, '') AS version,
               count(*) AS n, min(occurred_at) AS first, max(occurred_at) AS last,
               (array_agg(DISTINCT event_type ORDER BY event_type))[1:{MAX_EVENT_TYPES}] AS types
        FROM monitoring_events
        WHERE attempt_id = :attempt AND occurred_at BETWEEN :start AND :end
        GROUP BY 1, 2
    )
    SELECT name, version, n, last, types, sum(n) OVER () AS total,
           min(first) OVER () AS first_of_all, max(last) OVER () AS last_of_all
    FROM by_detector
    ORDER BY n DESC, name, version
    LIMIT {MAX_DETECTORS}
    """
)


def _alert_json(row: EventRow, target: AlertTarget) -> str:
    return json.dumps(
        {
            "attempt_id": row.attempt_id,
            "student_id": str(target.student_id),
            "event_id": row.event_id,
            "event_type": row.event_type,
            "severity": row.severity,
            "is_anomaly": row.is_anomaly,
            "occurred_at": row.occurred_at.isoformat(),
            "description": row.description[:200],
        },
        separators=(",", ":"),
    )


def _chunks(exam_id: str, items: list[str]) -> Iterable[tuple[int, str]]:
    """NOTIFY payloads {"exam_id": ..., "alerts": [...], "first_sequence": n} of at most
    MAX_NOTIFY_BYTES (ASCII: characters are bytes), joined from alerts encoded once:
    (the ordinal of the chunk's first alert among the exam's, 1-based; the payload up
    to its first sequence, which the database fills in and closes with "}")."""
    head = '{"exam_id":' + json.dumps(exam_id) + ',"alerts":['
    tail = '],"first_sequence":'
    batch: list[str] = []
    first = 1
    size = len(head) + len(tail) + 21
    for ordinal, item in enumerate(items, 1):
        if batch and size + len(item) + 1 > MAX_NOTIFY_BYTES:
            yield first, head + ",".join(batch) + tail
            batch, size, first = [], len(head) + len(tail) + 21, ordinal
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield first, head + ",".join(batch) + tail
