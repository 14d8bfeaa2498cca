"""Write docs/API.md and the README's API table from the .proto files themselves.

protoc compiles protos/veritas into a FileDescriptorSet with its comments; every service,
RPC, message, field and enum is documented from it, with each RPC's access and status
codes from its `veritas.v1.contract` option and each field's behaviour from
`google.api.field_behavior`. `make proto` runs it; tests/unit/test_api_docs.py fails
when docs/API.md or the README's table differ from what it writes.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from google.rpc import code_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
API_DOC = ROOT / "docs" / "API.md"
README = ROOT / "README.md"
TABLE_START = "<!-- api-table:start -->"
TABLE_END = "<!-- api-table:end -->"
PACKAGE = "veritas.v1"
LIST_ITEM = re.compile(r"^([-*]|\d+\.) ")

# Paths into a FileDescriptorProto, as SourceCodeInfo locations name them
# (the field numbers in google/protobuf/descriptor.proto).
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2

F = descriptor_pb2.FieldDescriptorProto
# A SourceCodeInfo path (the element it names), and the comment at each path.
Comments = dict[tuple[int, ...], str]
ElementPath = tuple[int, ...]
SCALARS = {
    F.TYPE_DOUBLE: "double",
    F.TYPE_FLOAT: "float",
    F.TYPE_INT64: "int64",
    F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32",
    F.TYPE_FIXED64: "fixed64",
    F.TYPE_FIXED32: "fixed32",
    F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes",
    F.TYPE_UINT32: "uint32",
    F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64",
    F.TYPE_SINT32: "sint32",
    F.TYPE_SINT64: "sint64",
}


def _import_contract_option() -> tuple[ModuleType, ModuleType]:
    """veritas.v1.options_pb2 from generated/ (importable without installing the project),
    so that protobuf parses the contract option out of the MethodOptions bytes."""
    generated = str(ROOT / "generated")
    if generated not in sys.path:
        sys.path.insert(0, generated)
    from veritas.v1 import common_pb2, options_pb2

    return common_pb2, options_pb2


common_pb2, options_pb2 = _import_contract_option()


def compile_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "veritas").rglob("*.proto")
    )
    well_known = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "api.binpb"
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


# --- the model: what the documents say, read out of the descriptor set -----------------


@dataclass
class Field:
    name: str
    type_name: str  # a full name (".veritas.v1.User") or a scalar ("string")
    label: str  # "", "repeated", "optional" or "map"
    map_types: tuple[str, str] | None
    behaviour: list[str]
    oneof: str
    comment: str


@dataclass
class Message:
    full_name: str
    comment: str
    fields: list[Field]


@dataclass
class EnumValue:
    name: str
    number: int
    comment: str


@dataclass
class Enum:
    full_name: str
    comment: str
    values: list[EnumValue]


@dataclass
class Method:
    name: str
    comment: str
    input_type: str
    output_type: str
    client_streaming: bool
    server_streaming: bool
    public: bool
    roles: list[str]
    status_codes: list[str]
    reads_replica: bool = False

    @property
    def kind(self) -> str:
        return {
            (False, False): "unary",
            (True, False): "client streaming",
            (False, True): "server streaming",
            (True, True): "bidirectional streaming",
        }[(self.client_streaming, self.server_streaming)]

    @property
    def who(self) -> str:
        if self.public:
            return "public"
        return ", ".join(self.roles) if self.roles else "nobody (no contract)"


@dataclass
class Service:
    full_name: str
    comment: str
    methods: list[Method]


@dataclass
class Api:
    services: list[Service] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)


def _comment(comments: Comments, path: ElementPath) -> str:
    """The comment above an element (or after it), without protoc's leading spaces."""
    text = comments.get(path, "")
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    return "\n".join(lines).strip()


def _comments_of(file: descriptor_pb2.FileDescriptorProto) -> Comments:
    return {
        tuple(location.path): location.leading_comments or location.trailing_comments
        for location in file.source_code_info.location
    }


def _contract(
    method: descriptor_pb2.MethodDescriptorProto,
) -> tuple[bool, list[str], list[str], bool]:
    """public, roles, status codes, and whether it reads the replica."""
    if not method.options.HasExtension(options_pb2.contract):
        return False, [], [], False
    contract = method.options.Extensions[options_pb2.contract]
    roles = [common_pb2.Role.Name(r).removeprefix("ROLE_") for r in contract.roles]
    codes = [code_pb2.Code.Name(c) for c in contract.status_codes]
    replica = contract.reads == options_pb2.READ_SOURCE_REPLICA
    return contract.public, roles, codes, replica


def _behaviour(proto: descriptor_pb2.FieldDescriptorProto) -> list[str]:
    values = proto.options.Extensions[field_behavior_pb2.field_behavior]
    return [field_behavior_pb2.FieldBehavior.Name(v) for v in values]


def _read_enum(
    enum: descriptor_pb2.EnumDescriptorProto, scope: str, comments: Comments, path: ElementPath
) -> Enum:
    values = [
        EnumValue(v.name, v.number, _comment(comments, (*path, ENUM_VALUE, i)))
        for i, v in enumerate(enum.value)
    ]
    return Enum(f"{scope}.{enum.name}", _comment(comments, path), values)


def _read_message(
    message: descriptor_pb2.DescriptorProto,
    scope: str,
    comments: Comments,
    path: ElementPath,
    api: Api,
) -> None:
    full_name = f"{scope}.{message.name}"
    for i, nested in enumerate(message.nested_type):
        _read_message(nested, full_name, comments, (*path, MESSAGE_NESTED, i), api)
    for i, enum in enumerate(message.enum_type):
        read = _read_enum(enum, full_name, comments, (*path, MESSAGE_ENUM, i))
        api.enums[read.full_name] = read
    if message.options.map_entry:
        return  # shown as map<K, V> on its field
    real_oneofs = [o.name for o in message.oneof_decl]
    fields = [
        _read_field(proto, real_oneofs, _comment(comments, (*path, MESSAGE_FIELD, i)))
        for i, proto in enumerate(message.field)
    ]
    api.messages[full_name] = Message(full_name, _comment(comments, path), fields)


def _read_field(
    proto: descriptor_pb2.FieldDescriptorProto, oneofs: list[str], comment: str
) -> Field:
    label = "repeated" if proto.label == F.LABEL_REPEATED else ""
    oneof = ""
    if proto.HasField("oneof_index"):
        if proto.proto3_optional:
            label = "optional"
        else:
            oneof = oneofs[proto.oneof_index]
    type_name = proto.type_name or SCALARS[proto.type]
    return Field(proto.name, type_name, label, None, _behaviour(proto), oneof, comment)


def _resolve_maps(api: Api, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
    """Map fields point at a synthetic entry message; show them as map<key, value>."""
    entries = {}
    for file in files:
        for message, scope in _walk_messages(file.message_type, f".{file.package}"):
            if message.options.map_entry:
                key, value = message.field
                entries[f"{scope}.{message.name}"] = (
                    key.type_name or SCALARS[key.type],
                    value.type_name or SCALARS[value.type],
                )
    for message in api.messages.values():
        for each in message.fields:
            if each.type_name in entries:
                each.label, each.map_types = "map", entries[each.type_name]


def _walk_messages(
    messages: Iterable[descriptor_pb2.DescriptorProto], scope: str
) -> Iterator[tuple[descriptor_pb2.DescriptorProto, str]]:
    for message in messages:
        yield message, scope
        yield from _walk_messages(message.nested_type, f"{scope}.{message.name}")


def _read_service(
    service: descriptor_pb2.ServiceDescriptorProto,
    file: descriptor_pb2.FileDescriptorProto,
    comments: Comments,
    path: ElementPath,
) -> Service:
    methods = []
    for i, method in enumerate(service.method):
        public, roles, codes, replica = _contract(method)
        methods.append(
            Method(
                method.name,
                _comment(comments, (*path, SERVICE_METHOD, i)),
                method.input_type,
                method.output_type,
                method.client_streaming,
                method.server_streaming,
                public,
                roles,
                codes,
                replica,
            )
        )
    return Service(f"{file.package}.{service.name}", _comment(comments, path), methods)


def read_api(descriptor_set: descriptor_pb2.FileDescriptorSet) -> Api:
    api = Api()
    files = [f for f in descriptor_set.file if f.package == PACKAGE]
    for file in sorted(files, key=lambda f: f.name):
        comments = _comments_of(file)
        scope = f".{file.package}"
        for i, message in enumerate(file.message_type):
            _read_message(message, scope, comments, (FILE_MESSAGE, i), api)
        for i, enum in enumerate(file.enum_type):
            read = _read_enum(enum, scope, comments, (FILE_ENUM, i))
            api.enums[read.full_name] = read
        for i, service in enumerate(file.service):
            api.services.append(_read_service(service, file, comments, (FILE_SERVICE, i)))
    _resolve_maps(api, files)
    return api


def documented_types(api: Api) -> tuple[list[Message], list[Enum]]:
    """The messages and enums the RPCs use, directly or through fields, once each."""
    seen: set[str] = set()
    pending = [t for s in api.services for m in s.methods for t in (m.input_type, m.output_type)]
    while pending:
        name = pending.pop()
        if name in seen or not (name in api.messages or name in api.enums):
            continue
        seen.add(name)
        for each in api.messages[name].fields if name in api.messages else ():
            pending.extend(each.map_types or (each.type_name,))
    messages = [api.messages[n] for n in sorted(seen) if n in api.messages]
    enums = [api.enums[n] for n in sorted(seen) if n in api.enums]
    return messages, enums


# --- rendering --------------------------------------------------------------------------


def _anchor(full_name: str) -> str:
    return full_name.lstrip(".").replace(".", "-").lower()


def _short(full_name: str) -> str:
    return full_name.lstrip(".").removeprefix(f"{PACKAGE}.")


def _type_link(type_name: str, api: Api) -> str:
    if type_name in api.messages or type_name in api.enums:
        return f"[`{_short(type_name)}`](#{_anchor(type_name)})"
    return f"`{type_name.lstrip('.')}`"


def _field_type(each: Field, api: Api) -> str:
    if each.map_types:
        key, value = each.map_types
        return f"map<{_type_link(key, api)}, {_type_link(value, api)}>"
    shown = _type_link(each.type_name, api)
    return f"{each.label} {shown}" if each.label else shown


def _markdown(comment: str) -> list[str]:
    """A comment as Markdown paragraphs; its indented lines (formulas, examples) kept as
    they are in a text block, which Markdown would otherwise run together."""
    lines: list[str] = []
    in_block = in_list = False
    for line in comment.splitlines():
        indented = line.startswith("  ")
        if not indented:
            # An indented line under a list item continues it; Markdown handles that.
            in_list = bool(LIST_ITEM.match(line))
        starts_block = indented and not in_list
        if starts_block != in_block:
            lines.append("```text" if starts_block else "```")
            in_block = starts_block
        lines.append(line)
    if in_block:
        lines.append("```")
    return [*lines, ""] if lines else []


def _cell(text: str) -> str:
    """A comment fit for one table cell: paragraphs kept apart, pipes escaped."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "<br><br>".join(paragraphs).replace("|", "\\|")


def _heading(level: int, title: str, full_name: str) -> list[str]:
    return [f'<a id="{_anchor(full_name)}"></a>', "", f"{'#' * level} {title}", ""]


def _render_method(service: Service, method: Method, api: Api) -> list[str]:
    lines = _heading(4, f"{method.name}", f"{service.full_name}.{method.name}")
    codes = ", ".join(f"`{c}`" for c in method.status_codes) or "none declared"
    lines += [
        f"- kind: {method.kind}",
        f"- who: {method.who}",
        f"- request: {_type_link(method.input_type, api)}",
        f"- response: {_type_link(method.output_type, api)}",
        f"- status codes besides OK: {codes}",
        f"- reads: {'the replica, when configured' if method.reads_replica else 'the primary'}",
        "",
    ]
    return lines + _markdown(method.comment)


def _render_message(message: Message, api: Api) -> list[str]:
    lines = _heading(3, _short(message.full_name), message.full_name)
    lines += _markdown(message.comment)
    if not message.fields:
        return [*lines, "No fields.", ""]
    lines += ["| field | type | behaviour | description |", "|---|---|---|---|"]
    for each in message.fields:
        behaviour = ", ".join(each.behaviour)
        if each.oneof:
            behaviour = ", ".join(filter(None, [behaviour, f"one of `{each.oneof}`"]))
        lines.append(
            f"| `{each.name}` | {_field_type(each, api)} | {behaviour} | {_cell(each.comment)} |"
        )
    return [*lines, ""]


def _render_enum(enum: Enum) -> list[str]:
    lines = _heading(3, _short(enum.full_name), enum.full_name)
    lines += _markdown(enum.comment)
    lines += ["| value | number | description |", "|---|---|---|"]
    lines += [f"| `{v.name}` | {v.number} | {_cell(v.comment)} |" for v in enum.values]
    return [*lines, ""]


def render_api_doc(api: Api) -> str:
    messages, enums = documented_types(api)
    lines = [
        f"# The {PACKAGE} API",
        "",
        "Generated from `protos/veritas/v1` by `scripts/gen_api_docs.py` (`make proto`); do",
        "not edit. Who may call each RPC and the status codes it answers with come from its",
        "`veritas.v1.contract` option, which the server's authorization table is built from;",
        "a field's behaviour comes from its `google.api.field_behavior` annotation.",
        "",
        "## Services",
        "",
    ]
    for service in api.services:
        names = ", ".join(
            f"[`{m.name}`](#{_anchor(f'{service.full_name}.{m.name}')})" for m in service.methods
        )
        lines.append(f"- [`{service.full_name}`](#{_anchor(service.full_name)}): {names}")
    lines.append("")
    for service in api.services:
        lines += _heading(3, f"`{service.full_name}`", service.full_name)
        lines += _markdown(service.comment)
        for method in service.methods:
            lines += _render_method(service, method, api)
    lines += ["## Messages", ""]
    for message in messages:
        lines += _render_message(message, api)
    lines += ["## Enums", ""]
    for enum in enums:
        lines += _render_enum(enum)
    return "\n".join(lines).rstrip() + "\n"


def _infrastructure_rows() -> list[str]:
    """Health and reflection, public in the server's table (security/policy.py)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from veritas_grpc.security.policy import INFRASTRUCTURE

    methods: dict[str, list[str]] = {}
    for path in INFRASTRUCTURE:
        service, method = path.strip("/").split("/")
        methods.setdefault(service, []).append(f"`{method}`")
    return [f"| `{s}` | {', '.join(m)} | public (infrastructure) |" for s, m in methods.items()]


def render_readme_table(api: Api) -> str:
    """service | RPC | who, one row per group of a service's RPCs admitting the same callers."""
    rows = ["| service | RPC | who |", "|---|---|---|"]
    for service in api.services:
        groups: dict[str, list[str]] = {}
        for method in service.methods:
            link = f"[`{method.name}`](docs/API.md#{_anchor(f'{service.full_name}.{method.name}')})"
            kind = "" if method.kind == "unary" else f" ({method.kind})"
            groups.setdefault(method.who, []).append(link + kind)
        for index, (who, methods) in enumerate(groups.items()):
            name = f"`{service.full_name}`" if index == 0 else ""
            rows.append(f"| {name} | {', '.join(methods)} | {who} |")
    return "\n".join(rows + _infrastructure_rows())


def replace_table(readme: str, table: str) -> str:
    start, end = readme.index(TABLE_START), readme.index(TABLE_END)
    if end < start:
        raise SystemExit(f"README.md: {TABLE_END} comes before {TABLE_START}")
    # Blank lines around the table, so that Markdown never reads a marker as a row.
    return f"{readme[: start + len(TABLE_START)]}\n\n{table}\n\n{readme[end:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    api = read_api(compile_descriptor_set())
    API_DOC.write_text(render_api_doc(api))
    README.write_text(replace_table(README.read_text(), render_readme_table(api)))
    print(f"wrote {API_DOC.relative_to(ROOT)} and the API table in {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
