"""Fixtures: one real PostgreSQL database per test session, built by the migrations.

VERITAS_TEST_DATABASE_URL points at a server to use (the role needs CREATEDB); without
it an embedded PostgreSQL starts under .veritas-data/test. Either way the session gets
a fresh database of its own, dropped at the end.
"""

from __future__ import annotations

import logging
import os
import uuid

# The suite starts `veritas serve` subprocesses while grpc threads run; grpc's fork
# handlers are for forks that keep using grpc, which these do not.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from tests.support import ServerProcess, ServerThread, make_settings
from veritas_grpc import bootstrap
from veritas_grpc.config import PROJECT_ROOT, Settings
from veritas_grpc.db import migrate

SERVER_FAULT = "server_fault"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SERVER_FAULT}: the test breaks the server on purpose, so ERROR log lines are "
        "expected (a client's input must never cause one)",
    )


@pytest.hookimpl(trylast=True)  # after tests/drills/conftest.py has marked its tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long drills (marked `drill`) run with VERITAS_DRILLS=1 (`make drills`, which
    .ci/run runs), and are skipped otherwise, so that `make test` stays short."""
    if os.environ.get("VERITAS_DRILLS") == "1":
        return
    skip = pytest.mark.skip(reason="a long drill: make drills runs it")
    for item in items:
        if item.get_closest_marker("drill"):
            item.add_marker(skip)


# grpc's asyncio poller logs this now and then when one process has run several event
# loops with grpc in turn (the test servers that tests start and stop in threads); a
# server process has one loop. It answers no client's input.
_GRPC_POLLER_NOISE = "Exception in callback PollerCompletionQueue._handle_events"


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio" and record.getMessage().startswith(_GRPC_POLLER_NOISE):
            return
        cause = f" ({record.exc_info[1]!r})" if record.exc_info else ""
        self.lines.append(f"{record.name}: {record.getMessage()}{cause}")


@pytest.fixture(autouse=True)
def no_error_logged(request: pytest.FixtureRequest) -> Iterator[None]:
    """No ERROR line in the log of any server a test runs in this process, unless the
    test breaks the server on purpose: what clients send must never cause one."""
    records = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(records)
    # Every server process, also those a module started earlier: the lines it logs
    # during this test.
    read_before = {id(process): len(process.log_lines) for process in ServerProcess.started}
    try:
        yield
    finally:
        root.removeHandler(records)
    for process in ServerProcess.started:
        records.lines.extend(process.error_lines(read_before.get(id(process), 0)))
    if request.node.get_closest_marker(SERVER_FAULT) is None:
        assert not records.lines, "ERROR logged: " + "; ".join(records.lines[:5])


def _server_url() -> URL:
    configured = os.environ.get("VERITAS_TEST_DATABASE_URL")
    if configured:
        return make_url(configured)
    from veritas_grpc.db.embedded import start_embedded

    data_dir = Path(
        os.environ.get("VERITAS_TEST_DATA_DIR", PROJECT_ROOT / ".veritas-data" / "test")
    )
    return make_url(start_embedded(data_dir, database="postgres"))


def _admin_execute(server: URL, statement: str) -> None:
    engine = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def audit_chain_key() -> None:
    """Units of work that tests build themselves seal audit rows with the key the test
    servers use, so one chain stays verifiable whoever wrote to it."""
    bootstrap.configure_audit_chain(make_settings())


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    return _server_url()


@pytest.fixture(scope="session")
def fresh_database(postgres_server: URL) -> Iterator[object]:
    """A factory of empty databases on the test server, all dropped at the end."""
    created: list[str] = []

    def create(label: str) -> str:
        name = f"veritas_{label}_{uuid.uuid4().hex[:8]}"
        _admin_execute(postgres_server, f'CREATE DATABASE "{name}"')
        created.append(name)
        return postgres_server.set(database=name).render_as_string(hide_password=False)

    yield create
    for name in created:
        _admin_execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(fresh_database) -> str:  # type: ignore[no-untyped-def]
    url = fresh_database("test")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def services(settings: Settings, database_url: str) -> Iterator[bootstrap.Services]:
    built = bootstrap.build_services(settings, database_url)
    yield built
    built.close()


@pytest.fixture(scope="session")
def server(settings: Settings, database_url: str) -> Iterator[ServerThread]:
    running = ServerThread(settings, database_url)
    yield running
    running.stop()
