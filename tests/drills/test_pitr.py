"""Point-in-time recovery as the README's "Backup and restore" sets it up: a primary that
archives its WAL (archive_command), a base backup (pg_basebackup), events committed on
either side of a named restore point, and a copy recovered from the base backup and the
archive up to that point (restore_command, recovery_target_name): the event before it is
there, the one after it is not, and the copy serves Veritas's schema with its partitions.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.drills.scratch_cluster import BIN, Cluster, run, scratch_dir
from veritas_grpc.config import PROJECT_ROOT
from veritas_grpc.db import migrate

RESTORE_POINT = "before-the-disk-died"
LATEST_ARCHIVED = "SELECT last_archived_wal FROM pg_stat_archiver"


@pytest.fixture
def scratch():
    # The server's user writes its logs, sockets and the base backup in here.
    parent = scratch_dir(Path(tempfile.mkdtemp(prefix="veritas-pitr-")), "drill")
    clusters: list[Cluster] = []
    yield parent, clusters
    for cluster in clusters:
        cluster.stop("immediate")
    shutil.rmtree(parent.parent, ignore_errors=True)


def _insert_event(cluster: Cluster, database: str) -> str:
    """One event of an existing attempt, committed; its id."""
    event_id = str(uuid.uuid4())
    cluster.sql(
        "INSERT INTO monitoring_events (attempt_id, occurred_at, event_id, event_type, "
        f"category, severity) VALUES (gen_random_uuid(), '{datetime.now(UTC).isoformat()}', "
        f"'{event_id}', 'tab_switch', 'INTEGRITY', 'WARNING')",
        database,
    )
    return event_id


def test_recovery_to_a_restore_point_keeps_what_came_before_and_nothing_after(scratch):
    parent, clusters = scratch
    archive = scratch_dir(parent, "wal-archive")
    primary = Cluster(scratch_dir(parent, "primary"), 54000 + uuid.uuid4().int % 1000)
    clusters.append(primary)
    primary.initdb()
    # The README's settings: every completed WAL segment copied into the archive, never
    # over a file already there (a second cluster archiving into the same folder).
    primary.configure(
        wal_level="replica",
        archive_mode="on",
        archive_command=f"test ! -f {archive}/%f && cp %p {archive}/%f",
    )
    primary.start()
    primary.sql("CREATE DATABASE veritas")
    migrate.upgrade(primary.url.replace("/postgres?", "/veritas?"))

    base = parent / "base"
    run(*primary.client("pg_basebackup"), "-D", str(base), "-X", "stream", "-c", "fast")
    kept = _insert_event(primary, "veritas")
    primary.sql(f"SELECT pg_create_restore_point('{RESTORE_POINT}')")
    lost = _insert_event(primary, "veritas")
    # Archive the segment that holds both, as the primary would when it fills up or at
    # archive_timeout.
    segment = primary.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    primary.sql("SELECT pg_switch_wal()")
    primary.wait_for(LATEST_ARCHIVED, segment)
    primary.stop("immediate")  # the disk dies

    copy = Cluster(base, primary.port + 1)
    clusters.append(copy)
    copy.configure(
        restore_command=f"cp {archive}/%f %p",
        recovery_target_name=RESTORE_POINT,
        recovery_target_action="promote",
        archive_mode="off",
    )
    (base / "recovery.signal").touch()
    copy.start()
    copy.wait_for("SELECT pg_is_in_recovery()", "f")

    stored = copy.sql("SELECT event_id FROM monitoring_events", "veritas").split()
    assert kept in stored
    assert lost not in stored
    assert copy.sql("SELECT version_num FROM alembic_version", "veritas")
    partitions = copy.sql(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'monitoring_events'::regclass",
        "veritas",
    )
    assert int(partitions) > 1


def test_the_documented_postgresql_conf_is_one_postgresql_accepts(scratch):
    parent, _ = scratch
    cluster = Cluster(scratch_dir(parent, "conf"), 0)
    cluster.initdb()
    documented = PROJECT_ROOT / "deploy" / "postgresql" / "postgresql.conf"
    # The wheel's PostgreSQL is built without OpenSSL ("SSL is not supported by this
    # build"), a distribution's is not: the one line it cannot take is turned off here.
    text = documented.read_text()
    assert "\nssl = on " in text
    (cluster.data / "veritas.conf").write_text(text.replace("\nssl = on ", "\nssl = off "))
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write("include 'veritas.conf'\n")
    # -C reads the whole configuration (an unknown name or a bad value is fatal) and
    # prints one setting (in its base unit: MB for max_wal_size) without starting the
    # server.
    for name, value in (("archive_mode", "on"), ("max_wal_size", "16384"), ("jit", "off")):
        assert run(str(BIN / "postgres"), "-D", str(cluster.data), "-C", name).strip() == value
