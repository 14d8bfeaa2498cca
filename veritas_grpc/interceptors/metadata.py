"""Reading invocation metadata from a grpc.aio context."""

from __future__ import annotations

import grpc


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        name, value = item[0], item[1]
        if name == key:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None
