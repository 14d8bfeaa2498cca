"""ReplicaRouter's judgement, with fake connections and a fake clock: a replica that
has replayed the primary's newest sample is fresh, one that replays late is behind by
the age of the newest sample it has, and one that does not answer (or is not a standby)
is not read."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from veritas_grpc.adapters.replica import PRIMARY_POSITION, REPLAYED_POSITION, ReplicaRouter


class Position:
    def __init__(self) -> None:
        self.value: int | None = 0
        self.fails = False


class FakeEngine:
    """Answers the router's one query with a position (or fails)."""

    def __init__(self, position: Position, query) -> None:
        self._position, self._query = position, query

    @contextmanager
    def connect(self):
        if self._position.fails:
            raise OSError("connection refused")
        yield self

    def execute(self, statement):
        assert str(statement) == str(self._query)
        return self

    def scalar_one(self):
        return self._position.value


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world():
    primary, replica, clock = Position(), Position(), Clock()
    reads: list[str] = []
    router = ReplicaRouter(
        "primary sessions",  # type: ignore[arg-type]
        FakeEngine(primary, PRIMARY_POSITION),  # type: ignore[arg-type]
        "replica sessions",  # type: ignore[arg-type]
        FakeEngine(replica, REPLAYED_POSITION),  # type: ignore[arg-type]
        max_lag_seconds=2.0,
        on_read=reads.append,
        clock=clock,
    )
    return router, primary, replica, clock, reads


def test_a_replica_that_keeps_up_is_read(world):
    router, primary, replica, clock, reads = world
    assert router.reads() == "primary sessions"  # not probed yet
    for position in (10, 20, 30):
        primary.value = replica.value = position
        clock.now += 0.5
        router.probe()
    assert router.state.fresh and router.state.staleness_seconds == 0
    assert router.reads() == "replica sessions"
    assert reads == ["primary", "replica"]


def test_an_idle_primary_keeps_its_replica_fresh(world):
    router, primary, replica, clock, _ = world
    primary.value = replica.value = 50
    for _ in range(20):  # ten seconds without a write
        clock.now += 0.5
        router.probe()
    assert router.state.fresh


def test_a_late_replica_is_as_old_as_the_newest_sample_it_has(world):
    router, primary, replica, clock, _ = world
    replica.value = 100
    for second in range(6):  # the primary writes on; the replica stops at 100
        primary.value = 100 + 10 * second
        clock.now += 1
        router.probe()
    # The sample at position 100 was taken 5 s ago: the replica may be 5 s behind.
    assert router.state.staleness_seconds == 5
    assert not router.state.fresh and router.state.reason == "behind"
    assert router.reads() == "primary sessions"
    replica.value = primary.value  # caught up
    clock.now += 0.5
    router.probe()
    assert router.state.fresh


def test_a_replica_behind_every_sample_is_behind(world):
    router, primary, replica, clock, _ = world
    primary.value, replica.value = 500, 10
    router.probe()
    assert not router.state.fresh and router.state.staleness_seconds is None


@pytest.mark.parametrize("breakage", ["down", "promoted"])
def test_a_replica_that_does_not_answer_as_a_standby_is_not_read(world, breakage):
    router, primary, replica, clock, _ = world
    primary.value = replica.value = 5
    router.probe()
    assert router.state.fresh
    if breakage == "down":
        replica.fails = True
    else:
        replica.value = None  # pg_last_wal_replay_lsn() is NULL outside recovery
    clock.now += 0.5
    router.probe()
    assert not router.state.fresh
    assert router.state.reason == ("unreachable" if breakage == "down" else "not a standby")
    assert router.reads() == "primary sessions"
