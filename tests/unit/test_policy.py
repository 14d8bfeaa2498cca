"""The authorization table is the contract: every veritas.v1 RPC declares who may call it
in its `veritas.v1.contract` option, and the table says exactly that; deny by default."""

from dataclasses import dataclass

import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from veritas.v1 import common_pb2, options_pb2

from veritas_grpc.domain.identity import Role
from veritas_grpc.security import policy
from veritas_grpc.security.policy import POLICY, PUBLIC, allowed_roles, is_public

PROTO_ROLE = {common_pb2.Role.Value(f"ROLE_{role.name}"): role for role in Role}


def _veritas_methods():
    return [m for service in policy.veritas_services() for m in service.methods]


def test_the_walk_finds_every_service_the_server_registers():
    from veritas_grpc import bootstrap

    found = {service.full_name for service in policy.veritas_services()}
    assert set(bootstrap.SERVICE_NAMES) <= found
    assert "/veritas.v1.AuthService/Login" in POLICY


def test_every_veritas_method_has_a_contract():
    missing = [
        m.full_name
        for m in _veritas_methods()
        if not m.GetOptions().HasExtension(options_pb2.contract)
    ]
    assert not missing, f"RPCs without option (veritas.v1.contract): {missing}"


def test_every_contract_admits_somebody():
    nobody = [
        m.full_name
        for m in _veritas_methods()
        if not (contract := m.GetOptions().Extensions[options_pb2.contract]).public
        and not contract.roles
    ]
    assert not nobody, f"contracts that are neither public nor name a role: {nobody}"


def test_the_table_equals_the_contracts():
    expected = {}
    for method in _veritas_methods():
        contract = method.GetOptions().Extensions[options_pb2.contract]
        path = f"/{method.containing_service.full_name}/{method.name}"
        expected[path] = (
            PUBLIC if contract.public else frozenset(PROTO_ROLE[r] for r in contract.roles)
        )
    veritas_entries = {k: v for k, v in POLICY.items() if k.startswith("/veritas.")}
    assert veritas_entries == expected


def test_the_table_has_the_infrastructure_and_nothing_else():
    infrastructure = {k for k in POLICY if not k.startswith("/veritas.")}
    health = health_pb2.DESCRIPTOR.services_by_name["Health"]
    assert {f"/{health.full_name}/{m.name}" for m in health.methods} <= infrastructure
    assert infrastructure == set(policy.INFRASTRUCTURE)
    assert all(is_public(method) for method in infrastructure)
    assert "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" in infrastructure
    assert "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" in infrastructure


def test_only_sign_in_is_public_among_the_veritas_methods():
    public = {m for m in POLICY if m.startswith("/veritas.") and is_public(m)}
    assert public == {
        "/veritas.v1.AuthService/Register",
        "/veritas.v1.AuthService/Login",
        "/veritas.v1.AuthService/Refresh",
        "/veritas.v1.AuthService/SetPassword",
    }


def test_unknown_methods_are_denied():
    assert allowed_roles("/veritas.v1.AuthService/DropDatabase") == frozenset()
    assert not is_public("/veritas.v1.AuthService/DropDatabase")


@dataclass(frozen=True)
class _Service:
    full_name: str = "veritas.v1.ProbeService"


@dataclass
class _Method:
    """Just enough of a MethodDescriptor for entry_for and method_path."""

    options: descriptor_pb2.MethodOptions
    name: str = "Probe"
    containing_service: _Service = _Service()

    def GetOptions(self):  # noqa: N802 (the descriptor's own name)
        return self.options


def _method(**contract) -> _Method:
    options = descriptor_pb2.MethodOptions()
    if contract:
        options.Extensions[options_pb2.contract].CopyFrom(options_pb2.MethodContract(**contract))
    return _Method(options)


def test_a_method_without_a_contract_is_denied_to_everybody():
    assert policy.entry_for(_method()) == frozenset()


def test_a_contract_without_roles_is_denied_to_everybody():
    assert policy.entry_for(_method(status_codes=[3])) == frozenset()


def test_public_wins_over_roles():
    assert policy.entry_for(_method(public=True, roles=[common_pb2.ROLE_ADMIN])) == PUBLIC


def test_roles_map_to_the_accounts_roles():
    entry = policy.entry_for(_method(roles=[common_pb2.ROLE_TEACHER, common_pb2.ROLE_ADMIN]))
    assert entry == frozenset({Role.TEACHER, Role.ADMIN})


def test_an_unspecified_role_is_a_broken_contract():
    with pytest.raises(policy.ContractError, match="ProbeService/Probe: ROLE_UNSPECIFIED"):
        policy.entry_for(_method(roles=[common_pb2.ROLE_UNSPECIFIED]))
