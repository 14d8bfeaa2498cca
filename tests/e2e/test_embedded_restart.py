"""The embedded PostgreSQL after a server was killed (issue 10, item 14): a clean stop
of the server started after it still stops the database, and a pid list naming a dead
process does not keep the database running."""

import json
import os
import signal
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import ServerProcess
from veritas_grpc.db.embedded import PID_LIST, _forget_dead_users


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split()[0])
    return pid if psutil.pid_exists(pid) else None


def _wait_until_stopped(pgdata: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _postmaster_pid(pgdata) is None:
            return True
        time.sleep(0.2)
    return False


def _embedded_server(data_dir: Path) -> ServerProcess:
    # An empty VERITAS_DATABASE_URL: the server starts (or joins) the embedded one.
    process = ServerProcess("", VERITAS_DATA_DIR=str(data_dir))
    # Once it answers, its event loop runs and its SIGTERM handler is in place.
    with grpc.insecure_channel(process.address) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return process


def test_a_clean_stop_after_a_killed_server_stops_the_embedded_database(tmp_path):
    pgdata = tmp_path / "pg"
    killed = _embedded_server(tmp_path)
    try:
        killed.process.kill()
        killed.process.wait(timeout=10)
        assert _postmaster_pid(pgdata) is not None  # nobody was left to stop it
        assert killed.pid in json.loads((pgdata / PID_LIST).read_text())

        restarted = _embedded_server(tmp_path)
        assert restarted.terminate() == 0
        assert _wait_until_stopped(pgdata, timeout=45)
    finally:
        if (pid := _postmaster_pid(pgdata)) is not None:
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            _wait_until_stopped(pgdata, timeout=15)


def test_dead_pids_are_dropped_from_the_pid_list(tmp_path):
    dead = psutil.Popen(["true"])
    dead.wait()
    (tmp_path / PID_LIST).write_text(json.dumps([dead.pid, os.getpid()]))
    _forget_dead_users(tmp_path)
    assert json.loads((tmp_path / PID_LIST).read_text()) == [os.getpid()]
