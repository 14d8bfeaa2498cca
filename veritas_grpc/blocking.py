"""Run blocking work (SQLAlchemy, bcrypt) on bounded thread pools, off the event loop.

The event loop holds every open stream; only calls doing blocking work take a worker
thread, and only while they do it. The call's context (request id, peer) goes along.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from veritas_grpc.domain.errors import Overloaded

P = ParamSpec("P")
T = TypeVar("T")


class BlockingRunner:
    """A named thread pool. With max_pending set, work beyond that many queued or
    running calls is refused at once (Overloaded) instead of waiting in line. `on_wait`
    is told of each call that finds every thread busy (the metrics count them)."""

    def __init__(
        self,
        name: str,
        max_workers: int,
        max_pending: int | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._name = name
        self._max_workers = max_workers
        self._max_pending = max_pending
        self._on_wait = on_wait
        self._pending = 0

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._max_pending is not None and self._pending >= self._max_pending:
            raise Overloaded(f"the server is busy ({self._name}); retry shortly")
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        if self._on_wait is not None and self._pending >= self._max_workers:
            self._on_wait()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
