"""The agent library through failures: the server SIGKILLed and restarted while it
sends, the agent process SIGKILLed and restarted on its spool (during an outage), a
full spool, and token refresh through a long run. Every recorded event stored once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import grpc
import pytest
from veritas.v1 import auth_pb2_grpc

from tests.e2e.agent_helpers import free_port, stored, wait_until
from tests.e2e.conftest import login
from tests.e2e.monitoring_helpers import scene
from tests.support import PASSWORD, ServerProcess
from veritas_grpc.agent import Agent, PasswordCredentials, TokenCredentials

# Quick retries: the outages here last a second or two.
FAST = {"flush_interval": 0.1, "batch_events": 25, "backoff_base": 0.05, "backoff_cap": 0.5}


@pytest.fixture
def world(channel, auth_stub, make_account):
    return scene(channel, auth_stub, make_account)


def _restartable(database_url, **env):
    """Start `veritas serve` on a fixed port, again and again (agents keep their target)."""
    port = free_port()

    def start() -> ServerProcess:
        return ServerProcess(database_url, VERITAS_LISTEN=f"127.0.0.1:{port}", **env)

    return f"127.0.0.1:{port}", start


def _kill(process: ServerProcess) -> None:
    process.process.kill()  # SIGKILL: no graceful stop, streams cut mid-way
    process.process.wait(timeout=10)


def _assert_stored_once(services, attempt_id, recorded):
    found = stored(services, attempt_id)
    assert found["ids"] == set(recorded)
    assert found["max_copies"] == 1
    assert found["rows"] == found["event_count"] == len(recorded)


@pytest.mark.drill  # ~12 s: a server SIGKILLed and restarted mid-send
def test_the_server_killed_and_restarted_while_the_agent_sends(
    world, database_url, services, tmp_path
):
    target, start = _restartable(database_url)
    server = start()
    credentials = PasswordCredentials(world.student.email, PASSWORD)
    agent = Agent(target, credentials, world.attempt_id, spool_path=tmp_path / "s", **FAST)
    recorded: list[str] = []

    def record(count: int) -> None:
        for n in range(count):
            recorded.append(agent.record("gaze_away", is_anomaly=n % 4 == 0, data={"n": n}))
            time.sleep(0.005)

    try:
        record(100)
        wait_until(lambda: agent.stats().accepted >= 25)
        # Killed while events keep coming: streams in flight go unanswered.
        recorder = threading.Thread(target=record, args=(200,))
        recorder.start()
        _kill(server)
        wait_until(lambda: agent.stats().stream_failures >= 2)
        recorder.join()
        server = start()
        record(50)
        assert agent.close(timeout=60) == 0
    finally:
        server.stop()
    stats = agent.stats()
    assert stats.recorded == len(recorded) == 350 and stats.dropped == 0
    assert stats.accepted + stats.duplicates == 350
    _assert_stored_once(services, world.attempt_id, recorded)


def _simulate(target, attempt, spool, email, *extra, **popen):
    environment = {**os.environ, "VERITAS_AGENT_PASSWORD": PASSWORD}
    command = [sys.executable, "-m", "veritas_grpc.cli", "agent-simulate", "--attempt", attempt]
    command += ["--target", target, "--email", email, "--spool", str(spool)]
    command += ["--flush-interval", "0.1", "--batch-events", "25", "--backoff-cap", "0.5"]
    return subprocess.Popen(
        [*command, *extra], env=environment, stdout=subprocess.PIPE, text=True, **popen
    )


@pytest.mark.drill  # ~20 s: a server outage and an agent process killed in it
def test_the_agent_killed_during_an_outage_and_restarted_on_its_spool(
    world, database_url, services, tmp_path
):
    target, start = _restartable(database_url)
    server = start()
    spool = tmp_path / "agent.spool"
    first = _simulate(
        target, world.attempt_id, spool, world.student.email, "--rate", "100", "--print-ids"
    )
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(line.strip() for line in first.stdout))
    reader.start()

    def running(condition):
        assert first.poll() is None, "agent-simulate ended by itself"
        return condition

    try:
        wait_until(lambda: running(stored(services, world.attempt_id)["rows"] >= 50))
        _kill(server)  # an outage: the agent spools what it records
        seen = len(printed)
        wait_until(lambda: running(len(printed) >= seen + 100))
        first.kill()  # SIGKILL the agent too, with unsent events in its spool
        first.wait(timeout=10)
        reader.join(timeout=10)
        server = start()
        again = _simulate(
            target,
            world.attempt_id,
            spool,
            world.student.email,
            "--rate",
            "0",
            "--close-timeout",
            "60",
            stderr=subprocess.PIPE,
        )
        _, report = again.communicate(timeout=90)
    finally:
        server.stop()
        first.kill()
    assert again.returncode == 0, report
    found = stored(services, world.attempt_id)
    # Each printed id was accepted by record(); the kill may fall between one event's
    # record() and its print, so at most one stored event was not printed.
    assert set(printed) <= found["ids"] and len(found["ids"] - set(printed)) <= 1
    assert found["max_copies"] == 1 and found["rows"] == found["event_count"]


def test_a_full_spool_refuses_and_reports_and_keeps_what_it_accepted(
    world, server, services, tmp_path
):
    credentials = PasswordCredentials(world.student.email, PASSWORD)
    dropped = []
    nowhere = f"127.0.0.1:{free_port()}"  # no server: nothing leaves the spool
    offline = Agent(
        nowhere,
        credentials,
        world.attempt_id,
        spool_path=tmp_path / "s",
        max_spool_events=5,
        on_dropped=dropped.append,
        **FAST,
    )
    results = [offline.record("tab_switch", data={"n": n}) for n in range(8)]
    accepted = [r for r in results if r]
    assert len(accepted) == 5 and results[5:] == [None, None, None]
    assert offline.stats().dropped == 3 and len(dropped) == 3
    assert [e.data_json for e in dropped] == ['{"n":5}', '{"n":6}', '{"n":7}']
    assert offline.close(timeout=0.3) == 5
    # The next agent on the spool delivers what was accepted, and nothing else.
    online = Agent(
        server.address,
        credentials,
        world.attempt_id,
        spool_path=tmp_path / "s",
        max_spool_events=5,
        **FAST,
    )
    assert online.close(timeout=30) == 0
    _assert_stored_once(services, world.attempt_id, accepted)


def test_tokens_refreshed_through_a_long_run_and_after_a_restart(
    world, database_url, services, tmp_path
):
    # Access tokens of 60 s (the shortest allowed), refreshed 2 s after each issue.
    target, start = _restartable(database_url, VERITAS_ACCESS_TOKEN_TTL_SECONDS="60")
    server = start()
    with grpc.insecure_channel(target) as channel:
        signed_in = login(auth_pb2_grpc.AuthServiceStub(channel), world.student.email)
    given = TokenCredentials(signed_in.access_token, signed_in.refresh_token)
    errors: list[Exception] = []
    recorded: list[str] = []
    options = {**FAST, "spool_path": tmp_path / "s", "on_error": errors.append}
    try:
        agent = Agent(target, given, world.attempt_id, refresh_margin=58, **options)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            recorded.append(agent.record("heartbeat", category="TECHNICAL"))
            time.sleep(0.05)
        assert agent.close(timeout=30) == 0
        assert agent.stats().refreshes >= 2
        # Restarted with the pair it was first given: it continues with the rotated
        # pair from its spool (the given refresh token is used up: presenting it again
        # would revoke the session). Refresh due at once here.
        again = Agent(target, given, world.attempt_id, refresh_margin=59.9, **options)
        recorded += [again.record("heartbeat", category="TECHNICAL") for _ in range(5)]
        # Due 0.1 s after the restart, by the agent's own clock: a close sooner than that
        # (a fast flush) would need no refresh at all.
        time.sleep(1)
        assert again.close(timeout=30) == 0
        assert again.stats().refreshes >= 1
    finally:
        server.stop()
    assert not errors
    _assert_stored_once(services, world.attempt_id, recorded)
