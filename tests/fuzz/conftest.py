"""The fuzz test's own database and server, so that its write check sees only its own
calls (no other test writes there, and nothing writes in the background: the attempt
sweep is put off), and the e2e fixtures bound to them.

`database_url`, `services` and `server` override the session fixtures of
tests/conftest.py under the same names, so `channel` and `auth_stub`, imported from
tests/e2e/conftest.py, are built here again on this database. The session's other
database is not touched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from tests.e2e.conftest import auth_stub, channel  # noqa: F401 - fixtures
from tests.fuzz.checks import Database
from tests.fuzz.world import World
from tests.support import ServerThread, make_settings
from veritas_grpc import bootstrap
from veritas_grpc.config import Settings
from veritas_grpc.db import migrate


@pytest.fixture(scope="session")
def fuzz_settings() -> Settings:
    # No background sweep while the fuzzer runs: its writes would look like the calls'.
    # Nor snapshot refreshes of the system figures (0: GetSystemStats counts on each call).
    return make_settings(sweep_interval_seconds=3600.0, system_stats_refresh_seconds=0)


@pytest.fixture(scope="session")
def database_url(fresh_database) -> str:  # type: ignore[no-untyped-def]
    url = fresh_database("fuzz")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def services(fuzz_settings: Settings, database_url: str) -> Iterator[bootstrap.Services]:
    built = bootstrap.build_services(fuzz_settings, database_url)
    yield built
    built.close()


@pytest.fixture(scope="session")
def server(fuzz_settings: Settings, database_url: str) -> Iterator[ServerThread]:
    running = ServerThread(fuzz_settings, database_url)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def fuzz_database(database_url: str) -> Iterator[Database]:
    engine = create_engine(database_url, pool_size=1)
    yield Database(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def world(channel, auth_stub, services, fuzz_database) -> World:  # noqa: F811
    return World(channel, auth_stub, services.accounts, fuzz_database)
