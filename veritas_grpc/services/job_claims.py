"""ClaimAnalysisJobs, the use case: lease what is claimable, or wait for it (long poll).

A waiting claim sleeps on `JobWakeups`, rung by the NOTIFY of every commit that made a
job claimable in any server process, and until the next backed-off job falls due. The
rows are the truth: a missed ring only delays a claim to the next look, at most
MAX_QUIET_SECONDS later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.analysis_jobs import claim_request
from veritas_grpc.domain.identity import Principal
from veritas_grpc.services.analysis_queue import AnalysisQueue
from veritas_grpc.services.views.analysis_jobs import LeaseView

# The longest a waiting claim goes without looking at the rows: the safety net under a
# NOTIFY lost with the LISTEN connection.
MAX_QUIET_SECONDS = 5.0


class JobWakeups(Protocol):
    """Rings when a job may have become claimable (adapters.job_wakeups.JobBell)."""

    def mark(self) -> int:
        """The rings so far: wait(since=mark()) returns at once if one came since."""
        ...

    async def wait(self, since: int, timeout: float) -> None: ...


class JobClaims:
    def __init__(
        self,
        queue: AnalysisQueue,
        wakeups: JobWakeups,
        runner: BlockingRunner,
        clock: Callable[[], datetime],
    ) -> None:
        self._queue = queue
        self._wakeups = wakeups
        self._run = runner.run
        self._clock = clock

    async def claim(
        self, actor: Principal, max_jobs: int, lease_seconds: int, wait_seconds: int
    ) -> list[LeaseView]:
        request = claim_request(max_jobs, lease_seconds, wait_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait_seconds
        while True:
            since = self._wakeups.mark()  # before looking: a ring meanwhile is not missed
            claimed = await self._run(self._queue.claim_now, actor, request)
            remaining = deadline - loop.time()
            if claimed.leases or remaining <= 0:
                return claimed.leases
            pause = min(remaining, MAX_QUIET_SECONDS)
            if claimed.next_available is not None:
                due = (claimed.next_available - self._clock()).total_seconds()
                pause = min(pause, max(due, 0.0))
            await self._wakeups.wait(since, pause)
