"""The on-disk spool: every event record() accepted, until a stream carrying it is
answered, and the agent's current tokens.

One SQLite file per agent (stdlib sqlite3), in WAL mode. Each accepted event is one
committed INSERT, so it survives the agent process being killed at any moment; with
`synchronous=NORMAL` (the default here) a power cut may lose the last commits, with
`durable=True` (synchronous=FULL) it may not. One connection, guarded by a lock, is
shared by the recording threads and the sender: SQLite allows one writer at a time
anyway, and a Python lock queues in microseconds where SQLite's busy handler sleeps.

The spool is bounded (max_events): a full spool refuses new events (record() returns
False) instead of dropping older ones, so nothing that was accepted is ever lost.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events ("
    " seq INTEGER PRIMARY KEY, event BLOB NOT NULL, recorded_at REAL NOT NULL)",
    # One row: the session the agent continues with (refresh tokens rotate, so the
    # newest must outlive the process). `origin` names the credentials it grew from.
    "CREATE TABLE IF NOT EXISTS tokens ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), origin TEXT NOT NULL, access TEXT NOT NULL,"
    " refresh TEXT NOT NULL, obtained_at REAL NOT NULL, lifetime REAL)",
)


class SpoolInUse(RuntimeError):
    """Another live agent holds this spool file: two senders would send its events twice
    as often and race on the tokens."""


@dataclass(frozen=True)
class SpooledEvent:
    seq: int
    event: bytes  # a serialized veritas.v1.MonitoringEvent, sent exactly as recorded
    recorded_at: float  # time.time() when record() accepted it


@dataclass(frozen=True)
class StoredTokens:
    origin: str
    access: str
    refresh: str
    obtained_at: float
    lifetime: float | None


class Spool:
    def __init__(self, path: str | os.PathLike[str], max_events: int, durable: bool = False):
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.path = Path(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        self._lock_file = _exclusive_lock(self.path)
        _create_private(self.path)  # it holds tokens: owner-only, like ~/.ssh keys
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        for statement in SCHEMA:
            self._db.execute(statement)
        self._count = self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    @property
    def count(self) -> int:
        """Events held (not yet answered), including those of a stream in flight."""
        return self._count

    def add(self, event: bytes, recorded_at: float) -> bool:
        """Store one event; False when the spool is full (nothing is stored then)."""
        with self._lock:
            if self._count >= self.max_events:
                return False
            self._db.execute(
                "INSERT INTO events (event, recorded_at) VALUES (?, ?)", (event, recorded_at)
            )
            self._count += 1
            return True

    def oldest(self, limit: int) -> list[SpooledEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event, recorded_at FROM events ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [SpooledEvent(*row) for row in rows]

    def remove(self, seqs: list[int]) -> None:
        """Forget answered events, in one transaction."""
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN")
            removed = 0
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                cursor = self._db.execute(f"DELETE FROM events WHERE seq IN ({marks})", chunk)
                removed += cursor.rowcount
            self._db.execute("COMMIT")
            self._count -= removed

    def tokens(self) -> StoredTokens | None:
        with self._lock:
            row = self._db.execute(
                "SELECT origin, access, refresh, obtained_at, lifetime FROM tokens"
            ).fetchone()
        return StoredTokens(*row) if row else None

    def save_tokens(self, tokens: StoredTokens) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tokens (id, origin, access, refresh, obtained_at, lifetime)"
                " VALUES (1, ?, ?, ?, ?, ?)",
                (tokens.origin, tokens.access, tokens.refresh, tokens.obtained_at, tokens.lifetime),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lock_file.close()  # releases the flock


def _exclusive_lock(path: Path):  # type: ignore[no-untyped-def]
    """An flock on PATH.lock: the kernel releases it when the process dies, even by
    SIGKILL, so a restarted agent takes its spool over at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = open(f"{path}.lock", "a")  # noqa: SIM115 - held for the spool's life
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise SpoolInUse(f"{path} is in use by another agent") from None
    return lock_file


def _create_private(path: Path) -> None:
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
