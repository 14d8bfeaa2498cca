"""Logical backups: a pg_dump in custom format and a manifest of what it holds, and their
restore into an empty database, checked against that manifest.

The manifest's row counts come from the very snapshot the dump reads: a transaction of
ours takes ACCESS SHARE locks on every table (so that no partition can be dropped before
pg_dump locks it in turn), exports its snapshot, and pg_dump starts from it
(`--snapshot`) while we count. Ingestion goes on meanwhile; rows committed after the
snapshot are in neither.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC
from importlib import metadata
from pathlib import Path
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

from veritas_grpc.adapters import pg_tools

MANIFEST_FILE = "manifest.json"
DUMP_FILE = "veritas.dump"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20
# A backup holds every student's personal data and the password hashes: its folder and
# files are the owner's alone, whatever the umask.
FOLDER_MODE = 0o700
FILE_MODE = 0o600

# Every table of the schema Veritas lives in (the connection's current schema): its
# name, and the partitioned table it is a partition of, if any. Partitioned tables
# themselves hold no rows; their partitions are counted one by one.
_TABLES = """
SELECT c.relname, c.relkind = 'p' AS partitioned, parent.relname AS parent
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
LEFT JOIN pg_class parent ON parent.oid = i.inhparent
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""
# Relations of any schema but the system's: a database to restore into must have none.
_USER_RELATIONS = """
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
ORDER BY 1
"""
# Those a --replace would not drop: the ones outside the current schema.
_OTHER_SCHEMAS_RELATIONS = f"""
SELECT relations.name FROM ({_USER_RELATIONS}) AS relations(name)
WHERE split_part(relations.name, '.', 1) <> current_schema()
"""
# Clients other than us connected to the target database (a running server, a psql):
# a --replace would drop the tables under them.
_OTHER_SESSIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
"""


class BackupRefused(Exception):
    """Nothing was done, and why: a folder that already holds a backup, a target that is
    not empty, a dump that is not the one the manifest describes."""


@dataclass(frozen=True)
class Manifest:
    # When the snapshot was taken (its transaction's start).
    created_at: str
    database: str
    server_version: str
    pg_dump_version: str
    veritas_version: str
    # alembic_version's revision; None for a database never migrated.
    migration_revision: str | None
    snapshot: str
    dump_file: str
    dump_bytes: int
    dump_sha256: str
    # Rows of every table in the snapshot, each partition apart.
    tables: dict[str, int]
    # Each partitioned table's partitions.
    partitions: dict[str, list[str]] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def rows_of(self, table: str) -> int:
        """A table's rows; a partitioned table's are its partitions'."""
        if table in self.partitions:
            return sum(self.tables[name] for name in self.partitions[table])
        return self.tables[table]

    def write(self, directory: Path) -> None:
        temporary = directory / f".{MANIFEST_FILE}.tmp"
        document = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(descriptor, "w") as out:
            out.write(document)
        # Written last and renamed into place: a folder with a manifest holds a whole backup.
        temporary.rename(directory / MANIFEST_FILE)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_FILE
        if not path.exists():
            raise BackupRefused(f"{directory} holds no {MANIFEST_FILE}: not a finished backup")
        document = json.loads(path.read_text())
        if document.get("format") != MANIFEST_FORMAT:
            raise BackupRefused(f"manifest format {document.get('format')!r} is not known here")
        return cls(**document)


@dataclass(frozen=True)
class Schema:
    """The tables of a database: rows-holding ones, and each partitioned one's partitions."""

    tables: list[str]
    partitions: dict[str, list[str]]
    # What to lock: every table that is not a partition (locking a partitioned table
    # locks its partitions).
    roots: list[str]


def back_up(url: str, directory: Path, tools: Path) -> Manifest:
    """Dump the database at url into directory (new or empty); the manifest written."""
    directory.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise BackupRefused(f"{directory} is not empty: give each backup a folder of its own")
    # An empty folder made beforehand keeps its mode otherwise.
    directory.chmod(FOLDER_MODE)
    with _session_without_timeouts(url) as connection:
        listed = _schema(connection)
        connection.autocommit = False
        connection.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with connection.cursor() as cursor:
            # Locks before the snapshot: a table dropped since the listing fails here,
            # before anything is written.
            _lock(cursor, listed.roots)
            # Listed again, in the snapshot (this query takes it): a partition created
            # since the first listing is in it. Creating one locks its parent ACCESS
            # EXCLUSIVE, so from now on the set holds still; a table new since the first
            # listing is locked too.
            schema = _schema(connection)
            known = set(listed.tables + listed.roots)
            _lock(cursor, sorted(set(schema.tables + schema.roots) - known))
            cursor.execute(
                "SELECT pg_export_snapshot(), current_database(), "
                "current_setting('server_version'), now()"
            )
            snapshot, database, server_version, taken_at = cursor.fetchone()
            target = pg_tools.Target.of(connection, url)
            dump = pg_tools.run(
                tools,
                "pg_dump",
                ["--format=custom", f"--snapshot={snapshot}", f"--file={directory / DUMP_FILE}"],
                target,
                umask=0o077,
            )
            try:
                counts = {name: _count(cursor, name) for name in schema.tables}
                revision = _revision(cursor, schema)
            except BaseException:
                dump.kill()
                dump.wait()
                raise
            # The snapshot lives as long as this transaction: until pg_dump is done.
            pg_tools.finish(dump, "pg_dump")
        connection.rollback()
    dump_path = directory / DUMP_FILE
    dump_path.chmod(FILE_MODE)
    manifest = Manifest(
        created_at=taken_at.astimezone(UTC).isoformat(),
        database=database,
        server_version=server_version,
        pg_dump_version=pg_tools.version(tools, "pg_dump"),
        veritas_version=metadata.version("veritas-grpc"),
        migration_revision=revision,
        snapshot=snapshot,
        dump_file=DUMP_FILE,
        dump_bytes=dump_path.stat().st_size,
        dump_sha256=_sha256(dump_path),
        tables=counts,
        partitions=schema.partitions,
    )
    manifest.write(directory)
    return manifest


@dataclass(frozen=True)
class RestoreReport:
    manifest: Manifest
    # Rows of every table found in the restored database, each partition apart.
    found: dict[str, int]
    found_revision: str | None

    @property
    def differences(self) -> list[str]:
        """What the restored database holds otherwise than the manifest says; empty when
        it is exactly the backup."""
        expected, found = self.manifest.tables, self.found
        lines = [f"{name}: missing" for name in sorted(expected.keys() - found.keys())]
        lines += [f"{name}: not in the backup" for name in sorted(found.keys() - expected.keys())]
        lines += [
            f"{name}: {found[name]} rows, the backup holds {expected[name]}"
            for name in sorted(expected.keys() & found.keys())
            if found[name] != expected[name]
        ]
        if self.found_revision != self.manifest.migration_revision:
            lines.append(
                f"migration revision {self.found_revision}, "
                f"the backup's is {self.manifest.migration_revision}"
            )
        return lines


def restore(
    directory: Path, url: str, tools: Path, replace: bool = False, source: str | None = None
) -> RestoreReport:
    """Restore the backup in directory into the database at url, which must be empty
    (replace: its current schema is dropped first); then count what it holds. source:
    the database Veritas uses, never a target."""
    if source is not None and _same_database(url, source):
        raise BackupRefused(
            "the target is the database Veritas uses (VERITAS_DATABASE_URL): restore into "
            "another one"
        )
    manifest = Manifest.read(directory)
    dump_path = directory / manifest.dump_file
    if not dump_path.exists() or _sha256(dump_path) != manifest.dump_sha256:
        raise BackupRefused(f"{dump_path} is missing or not the dump the manifest describes")
    with _session_without_timeouts(url) as connection:
        with connection.cursor() as cursor:
            if replace:
                # Everything checked before anything is dropped.
                _refuse_unless_replaceable(cursor)
                cursor.execute("SELECT current_schema()")
                (name,) = cursor.fetchone()
                cursor.execute(
                    sql.SQL("DROP SCHEMA {0} CASCADE; CREATE SCHEMA {0}").format(
                        sql.Identifier(name)
                    )
                )
            _refuse_unless_empty(cursor)
        target = pg_tools.Target.of(connection, url)
        # One transaction: a restore that fails half-way leaves the target empty.
        process = pg_tools.run(
            tools,
            "pg_restore",
            [
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--no-privileges",
                str(dump_path),
            ],
            target,
        )
        pg_tools.finish(process, "pg_restore")
        with connection.cursor() as cursor:
            # A dump carries no planner statistics: without them the first queries plan blind.
            cursor.execute("ANALYZE")
            schema = _schema(connection)
            found = {name: _count(cursor, name) for name in schema.tables}
            revision = _revision(cursor, schema)
    return RestoreReport(manifest, found, revision)


@contextmanager
def _session_without_timeouts(url: str) -> Iterator[Any]:
    """A psycopg2 connection of its own, in autocommit, with no timeouts: a backup's
    transaction waits idle for pg_dump, and counts and ANALYZE take as long as the
    tables make them, so no server default may end them half-way."""
    engine = create_engine(url, poolclass=NullPool)
    raw = engine.raw_connection()
    try:
        connection = raw.dbapi_connection
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        yield connection
    finally:
        raw.close()
        engine.dispose()


def _same_database(url: str, other: str) -> bool:
    """Whether two URLs name one database (hosts as written: an alias escapes this)."""
    a, b = make_url(url), make_url(other)
    return (a.host, a.port or 5432, a.database) == (b.host, b.port or 5432, b.database)


def _refuse_unless_replaceable(cursor: Any) -> None:
    cursor.execute(_OTHER_SCHEMAS_RELATIONS)
    names = [name for (name,) in cursor.fetchall()]
    if names:
        raise BackupRefused(
            f"the target database has relations --replace would not drop "
            f"({len(names)}: {_shown(names)}): restore into a new database"
        )
    cursor.execute(_OTHER_SESSIONS)
    (sessions,) = cursor.fetchone()
    if sessions:
        raise BackupRefused(
            f"{sessions} other sessions are connected to the target database (a running "
            "server?): stop them before --replace drops its schema"
        )


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _refuse_unless_empty(cursor: Any) -> None:
    cursor.execute(_USER_RELATIONS)
    names = [name for (name,) in cursor.fetchall()]
    if names:
        shown = _shown(names)
        raise BackupRefused(
            f"the target database is not empty ({len(names)} relations: {shown}): restore "
            "into a new database, or pass --replace to drop its schema first"
        )


def _lock(cursor: Any, tables: list[str]) -> None:
    if tables:
        names = sql.SQL(", ").join(sql.Identifier(name) for name in tables)
        cursor.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(names))


def _schema(connection: Any) -> Schema:
    with connection.cursor() as cursor:
        cursor.execute(_TABLES)
        rows = cursor.fetchall()
    partitions: dict[str, list[str]] = {}
    for name, _partitioned, parent in rows:
        if parent is not None:
            partitions.setdefault(parent, []).append(name)
    for name, partitioned, _parent in rows:
        if partitioned:
            partitions.setdefault(name, [])
    return Schema(
        tables=[name for name, partitioned, _ in rows if not partitioned],
        partitions=partitions,
        roots=[name for name, _, parent in rows if parent is None],
    )


def _count(cursor: Any, table: str) -> int:
    cursor.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(table)))
    return int(cursor.fetchone()[0])


def _revision(cursor: Any, schema: Schema) -> str | None:
    if "alembic_version" not in schema.tables:
        return None
    cursor.execute("SELECT version_num FROM alembic_version")
    row = cursor.fetchone()
    return None if row is None else str(row[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
