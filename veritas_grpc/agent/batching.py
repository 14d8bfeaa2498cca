"""Events into StreamEvents request messages, without parsing them again.

The spool holds each event as its serialized MonitoringEvent. A StreamEventsRequest is
nothing but its `events` field (number 1, length-delimited) repeated, so a message is
the events' bytes each behind a tag and a length: a resent stream is byte for byte the
stream that went unanswered.
"""

from __future__ import annotations

# The server lists the rejections of the first 1,000 events of a stream only: a stream
# is never longer, so every rejection comes back with its event.
MAX_STREAM_EVENTS = 1000
# Below the server's smallest allowed message limit (64 KiB) times a margin: a message
# over the limit fails the whole stream, again and again.
MAX_MESSAGE_BYTES = 48 * 1024
# One event must fit a message alone (record() refuses larger ones).
MAX_EVENT_BYTES = MAX_MESSAGE_BYTES - 16
_EVENTS_FIELD_TAG = b"\x0a"  # field 1, wire type 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_messages(events: list[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """Serialized StreamEventsRequests carrying `events` in order, each at most max_bytes
    (an event larger than that alone goes in a message of its own)."""
    messages: list[bytes] = []
    current = bytearray()
    for event in events:
        field = _EVENTS_FIELD_TAG + _varint(len(event)) + event
        if current and len(current) + len(field) > max_bytes:
            messages.append(bytes(current))
            current = bytearray()
        current += field
    if current:
        messages.append(bytes(current))
    return messages
