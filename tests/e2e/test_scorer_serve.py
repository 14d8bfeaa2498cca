"""`make run`'s two processes: `veritas serve --seed-demo --demo-scorer` starts a
reference scorer as the demo service account, which analyses the demo attempts; a
SIGINT to the server (Ctrl-C) stops both, and a SIGKILLed server's scorer stops by
itself."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.scorer_world import wait_until
from tests.support import TEST_SECRET

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def demo_database(fresh_database) -> str:
    """Migrated and seeded by the first server; the second finds it ready (faster)."""
    return fresh_database("demo_scorer")


class DemoServe:
    def __init__(self, database_url: str) -> None:
        env = {
            **os.environ,
            "VERITAS_ENV": "demo",
            "VERITAS_DATABASE_URL": database_url,
            "VERITAS_LISTEN": "127.0.0.1:0",
            "VERITAS_JWT_SECRET": TEST_SECRET,
            "VERITAS_BCRYPT_ROUNDS": "4",
            "VERITAS_LOG_FORMAT": "json",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "veritas_grpc.cli", "serve", "--migrate", "--seed-demo"]
            + ["--demo-scorer"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.records: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:  # the server's log and its child's
            try:
                self.records.append(json.loads(line))
            except ValueError:
                self.records.append({"level": "RAW", "message": line})

    def scorer_pid(self) -> int:
        def started():
            found = [r for r in self.records if r.get("message") == "reference scorer started"]
            return found[-1]["pid"] if found else None

        return wait_until(started, 180, "the reference scorer started")  # type: ignore[return-value]

    def errors(self) -> list[dict]:
        return [r for r in self.records if r.get("level") in ("ERROR", "CRITICAL", "RAW")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie until its parent reaps it: not running any more.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = re.search(r"State:\s+(\w)", status)
    return bool(state) and state.group(1) != "Z"


def _scored_by_the_scorer(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT count(*) FROM behavior_analyses"
                    " WHERE model_name = 'veritas-reference-scorer' AND is_current"
                )
            ).scalar_one()
    finally:
        engine.dispose()


def test_the_demo_server_runs_a_scorer_and_ctrl_c_stops_both(demo_database):
    url = demo_database
    serve = DemoServe(url)
    scorer = serve.scorer_pid()
    # Sam's and Lee's attempts ended in the seed: their jobs wait for the scorer.
    wait_until(lambda: _scored_by_the_scorer(url) == 2, 60, "the demo attempts analysed")

    serve.process.send_signal(signal.SIGINT)  # what Ctrl-C sends the server
    assert serve.process.wait(timeout=60) == 0
    assert not _alive(scorer)
    assert [r["message"] for r in serve.records if r.get("message") == "scorer stopped"]
    assert not serve.errors(), serve.errors()


def test_the_scorer_stops_by_itself_when_the_server_is_killed(demo_database):
    serve = DemoServe(demo_database)
    scorer = serve.scorer_pid()
    serve.process.kill()
    serve.process.wait(timeout=10)
    wait_until(lambda: not _alive(scorer), 30, "the orphaned scorer exits")
