"""Failover with no acknowledged event lost, by hand (docs/OPERATIONS.md, "Replication
and failover"): a primary and its synchronous standby, the server on a two-host URL
(target_session_attrs=read-write); the primary is SIGKILLed and the standby promoted
(pg_ctl promote) while agents stream (tests/drills/failover_load.py checks every
acknowledged event on the new primary exactly once, the counters, the alerts); then the
old primary comes back as a standby (pg_rewind). The seconds without service are
printed (docs/OPERATIONS.md keeps the figures)."""

from __future__ import annotations

import pytest

from tests.drills import replication
from tests.drills.failover_load import drive_failover
from tests.e2e.agent_helpers import wait_until

pytestmark = pytest.mark.server_fault  # the server logs the outage it rides out


@pytest.fixture
def pair():
    with replication.migrated_pair("veritas-failover-", 55000, synchronous=True) as clusters:
        yield clusters


def test_the_primary_killed_under_load_loses_no_acknowledged_event(pair, tmp_path):
    primary, standby = pair

    def fail() -> None:
        replication.kill_postmaster(primary)
        replication.promote(standby)

    outage = drive_failover(
        replication.database_url([primary, standby], "veritas"),
        fail,
        replication.database_url([standby], "veritas"),
        tmp_path,
    )
    print(f"\nfailover by pg_ctl promote: {outage}")

    replication.rejoin_as_standby(primary, standby)
    standby.sql("CREATE TABLE after_failover (n int)", "veritas")
    standby.sql("INSERT INTO after_failover VALUES (1)", "veritas")
    assert primary.sql("SELECT pg_is_in_recovery()") == "t"
    wait_until(lambda: replication.replayed(primary, "SELECT n FROM after_failover", "1"))
