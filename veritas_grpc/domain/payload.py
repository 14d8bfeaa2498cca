"""Event payloads: a JSON object of at most 16 KiB, stored and given back as sent.

The column is PostgreSQL `json` (migration 0005), which checks the syntax and keeps the
text. orjson decides here, and is the stricter of the two, so nothing it accepts can
fail the batch the event is written with: it refuses NaN and Infinity, unescaped
control characters, lone surrogates (escaped or not), nesting deeper than 1,024 levels
and numbers too large for a 64-bit float (1e400), which readers of the payload in
most languages could not hold either.
"""

from __future__ import annotations

import orjson

MAX_DATA_BYTES = 16 * 1024


def payload_problem(data_json: str) -> str | None:
    """Why the payload cannot be an event's data (field: problem), or None."""
    if len(data_json.encode("utf-8", "surrogatepass")) > MAX_DATA_BYTES:
        return f"larger than {MAX_DATA_BYTES // 1024} KiB"
    try:
        parsed = orjson.loads(data_json)
    except orjson.JSONDecodeError as error:
        return f"not valid JSON ({error})"
    if not isinstance(parsed, dict):
        return "must be a JSON object"
    return None
