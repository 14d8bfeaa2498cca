"""The bell that wakes waiting claims (services.job_claims.JobWakeups): rung on the
event loop by the LISTEN thread for every NOTIFY on db.models.JOBS_CHANNEL, and when
the LISTEN connection is back (jobs may have been made unheard meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib


class JobBell:
    def __init__(self) -> None:
        self._rings = 0
        self._rung = asyncio.Event()

    # The listener's side (adapters.alert_listener.ChannelHandler) -----------------------

    def publish(self, payload: str) -> None:
        self._ring()

    def reconnected(self) -> None:
        self._ring()

    def _ring(self) -> None:
        self._rings += 1
        self._rung.set()
        self._rung = asyncio.Event()  # the next waiters wait for the next ring

    # The claims' side -----------------------------------------------------------------

    def mark(self) -> int:
        return self._rings

    async def wait(self, since: int, timeout: float) -> None:
        if self._rings != since:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._rung.wait(), timeout)
