"""The grpc ecosystem's server metrics (started, handled by final code, handling time,
stream messages), recorded for every call by one interceptor.

It sits just inside the request log, outside the error mapper: the code it counts is the
one the log line shows, the code the mapper answered with (call.status), and a call that
ends by an exception the mapper did not map (cancelled, cut at shutdown) counts as
CANCELLED, as it is logged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor
from prometheus_client import Counter, Histogram

from veritas_grpc.adapters.metrics import Metrics
from veritas_grpc.observability import CallContext, current_call

UNARY, CLIENT_STREAM, SERVER_STREAM, BIDI_STREAM = (
    "unary",
    "client_stream",
    "server_stream",
    "bidi_stream",
)


class _MethodMetrics:
    """One method's label children, looked up once instead of on every call."""

    def __init__(self, metrics: Metrics, method_name: str, grpc_type: str) -> None:
        service, _, method = method_name.strip("/").partition("/")
        self._labels = (service, method, grpc_type)
        self._handled_of = metrics.grpc_handled
        self._handled: dict[str, Counter] = {}
        self.started: Counter = metrics.grpc_started.labels(*self._labels)
        self.handling: Histogram = metrics.grpc_handling.labels(*self._labels)
        self.received: Counter = metrics.grpc_received.labels(*self._labels)
        self.sent: Counter = metrics.grpc_sent.labels(*self._labels)

    def handled(self, code: str) -> Counter:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._handled_of.labels(*self._labels, code)
        return child


class MetricsInterceptor(AsyncServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._methods: dict[tuple[str, str], _MethodMetrics] = {}

    def _of(self, method_name: str, grpc_type: str) -> _MethodMetrics:
        key = (method_name, grpc_type)
        found = self._methods.get(key)
        if found is None:
            found = self._methods[key] = _MethodMetrics(self._metrics, method_name, grpc_type)
        return found

    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        call = current_call()
        started = time.perf_counter()
        streaming_in = hasattr(request_or_iterator, "__aiter__")
        counting = _Received(request_or_iterator) if streaming_in else None
        # Calling the next handler runs none of it yet: its work starts once awaited or
        # iterated, so started_total is counted before any of it.
        result = method(counting or request_or_iterator, context)
        streaming_out = hasattr(result, "__aiter__")
        kind = self._of(method_name, _type(streaming_in, streaming_out))
        kind.started.inc()
        if streaming_out:
            return self._stream(result, kind, call, started, counting)
        try:
            response = await result
        except BaseException:
            _end(kind, call, started, counting, failed=True)
            raise
        _end(kind, call, started, counting, failed=False)
        return response

    async def _stream(
        self,
        responses: AsyncIterator[Any],
        kind: _MethodMetrics,
        call: CallContext | None,
        started: float,
        counting: _Received | None,
    ) -> AsyncIterator[Any]:
        sent = kind.sent
        failed = True
        try:
            async for response in responses:
                sent.inc()  # per message: a watch's alerts must show while it lives
                yield response
            failed = False
        finally:
            _end(kind, call, started, counting, failed)


class _Received:
    """A client stream's requests, counted locally and added once at its end: an agent
    sending one event per message must not pay a shared write per message."""

    def __init__(self, requests: Any) -> None:
        self._requests = requests
        self.count = 0

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._each()

    async def _each(self) -> AsyncIterator[Any]:
        async for request in self._requests:
            self.count += 1
            yield request


def _type(streaming_in: bool, streaming_out: bool) -> str:
    if streaming_in:
        return BIDI_STREAM if streaming_out else CLIENT_STREAM
    return SERVER_STREAM if streaming_out else UNARY


def _end(
    kind: _MethodMetrics,
    call: CallContext | None,
    started: float,
    counting: _Received | None,
    failed: bool,
) -> None:
    if call is not None and failed:
        call.ended_early()
    code = call.status if call is not None else ("UNKNOWN" if failed else "OK")
    kind.handled(code).inc()
    kind.handling.observe(time.perf_counter() - started)
    if counting is not None and counting.count:
        kind.received.inc(counting.count)
