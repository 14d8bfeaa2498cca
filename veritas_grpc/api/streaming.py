"""Server streams read from blocking iterators (a transaction held across pages)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from veritas_grpc.blocking import BlockingRunner

T = TypeVar("T")


class _Pages:
    """The pages, read one at a time on worker threads; closing (the stream ended early)
    waits for a read in progress, then ends the reading transaction."""

    def __init__(self, pages: Iterator[T]) -> None:
        self._pages = pages
        self._lock = threading.Lock()

    def next(self) -> object | None:
        with self._lock:
            return next(self._pages, None)

    def close(self) -> None:
        with self._lock:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()


async def pages_of(pages: Iterator[T], runner: BlockingRunner) -> AsyncIterator[T]:
    """Each page as it is read, off the event loop."""
    reader = _Pages(pages)
    try:
        while (page := await runner.run(reader.next)) is not None:
            yield page  # type: ignore[misc]
    finally:
        # Not awaited: the stream may be ending because its task was cancelled.
        asyncio.get_running_loop().run_in_executor(None, reader.close)
