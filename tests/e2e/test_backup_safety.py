"""What `veritas backup` and `veritas restore` must never do: leave a backup readable by
other users of the machine, drop a target's schema before knowing the restore can go on
(or under a running server, or into the database Veritas uses), or miss a partition
created while the backup starts."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.test_backup_drill import veritas
from veritas_grpc.adapters import backup, pg_tools
from veritas_grpc.db import migrate


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _execute(url: str, *statements: str) -> list[tuple]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            rows: list[tuple] = []
            for statement in statements:
                result = connection.execute(text(statement))
                rows = [tuple(row) for row in result] if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def small(fresh_database) -> str:
    url = fresh_database("backup_safety")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="module")
def tools(settings) -> Path:
    return pg_tools.bin_dir(settings.pg_bin_dir)


@pytest.fixture(scope="module")
def folder(small, tmp_path_factory) -> Path:
    """A backup of the small database into a new folder, under the usual umask."""
    made = tmp_path_factory.mktemp("safety") / "new"
    with umask(0o022):
        taken = veritas(small, "backup", str(made))
    assert taken.returncode == 0, taken.stderr
    return made


def test_a_backup_in_a_new_folder_is_its_owners_alone(folder):
    assert _mode(folder) == 0o700
    assert {p.name: _mode(p) for p in folder.iterdir()} == {
        "veritas.dump": 0o600,
        "manifest.json": 0o600,
    }


def test_an_empty_folder_made_beforehand_is_closed_too(small, tools, tmp_path):
    with umask(0o022):
        made = tmp_path / "made-before"
        made.mkdir()
        assert _mode(made) == 0o755
        backup.back_up(small, made, tools)
    assert _mode(made) == 0o700
    assert {_mode(p) for p in made.iterdir()} == {0o600}


def _tables(url: str) -> list[str]:
    return [
        name
        for (name,) in _execute(
            url,
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'other') AND c.relkind = 'r' ORDER BY 1",
        )
    ]


def test_a_target_with_another_schemas_table_keeps_its_public_one(small, folder, fresh_database):
    target = fresh_database("other_schema")
    _execute(target, "CREATE SCHEMA other", "CREATE TABLE other.t (x int)")
    _execute(target, "CREATE TABLE public.keep (x int)")
    refused = veritas(small, "restore", str(folder), "--into", target, "--replace")
    assert refused.returncode == 1 and "other.t" in refused.stderr, refused.stderr
    assert _tables(target) == ["other.t", "public.keep"]


def test_a_target_another_session_is_connected_to_is_refused(small, folder, fresh_database):
    target = fresh_database("connected")
    _execute(target, "CREATE TABLE public.keep (x int)")
    engine = create_engine(target)
    try:
        with engine.connect() as held:
            held.execute(text("SELECT 1"))
            refused = veritas(small, "restore", str(folder), "--into", target, "--replace")
        assert refused.returncode == 1 and "other sessions" in refused.stderr, refused.stderr
        assert _tables(target) == ["public.keep"]
    finally:
        engine.dispose()
    # Alone on it, the same restore replaces it.
    replaced = veritas(small, "restore", str(folder), "--into", target, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "public.keep" not in _tables(target)


def test_the_database_veritas_uses_is_never_a_target(small, folder):
    refused = veritas(small, "restore", str(folder), "--into", small, "--replace")
    assert refused.returncode == 1 and "the database Veritas uses" in refused.stderr
    assert "public.alembic_version" in _tables(small)


def test_a_partition_created_as_the_backup_starts_is_counted(
    small, tools, tmp_path, fresh_database, monkeypatch
):
    """Created right after the tables are first listed, before they are locked."""
    listing = backup._schema
    calls: list[int] = []

    def list_then_partition(connection):
        listed = listing(connection)
        if not calls:
            _execute(
                small,
                "CREATE TABLE monitoring_events_p20990101 PARTITION OF monitoring_events "
                "FOR VALUES FROM ('2099-01-01') TO ('2099-01-02')",
            )
        calls.append(1)
        return listed

    monkeypatch.setattr(backup, "_schema", list_then_partition)
    try:
        manifest = backup.back_up(small, tmp_path / "raced", tools)
    finally:
        monkeypatch.undo()
        _execute(small, "DROP TABLE monitoring_events_p20990101")
    assert "monitoring_events_p20990101" in manifest.partitions["monitoring_events"]
    report = backup.restore(tmp_path / "raced", fresh_database("raced"), tools)
    assert report.differences == []
