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
from veritas_grpc.domain.analysis_jobs import ClaimRequest, claim_request
from veritas_grpc.domain.identity import Principal
from veritas_grpc.services.analysis_queue import AnalysisQueue, Claimed
from veritas_grpc.services.views.analysis_jobs import LeaseView

# The longest a waiting claim goes without looking at the rows: the safety net under a
# NOTIFY lost with the LISTEN connection.
MAX_QUIET_SECONDS = 5.0
# A waiting claim answers this long before the caller's deadline, and claims nothing
# with less left: leases handed to a call about to be cut would be lost to everyone.
DEADLINE_MARGIN_SECONDS = 1.0


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
        self._giving_back: set[asyncio.Future[int]] = set()

    async def claim(
        self,
        actor: Principal,
        max_jobs: int,
        lease_seconds: int,
        wait_seconds: int,
        time_left: float | None = None,
    ) -> list[LeaseView]:
        """Leases, within wait_seconds and `time_left` (what the caller's deadline leaves,
        None without one) less a margin: leases are answered, never cut off."""
        request = claim_request(max_jobs, lease_seconds, wait_seconds)
        wait = float(request.wait_seconds)
        if time_left is not None:
            if time_left < DEADLINE_MARGIN_SECONDS:
                return []  # too late to hand out anything
            wait = min(wait, time_left - DEADLINE_MARGIN_SECONDS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            since = self._wakeups.mark()  # before looking: a ring meanwhile is not missed
            claimed = await self._claim_delivered(actor, request)
            remaining = deadline - loop.time()
            if claimed.leases or remaining <= 0:
                return claimed.leases
            pause = min(remaining, MAX_QUIET_SECONDS)
            if claimed.next_available is not None:
                due = (claimed.next_available - self._clock()).total_seconds()
                pause = min(pause, max(due, 0.0))
            await self._wakeups.wait(since, pause)

    async def _claim_delivered(self, actor: Principal, request: ClaimRequest) -> Claimed:
        """claim_now, whose leases go back to the queue (no try counted) if the call is
        cancelled while they are made: the client went away, and nobody else can ever
        learn their tokens."""
        claiming = asyncio.ensure_future(self._run(self._queue.claim_now, actor, request))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            claiming.add_done_callback(lambda done: self._give_back(actor, done))
            raise

    def _give_back(self, actor: Principal, done: asyncio.Future[Claimed]) -> None:
        if done.cancelled() or done.exception() is not None or not done.result().leases:
            return
        tokens = [lease.token for lease in done.result().leases]
        returned = asyncio.ensure_future(self._run(self._queue.give_back, actor, tokens))
        self._giving_back.add(returned)  # kept until done: a task nobody holds may vanish
        returned.add_done_callback(self._giving_back.discard)
