"""Who may call what: one table from full gRPC method name to the roles admitted.

The table is read from the contract: every RPC of every veritas.v1 service declares in
its `veritas.v1.contract` option (protos/veritas/v1/options.proto) whether it is public
and which roles it admits, so the .proto files, docs/API.md and this table cannot
disagree. Only the infrastructure services (health, reflection) are declared here.

Deny by default: a method absent from the table, or whose contract is missing or names
no role, is refused with PERMISSION_DENIED. Row-level rules (own data, exam grants) live
in the services' queries, not here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Final

import veritas.v1
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from veritas.v1 import common_pb2, options_pb2

from veritas_grpc.domain.identity import Role

PUBLIC: Final = "public"
"""No token needed (the method authenticates its caller itself, or is infrastructure)."""

Entry = frozenset[Role] | str

# Infrastructure: load balancers probe health; grpcurl and buf curl read the schema.
INFRASTRUCTURE: Final = (
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/List",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)


class ContractError(ValueError):
    """A contract option that cannot be read as an access rule."""


def veritas_services() -> list[ServiceDescriptor]:
    """Every service of the generated veritas.v1 package, found by walking its modules,
    so a new .proto file's services are covered without a list to keep up to date."""
    services: list[ServiceDescriptor] = []
    for module_info in pkgutil.iter_modules(veritas.v1.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"{veritas.v1.__name__}.{module_info.name}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return sorted(services, key=lambda service: service.full_name)


def method_path(method: MethodDescriptor) -> str:
    """The name gRPC gives interceptors: /package.Service/Method."""
    return f"/{method.containing_service.full_name}/{method.name}"


def contract_of(method: MethodDescriptor) -> options_pb2.MethodContract | None:
    options = method.GetOptions()
    if not options.HasExtension(options_pb2.contract):
        return None
    return options.Extensions[options_pb2.contract]


def _role(value: int) -> Role:
    name = common_pb2.Role.Name(value)
    try:
        return Role[name.removeprefix("ROLE_")]
    except KeyError:
        raise ContractError(f"{name} is not a role an account can have") from None


def entry_for(method: MethodDescriptor) -> Entry:
    """PUBLIC, or the roles the method's contract admits (none without a contract)."""
    contract = contract_of(method)
    if contract is None:
        return frozenset()
    if contract.public:
        return PUBLIC
    try:
        return frozenset(_role(value) for value in contract.roles)
    except ContractError as error:
        raise ContractError(f"{method_path(method)}: {error}") from None


def build_policy(services: Iterable[ServiceDescriptor]) -> dict[str, Entry]:
    table: dict[str, Entry] = dict.fromkeys(INFRASTRUCTURE, PUBLIC)
    for service in services:
        for method in service.methods:
            table[method_path(method)] = entry_for(method)
    return table


# A dict, not a mapping proxy: tests admit their own probe methods with monkeypatch.
POLICY: Final[dict[str, Entry]] = build_policy(veritas_services())


def is_public(method: str) -> bool:
    return POLICY.get(method) == PUBLIC


def allowed_roles(method: str) -> frozenset[Role]:
    """The roles admitted to an authenticated method; empty when the method is unknown."""
    entry = POLICY.get(method)
    return entry if isinstance(entry, frozenset) else frozenset()


# One request, one answer: the calls whose token check may wait for their first
# transaction (interceptors/authentication.py); a stream's is made as it opens.
UNARY: Final = frozenset(
    method_path(method)
    for service in veritas_services()
    for method in service.methods
    if not method.client_streaming and not method.server_streaming
)


def is_unary(method: str) -> bool:
    return method in UNARY
