"""One event loop thread per process runs the senders of every Agent in it, over
channels shared by target.

Why not a thread per agent: a real agent process has one Agent, where it would not
matter; a load tool or a proctoring gateway has hundreds, and 1,000 OS threads each
holding a blocking stream would cost 1,000 stacks and fight over the GIL. Coroutines on
one loop hold 1,000 streams with one thread (plus gRPC's own few), and agents with the
same target share one HTTP/2 connection (streams are multiplexed on it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc

T = TypeVar("T")
ChannelKey = tuple[str, int, tuple[tuple[str, Any], ...]]


class Runtime:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="veritas-agent-sender", daemon=True
        )
        self._thread.start()
        self._channels: dict[ChannelKey, tuple[grpc.aio.Channel, int]] = {}
        self._lock = threading.Lock()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call_soon(self, callback: Any) -> None:
        self.loop.call_soon_threadsafe(callback)

    def channel(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None,
        options: tuple[tuple[str, Any], ...],
    ) -> grpc.aio.Channel:
        """A shared channel (made on the loop's thread, where it is used)."""
        key = (target, id(credentials), options)
        with self._lock:
            found = self._channels.get(key)
            if found is None:
                found = (self.submit(_open(target, credentials, options)).result(), 0)
            self._channels[key] = (found[0], found[1] + 1)
            return found[0]

    def release(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None,
        options: tuple[tuple[str, Any], ...],
    ) -> None:
        key = (target, id(credentials), options)
        with self._lock:
            channel, users = self._channels[key]
            if users > 1:
                self._channels[key] = (channel, users - 1)
                return
            del self._channels[key]
        self.submit(channel.close()).result(timeout=10)


async def _open(
    target: str, credentials: grpc.ChannelCredentials | None, options: tuple[tuple[str, Any], ...]
) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)


_shared: Runtime | None = None
_shared_lock = threading.Lock()


def shared_runtime() -> Runtime:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Runtime()
        return _shared
