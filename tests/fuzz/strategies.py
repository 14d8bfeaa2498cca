"""Requests built from the message descriptors: random and adversarial values for every
field, found by walking the descriptor, so a new field or RPC is fuzzed untouched.

A request is a `Payload`: the bytes sent (the generic channel serializes nothing),
with the message they came from when there was one. Payloads are

- messages in which each field, recursively, is left unset, set to a plausible value
  (to get past the checks to the code behind them) or to an adversarial one, chosen by
  the field's type and, for strings, by its name: `*_id` draws ids of the real objects
  made in setup, mixed with random and malformed UUIDs; `page_token` garbage tokens;
  `email`, `password`, `*_json`, `event_type` their own near misses;
- such messages with a string field overwritten on the wire by invalid UTF-8 (proto3
  refuses to hold lone surrogates, so the bad text can only be written as raw bytes);
- raw garbage: random bytes, truncated messages, malformed wire format.

Big values (10,000-element lists, 100,000-character strings) are drawn rarely.
"""

from __future__ import annotations

import base64
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tests.support import PASSWORD

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
MAX_DEPTH = 3
BIG_LIST_LENGTHS = (100, 1_000, 10_000)
HUGE_STRING_LENGTHS = (1_000, 10_000, 100_000)
# Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the Timestamp range.
YEAR_1 = -62_135_596_800
YEAR_9999_END = 253_402_300_799


@dataclass(frozen=True)
class Payload:
    """One request message as sent: `data` on the wire, `message` when it parses as one."""

    kind: str
    data: bytes
    message: Message | None = None

    def __repr__(self) -> str:
        if self.message is None:
            return (
                f"Payload({self.kind}, {self.data[:200]!r}{'...' if len(self.data) > 200 else ''})"
            )
        shown = text_format.MessageToString(self.message, as_one_line=True)
        if len(shown) > 600:
            shown = f"{shown[:600]}... ({len(self.data)} bytes)"
        return f"Payload({self.kind}, {type(self.message).__name__}<{shown}>)"


@dataclass(frozen=True)
class Choices:
    """A field's values: plausible ones (what a client means to send), to get past the
    checks and reach the code behind them, and adversarial ones."""

    plausible: st.SearchStrategy
    adversarial: st.SearchStrategy


class RealObjects:
    """What a strategy needs from the objects made in setup: their ids and addresses,
    read when a value is drawn (the set grows as setup replaces used-up objects)."""

    def ids(self, kind: str) -> Sequence[str]:  # pragma: no cover - an interface
        raise NotImplementedError

    def emails(self) -> Sequence[str]:  # pragma: no cover - an interface
        raise NotImplementedError


def rarely(common: st.SearchStrategy, rare: st.SearchStrategy, one_in: int = 20):
    """`rare` about once in `one_in` draws, else `common`."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else common)


def weighted(choices: list[tuple[int, st.SearchStrategy]]) -> st.SearchStrategy:
    """One of the strategies, each as often as its weight says (st.one_of would give
    each the same share, and counts a strategy given twice once)."""
    slots = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(slots) - 1).flatmap(lambda index: slots[index])


def one_of_current(values: Callable[[], Sequence[str]]) -> st.SearchStrategy[str]:
    """An element of a sequence read at draw time (empty sequences give "")."""

    def pick(index: int) -> str:
        current = values()
        return current[index % len(current)] if current else ""

    return st.integers(0, 2**16).map(pick)


# Text -----------------------------------------------------------------------------

CONTROL_CHARACTERS = st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"])
NASTY_TEXTS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "\r\n\t",
    "\u200b",
    "\ufeff",
    "\u202eevil",
    "é",
    "e\u0301",
    "😀" * 3,
    "\U0010ffff",
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    "%s%s%n",
    "{}",
    "null",
    "../../etc/passwd",
    "<script>alert(1)</script>",
)


def huge_texts() -> st.SearchStrategy[str]:
    return st.tuples(
        st.sampled_from(["a", "\x00", "é", "😀", "'"]), st.sampled_from(HUGE_STRING_LENGTHS)
    ).map(lambda pair: pair[0] * pair[1])


def texts() -> st.SearchStrategy[str]:
    """Any string proto3 can carry: empty, unicode, control characters, NUL, huge."""
    small = st.one_of(
        st.sampled_from(NASTY_TEXTS),
        st.text(max_size=40),
        st.text(CONTROL_CHARACTERS, min_size=1, max_size=8),
        st.text(max_size=20).map(lambda text: f"{text}\x00{text}"),
    )
    return rarely(small, huge_texts())


def uuid_texts() -> st.SearchStrategy[str]:
    return st.uuids().map(str)


MALFORMED_UUID = (
    lambda u: u + "\n",
    lambda u: u + " ",
    lambda u: " " + u,
    lambda u: u.upper(),
    lambda u: "{" + u + "}",
    lambda u: "urn:uuid:" + u,
    lambda u: u.replace("-", ""),
    lambda u: u[:-1],
    lambda u: u + "0",
    lambda u: u + "\x00",
    lambda u: u.replace("-", "\u2010"),
    lambda u: u.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
)


def ids(objects: RealObjects, kind: str) -> st.SearchStrategy[str]:
    """Ids of real objects of the kind (any kind for `id`), random and malformed ones."""
    real = one_of_current(lambda: objects.ids(kind))
    wellformed = st.one_of(real, real, uuid_texts())
    malformed = st.tuples(wellformed, st.sampled_from(MALFORMED_UUID)).map(lambda p: p[1](p[0]))
    return st.one_of(
        real,
        wellformed,
        malformed,
        st.sampled_from(
            ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]
        ),
        texts(),
    )


def page_tokens() -> st.SearchStrategy[str]:
    """Tokens the server never issued: nested JSON, random bytes, base64 near misses."""
    nested = st.sampled_from(["[" * 5000, '{"a":' * 2000, "[1]" * 10, '{"offset": -1}'])
    encoded = st.one_of(nested, st.binary(max_size=64).map(lambda b: b.decode("latin-1"))).map(
        lambda text: base64.urlsafe_b64encode(text.encode()).decode()
    )
    return st.one_of(encoded, st.sampled_from(["", "=", "====", "a.b", "a.b.c"]), texts())


MALFORMED_EMAIL = (
    lambda e: e.upper(),
    lambda e: f" {e} ",
    lambda e: e + "\x00",
    lambda e: e.replace("@", "@@"),
    lambda e: e.replace("@", ""),
    lambda e: "a" * 300 + e,
)


def emails(objects: RealObjects) -> st.SearchStrategy[str]:
    real = one_of_current(objects.emails)
    near_misses = st.tuples(real, st.sampled_from(MALFORMED_EMAIL)).map(lambda p: p[1](p[0]))
    return st.one_of(real, near_misses, st.emails().map(str), texts())


def passwords() -> st.SearchStrategy[str]:
    lengths = st.sampled_from([9, 10, 128, 129, 100_000])
    return st.one_of(st.just(PASSWORD), lengths.map(lambda n: "p" * n), texts())


def json_texts() -> st.SearchStrategy[str]:
    samples = st.sampled_from(
        [
            "{}",
            '{"gaze_x": 0.31}',
            "[]",
            "null",
            "1e999",
            '{"n": 1e400}',
            '{"n": NaN}',
            '{"a": "\\u0000"}',
            '{"a": "\x01"}',
            "{" * 10_000,
            '{"a":' * 1_000 + "1" + "}" * 1_000,
            '{"k": "' + "x" * 20_000 + '"}',
            '{"a": 1, "a": 2}',
            '{"a": "\\ud800"}',
        ]
    )
    return st.one_of(samples, texts())


EVENT_TYPES = ("tab_switch", "eye_movement", "multiple_faces", "copy_paste", "gaze_away")


def event_types() -> st.SearchStrategy[str]:
    names = st.sampled_from(EVENT_TYPES)
    near = st.sampled_from(
        ["Tab_Switch", "tab-switch", "tab switch", "_", "a" * 200, "tab_switch\n"]
    )
    return st.one_of(names, near, st.from_regex(r"[a-z][a-z0-9_]{0,40}", fullmatch=True), texts())


def strings_for(field: FieldDescriptor, objects: RealObjects) -> Choices:
    """A string field's values, by what its name says it holds."""
    name = field.name
    if name == "request_id":
        return Choices(uuid_texts(), ids(objects, "any"))
    if name == "id" or name.endswith("_id"):
        kind = "any" if name == "id" else name.removesuffix("_id")
        return Choices(one_of_current(lambda: objects.ids(kind)), ids(objects, kind))
    if name.endswith("page_token") or name.endswith("refresh_token"):
        return Choices(st.just(""), page_tokens())
    if "email" in name:
        return Choices(st.one_of(one_of_current(objects.emails), st.emails()), emails(objects))
    if name == "password":
        return Choices(st.just(PASSWORD), passwords())
    if name.endswith("_json"):
        return Choices(st.just('{"gaze_x": 0.31, "duration_ms": 1200}'), json_texts())
    if name == "event_type":
        return Choices(st.sampled_from(EVENT_TYPES), event_types())
    return Choices(words(), texts())


def words() -> st.SearchStrategy[str]:
    return st.text(string.ascii_letters + string.digits + " .-", min_size=1, max_size=24)


# Numbers and enums ----------------------------------------------------------------


def integers_in(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    edges = [
        v for v in (0, 1, -1, 2, 10, 100, 10_000, low, high, low + 1, high - 1) if low <= v <= high
    ]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def doubles() -> st.SearchStrategy[float]:
    edges = [
        float("nan"),
        float("inf"),
        float("-inf"),
        -0.0,
        0.0,
        5e-324,
        1.7976931348623157e308,
        -1e-300,
        0.5,
        1.0,
        1.0000000001,
        100.0,
        2.0**53 + 1,
    ]
    return st.one_of(st.sampled_from(edges), st.floats())


def floats32() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from([float("nan"), float("inf"), -0.0]), st.floats(width=32))


def enum_numbers(enum: EnumDescriptor) -> Choices:
    known = [value.number for value in enum.values]
    named = st.sampled_from([n for n in known if n != 0] or known)
    return Choices(named, st.one_of(st.sampled_from(known), integers_in(INT32)))


def fractions() -> st.SearchStrategy[float]:
    return st.one_of(st.floats(0, 1), st.integers(0, 100).map(float))


INTEGER_RANGES = {
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
}


def long_poll_waits() -> Choices:
    """A long poll's wait (ClaimAnalysisJobs): a valid one of more than a second only
    makes the fuzzer wait (and outlast its deadline when nothing is claimable), so the
    valid ones drawn are short; the invalid ones are still every kind."""
    invalid = integers_in(INTEGER_RANGES[FieldDescriptor.TYPE_INT32]).filter(
        lambda n: not 0 <= n <= 60
    )
    return Choices(st.integers(0, 1), st.one_of(st.integers(0, 1), invalid))


def scalars(kind: int) -> Choices:
    if kind in INTEGER_RANGES:
        return Choices(st.integers(0, 100), integers_in(INTEGER_RANGES[kind]))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return Choices(fractions(), doubles())
    if kind == FieldDescriptor.TYPE_FLOAT:
        return Choices(fractions(), floats32())
    if kind == FieldDescriptor.TYPE_BOOL:
        return Choices(st.booleans(), st.booleans())
    if kind == FieldDescriptor.TYPE_BYTES:
        huge = st.binary(min_size=70_000, max_size=70_000)
        return Choices(st.binary(max_size=16), rarely(st.binary(max_size=64), huge))
    raise AssertionError(f"a field type the fuzzer does not know: {kind}")


# Well-known messages --------------------------------------------------------------


def recent_seconds() -> st.SearchStrategy[int]:
    """Within the last two days or the next ten minutes, read at draw time."""
    return st.integers(-2 * 86_400, 600).map(lambda offset: int(time.time()) + offset)


def timestamps(descriptor: Descriptor) -> Choices:
    """Recent times, and times out of the Timestamp range: nanos < 0 or >= 1e9, seconds
    before year 1 or after 9999, int64 extremes."""
    cls = GetMessageClass(descriptor)
    edge_seconds = st.sampled_from(
        [0, YEAR_1, YEAR_1 - 1, YEAR_9999_END, YEAR_9999_END + 1, *INT64, 2**31, -(2**31) - 1]
    )
    seconds = st.one_of(recent_seconds(), edge_seconds, integers_in(INT64))
    edge_nanos = st.sampled_from([0, 999_999_999, 1_000_000_000, -1, *INT32])
    nanos = st.one_of(edge_nanos, integers_in(INT32))
    valid_nanos = st.integers(0, 999_999_999)
    return Choices(
        st.builds(lambda s, n: cls(seconds=s, nanos=n), recent_seconds(), valid_nanos),
        st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos),
    )


def field_mask_paths(owner: Descriptor) -> list[str]:
    """Names a mask in `owner` could mean: the fields of its message-typed siblings."""
    names = ["*"]
    for sibling in owner.fields:
        if sibling.message_type is not None and sibling.message_type.full_name != FIELD_MASK:
            names += [f.name for f in sibling.message_type.fields]
            names += [f"{sibling.name}.{f.name}" for f in sibling.message_type.fields]
    return names


def field_masks(descriptor: Descriptor, owner: Descriptor) -> Choices:
    cls = GetMessageClass(descriptor)
    real = st.sampled_from(field_mask_paths(owner))
    garbage = st.sampled_from(["", ".", "a..b", "title.", "behavior_rules.weight", "x" * 20_000])
    path = st.one_of(real, garbage, texts())
    many = st.lists(path, min_size=1, max_size=3).map(lambda paths: paths * 3_000)
    return Choices(
        st.lists(real, max_size=3).map(lambda paths: cls(paths=paths)),
        rarely(st.lists(path, max_size=5), many).map(lambda paths: cls(paths=paths)),
    )


# Messages -------------------------------------------------------------------------

FIELD_MASK = "google.protobuf.FieldMask"
TIMESTAMP = "google.protobuf.Timestamp"
Templates = dict[str, Callable[[], st.SearchStrategy[Message]]]


def choices_for(
    field: FieldDescriptor, objects: RealObjects, templates: Templates, depth: int
) -> Choices:
    """The values of one element of the field (repeated fields: see `values_of`)."""
    message = field.message_type
    if message is not None and message.full_name == TIMESTAMP:
        return timestamps(message)
    if message is not None and message.full_name == FIELD_MASK:
        return field_masks(message, field.containing_type)
    if message is not None:
        return Choices(
            messages(message, objects, templates, depth + 1, plausible_only=True),
            messages(message, objects, templates, depth + 1),
        )
    if field.enum_type is not None:
        return enum_numbers(field.enum_type)
    if field.name == "wait_seconds":
        return long_poll_waits()
    if field.type == FieldDescriptor.TYPE_STRING:
        return strings_for(field, objects)
    return scalars(field.type)


def lists_of(element: st.SearchStrategy) -> st.SearchStrategy[list]:
    """0 to 3 elements mostly; rarely 100, 1,000 or 10,000 (a few values repeated)."""

    def stretched(pair: tuple[list, int]) -> list:
        values, length = pair
        return (values * (length // len(values) + 1))[:length]

    big = st.tuples(st.lists(element, min_size=1, max_size=3), st.sampled_from(BIG_LIST_LENGTHS))
    return rarely(st.lists(element, max_size=3), big.map(stretched))


def values_of(
    field: FieldDescriptor, objects: RealObjects, templates: Templates, depth: int
) -> Choices:
    element = choices_for(field, objects, templates, depth)
    if not field.is_repeated:
        return element
    mixed = st.one_of(element.plausible, element.adversarial)
    return Choices(st.lists(element.plausible, max_size=3), lists_of(mixed))


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _set(message: Message, field: FieldDescriptor, value) -> None:
    if _is_map(field):
        target = getattr(message, field.name)
        for entry in value:
            if entry.DESCRIPTOR.fields_by_name["value"].message_type is not None:
                target[entry.key].CopyFrom(entry.value)
            else:
                target[entry.key] = entry.value
    elif field.is_repeated:
        getattr(message, field.name).extend(value)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


# How each field is filled: left unset, plausible or adversarial. Unset is what a
# failing example shrinks to. A message is filled in one of three ways:
# - scattered (1 in 3): each field unset, plausible or adversarial (2 : 2 : 1);
# - focused (2 in 3): one field adversarial, every other one unset or plausible, so that the bad
#   value is the only thing wrong and gets past the other checks (to the database);
# - plausible only: what a nested message is when its parent's field is plausible.
# Unset, in a template, means "as in the template".
UNSET, PLAUSIBLE, ADVERSARIAL = "unset", "plausible", "adversarial"
SCATTERED = st.sampled_from([UNSET, UNSET, PLAUSIBLE, PLAUSIBLE, ADVERSARIAL])


def harmless_filling(field: FieldDescriptor, templated: bool) -> st.SearchStrategy[str]:
    """A field that is not the focus: a template's is left as it is (plausible values,
    drawn one by one, may not fit together: an exam closing before it opens); any other
    is mostly set, so that required fields are there."""
    if templated:
        return st.just(UNSET)
    return st.sampled_from([UNSET, PLAUSIBLE, PLAUSIBLE, PLAUSIBLE])


def messages(
    descriptor: Descriptor,
    objects: RealObjects,
    templates: Templates,
    depth: int = 0,
    plausible_only: bool = False,
) -> st.SearchStrategy[Message]:
    """A message of the type, filled scattered, focused or plausible only (above); for
    types with a template (a valid example), often the template with fields changed."""
    name = descriptor.full_name
    cls = GetMessageClass(descriptor)
    fields = [f for f in descriptor.fields if depth < MAX_DEPTH or f.message_type is None]

    @st.composite
    def build(draw) -> Message:
        message = cls()
        templated = name in templates and draw(st.integers(0, 4)) > 0
        if templated:
            message.CopyFrom(draw(templates[name]()))
        focused = not plausible_only and fields and draw(st.integers(0, 2)) > 0
        target = draw(st.sampled_from(fields)) if focused else None
        for field in fields:
            if plausible_only or (focused and field is not target):
                filling = draw(harmless_filling(field, templated))
            else:
                filling = ADVERSARIAL if focused else draw(SCATTERED)
            if filling == UNSET:
                continue
            values = values_of(field, objects, templates, depth)
            chosen = values.plausible if filling == PLAUSIBLE else values.adversarial
            _set(message, field, draw(chosen))
        return message

    return build()


# Bytes on the wire ----------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


INVALID_UTF8 = (
    b"\xff",
    b"\xc3\x28",
    b"abc\x80def",
    b"\xed\xa0\x80",  # an encoded surrogate, U+D800
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xc0\xaf",  # overlong
    b"\xe2\x82",  # cut short
)


def string_paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[int, ...]]:
    """Field-number paths to every string field, nested ones included (to a depth)."""
    paths: list[tuple[int, ...]] = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            paths.append((field.number,))
        elif (
            field.message_type is not None
            and depth < 2
            and not field.message_type.GetOptions().map_entry
        ):
            paths += [(field.number, *rest) for rest in string_paths(field.message_type, depth + 1)]
    return paths


def with_invalid_utf8(message: Message, path: tuple[int, ...], bad: bytes) -> bytes:
    """The message's bytes, then the string at `path` again as invalid UTF-8 (on the
    wire the last value of a field wins, and an embedded message merges)."""
    encoded = bad
    for number in reversed(path):
        encoded = length_delimited(number, encoded)
    return message.SerializeToString() + encoded


MALFORMED_WIRE = (
    b"\xff" * 11,  # a varint that never ends
    b"\x0a\xff\xff\xff\xff\x0f",  # a length past the end
    b"\x0a\x05ab",  # a length past the end, some bytes
    b"\x0b",  # a group that never ends
    b"\x0c",  # an end-group without a start
    b"\x00",  # field number 0
    b"\x07",  # wire type 7
    b"\x0a\x00" * 3,
)


def deeply_nested(number: int, levels: int = 200) -> bytes:
    encoded = b""
    for _ in range(levels):
        encoded = length_delimited(number, encoded)
    return encoded


def payloads(
    descriptor: Descriptor, objects: RealObjects, templates: Templates
) -> st.SearchStrategy[Payload]:
    """Every kind of request a method can be sent (see the module's docstring)."""
    built = messages(descriptor, objects, templates)
    plain = built.map(lambda m: Payload("message", m.SerializeToString(), m))
    kinds = [(6, plain)]
    paths = string_paths(descriptor)
    if paths:
        bad_text = st.tuples(built, st.sampled_from(paths), st.sampled_from(INVALID_UTF8)).map(
            lambda t: Payload(f"invalid UTF-8 at field path {t[1]}", with_invalid_utf8(*t), t[0])
        )
        kinds.append((1, bad_text))
    truncated = st.tuples(built, st.integers(1, 64)).map(
        lambda t: Payload("truncated message", t[0].SerializeToString()[: -t[1]] or b"\xff")
    )
    garbage = st.one_of(
        st.binary(min_size=1, max_size=256),
        st.sampled_from(MALFORMED_WIRE),
        st.integers(1, 20).map(deeply_nested),
    ).map(lambda data: Payload("raw bytes", data))
    kinds += [(1, truncated), (1, garbage)]
    return weighted(kinds)
