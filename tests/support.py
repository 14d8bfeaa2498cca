"""Helpers shared by the test suites: settings, unique data, an in-process server."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import replace

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from veritas_grpc.config import Settings
from veritas_grpc.server import RunningServer, start_server

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery"


def make_settings(**overrides: object) -> Settings:
    base = Settings(
        environment="test",
        listen="127.0.0.1:0",
        jwt_secret=TEST_SECRET,
        bcrypt_rounds=4,
        worker_threads=8,
        db_pool_size=8,
        shutdown_grace_seconds=1.0,
        health_check_interval_seconds=0.5,
        # Every test signs up and in from 127.0.0.1: per-address throttles out of the
        # way (tests/e2e/test_lockout.py runs its own servers with small limits).
        login_max_failures_per_address=100_000,
        register_max_per_address=100_000,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.edu"


def unique_enrollment() -> str:
    return f"E-{uuid.uuid4().hex[:10]}"


class ServerThread:
    """A real server on port 0, on its own event loop in a background thread."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.running: RunningServer = self.call(start_server(settings, database_url))
        self.address = f"127.0.0.1:{self.running.port}"

    def call(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def stop(self) -> None:
        self.call(self.running.stop(grace=0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def bad_request_fields(error: grpc.RpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations carried by a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    fields: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.update({v.field: v.description for v in bad_request.field_violations})
    return fields


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


class ServerProcess:
    """`veritas serve` in a separate process (another server on the same database).

    Every one started is listed in `started`, so that the suite can read the ERROR lines
    of its log (`error_lines`) after each test, whether it still runs or not."""

    started: list[ServerProcess] = []

    def __init__(self, database_url: str, **env: str) -> None:
        import os
        import re
        import subprocess
        import sys

        environment = {
            **os.environ,
            "VERITAS_ENV": "test",
            "VERITAS_DATABASE_URL": database_url,
            "VERITAS_LISTEN": "127.0.0.1:0",
            "VERITAS_JWT_SECRET": TEST_SECRET,
            "VERITAS_BCRYPT_ROUNDS": "4",
            "VERITAS_LOG_LEVEL": "WARNING",
            # As make_settings: every test calls from 127.0.0.1.
            "VERITAS_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
            "VERITAS_REGISTER_MAX_PER_ADDRESS": "100000",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "veritas_grpc.cli", "serve"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            match = re.search(r"serving on (\S+)", line)
            if match:
                self.address = match.group(1)
                break
        else:
            raise RuntimeError(f"server did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]
        # Its log, read as it comes: an undrained pipe would block a chatty server.
        self.log_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        ServerProcess.started.append(self)

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log_lines.append(line.rstrip("\n"))

    def log(self, timeout: float = 10) -> str:
        """Everything it wrote to stderr, once it has exited."""
        self._reader.join(timeout)
        return "\n".join(self.log_lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def thread_count(self) -> int:
        from pathlib import Path

        return len(list(Path(f"/proc/{self.pid}/task").iterdir()))

    def terminate(self, timeout: float = 20) -> int:
        self.process.terminate()
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def error_lines(self, since: int = 0) -> list[str]:
        """The ERROR and CRITICAL lines of its JSON log from line `since` on."""
        import json

        found = []
        for line in self.log_lines[since:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("ERROR", "CRITICAL"):
                found.append(f"{record.get('logger')}: {record.get('message')}")
        return found
