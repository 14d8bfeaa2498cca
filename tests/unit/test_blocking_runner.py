import asyncio
import threading

import pytest

from veritas_grpc.blocking import BlockingRunner
from veritas_grpc.domain.errors import Overloaded
from veritas_grpc.observability import CallContext, bind_call, current_call


def test_work_beyond_the_pending_limit_is_refused_not_queued():
    runner = BlockingRunner("test", max_workers=1, max_pending=2)
    release = threading.Event()

    async def scenario():
        first = asyncio.ensure_future(runner.run(release.wait, 5))
        second = asyncio.ensure_future(runner.run(release.wait, 5))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await runner.run(release.wait, 5)
        release.set()
        assert await first and await second
        # Capacity comes back once the queue drains.
        return await runner.run(lambda: "ok")

    try:
        assert asyncio.run(scenario()) == "ok"
    finally:
        runner.shutdown()


def test_the_calls_context_travels_to_the_worker_thread():
    runner = BlockingRunner("test", max_workers=2)

    async def scenario():
        bind_call(CallContext("req-42", "/x/Y", "peer"))
        return await runner.run(
            lambda: (current_call().request_id, threading.current_thread().name)
        )

    try:
        request_id, thread_name = asyncio.run(scenario())
    finally:
        runner.shutdown()
    assert request_id == "req-42"
    assert thread_name.startswith("test")
