"""Automatic failover with no acknowledged event lost (docs/OPERATIONS.md, "Automatic
failover with Patroni"): two nodes under Patroni in synchronous mode with etcd, from the
shipped deploy/patroni/patroni.yml; the server on a two-host URL. The leader's host dies
(Patroni and PostgreSQL SIGKILLed) while agents stream; Patroni promotes the
synchronous standby once the leader key expires; every acknowledged event is on the
new primary exactly once (tests/drills/failover_load.py). Then the old node's Patroni
starts again and rejoins as the synchronous standby by itself (pg_rewind)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.drills.failover_load import drive_failover
from tests.drills.patroni_cluster import PatroniPair
from tests.drills.scratch_cluster import scratch_dir
from veritas_grpc.db import migrate

# The server logs the outage it rides out; the leader key lives 20 s (Patroni's least).
pytestmark = [pytest.mark.server_fault, pytest.mark.timeout(600)]


@pytest.fixture
def patroni():
    parent = scratch_dir(Path(tempfile.mkdtemp(prefix="veritas-patroni-")), "drill")
    pair = PatroniPair(parent, 56000 + uuid.uuid4().int % 900)
    try:
        pair.start()
        engine = create_engine(pair.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("CREATE DATABASE veritas"))
        engine.dispose()
        migrate.upgrade(pair.url("veritas"))
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(parent.parent, ignore_errors=True)


def test_patroni_promotes_the_synchronous_standby_and_nothing_acknowledged_is_lost(
    patroni, tmp_path
):
    old_leader = patroni.leader()
    [survivor] = [node for node in patroni.nodes if node is not old_leader]

    def fail() -> None:
        old_leader.kill()
        patroni.wait(
            lambda members: any(
                m["name"] == survivor.name and m["role"] == "leader" and m["state"] == "running"
                for m in members
            )
        )

    outage = drive_failover(
        patroni.url("veritas"), fail, patroni.url("veritas", [survivor]), tmp_path
    )
    print(f"\nfailover by Patroni: {outage}")

    old_leader.start()
    members = patroni.wait_healthy()
    roles = {member["name"]: member["role"] for member in members}
    assert roles == {survivor.name: "leader", old_leader.name: "sync_standby"}
