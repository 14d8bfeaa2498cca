"""Reads from a streaming standby (VERITAS_DATABASE_READ_URL) while it is fresh enough,
else from the primary: never a failed read, never an older one than promised.

How fresh it is, measured every probe (REPLICA_PROBE_SECONDS): the primary's WAL
position (pg_current_wal_lsn()) is sampled with the time, and the replica's replayed
position read (pg_last_wal_replay_lsn()). The replica holds everything the primary had
written at the newest sample it has replayed, so its staleness is at most now minus
that sample's time; an idle primary's replica is fresh, a replica that replays late
(recovery_min_apply_delay, a long query holding replay back) is not. Reads go to the
replica while that staleness is within VERITAS_REPLICA_MAX_LAG_SECONDS, and to the
primary otherwise or when the replica does not answer; each change of state is logged
and every read counted by where it went (veritas_db_reads_total).

Between two probes a read may take the replica's state of the last one: a read is at
most max lag + one probe interval behind the primary. That is the promise each RPC that
reads from the replica makes (its proto comment, `reads: REPLICA` in its contract)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("veritas.replica")

REPLICA_PROBE_SECONDS = 0.5
# Samples of the primary's WAL position kept: enough to date a replica up to this many
# probes behind (further behind, it is stale anyway).
SAMPLES_KEPT = 600
PRIMARY_POSITION = text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
REPLAYED_POSITION = text("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")


@dataclass(frozen=True)
class ReplicaState:
    fresh: bool
    # Seconds the replica may be behind the primary; None when it did not answer.
    staleness_seconds: float | None
    # Why reads go to the primary: "unreachable", "behind"; "" while fresh.
    reason: str


UNPROBED = ReplicaState(False, None, "unprobed")


class ReplicaRouter:
    """Which session factory a read takes now. Probed by the server's maintenance loop
    (probe), read by every replica read (reads)."""

    def __init__(
        self,
        primary: sessionmaker[Session],
        primary_engine: Engine,
        replica: sessionmaker[Session],
        replica_engine: Engine,
        max_lag_seconds: float,
        on_read: Callable[[str], None] = lambda source: None,
        on_state: Callable[[ReplicaState], None] = lambda state: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary, self._replica = primary, replica
        self._primary_engine, self._replica_engine = primary_engine, replica_engine
        self._max_lag = max_lag_seconds
        self._on_read, self._on_state = on_read, on_state
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque(maxlen=SAMPLES_KEPT)
        self._lock = threading.Lock()
        self.state = UNPROBED

    def reads(self) -> sessionmaker[Session]:
        """The replica's sessions while it is fresh, else the primary's."""
        fresh = self.state.fresh
        self._on_read("replica" if fresh else "primary")
        return self._replica if fresh else self._primary

    def probe(self) -> int:
        """Measure the replica's staleness now (a maintenance job: returns 0)."""
        with self._lock:
            state = self._measure()
            if state.fresh != self.state.fresh or state.reason != self.state.reason:
                self._log_change(state)
            self.state = state
        self._on_state(state)
        return 0

    def _measure(self) -> ReplicaState:
        now = self._clock()
        try:
            with self._primary_engine.connect() as connection:
                self._samples.append((now, int(connection.execute(PRIMARY_POSITION).scalar_one())))
        except Exception:  # noqa: BLE001 - the primary's own health is reported elsewhere
            return ReplicaState(False, None, "primary unreachable")
        try:
            with self._replica_engine.connect() as connection:
                replayed = connection.execute(REPLAYED_POSITION).scalar_one()
        except Exception:  # noqa: BLE001 - any failure: read from the primary
            return ReplicaState(False, None, "unreachable")
        if replayed is None:  # not a standby (promoted, or misconfigured): not ours to read
            return ReplicaState(False, None, "not a standby")
        staleness = self._staleness(now, int(replayed))
        fresh = staleness is not None and staleness <= self._max_lag
        return ReplicaState(fresh, staleness, "" if fresh else "behind")

    def _staleness(self, now: float, replayed: int) -> float | None:
        """Now minus the newest sample the replica has replayed (None: none of them)."""
        for sampled_at, position in reversed(self._samples):
            if position <= replayed:
                return max(0.0, now - sampled_at)
        return None

    def dispose(self) -> None:
        self._replica_engine.dispose()

    def _log_change(self, state: ReplicaState) -> None:
        if state.fresh:
            log.info("reading from the replica again")
        else:
            staleness = (
                f"{state.staleness_seconds:.1f} s behind"
                if state.staleness_seconds is not None
                else "no answer"
            )
            log.warning("replica %s (%s): reads go to the primary", state.reason, staleness)
