"""Outermost interceptor: one request id per call, bound for logs and audit rows, and one
structured log line per call with its method, peer, status and duration."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from veritas_grpc.interceptors.metadata import metadata_value
from veritas_grpc.observability import CallContext, bind_call, unbind_call

log = logging.getLogger("veritas.access")
REQUEST_ID_HEADER = "x-request-id"
# A client's own id (for tracing across services) is logged beside ours, never in its
# place: audit rows must carry ids that callers cannot choose.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # \Z: $ would take a final newline
# Health probes arrive every few seconds; logging each would drown the useful lines.
_QUIET_PREFIXES = ("/grpc.health.v1.Health/",)


def _client_request_id(context: grpc.aio.ServicerContext) -> str | None:
    offered = metadata_value(context, REQUEST_ID_HEADER)
    return offered if offered and _CLIENT_REQUEST_ID.match(offered) else None


class RequestLogInterceptor(AsyncServerInterceptor):
    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        method_name: str,
    ) -> Any:
        call = CallContext(
            request_id=uuid.uuid4().hex,
            method=method_name,
            peer=context.peer(),
            client_request_id=_client_request_id(context),
        )
        token = bind_call(call)
        context.set_trailing_metadata(((REQUEST_ID_HEADER, call.request_id),))
        started = time.perf_counter()
        try:
            headers_sent = await self._send_id_early(request_or_iterator, context, call)
            result = method(request_or_iterator, context)
            if hasattr(result, "__aiter__"):
                # The stream's end, not its start, is the end of the call.
                return self._logged_stream(result, context, call, started, headers_sent)
            response = await result
        except BaseException:
            call.ended_early()
            self._log(call, started)
            raise
        finally:
            unbind_call(token)
        self._log(call, started)
        return response

    async def _logged_stream(
        self,
        responses: AsyncIterator[Any],
        context: grpc.aio.ServicerContext,
        call: CallContext,
        started: float,
        headers_sent: bool,
    ) -> AsyncIterator[Any]:
        token = bind_call(call)
        try:
            # A stream's trailers come at its end, which may be hours away (a teacher's
            # watch): its headers carry the request id too.
            if not headers_sent:
                await context.send_initial_metadata(((REQUEST_ID_HEADER, call.request_id),))
            async for response in responses:
                yield response
        except BaseException:
            call.ended_early()
            raise
        finally:
            self._log(call, started)
            unbind_call(token)

    @staticmethod
    async def _send_id_early(
        requests: Any, context: grpc.aio.ServicerContext, call: CallContext
    ) -> bool:
        """Send the request id in the headers of a client-streaming call, before its
        first message is read. A message over the size limit is refused by grpc core
        itself, with trailers of its own: the headers are the only place the id can
        reach the client then. A unary request is read before any interceptor runs."""
        if not hasattr(requests, "__aiter__"):
            return False
        await context.send_initial_metadata(((REQUEST_ID_HEADER, call.request_id),))
        return True

    @staticmethod
    def _log(call: CallContext, started: float) -> None:
        if call.method.startswith(_QUIET_PREFIXES) and call.status == "OK":
            return
        log.info(
            "rpc finished",
            extra={
                "fields": {
                    "request_id": call.request_id,
                    "method": call.method,
                    "peer": call.peer,
                    "status": call.status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    **(
                        {"client_request_id": call.client_request_id}
                        if call.client_request_id
                        else {}
                    ),
                }
            },
        )
