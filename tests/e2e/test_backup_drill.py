"""The backup drill: events ingested through a real server, `veritas backup` while agents
keep sending, more events after it, `veritas restore` into a new database. The copy holds
exactly what the backup's snapshot held: every event acknowledged before it, none sent
after it, counters equal to the rows, every partition with its storage settings, and an
audit chain that `veritas audit verify` finds intact."""

from __future__ import annotations

import io
import json
import os
import threading
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import grpc
import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import login
from tests.e2e.exam_helpers import open_window, published_exam, start, stubs, timestamp
from tests.e2e.monitoring_helpers import critical, event, stream
from tests.support import PASSWORD, TEST_SECRET, ServerThread, unique_email, unique_enrollment
from veritas_grpc import bootstrap, cli
from veritas_grpc.db import migrate
from veritas_grpc.domain.identity import Role

ATTEMPTS = 3
EVENTS_PER_ATTEMPT = 120


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def veritas(database_url: str, *args: str) -> Ran:
    """The `veritas` command, run in this process (its start-up costs seconds as a
    subprocess): the same parser and handlers, with the environment a server has."""
    environment = {
        "VERITAS_ENV": "test",
        "VERITAS_DATABASE_URL": database_url,
        "VERITAS_JWT_SECRET": TEST_SECRET,
    }
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, environment), redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(args))
    return Ran(code, out.getvalue(), err.getvalue())


class Source:
    """A database of its own behind a real server, with attempts for agents to write to."""

    def __init__(self, settings, url: str) -> None:
        self.url = url
        self.services = bootstrap.build_services(settings, url)
        self.server = ServerThread(settings, url)
        self.channel = grpc.insecure_channel(self.server.address)
        from veritas.v1 import auth_pb2_grpc

        auth_stub = auth_pb2_grpc.AuthServiceStub(self.channel)
        student_stub, teacher_stub = stubs(self.channel)
        teacher = self._account(auth_stub, Role.TEACHER)
        self.agent = self._account(auth_stub, Role.SERVICE)
        exam = published_exam(teacher_stub, teacher.metadata, **open_window())
        self.attempts = [
            start(student_stub, self._account(auth_stub, Role.STUDENT), exam.id).id
            for _ in range(ATTEMPTS)
        ]

    def _account(self, auth_stub, role: Role):
        email = unique_email(role.value)
        enrollment = unique_enrollment() if role is Role.STUDENT else None
        self.services.accounts.create_account(role, email, PASSWORD, "Drill", enrollment)
        return login(auth_stub, email)

    def send(self, hours_ago: float = 0) -> set[str]:
        """A batch for every attempt, occurring that long ago; the ids acknowledged."""
        when = timestamp(datetime.now(UTC) - timedelta(hours=hours_ago, seconds=1))
        batches = [
            [
                (critical if i % 10 == 0 else event)(attempt, occur_time=when)
                for i in range(EVENTS_PER_ATTEMPT // 4)
            ]
            for attempt in self.attempts
        ]
        response = stream(self.channel, self.agent.metadata, batches)
        assert response.accepted_count == sum(len(b) for b in batches), response
        return {e.event_id for batch in batches for e in batch}

    def close(self) -> None:
        self.channel.close()
        self.server.stop()
        self.services.close()


@pytest.fixture(scope="module")
def source(settings, fresh_database):
    url = fresh_database("drill_source")
    migrate.upgrade(url)
    built = Source(settings, url)
    yield built
    built.close()


@pytest.fixture(scope="module")
def drill(source, fresh_database, tmp_path_factory):
    """Before, during and after `veritas backup`; the copy restored from it."""
    # Yesterday's partition and today's: events of just before midnight UTC (within the
    # 24-hour event window at any time of day but the day's last seconds) and of now.
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    before_midnight = (now - midnight + timedelta(seconds=4)) / timedelta(hours=1)
    before = source.send(hours_ago=before_midnight) | source.send()
    during: set[str] = set()
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set():
            during.update(source.send())

    sender = threading.Thread(target=keep_sending)
    sender.start()
    folder = tmp_path_factory.mktemp("backup") / "exam-day"
    try:
        made = veritas(source.url, "backup", str(folder))
    finally:
        stop.set()
        sender.join(timeout=60)
    assert made.returncode == 0, made.stderr
    after = source.send()
    copy = fresh_database("drill_copy")
    restored = veritas(source.url, "restore", str(folder), "--into", copy)
    assert restored.returncode == 0, restored.stderr
    return {
        "before": before,
        "during": during,
        "after": after,
        "folder": folder,
        "copy": copy,
        "manifest": json.loads((folder / "manifest.json").read_text()),
    }


def _query(url: str, statement: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement))]
    finally:
        engine.dispose()


def _event_ids(url: str) -> set[str]:
    return {str(row[0]) for row in _query(url, "SELECT event_id FROM monitoring_events")}


def test_the_copy_holds_exactly_the_backed_up_events(drill):
    stored = _event_ids(drill["copy"])
    assert drill["before"] <= stored
    assert not stored & drill["after"]
    # Sent while the backup ran: some in it or not, but only whole acknowledged batches.
    assert stored <= drill["before"] | drill["during"]
    manifest = drill["manifest"]
    partitions = manifest["partitions"]["monitoring_events"]
    assert len(stored) == sum(manifest["tables"][name] for name in partitions)


def test_the_attempts_counters_equal_their_rows_in_the_copy(drill, source):
    rows = _query(
        drill["copy"],
        "SELECT a.event_count, a.anomaly_count, a.critical_count, count(e.event_id), "
        "count(e.event_id) FILTER (WHERE e.is_anomaly), "
        "count(e.event_id) FILTER (WHERE e.severity = 'CRITICAL') "
        "FROM exam_attempts a LEFT JOIN monitoring_events e ON e.attempt_id = a.id "
        "GROUP BY a.id",
    )
    assert len(rows) == ATTEMPTS
    for row in rows:
        assert row[:3] == row[3:] and row[0] > 0


def test_partitions_and_their_settings_survive(drill, source):
    partitions = (
        "SELECT c.relname, c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'monitoring_events'::regclass ORDER BY 1"
    )
    copied = _query(drill["copy"], partitions)
    assert [name for name, _ in copied] == drill["manifest"]["partitions"]["monitoring_events"]
    assert copied == _query(source.url, partitions)
    filled = {
        row[0]
        for row in _query(
            drill["copy"], "SELECT DISTINCT tableoid::regclass::text FROM monitoring_events"
        )
    }
    assert len(filled) == 2, "the drill's events span two daily partitions"
    storage = "SELECT reloptions FROM pg_class WHERE relname = 'audit_logs'"
    assert _query(drill["copy"], storage) == _query(source.url, storage)


def test_the_audit_chain_of_the_copy_verifies(drill):
    audit_rows = _query(drill["copy"], "SELECT count(*) FROM audit_logs")[0][0]
    assert audit_rows == drill["manifest"]["tables"]["audit_logs"] > 0
    verified = veritas(drill["copy"], "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert f"checked {audit_rows} rows" in verified.stdout and "intact" in verified.stdout


def test_the_manifest_says_what_made_it(drill):
    manifest = drill["manifest"]
    assert (
        manifest["migration_revision"]
        == _query(drill["copy"], "SELECT version_num FROM alembic_version")[0][0]
    )
    assert manifest["pg_dump_version"].startswith("pg_dump (PostgreSQL) ")
    assert manifest["server_version"] and manifest["veritas_version"]


def test_a_non_empty_target_is_refused_unless_replaced(drill, source):
    refused = veritas(source.url, "restore", str(drill["folder"]), "--into", drill["copy"])
    assert refused.returncode == 1 and "not empty" in refused.stderr
    # The copy is as it was; the source too.
    assert _event_ids(drill["copy"]) >= drill["before"]
    replaced = veritas(
        source.url, "restore", str(drill["folder"]), "--into", drill["copy"], "--replace"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert not _event_ids(drill["copy"]) & drill["after"]


def test_a_copy_that_differs_from_the_manifest_is_reported(drill, source, fresh_database):
    folder: Path = drill["folder"]
    manifest_path = folder / "manifest.json"
    original = manifest_path.read_text()
    edited = json.loads(original)
    edited["tables"]["audit_logs"] += 1
    manifest_path.write_text(json.dumps(edited))
    try:
        different = veritas(source.url, "restore", str(folder), "--into", fresh_database("x"))
    finally:
        manifest_path.write_text(original)
    assert different.returncode == 3
    assert "audit_logs:" in different.stderr and "the backup holds" in different.stderr


def test_a_dump_that_is_not_the_manifests_is_refused(drill, source, fresh_database, tmp_path):
    folder = tmp_path / "tampered"
    folder.mkdir()
    for name in ("manifest.json", "veritas.dump"):
        (folder / name).write_bytes((drill["folder"] / name).read_bytes())
    with (folder / "veritas.dump").open("ab") as dump:
        dump.write(b"\0")
    refused = veritas(source.url, "restore", str(folder), "--into", fresh_database("y"))
    assert refused.returncode == 1 and "not the dump the manifest describes" in refused.stderr


def test_a_backup_never_overwrites_another(drill, source):
    again = veritas(source.url, "backup", str(drill["folder"]))
    assert again.returncode == 1 and "not empty" in again.stderr


def test_each_backup_is_audited_in_the_live_trail_only(drill, source):
    rows = _query(
        source.url,
        "SELECT outcome, details->>'snapshot', details->>'dump_sha256' FROM audit_logs "
        "WHERE action = 'database.backup' AND outcome = 'success'",
    )
    assert rows == [("success", drill["manifest"]["snapshot"], drill["manifest"]["dump_sha256"])]
    # Written after the snapshot: the copy does not hold it.
    assert _query(
        drill["copy"], "SELECT count(*) FROM audit_logs WHERE action = 'database.backup'"
    ) == [(0,)]
