"""The agent library against the real server: delivery, rejections, credentials."""

from __future__ import annotations

import sqlite3

from tests.e2e.agent_helpers import stored, wait_until
from tests.e2e.monitoring_helpers import scene
from tests.support import PASSWORD
from veritas_grpc.agent import Agent, PasswordCredentials, TokenCredentials


def test_recorded_events_are_stored_once_with_their_fields(
    channel, auth_stub, make_account, server, services, tmp_path
):
    world = scene(channel, auth_stub, make_account)
    credentials = TokenCredentials(world.student.access_token, world.student.refresh_token)
    with Agent(
        server.address,
        credentials,
        world.attempt_id,
        spool_path=tmp_path / "a.spool",
        flush_interval=0.2,
        batch_events=7,
    ) as agent:
        for n in range(30):
            assert agent.record(
                "gaze_away",
                "WARNING",
                is_anomaly=n % 3 == 0,
                data={"n": n},
                detector={"name": "gaze", "version": "1.0", "confidence_score": 0.9},
            )
    found = stored(services, world.attempt_id)
    assert (found["rows"], found["max_copies"]) == (30, 1)
    assert (found["event_count"], found["anomaly_count"]) == (30, 10)
    assert agent.stats().accepted == 30 and agent.stats().pending == 0


def test_non_retryable_rejections_are_reported_once_and_never_resent(
    channel, auth_stub, make_account, server, services, tmp_path
):
    world = scene(channel, auth_stub, make_account)
    rejected = []
    with Agent(
        server.address,
        PasswordCredentials(world.student.email, PASSWORD),
        world.attempt_id,
        spool_path=tmp_path / "a.spool",
        flush_interval=0.2,
        on_rejected=rejected.append,
    ) as agent:
        agent.record("gaze_away")
        agent.record("Not Snake Case")
        agent.record("tab_switch", data_json="[1, 2]")
        agent.record("tab_switch")
        _wait_for(lambda: agent.stats().streams_answered >= 1)
        for _ in range(3):  # more streams: the rejected events must not ride along
            agent.record("heartbeat", category="TECHNICAL")
            before = agent.stats().streams_answered
            _wait_for(lambda before=before: agent.stats().streams_answered > before)
        stats = agent.stats()
    assert sorted((r.event.event_type, r.field) for r in rejected) == [
        ("Not Snake Case", "event_type"),
        ("tab_switch", "data_json"),
    ]
    assert stats.rejected == 2 and stats.accepted == 5 and stats.pending == 0
    assert stored(services, world.attempt_id)["rows"] == 5


def test_an_unusable_access_token_is_refreshed_once(
    channel, auth_stub, make_account, server, services, tmp_path
):
    world = scene(channel, auth_stub, make_account)
    credentials = TokenCredentials("not-a-token", world.student.refresh_token)
    errors = []
    with Agent(
        server.address,
        credentials,
        world.attempt_id,
        spool_path=tmp_path / "a.spool",
        flush_interval=0.2,
        on_error=errors.append,
    ) as agent:
        agent.record("gaze_away")
    assert agent.stats().refreshes == 1 and agent.stats().accepted == 1 and not errors
    # The old refresh token was used up by the rotation (presenting it again would be
    # reuse, and revoke the session): the spool holds the new pair.
    with sqlite3.connect(tmp_path / "a.spool") as db:
        refresh = db.execute("SELECT refresh FROM tokens").fetchone()[0]
    assert refresh != world.student.refresh_token


def _wait_for(condition):
    return wait_until(condition, timeout=30)
