"""ClaimAnalysisJobs's long poll without a server: leases of a cancelled call go back,
and a call about to hit its deadline claims nothing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime

from veritas_grpc.adapters.job_wakeups import JobBell
from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.analysis_jobs import ClaimRequest, JobReason, JobState
from veritas_grpc.domain.identity import Principal, Role
from veritas_grpc.services.analysis_queue import Claimed
from veritas_grpc.services.job_claims import JobClaims
from veritas_grpc.services.views.analysis_jobs import JobView, LeaseView

SCORER = Principal(uuid.uuid4(), Role.SERVICE, "jti", uuid.uuid4(), datetime.now(UTC))


def _lease(token: str) -> LeaseView:
    now = datetime.now(UTC)
    job = JobView(
        uuid.uuid4(),
        uuid.uuid4(),
        JobReason.ATTEMPT_ENDED,
        JobState.LEASED,
        0,
        now,
        None,
        SCORER.user_id,
        now,
        "",
        None,
        None,
    )
    return LeaseView(token, job)


class SlowQueue:
    """A claim that takes a while to commit, as under load."""

    def __init__(self) -> None:
        self.claiming = threading.Event()
        self.claims = 0
        self.given_back: list[list[str]] = []

    def claim_now(self, actor: Principal, request: ClaimRequest) -> Claimed:
        self.claims += 1
        self.claiming.set()
        time.sleep(0.3)
        return Claimed([_lease("t1"), _lease("t2")], None)

    def give_back(self, actor: Principal, tokens: list[str]) -> int:
        self.given_back.append(tokens)
        return len(tokens)


def _claims(queue: SlowQueue) -> JobClaims:
    return JobClaims(queue, JobBell(), BlockingRunner("test", 2), lambda: datetime.now(UTC))  # type: ignore[arg-type]


def test_the_leases_of_a_call_cancelled_while_they_are_made_go_back_to_the_queue():
    queue = SlowQueue()

    async def scenario() -> None:
        claim = asyncio.create_task(_claims(queue).claim(SCORER, 2, 0, 0))
        while not queue.claiming.is_set():
            await asyncio.sleep(0.01)
        claim.cancel()  # the client went away while the claim committed
        with contextlib.suppress(asyncio.CancelledError):
            await claim
        for _ in range(500):
            if queue.given_back:
                return
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert queue.given_back == [["t1", "t2"]]


def test_a_call_with_less_time_left_than_the_margin_claims_nothing():
    queue = SlowQueue()
    leases = asyncio.run(_claims(queue).claim(SCORER, 1, 0, 30, time_left=0.5))
    assert leases == [] and queue.claims == 0


def test_a_delivered_claim_gives_nothing_back():
    queue = SlowQueue()
    leases = asyncio.run(_claims(queue).claim(SCORER, 2, 0, 0, time_left=30))
    assert [lease.token for lease in leases] == ["t1", "t2"] and queue.given_back == []
