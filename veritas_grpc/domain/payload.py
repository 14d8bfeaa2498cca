"""Event payloads: JSON objects that PostgreSQL's jsonb will take.

Whatever jsonb would refuse is refused here, per event, so that a bad event can never
fail the batch it would be written with; whatever it takes is taken. orjson decides
the common case, fast and as strict as jsonb (no NaN or Infinity, no unescaped
control characters, no lone surrogates, escaped or not). Where the two differ, the
payload goes the exact way: jsonb reads numbers as `numeric` (131,072 digits before
the point, 16,383 after), orjson as doubles, so 1e400 fails orjson but not jsonb, and
1e-20000 passes orjson (as 0.0) but not jsonb.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import orjson

MAX_DATA_BYTES = 16 * 1024
NUMERIC_MAX_INTEGER_DIGITS = 131_072
NUMERIC_MAX_FRACTION_DIGITS = 16_383
# \u0000 is a NUL, which jsonb refuses, unless its backslash is itself escaped ("\\u0000"
# is a backslash and the text u0000): an even number of backslashes may precede it.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def payload_problem(data_json: str) -> str | None:
    """Why jsonb would refuse the payload as an event's data (field: problem), or None."""
    if len(data_json.encode("utf-8", "surrogatepass")) > MAX_DATA_BYTES:
        return f"data_json: larger than {MAX_DATA_BYTES // 1024} KiB"
    try:
        parsed = orjson.loads(data_json)
    except orjson.JSONDecodeError:
        return _exact_problem(data_json)
    if "e-" in data_json or "E-" in data_json:  # a fraction numeric may not hold
        return _exact_problem(data_json)
    return _shape_problem(parsed, data_json)


def _shape_problem(parsed: object, data_json: str) -> str | None:
    if not isinstance(parsed, dict):
        return "data_json: must be a JSON object"
    if "\\u0000" in data_json and _ESCAPED_NUL.search(data_json):
        return "data_json: must not contain NUL characters"
    return None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _exact_problem(data_json: str) -> str | None:
    """The slow, exact judgement, for the few payloads orjson cannot make: numbers read
    as decimals and held to numeric's range."""
    numbers: list[Decimal] = []

    def number(literal: str) -> Decimal:
        numbers.append(Decimal(literal))
        return numbers[-1]

    try:
        parsed = json.loads(
            data_json, parse_int=number, parse_float=number, parse_constant=_refuse_constant
        )
        # The json module takes lone surrogates; encoding them to UTF-8 fails.
        json.dumps(parsed, ensure_ascii=False, default=str).encode("utf-8")
    except RecursionError:
        return "data_json: nested too deeply"
    except (ValueError, UnicodeError) as error:
        return f"data_json: not valid JSON ({error})"
    if not all(_fits_numeric(value) for value in numbers):
        return "data_json: a number is out of range (PostgreSQL numeric)"
    return _shape_problem(parsed, data_json)


def _fits_numeric(value: Decimal) -> bool:
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # parsed JSON numbers are finite
    integer_digits = len(digits) + exponent
    fraction_digits = -exponent
    return (
        integer_digits <= NUMERIC_MAX_INTEGER_DIGITS
        and fraction_digits <= NUMERIC_MAX_FRACTION_DIGITS
    )
