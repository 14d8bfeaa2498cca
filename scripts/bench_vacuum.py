"""What the exam-day storage settings (migration 0014, veritas_grpc/db/storage.py) change:
rows awaiting vacuum, pages not all-visible, dead tuples after an audit prune, and the
insert rates, with PostgreSQL's defaults and with the settings, in the same run.

Two databases migrated to head; in the "defaults" one the settings are RESET. Batch by
batch in turn, so that both share whatever else the machine does:
  1. events: ROWS rows COPYed into each one's today's partition in 5,000-row
     transactions (the ingest writer's batch), sampled every tenth batch; then SETTLE
     seconds of quiet;
  2. audit: AUDIT_ROWS rows each, a prefix of PRUNE_ROWS pruned as retention does, then
     SETTLE seconds: are the dead rows vacuumed?
autovacuum_naptime is 5 s on the bench's server (1 min by default) so that a run takes
minutes, not hours: the thresholds, not the nap, are what is compared.

    .venv/bin/python scripts/bench_vacuum.py [--rows 3000000] [--settle 40]
"""

from __future__ import annotations

import argparse
import io
import time
import uuid
from datetime import UTC, datetime

from benchlib import database_url
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from veritas_grpc.db.storage import AUDIT_LOG_STORAGE, EVENT_PARTITION_STORAGE

BATCH = 5_000
ATTEMPTS = [uuid.uuid4() for _ in range(1_000)]
NAPTIME = "5s"
_STATS = """
SELECT s.n_live_tup, s.n_dead_tup, s.n_ins_since_vacuum, s.autovacuum_count,
       s.autoanalyze_count, c.relpages, c.relallvisible
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = :name
"""


def _set_naptime(url: str, value: str | None) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if value is None:
            connection.execute(text("ALTER SYSTEM RESET autovacuum_naptime"))
        else:
            connection.execute(text(f"ALTER SYSTEM SET autovacuum_naptime = '{value}'"))
        connection.execute(text("SELECT pg_reload_conf()"))
    engine.dispose()


def _stats(connection, name: str) -> dict[str, int]:
    connection.execute(text("SELECT pg_stat_clear_snapshot()"))
    row = connection.execute(text(_STATS), {"name": name}).one()
    keys = ("live", "dead", "ins_since_vacuum", "autovacuums", "autoanalyzes", "pages", "visible")
    return dict(zip(keys, (int(v or 0) for v in row), strict=True))


def _event_rows(n: int) -> io.StringIO:
    now = datetime.now(UTC).isoformat()
    lines = (
        f"{ATTEMPTS[i % len(ATTEMPTS)]}\t{now}\t{uuid.uuid4()}\tgaze_away\tINTEGRITY\tINFO\t"
        f'{"t" if i % 20 == 0 else "f"}\t\tgaze\t1.2\t0.9\t{{"x": 0.31, "ms": 1200}}\n'
        for i in range(n)
    )
    return io.StringIO("".join(lines))


def _copy(engine, statement: str, rows: io.StringIO) -> float:
    """COPY the rows in a transaction of their own; the seconds it took."""
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.copy_expert(statement, rows)
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def _pages(connection, name: str) -> int:
    """The table's size in pages now (pg_class.relpages is as of the last vacuum)."""
    return int(
        connection.execute(
            text("SELECT pg_relation_size(:name) / current_setting('block_size')::int"),
            {"name": name},
        ).scalar_one()
    )


class Side:
    """One database of the comparison: its writes, timed, and its tables watched."""

    def __init__(self, url: str) -> None:
        # A connection per batch: a backend sends its statistics when it ends, so the
        # figures read between batches are current (an idle pooled one holds them ~10 s).
        self.engine = create_engine(url, poolclass=NullPool)
        self.watcher = create_engine(url).connect()
        self.partition = f"monitoring_events_p{datetime.now(UTC):%Y%m%d}"
        self.seconds = {"events": 0.0, "audit": 0.0}
        self.written = {"events": 0, "audit": 0}
        self.behind: list[int] = []  # event rows not yet vacuumed, every tenth batch
        self.hidden: list[int] = []  # pages not all-visible: index-only scans read the heap
        self.first_vacuum: dict[str, int | None] = {}

    def event_batch(self) -> None:
        self.seconds["events"] += _copy(self.engine, EVENT_COPY, _event_rows(BATCH))
        self.written["events"] += BATCH
        if self.written["events"] % (10 * BATCH) == 0:
            now = _stats(self.watcher, self.partition)
            self.behind.append(now["ins_since_vacuum"])
            self.hidden.append(_pages(self.watcher, self.partition) - now["visible"])

    def audit_batch(self, first: int, last: int) -> None:
        lines = "".join(f"bench.row\tsuccess\t{n}\n" for n in range(first, last + 1))
        self.seconds["audit"] += _copy(self.engine, AUDIT_COPY, io.StringIO(lines))
        self.written["audit"] += last - first + 1

    def prune(self, up_to: int) -> None:
        """As retention prunes: the head records the pruned prefix, then the rows go."""
        with self.engine.begin() as connection:
            connection.execute(
                text("UPDATE audit_chain_head SET pruned_sequence = :n"), {"n": up_to}
            )
            connection.execute(text("SET LOCAL veritas.audit_prune = 'on'"))
            connection.execute(text("DELETE FROM audit_logs WHERE sequence <= :n"), {"n": up_to})

    def rate(self, phase: str) -> int:
        return round(self.written[phase] / self.seconds[phase])

    def close(self) -> None:
        self.watcher.close()
        self.engine.dispose()


EVENT_COPY = (
    "COPY monitoring_events (attempt_id, occurred_at, event_id, event_type, category, "
    "severity, is_anomaly, description, detector_name, detector_version, "
    "detector_confidence, data) FROM STDIN"
)
AUDIT_COPY = "COPY audit_logs (action, outcome, sequence) FROM STDIN"


def settle(sides: dict[str, Side], table: dict[str, str], seconds: float) -> dict[str, dict]:
    """Both sides watched together for `seconds`: their figures at the end, and when
    autovacuum first finished with the table."""
    before = {label: _stats(side.watcher, table[label]) for label, side in sides.items()}
    started = time.monotonic()
    first: dict[str, int | None] = dict.fromkeys(sides)
    while time.monotonic() - started < seconds:
        time.sleep(1)
        for label, side in sides.items():
            now = _stats(side.watcher, table[label])
            if first[label] is None and now["autovacuums"] > before[label]["autovacuums"]:
                first[label] = round(time.monotonic() - started)
    return {
        label: {**_stats(side.watcher, table[label]), "first_autovacuum_after_s": first[label]}
        for label, side in sides.items()
    }


def _reset_settings(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        names = connection.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'monitoring_events'::regclass"
            )
        ).all()
        for name in names:
            connection.execute(
                text(f"ALTER TABLE {name} RESET ({', '.join(EVENT_PARTITION_STORAGE)})")
            )
        connection.execute(text(f"ALTER TABLE audit_logs RESET ({', '.join(AUDIT_LOG_STORAGE)})"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--prune-rows", type=int, default=100_000)
    parser.add_argument("--settle", type=float, default=40.0)
    args = parser.parse_args()
    urls = {"defaults": database_url(), "settings": database_url()}
    _reset_settings(urls["defaults"])
    server = make_url(urls["defaults"]).set(database="postgres")
    _set_naptime(server.render_as_string(hide_password=False), NAPTIME)
    sides = {label: Side(url) for label, url in urls.items()}
    order = list(sides.values())
    try:
        # Batch by batch in turn (the first side alternating), so that both share
        # whatever else the machine does meanwhile.
        while order[0].written["events"] < args.rows:
            for side in order:
                side.event_batch()
            order.reverse()
        partitions = {label: side.partition for label, side in sides.items()}
        events_after = settle(sides, partitions, args.settle)
        for first in range(1, args.audit_rows + 1, BATCH):
            for side in order:
                side.audit_batch(first, min(first + BATCH - 1, args.audit_rows))
            order.reverse()
        for side in order:
            side.prune(args.prune_rows)
        audit_after = settle(sides, dict.fromkeys(sides, "audit_logs"), args.settle)
        for label, side in sides.items():
            events, audit = events_after[label], audit_after[label]
            print(
                f"{label}: events {side.rate('events')} rows/s, rows awaiting vacuum max "
                f"{max(side.behind)} mean {round(sum(side.behind) / len(side.behind))}, "
                f"pages not all-visible max {max(side.hidden)} mean "
                f"{round(sum(side.hidden) / len(side.hidden))}, autovacuums "
                f"{events['autovacuums']}; {args.settle:.0f} s later: awaiting "
                f"{events['ins_since_vacuum']}",
                flush=True,
            )
            print(
                f"{label}: audit {side.rate('audit')} rows/s, {args.prune_rows} pruned: "
                f"dead {audit['dead']} {args.settle:.0f} s later (first autovacuum after "
                f"{audit['first_autovacuum_after_s']} s)",
                flush=True,
            )
    finally:
        for side in sides.values():
            side.close()
        _set_naptime(server.render_as_string(hide_password=False), None)


if __name__ == "__main__":
    main()
